"""Shared builders for tests: keys, parameters, transfers, blocks and chains.

A test controls time: chains built here use a :class:`Clock` that only moves when told to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from consensus.chain import block_template, genesis_block
from consensus.crypto import PrivateKey
from consensus.engines.pow import solve
from consensus.params import ChainParams, preset_params
from consensus.state import Account
from consensus.types import COIN, Block, Coinbase, Header, Payout, Transfer

GENESIS_TIME = 1_700_000_000


@dataclass
class Clock:
    now: float = GENESIS_TIME + 1_000_000

    def __call__(self) -> float:
        return self.now


def keys(n: int, seed: int = 1) -> list[PrivateKey]:
    """Deterministic keys, so failures reproduce."""
    return [PrivateKey(bytes([seed]) + i.to_bytes(4, "big") + bytes(27)) for i in range(n)]


def make_params(
    funded: Sequence[PrivateKey] = (), coins: int = 1000, engine: str = "pow", chain_id: str = "ponas-test"
) -> ChainParams:
    return preset_params(
        "regtest",
        engine=engine,
        chain_id=chain_id,
        prefunds={k.address: coins * COIN for k in funded},
        genesis_time=GENESIS_TIME,
        task="digits",  # a ponas chain of these trains in the test process (mnist1d would pin its kernels)
    )


def transfer(params: ChainParams, key: PrivateKey, to: bytes, amount: int, nonce: int, fee: int = 1000) -> Transfer:
    return Transfer.create(key, to, amount, fee, nonce, params.chain_id)


def pow_block(
    params: ChainParams,
    parent: Header,
    accounts: dict[bytes, Account],
    miner: bytes,
    txs: Sequence[Transfer] = (),
    timestamp: int | None = None,
    extra: bytes = b"",
) -> Block:
    """A valid sealed pow block on ``parent`` (regtest difficulty never retargets)."""
    ts = parent.timestamp + 10 if timestamp is None else timestamp
    block = block_template(
        parent, accounts, params, timestamp=ts, payouts=[Payout(miner, 0)], txs=txs,
        bits=params.pow.initial_bits, extra=extra,
    )
    return replace(block, header=solve(block.header))


def reseal(block: Block, **header_fields: object) -> Block:
    """``block`` with header fields changed and the proof of work redone."""
    header = replace(block.header, **header_fields)  # type: ignore[arg-type]
    return replace(block, header=solve(header))


def with_body(block: Block, txs: Sequence[Transfer] | None = None, coinbase: Coinbase | None = None) -> Block:
    """``block`` with its body replaced, the txs and payouts roots fixed and the pow redone
    (the state root left alone): for blocks invalid by their body alone."""
    body = replace(block, txs=block.txs if txs is None else tuple(txs), coinbase=coinbase or block.coinbase)
    return reseal(body, txs_root=body.compute_txs_root(), payouts_root=body.coinbase.payouts_root())


__all__ = ["Clock", "keys", "make_params", "transfer", "pow_block", "reseal", "with_body", "genesis_block", "GENESIS_TIME"]
