"""Binary Merkle trees over 32-byte leaves, with membership proofs.

Leaves and inner nodes are hashed with distinct prefixes (0x00 and 0x01), and an odd node is
carried up unchanged instead of being paired with itself, so no two different leaf lists share
a root (the duplication flaw of Bitcoin's tree, CVE-2012-2459, does not arise).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"ponas/empty-merkle").digest()


def _leaf(x: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + x).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    out = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        out.append(level[-1])
    return out


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    level = [_leaf(x) for x in leaves]
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def merkle_proof(leaves: Sequence[bytes], index: int) -> tuple[bytes, ...]:
    """The sibling hashes from leaf ``index`` up to the root (levels without a sibling skipped)."""
    if not 0 <= index < len(leaves):
        raise IndexError(index)
    level = [_leaf(x) for x in leaves]
    proof: list[bytes] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        level = _next_level(level)
        index //= 2
    return tuple(proof)


def verify_proof(root: bytes, leaf: bytes, index: int, count: int, proof: Sequence[bytes]) -> bool:
    """True if ``leaf`` is at ``index`` of a ``count``-leaf tree with this ``root``."""
    if not 0 <= index < count:
        return False
    acc = _leaf(leaf)
    used = 0
    width = count
    while width > 1:
        sibling = index ^ 1
        if sibling < width:
            if used >= len(proof):
                return False
            acc = _node(acc, proof[used]) if index % 2 == 0 else _node(proof[used], acc)
            used += 1
        index //= 2
        width = (width + 1) // 2
    return used == len(proof) and acc == root
