"""In-process nodes on 127.0.0.1, after Bitcoin Core's functional test framework: start N nodes,
connect them, ``sync_blocks``, ``split_network`` into two halves that cannot reach each other
and ``join_network`` again, and always stop every node, even when a test fails::

    async with NodeNetwork(tmp_path, params, 3) as net:      # three nodes in a line, connected
        half_a, half_b = await net.split()                   # [n0] | [n1, n2]
        await mine_pow(half_a[0], 3, MINER)
        await mine_pow(half_b[0], 2, MINER)
        await net.join()                                     # every node of one half dials the other
        await sync_blocks(net.nodes, 30)

Nodes use only ``Node``'s public surface (``start``, ``stop``, ``chain``, ``network``,
``metrics``, ``p2p_port``...). A ``ponas`` chain's nodes may take an injected engine, e.g.
:func:`tests.framework.noproof.noproof_engine`, so that rounds need no training.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from consensus.engines import Engine
from consensus.params import ChainParams
from consensus.types import Block
from node.generate import make_pow_block
from node.keyfile import save_key
from node.service import Node, NodeConfig
from p2p import messages as M
from tests.framework.peer import FakePeer
from tests.ponas_builders import BACKUP, BEACON, BEACON_CHAIN

HOST = "127.0.0.1"


def beacon_file(tmp: Path, backup: bool = False) -> str:
    """The beacon's closer key file (with its hash chain) in ``tmp``, written once; with
    ``backup``, the backup closer's (the same hash chain, its own key)."""
    path = tmp / ("beacon-backup.key" if backup else "beacon.key")
    if not path.exists():
        save_key(BACKUP if backup else BEACON, str(path), beacon_seed=BEACON_CHAIN.seed.hex(),
                 beacon_length=BEACON_CHAIN.length)
    return str(path)


async def start_node(
    tmp: Path, name: str, params: ChainParams, peers: Sequence[Node] = (), closer: bool = False, p2p_port: int = 0,
    *, engine: Engine | None = None, clock: Callable[[], float] = time.time, backup: bool = False, **config: Any,
) -> Node:
    """Start a node with datadir ``tmp/name`` that dials ``peers``; ``closer``: it holds the
    beacon's key and closes rounds; ``backup``: it holds the backup closer's key. ``config``:
    further :class:`NodeConfig` fields."""
    node = Node(NodeConfig(
        datadir=str(tmp / name), peers=[(HOST, p.p2p_port) for p in peers],
        closer_key=beacon_file(tmp, backup) if closer or backup else None, p2p_port=p2p_port, **config,
    ), params, clock=clock, engine=engine)
    await node.start()
    return node


async def wait_for(cond: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    """Poll ``cond`` until it is truthy (returned), at most ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(step)
    return value


def same_tip(nodes: Sequence[Node]) -> bool:
    """Every node on one tip with one state root."""
    return len({(n.chain.tip_hash, n.chain.state_root()) for n in nodes}) == 1


def tips(nodes: Sequence[Node]) -> list[tuple[int, str]]:
    return [(n.chain.height, n.chain.tip_hash.hex()[:16]) for n in nodes]


async def sync_blocks(nodes: Sequence[Node], timeout: float = 30.0) -> None:
    """Wait until every node has the same tip and state root (Bitcoin's ``sync_blocks``)."""
    try:
        await wait_for(lambda: same_tip(nodes), timeout, "the nodes to share one tip")
    except AssertionError:
        raise AssertionError(f"timed out after {timeout}s waiting for one tip; (height, tip) per node: "
                             f"{tips(nodes)}") from None


def linked(a: Node, b: Node) -> bool:
    """Whether ``a`` and ``b`` are connected (each has the other as a handshaken peer)."""
    na, nb = a.network, b.network
    return na is not None and nb is not None and na.peer_by_node(nb.node_id) is not None \
        and nb.peer_by_node(na.node_id) is not None


async def connect_nodes(a: Node, b: Node, timeout: float = 10.0) -> None:
    """``a`` keeps an outbound connection to ``b``; wait for the handshake on both sides."""
    assert a.network is not None
    a.network.connect(HOST, b.p2p_port)
    await wait_for(lambda: linked(a, b), timeout, f"a connection from :{a.p2p_port} to :{b.p2p_port}")


async def disconnect_nodes(a: Node, b: Node, timeout: float = 10.0) -> None:
    """Cut ``a`` and ``b`` apart: neither keeps dialling the other, their connection closes."""
    assert a.network is not None and b.network is not None
    await a.network.forget(HOST, b.p2p_port)
    await b.network.forget(HOST, a.p2p_port)
    a.network.disconnect(b.network.node_id, "split")
    b.network.disconnect(a.network.node_id, "split")
    await wait_for(lambda: not _any_link(a, b), timeout, f"nodes :{a.p2p_port} and :{b.p2p_port} apart")


def _any_link(a: Node, b: Node) -> bool:
    na, nb = a.network, b.network
    assert na is not None and nb is not None
    return na.peer_by_node(nb.node_id) is not None or nb.peer_by_node(na.node_id) is not None


def halves(nodes: Sequence[Node], at: int | None = None) -> tuple[list[Node], list[Node]]:
    at = len(nodes) // 2 if at is None else at
    assert 0 < at < len(nodes), "each half needs a node"
    return list(nodes[:at]), list(nodes[at:])


async def split_network(nodes: Sequence[Node], at: int | None = None,
                        timeout: float = 10.0) -> tuple[list[Node], list[Node]]:
    """Split ``nodes`` into ``nodes[:at]`` and ``nodes[at:]`` (halves by default) that cannot
    reach each other; links inside a half stay."""
    a, b = halves(nodes, at)
    for x in a:
        for y in b:
            await disconnect_nodes(x, y, timeout)
    return a, b


async def join_network(a: Sequence[Node], b: Sequence[Node], timeout: float = 10.0) -> None:
    """Undo a split: every node of ``a`` dials every node of ``b`` (so each syncs directly from
    the best; a node syncing does not relay what it fetches)."""
    for x in a:
        for y in b:
            await connect_nodes(x, y, timeout)


async def mine_pow(node: Node, count: int, address: bytes, txs: Sequence[Any] = (),
                   timeout: float = 10.0) -> list[Block]:
    """Mine ``count`` pow blocks on ``node``'s tip (``txs`` in the first) and hand each to it
    as a peer would, so that it imports and relays them. Returns the blocks."""
    blocks: list[Block] = []
    async with await FakePeer.connect(node, best_height=0) as miner:
        for i in range(count):
            block = make_pow_block(node.chain, address, txs if i == 0 else ())
            await miner.send(M.BlockMsg(block, b"", False))
            await wait_for(_tip_is(node, block.header.hash()), timeout, f"node :{node.p2p_port} to take block {i}")
            blocks.append(block)
    return blocks


def _tip_is(node: Node, h: bytes) -> Callable[[], bool]:
    return lambda: node.chain.tip_hash == h


class NodeNetwork:
    """``n`` in-process nodes of one chain, started in ``tmp`` (``n0``, ``n1``...), connected
    in a line (n1 dials n0, n2 dials n1...), and always stopped on leaving the ``async with``.

    ``closer``: the index of the node that holds the beacon's key (ponas chains); ``backup``:
    the node that holds the backup closer's; ``engine``: a factory of the engine each node gets
    (e.g. ``noproof_engine``)."""

    def __init__(self, tmp: Path, params: ChainParams, n: int, *, closer: int | None = None,
                 engine: Callable[[ChainParams], Engine] | None = None, connect: bool = True,
                 clock: Callable[[], float] = time.time, backup: int | None = None, **config: Any) -> None:
        self.tmp, self.params, self.n, self.closer, self.backup = tmp, params, n, closer, backup
        self.engine, self.connect, self.clock, self.config = engine, connect, clock, config
        self.nodes: list[Node] = []
        self.split_at: tuple[list[Node], list[Node]] | None = None

    async def __aenter__(self) -> NodeNetwork:
        try:
            for _ in range(self.n):
                self.nodes.append(await self.add_node())
            if self.connect:
                for prev, node in zip(self.nodes, self.nodes[1:]):
                    await connect_nodes(node, prev)
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def add_node(self, **config: Any) -> Node:
        i = len(self.nodes)
        node = await start_node(
            self.tmp, f"n{i}", self.params, closer=self.closer == i, backup=self.backup == i, clock=self.clock,
            engine=self.engine(self.params) if self.engine else None, **{**self.config, **config},
        )
        return node

    async def stop(self) -> None:
        """Stop every node, each even if another's stop failed."""
        errors: list[BaseException] = []
        for node in reversed(self.nodes):
            try:
                await node.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others first, then raise
                errors.append(exc)
        if errors:
            raise errors[0]

    async def sync(self, timeout: float = 30.0) -> None:
        await sync_blocks(self.nodes, timeout)

    async def split(self, at: int | None = None) -> tuple[list[Node], list[Node]]:
        self.split_at = await split_network(self.nodes, at)
        return self.split_at

    async def join(self) -> None:
        assert self.split_at is not None, "join after a split"
        await join_network(*self.split_at)
        self.split_at = None


__all__ = [
    "beacon_file", "start_node", "wait_for", "same_tip", "tips", "sync_blocks", "linked", "connect_nodes",
    "disconnect_nodes", "halves", "split_network", "join_network", "mine_pow", "NodeNetwork",
]
