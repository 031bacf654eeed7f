"""Storage: a small key-value interface with atomic batches (LevelDB through plyvel, or
memory for pure unit tests), the key layout in one schema module, and the datadir."""

from node.storage.kv import KV, Batch, LevelDBKV, MemoryKV, StorageError, open_datadir

__all__ = ["KV", "Batch", "LevelDBKV", "MemoryKV", "StorageError", "open_datadir"]
