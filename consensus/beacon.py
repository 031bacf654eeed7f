"""The beacon's hash chain of round keys.

The beacon picks a secret seed ``key_N`` and publishes only the anchor ``key_0``, where
``key_i = H(key_(i+1))``. Round key number ``i`` (counting every attempt, so a retried round
takes the next key) is revealed at its close. Anyone can check a revealed key by hashing it
back to the last key they know, yet nobody can compute a key before the beacon reveals it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass


def step(key: bytes) -> bytes:
    return hashlib.sha256(b"ponas/beacon" + key).digest()


def verify_key(key: bytes, index: int, known: bytes, known_index: int) -> bool:
    """True if ``key`` is key number ``index`` of the chain that has ``known`` at ``known_index``."""
    if index <= known_index or index - known_index > 1_000_000:
        return False
    for _ in range(index - known_index):
        key = step(key)
    return key == known


@dataclass(frozen=True, slots=True)
class BeaconChain:
    seed: bytes
    length: int

    @classmethod
    def create(cls, length: int = 100_000, seed: bytes | None = None) -> BeaconChain:
        return cls(seed or os.urandom(32), length)

    def key(self, index: int) -> bytes:
        """Key number ``index`` (0 is the anchor); costs ``length - index`` hashes."""
        if not 0 <= index <= self.length:
            raise ValueError(f"beacon key {index} outside 0..{self.length}")
        key = self.seed
        for _ in range(self.length - index):
            key = step(key)
        return key

    @property
    def anchor(self) -> bytes:
        return self.key(0)
