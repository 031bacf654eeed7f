"""Start real nodes (and miners) in-process on 127.0.0.1 for integration tests, in the manner
of Bitcoin Core's functional test framework: start, connect, wait for sync, stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from consensus.params import ChainParams
from node.keyfile import save_key
from node.service import Node, NodeConfig
from tests.ponas_builders import BEACON, BEACON_CHAIN


def beacon_file(tmp: Path) -> str:
    path = tmp / "beacon.key"
    if not path.exists():
        save_key(BEACON, str(path), beacon_seed=BEACON_CHAIN.seed.hex(), beacon_length=BEACON_CHAIN.length)
    return str(path)


async def start_node(tmp: Path, name: str, params: ChainParams, peers: list[Node] = (), closer: bool = False,  # type: ignore[assignment]
                     p2p_port: int = 0) -> Node:
    node = Node(NodeConfig(
        datadir=str(tmp / name), peers=[("127.0.0.1", p.p2p_port) for p in peers],
        closer_key=beacon_file(tmp) if closer else None, p2p_port=p2p_port,
    ), params)
    await node.start()
    return node


async def wait_for(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(step)


def same_tip(nodes: list[Node]) -> bool:
    return len({(n.chain.tip_hash, n.chain.state_root()) for n in nodes}) == 1
