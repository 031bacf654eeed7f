"""Local block production on a datadir, without a network (like Bitcoin's
``generatetoaddress`` on regtest): used by ``ponas chain generate``, the demo and tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

from consensus.chain import block_template
from consensus.engines.pow import solve
from consensus.errors import ConsensusError
from consensus.params import ChainParams
from consensus.types import Block, Payout, Transfer
from node.chain import Chain, ImportResult
from node.storage.kv import open_datadir


@contextmanager
def open_chain(datadir: str, params: ChainParams, clock: Callable[[], float] = time.time) -> Iterator[Chain]:
    """Open (or create) ``datadir`` for ``params``, yield its chain, always close it."""
    from consensus.chain import genesis_block

    genesis_hash = genesis_block(params).header.hash()
    dd = open_datadir(datadir, params.chain_id, genesis_hash)
    try:
        yield Chain(dd.kv, params, clock=clock)
    finally:
        dd.close()


def make_pow_block(chain: Chain, address: bytes, txs: Sequence[Transfer] = (), timestamp: int | None = None) -> Block:
    """A sealed pow block on the chain's tip paying subsidy and fees to ``address``."""
    if chain.params.engine != "pow":
        raise ConsensusError("wrong-engine", f"this chain uses the {chain.params.engine} engine")
    parent = chain.tip
    ts = max(int(chain.clock()), parent.timestamp + 1) if timestamp is None else timestamp
    bits = chain.engine.next_work(parent, chain)["bits"]
    block = block_template(parent, chain.accounts, chain.params, timestamp=ts, payouts=[Payout(address, 0)], txs=txs, bits=bits)
    return replace(block, header=solve(block.header))


def generate(
    chain: Chain,
    count: int,
    address: bytes,
    txs: Sequence[Transfer] = (),
    progress: Callable[[ImportResult, Block], None] | None = None,
) -> list[ImportResult]:
    """Mine and import ``count`` pow blocks; ``txs`` go into the first one."""
    results = []
    for i in range(count):
        block = make_pow_block(chain, address, txs if i == 0 else ())
        result = chain.import_block(block)
        results.append(result)
        if progress:
            progress(result, block)
    return results
