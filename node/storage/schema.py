"""The key layout of the chain database, in one place.

Every key starts with one prefix byte. Heights are 8-byte big-endian so that iteration
follows height order.

| key                        | value                                                       |
|----------------------------|-------------------------------------------------------------|
| ``M``                      | ``[schema, chain_id, genesis_hash]``                        |
| ``T``                      | hash of the canonical tip                                   |
| ``i`` + block hash         | index entry ``[status, work, header]``                      |
| ``b`` + block hash         | the encoded block                                           |
| ``n`` + height             | canonical block hash at that height                         |
| ``a`` + address            | account ``[balance, nonce]`` at the tip                     |
| ``u`` + block hash         | undo data: ``[[address, [balance, nonce] or nil], ...]``    |
| ``t`` + transaction hash   | ``[block hash, position]`` for canonical transactions       |
| ``w`` + weights hash       | model weights blob (content-addressed)                      |
"""

from __future__ import annotations

SCHEMA_VERSION = 1

META = b"M"
TIP = b"T"
INDEX = b"i"
BLOCK = b"b"
HEIGHT = b"n"
ACCOUNT = b"a"
UNDO = b"u"
TX = b"t"
WEIGHTS = b"w"


def index_key(block_hash: bytes) -> bytes:
    return INDEX + block_hash


def block_key(block_hash: bytes) -> bytes:
    return BLOCK + block_hash


def height_key(height: int) -> bytes:
    return HEIGHT + height.to_bytes(8, "big")


def account_key(address: bytes) -> bytes:
    return ACCOUNT + address


def undo_key(block_hash: bytes) -> bytes:
    return UNDO + block_hash


def tx_key(tx_hash: bytes) -> bytes:
    return TX + tx_hash


def weights_key(weights_hash: bytes) -> bytes:
    return WEIGHTS + weights_hash
