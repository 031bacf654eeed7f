"""Three real nodes on 127.0.0.1 (regtest, node 0 holds the beacon's closer key) and two solo
miners that really train: after three rounds every node has the same tip and state root, and
each block is the best verified candidate of its round. A node started late syncs headers
first and catches up; a node stopped and restarted resumes where it was."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace
from pathlib import Path

from consensus.crypto import format_address
from pool.miner import Miner
from tests.builders import keys
from tests.framework.nodes import same_tip, start_node, wait_for
from tests.ponas_builders import ponas_params

MINERS = keys(2, seed=21)


async def test_three_nodes_two_miners_three_rounds(tmp_path: Path) -> None:
    params = replace(ponas_params(), genesis_time=int(time.time()))
    n0 = await start_node(tmp_path, "n0", params, closer=True)
    n1 = await start_node(tmp_path, "n1", params, peers=[n0])
    n2 = await start_node(tmp_path, "n2", params, peers=[n0, n1])
    nodes = [n0, n1, n2]
    stop = asyncio.Event()
    miners = [
        Miner(f"http://127.0.0.1:{n.api_port}", format_address(k.address), "evolution", token=n.token,
              rng=random.Random(i), report=lambda s: None)
        for i, (n, k) in enumerate(zip([n1, n2], MINERS))
    ]
    tasks = [asyncio.create_task(m.run(stop)) for m in miners]
    late = None
    try:
        await wait_for(lambda: all(len(n.network.peers) >= 2 for n in nodes), 10, "the mesh")
        await wait_for(lambda: min(n.chain.height for n in nodes) >= 3, 90, "three rounds on every node", 0.25)
        await wait_for(lambda: same_tip(nodes), 20, "the same tip everywhere")
        for height in range(1, 4):
            block = n0.chain.get_block(n0.chain.hash_at(height))
            assert block is not None and block.proof is not None
            assert block.coinbase.payouts[0].address in {k.address for k in MINERS}
        # a node started late syncs headers first and catches up
        late = await start_node(tmp_path, "late", params, peers=[n1])
        await wait_for(lambda: late.chain.height >= 3 and late.chain.hash_at(3) == n0.chain.hash_at(3), 60, "the late node's sync")
        # a node stopped and restarted resumes where it was
        height, tip = n2.chain.height, n2.chain.tip_hash
        port = n2.p2p_port
        await n2.stop()
        n2 = await start_node(tmp_path, "n2", params, peers=[n0], p2p_port=port)
        assert n2.chain.height >= height and n2.chain.hash_at(height) == tip
        nodes = [n0, n1, n2, late]
        target = n0.chain.height + 1
        await wait_for(lambda: min(n.chain.height for n in nodes) >= target, 60, "one more round everywhere", 0.25)
        await wait_for(lambda: same_tip(nodes), 20, "the same tip everywhere again")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for n in [n0, n1, n2] + ([late] if late else []):
            await n.stop()
