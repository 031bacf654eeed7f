"""Whole-block rules: the genesis block, the one entry point that validates a block, and the
template a miner fills.

:func:`validate_block` checks in a fixed order, cheapest first: header against parent and
clock, the engine's seal, the body's shape and roots (:func:`check_block`), then the
transactions against the parent's accounts, the state root and the engine's work check last
(:func:`connect_block`). The node's import and the round service's candidate check both call
these; nothing else orders the checks.
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


def check_block(
    block: Block, parent: Header, params: ChainParams, engine: Engine, chain: ChainView, now: int,
    size: int | None = None,
) -> list[bytes]:
    """The checks that need no state, cheapest first: the header against ``parent`` and the
    clock, the engine's seal, the body's shape and roots. A node runs them once, when a block
    arrives (a side block is stored after them). Returns the transaction hashes."""
    validate_header(block.header, parent, params, now)
    engine.validate_seal(block, parent, chain)
    return validate_body(block, params, size)


def connect_block(
    block: Block,
    parent: Header,
    accounts: Mapping[bytes, Account],
    params: ChainParams,
    engine: Engine,
    chain: ChainView,
    verified: set[bytes] | None = None,
    *,
    weights: bytes | None = None,
    verdict: object = None,
    work: bool = True,
) -> dict[bytes, Account]:
    """The second half, for a block that passed :func:`check_block`: the transactions and
    state root on the parent's ``accounts``, then the engine's work check last (with the
    ``verdict`` computed off the event loop, or from ``weights``). ``work=False`` stops before
    the work check: a round's candidate is checked that far on arrival and its model is
    evaluated apart. Returns the changed accounts."""
    changes = apply_body(accounts, block, params, verified)
    if work:
        engine.validate_work(block, parent, chain, weights, verdict)
    return changes


def validate_block(
    block: Block,
    parent: Header,
    accounts: Mapping[bytes, Account],
    params: ChainParams,
    engine: Engine,
    chain: ChainView,
    now: int,
    verified: set[bytes] | None = None,
    *,
    weights: bytes | None = None,
    verdict: object = None,
    work: bool = True,
) -> dict[bytes, Account]:
    """Every check of ``block`` on top of ``parent`` whose state is ``accounts``, in the one
    fixed order: :func:`check_block` (header, seal, body) then :func:`connect_block`
    (transactions, state root, work). Returns the changed accounts; raises
    :class:`~consensus.errors.InvalidBlock` with a reason."""
    check_block(block, parent, params, engine, chain, now)
    return connect_block(block, parent, accounts, params, engine, chain, verified,
                         weights=weights, verdict=verdict, work=work)


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
