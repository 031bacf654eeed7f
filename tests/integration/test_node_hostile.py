"""A node under attack keeps working: hostile peers send a fresh node garbage bytes, an
oversized frame, a Hello of another genesis, and an invalid block (a real NAS block whose
claimed score was raised). Each is disconnected (and, where it is a fault rather than a
mismatch, discouraged, with the reason recorded), and the node then syncs headers first from
an honest peer that has blocks mined by real NAS rounds."""

from __future__ import annotations

import asyncio
import random
import struct
import time
from dataclasses import replace
from pathlib import Path

from consensus.chain import genesis_block
from node.generate import generate_ponas_round, open_chain
from p2p import messages as M
from p2p.framing import encode_frame
from tests.builders import keys
from tests.framework.nodes import start_node, wait_for
from tests.integration.test_p2p_network import RawPeer, last_reason
from tests.ponas_builders import BEACON, BEACON_CHAIN, ponas_params

ADDRS = [k.address for k in keys(2, seed=31)]


class NodePeer(RawPeer):
    def hello_for(self, chain_id: str, genesis: bytes) -> None:
        self.send(M.Hello(M.PROTOCOL_VERSION, chain_id, genesis, 0, genesis, self.node_id, 0, "/hostile/"))


async def test_hostile_peers_are_dropped_while_the_node_syncs(tmp_path: Path) -> None:
    params = replace(ponas_params(), genesis_time=int(time.time()) - 60)
    gen_hash = genesis_block(params).header.hash()
    with open_chain(str(tmp_path / "n0"), params) as chain:  # an honest node with three NAS blocks
        for _ in range(3):
            generate_ponas_round(chain, BEACON, BEACON_CHAIN, ADDRS, 1, random.Random(5))
        tip, height = chain.tip_hash, chain.height
        good = chain.get_block(chain.hash_at(1))
        assert good is not None
        good_weights = chain.get_weights(good.header.weights_hash)
    n0 = await start_node(tmp_path, "n0", params)
    n1 = await start_node(tmp_path, "n1", params)
    try:
        # garbage bytes
        garbage = await NodePeer.open(n1.p2p_port)
        garbage.writer.write(b"\x00\x00\x00\x05hello, this is not msgpack" * 3)
        assert await garbage.closed_by_remote()
        # an oversized frame, announced by its length prefix
        big = await NodePeer.open(n1.p2p_port)
        big.hello_for(params.chain_id, gen_hash)
        big.writer.write(struct.pack(">I", 512 * 1024 * 1024))
        assert await big.closed_by_remote()
        # a Hello of another genesis
        stranger = await NodePeer.open(n1.p2p_port)
        stranger.hello_for(params.chain_id, b"\x13" * 32)
        assert await stranger.closed_by_remote()
        assert last_reason(n1.network, stranger.node_id) == "wrong-genesis"
        # an invalid block: a real block with its score changed (the round seal no longer matches)
        liar = await NodePeer.open(n1.p2p_port)
        liar.hello_for(params.chain_id, gen_hash)
        kinds = [type(await liar.recv()).__name__ for _ in range(2)]
        assert "HelloAck" in kinds
        liar.send(M.HelloAck())
        forged = replace(good, header=replace(good.header, score=good.header.score + 50))
        liar.writer.write(encode_frame(M.encode_message(M.BlockMsg(forged, good_weights or b"", False))))
        assert await liar.closed_by_remote(5)
        await wait_for(lambda: last_reason(n1.network, liar.node_id) is not None, 5, "the liar's record")
        assert last_reason(n1.network, liar.node_id) == "bad-score"
        assert n1.network.discouraged, "the liar is discouraged"
        # the node still syncs from the honest peer, which it finds through its API-less dial
        n1.network.connect("127.0.0.1", n0.p2p_port)
        await wait_for(lambda: n1.chain.height == height and n1.chain.tip_hash == tip, 60, "the sync to the honest tip")
        assert n1.chain.state_root() == n1.chain.tip.state_root
    finally:
        for p in ("garbage", "big", "stranger", "liar"):
            if p in locals():
                locals()[p].close()
        await n1.stop()
        await n0.stop()
    await asyncio.sleep(0)
