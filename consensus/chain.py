"""Whole-block rules: the genesis block, the one entry point that validates a block, and the
template a miner fills.

:func:`validate_block` checks in a fixed order, cheapest first: header against parent and
clock, the engine's seal, the body's shape and roots, then the transactions against the
parent's accounts and the state root last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from consensus.engines import Engine
from consensus.merkle import merkle_root
from consensus.params import ChainParams
from consensus.state import (
    HEADER_VERSION,
    Account,
    ChainView,
    apply_body,
    compute_state_root,
    genesis_accounts,
    state_root,
    validate_body,
    validate_header,
)
from consensus.types import ZERO_HASH, Block, Coinbase, Header, Payout, Transfer


def genesis_block(params: ChainParams) -> Block:
    """Block 0: the prefunded accounts, and ``extra`` committing to every chain parameter."""
    coinbase = Coinbase(0, ())
    header = Header(
        version=HEADER_VERSION,
        height=0,
        parent=ZERO_HASH,
        timestamp=params.genesis_time,
        engine=params.engine,
        txs_root=merkle_root([coinbase.hash()]),
        state_root=state_root(genesis_accounts(params)),
        payouts_root=coinbase.payouts_root(),
        round_close=ZERO_HASH,
        task_id=ZERO_HASH,
        genotype="",
        weights_hash=ZERO_HASH,
        seed=0,
        score=0,
        bits=params.pow.initial_bits if params.engine == "pow" else 0,
        nonce=0,
        extra=params.params_hash,
    )
    return Block(header, coinbase, (), None)


def validate_block(
    block: Block,
    parent: Header,
    accounts: Mapping[bytes, Account],
    params: ChainParams,
    engine: Engine,
    chain: ChainView,
    now: int,
    verified: set[bytes] | None = None,
) -> dict[bytes, Account]:
    """Check ``block`` on top of ``parent`` whose state is ``accounts``: header, seal, body,
    transactions and state root, and the engine's expensive work check last.

    Returns the changed accounts; raises :class:`~consensus.errors.InvalidBlock` with a reason.
    """
    validate_header(block.header, parent, params, now)
    engine.validate_seal(block, parent, chain)
    validate_body(block, params)
    return connect_block(block, parent, accounts, params, engine, chain, verified)


def connect_block(
    block: Block,
    parent: Header,
    accounts: Mapping[bytes, Account],
    params: ChainParams,
    engine: Engine,
    chain: ChainView,
    verified: set[bytes] | None = None,
) -> dict[bytes, Account]:
    """The second half of :func:`validate_block`, for a block whose header, seal and body
    already passed: the transactions and state root, then the engine's work check."""
    changes = apply_body(accounts, block, params, verified)
    engine.validate_work(block, parent, chain)
    return changes


def block_template(
    parent: Header,
    accounts: Mapping[bytes, Account],
    params: ChainParams,
    *,
    timestamp: int,
    payouts: Sequence[Payout],
    txs: Sequence[Transfer] = (),
    **fields: object,
) -> Block:
    """An unsealed block on ``parent`` with correct roots. ``payouts`` split the reward; a
    payout of amount 0 in the last place receives whatever the others leave (subsidy + fees)."""
    from dataclasses import replace

    fees = sum(tx.fee for tx in txs)
    reward = params.subsidy(parent.height + 1) + fees
    fixed = [p for p in payouts if p.amount > 0]
    rest = [p for p in payouts if p.amount == 0]
    if rest:
        remainder = reward - sum(p.amount for p in fixed)
        fixed += [Payout(rest[0].address, remainder)] if remainder > 0 else []
    coinbase = Coinbase(parent.height + 1, tuple(fixed))
    header = Header(
        version=HEADER_VERSION,
        height=parent.height + 1,
        parent=parent.hash(),
        timestamp=timestamp,
        engine=params.engine,
        txs_root=ZERO_HASH,
        state_root=ZERO_HASH,
        payouts_root=coinbase.payouts_root(),
        round_close=ZERO_HASH,
        task_id=ZERO_HASH,
        genotype="",
        weights_hash=ZERO_HASH,
        seed=0,
        score=0,
        bits=0,
        nonce=0,
        extra=b"",
    )
    header = replace(header, **fields)  # type: ignore[arg-type]
    block = Block(header, coinbase, tuple(txs), None)
    root = compute_state_root(accounts, block, params)
    header = replace(header, txs_root=block.compute_txs_root(), state_root=root)
    return Block(header, coinbase, tuple(txs), None)
