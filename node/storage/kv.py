"""Key-value stores with atomic, synced batches.

:class:`LevelDBKV` is the real store (plyvel). :class:`MemoryKV` has the same interface for
pure unit tests. A datadir is guarded by an exclusive lock file so a second process cannot
open it, and by an identity file (``chain.json``) that is read before the database is
touched: a datadir of another chain or schema version is refused and left as it was.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import plyvel

from node.storage.schema import SCHEMA_VERSION


class StorageError(RuntimeError):
    """A datadir or database problem, with a stable ``reason`` code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass
class Batch:
    """Writes collected for one atomic commit."""

    puts: dict[bytes, bytes] = field(default_factory=dict)
    deletes: set[bytes] = field(default_factory=set)

    def put(self, key: bytes, value: bytes) -> None:
        self.deletes.discard(key)
        self.puts[key] = value

    def delete(self, key: bytes) -> None:
        self.puts.pop(key, None)
        self.deletes.add(key)


class KV(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterate(self, prefix: bytes, reverse: bool = False, below: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Keys starting with ``prefix`` in key order (``reverse``: descending), only those
        below ``below`` when it is given."""
        ...

    def write(self, batch: Batch, sync: bool = True) -> None: ...

    def close(self) -> None: ...


class MemoryKV:
    """A dict with the KV interface (for pure unit tests only)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def iterate(self, prefix: bytes, reverse: bool = False, below: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        keys = sorted((k for k in self.data if k.startswith(prefix) and (below is None or k < below)), reverse=reverse)
        for key in keys:
            yield key, self.data[key]

    def write(self, batch: Batch, sync: bool = True) -> None:
        for key in batch.deletes:
            self.data.pop(key, None)
        self.data.update(batch.puts)

    def close(self) -> None:
        pass


def _prefix_end(prefix: bytes) -> bytes:
    """The least key above every key that starts with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\xff" * (len(prefix) + 64)
    return stripped[:-1] + bytes([stripped[-1] + 1])


class LevelDBKV:
    """LevelDB through plyvel. Every batch is written atomically; ``sync`` waits for the disk."""

    def __init__(self, path: str) -> None:
        try:
            self.db = plyvel.DB(path, create_if_missing=True, paranoid_checks=True)
        except plyvel.IOError as exc:
            if "lock" in str(exc).lower():
                raise StorageError("datadir-locked", f"{path} is open in another process") from None
            raise StorageError("db-io", str(exc)) from None
        except plyvel.CorruptionError as exc:
            raise StorageError("db-corrupt", f"{exc}; restart with --reindex") from None

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)  # type: ignore[no-any-return]

    def iterate(self, prefix: bytes, reverse: bool = False, below: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        if below is None:
            it = self.db.iterator(prefix=prefix, reverse=reverse)
        else:  # plyvel takes a prefix or a range, not both
            it = self.db.iterator(start=prefix, stop=min(below, _prefix_end(prefix)), reverse=reverse)
        with it:
            yield from it

    def write(self, batch: Batch, sync: bool = True) -> None:
        with self.db.write_batch(sync=sync) as wb:
            for key in batch.deletes:
                wb.delete(key)
            for key, value in batch.puts.items():
                wb.put(key, value)

    def close(self) -> None:
        if not self.db.closed:
            self.db.close()


@dataclass
class Datadir:
    """An open, locked datadir: the chain database plus the lock that guards it."""

    path: str
    kv: LevelDBKV
    lock_fd: int

    def close(self) -> None:
        try:
            self.kv.close()
        finally:
            if self.lock_fd >= 0:
                os.close(self.lock_fd)  # releases the flock
                self.lock_fd = -1


IDENTITY_FILE = "chain.json"


def _lock(path: str) -> int:
    fd = os.open(os.path.join(path, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StorageError("datadir-locked", f"{path} is in use by another process") from None
        raise
    return fd


def open_datadir(path: str, chain_id: str, genesis_hash: bytes) -> Datadir:
    """Open (creating if new) the datadir for the chain ``(chain_id, genesis_hash)``.

    Raises :class:`StorageError`: ``datadir-locked``, ``wrong-chain``, ``wrong-schema`` or
    ``bad-datadir``; in each case nothing in the datadir was changed.
    """
    os.makedirs(path, exist_ok=True)
    fd = _lock(path)
    try:
        ident_path = os.path.join(path, IDENTITY_FILE)
        want = {"schema": SCHEMA_VERSION, "chain_id": chain_id, "genesis": genesis_hash.hex()}
        if os.path.exists(ident_path):
            try:
                with open(ident_path, encoding="utf-8") as fh:
                    have = json.load(fh)
                if not isinstance(have, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError) as exc:
                raise StorageError("bad-datadir", f"{ident_path} is unreadable: {exc}") from None
            if have.get("schema") != SCHEMA_VERSION:
                raise StorageError(
                    "wrong-schema",
                    f"{path} has schema {have.get('schema')}, this node needs {SCHEMA_VERSION}",
                )
            if have.get("genesis") != want["genesis"] or have.get("chain_id") != chain_id:
                raise StorageError(
                    "wrong-chain",
                    f"{path} belongs to chain {have.get('chain_id')} (genesis {str(have.get('genesis'))[:16]}), "
                    f"not {chain_id} (genesis {genesis_hash.hex()[:16]})",
                )
        elif os.path.exists(os.path.join(path, "chaindata")):
            raise StorageError("bad-datadir", f"{path} has chaindata but no {IDENTITY_FILE}")
        else:
            tmp = ident_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(want, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, ident_path)
        kv = LevelDBKV(os.path.join(path, "chaindata"))
        return Datadir(path, kv, fd)
    except BaseException:
        os.close(fd)
        raise
