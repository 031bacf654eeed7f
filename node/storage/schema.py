"""The key layout of the chain database, in one place.

Every key starts with one prefix byte. Heights are 8-byte big-endian so that iteration
follows height order.

The history index ``x`` lists, per address, every canonical transaction that touched it:
``position`` (4 bytes big-endian) is 0 for the coinbase and 1 + i for the block's i-th
transfer, as in the ``t`` index; ``roles`` is a bit set of :data:`ROLE_SENDER`,
:data:`ROLE_RECIPIENT`, :data:`ROLE_PAYOUT` and :data:`ROLE_GENESIS` (a genesis prefund, at
height 0, position 0).

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
| ``x`` + address + height + position | ``roles``: the address's history (canonical blocks) |
| ``w`` + weights hash       | model weights blob (content-addressed)                      |
| ``r`` + height             | round record: JSON of what this node saw of the round       |

A round record (:func:`node.rounds.round_record`) is a view for people, not consensus data: its
commitments, reveal set and every candidate's fate, written when this node's round service
decides the round (or ``ponas chain generate`` plays it), overwritten if the height is decided
again, left as it was by a reorg (it names its winner; the API says whether that block is still
canonical). A datadir of an older node simply has none: no schema change.
"""

from __future__ import annotations

SCHEMA_VERSION = 3  # 2: the address history index; 3: round protocol v2 (blocks' seals carry a salt)

META = b"M"
TIP = b"T"
INDEX = b"i"
BLOCK = b"b"
HEIGHT = b"n"
ACCOUNT = b"a"
UNDO = b"u"
TX = b"t"
WEIGHTS = b"w"
HISTORY = b"x"
ROUND = b"r"

ROLE_SENDER = 1
ROLE_RECIPIENT = 2
ROLE_PAYOUT = 4
ROLE_GENESIS = 8


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


def round_key(height: int) -> bytes:
    return ROUND + height.to_bytes(8, "big")


def history_key(address: bytes, height: int, position: int) -> bytes:
    return HISTORY + address + height.to_bytes(8, "big") + position.to_bytes(4, "big")


def history_prefix(address: bytes) -> bytes:
    return HISTORY + address


def parse_history_key(key: bytes) -> tuple[int, int]:
    """(height, position) of a history key (with or without the prefix byte and address)."""
    return int.from_bytes(key[-12:-4], "big"), int.from_bytes(key[-4:], "big")
