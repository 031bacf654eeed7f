"""Sync and relay at volume, with the default P2P limits: a fresh node syncs 2,100 pow blocks
(more than one headers batch) from a peer without taking it for a flooder, and a burst of
transfers through one node's API reaches the other node's mempool in batches while the two
stay connected and nobody is discouraged."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from consensus.types import COIN
from node.generate import generate, open_chain
from tests.builders import GENESIS_TIME, Clock, keys, make_params, transfer
from tests.framework.nodes import start_node, wait_for

FUNDED = keys(100, seed=41)
PARAMS = make_params(FUNDED, coins=1000)
MINER = keys(1, seed=42)[0].address


async def test_fresh_node_syncs_2100_blocks(tmp_path: Path) -> None:
    clock = Clock(GENESIS_TIME + 10)  # one block every ten seconds of 2023

    def tick(*_: object) -> None:
        clock.now += 10

    with open_chain(str(tmp_path / "src"), PARAMS, clock=clock) as chain:
        generate(chain, 2100, MINER, progress=tick)
        tip = chain.tip_hash
    src = await start_node(tmp_path, "src", PARAMS)
    fresh = await start_node(tmp_path, "fresh", PARAMS, peers=[src])
    try:
        await wait_for(lambda: fresh.chain.tip_hash == tip, 120, "the sync of 2,100 blocks", 0.2)
        assert fresh.chain.height == 2100
        assert fresh.chain.state_root() == fresh.chain.tip.state_root
        assert not src.network.discouraged and not fresh.network.discouraged
        assert len(fresh.network.peers) == 1
    finally:
        await fresh.stop()
        await src.stop()


async def test_transfer_burst_is_relayed_in_batches(tmp_path: Path) -> None:
    a = await start_node(tmp_path, "a", PARAMS)
    b = await start_node(tmp_path, "b", PARAMS, peers=[a])
    txs = [transfer(PARAMS, k, MINER, COIN, nonce) for nonce in range(10) for k in FUNDED]
    try:
        await wait_for(lambda: len(a.network.peers) == 1 and len(b.network.peers) == 1, 10, "the link")
        headers = {"Authorization": f"Bearer {a.token}"}
        url = f"http://127.0.0.1:{a.api_port}/api/v1/transactions"
        async with aiohttp.ClientSession() as session:
            sem = asyncio.Semaphore(8)

            async def post(tx) -> int:  # type: ignore[no-untyped-def]
                async with sem, session.post(url, json={"tx": tx.encode().hex()}, headers=headers) as r:
                    return r.status

            # nonces in order per sender: post round by round
            for nonce in range(10):
                statuses = await asyncio.gather(*(post(t) for t in txs[nonce * 100 : (nonce + 1) * 100]))
                assert set(statuses) == {202}
        await wait_for(lambda: len(b.mempool) == 1000, 30, "all 1,000 transfers at the other node")
        assert len(a.network.peers) == 1 and len(b.network.peers) == 1
        assert not a.network.discouraged and not b.network.discouraged
    finally:
        await b.stop()
        await a.stop()
