"""An in-memory :class:`consensus.state.ChainView` for the pure rules: the blocks (or bare
headers) and model weights a test hands it, nothing else. Validating a block on top of them
needs no datadir."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from consensus.types import Block, Header


class MemoryView:
    """Headers, blocks and content-addressed weights held in dicts.

    ``MemoryView(genesis_header)`` is enough for a height-1 block; add the blocks of a branch
    with :meth:`add` and weights with :meth:`add_weights` (keyed by their SHA-256)."""

    def __init__(self, *items: Block | Header, weights: Iterable[bytes] = ()) -> None:
        self.headers: dict[bytes, Header] = {}
        self.blocks: dict[bytes, Block] = {}
        self.weights: dict[bytes, bytes] = {}
        for item in items:
            self.add(item)
        for w in weights:
            self.add_weights(w)

    def add(self, item: Block | Header) -> MemoryView:
        if isinstance(item, Block):
            h = item.header.hash()
            self.blocks[h] = item
            self.headers[h] = item.header
        else:
            self.headers[item.hash()] = item
        return self

    def add_weights(self, weights: bytes) -> bytes:
        h = hashlib.sha256(weights).digest()
        self.weights[h] = weights
        return h

    # --- the ChainView protocol ----------------------------------------------------------------

    def get_header(self, block_hash: bytes) -> Header | None:
        return self.headers.get(block_hash)

    def get_block(self, block_hash: bytes) -> Block | None:
        return self.blocks.get(block_hash)

    def ancestor(self, header: Header, height: int) -> Header:
        """``header``'s ancestor at ``height``, walking parents (all must be held)."""
        if height > header.height:
            raise ValueError(f"no ancestor at {height} above height {header.height}")
        while header.height > height:
            parent = self.headers.get(header.parent)
            if parent is None:
                raise KeyError(f"parent of height {header.height} not in this view")
            header = parent
        return header

    def get_weights(self, weights_hash: bytes) -> bytes | None:
        return self.weights.get(weights_hash)


__all__ = ["MemoryView"]
