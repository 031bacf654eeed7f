"""Helpers for ``bench_node.py``: a node in a child process, raw P2P clients, small stats.

A node under measurement runs in its own process (``spawn``, so no torch or event-loop state is
inherited), so that on a small machine the load generator in the parent does not share an
event loop with it. The child reports its ports and token through a pipe, waits for ``stop``,
and sends back its own ``ru_maxrss`` before it exits.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from consensus.params import ChainParams
from p2p.network import Limits, Network, Peer

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def maxrss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(who).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def own_peak_mib() -> float:
    """This process's own peak RSS: ``VmHWM`` on Linux, which (unlike ``ru_maxrss``) does not
    carry over the parent's peak through the fork and exec of a ``spawn`` child."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return maxrss_mib()


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


async def wait_until(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.005) -> float:
    """Poll ``cond`` every ``step`` seconds; return the monotonic time it first held."""
    end = time.monotonic() + timeout
    while True:
        if cond():
            return time.monotonic()
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(step)


# --- a node in a child process ---------------------------------------------------------------


def _child_main(datadir: str, params: ChainParams, peers: list[tuple[str, int]], conn: Connection) -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_child_serve(datadir, params, peers, conn))


async def _child_serve(datadir: str, params: ChainParams, peers: list[tuple[str, int]], conn: Connection) -> None:
    from node.service import Node, NodeConfig

    node = Node(NodeConfig(datadir=datadir, peers=peers), params)
    await node.start()
    try:
        conn.send({"p2p": node.p2p_port, "api": node.api_port, "token": node.token, "height": node.chain.height})
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)  # "stop"
        info = {"maxrss_mib": own_peak_mib(), "height": node.chain.height, "mempool": len(node.mempool),
                "disconnects": list(node.network.recent_disconnects) if node.network else []}
    finally:
        await node.stop()
    conn.send(info)


@dataclass
class ChildProc:
    """A server under measurement in a child process, driven over a pipe: ``stop`` asks it to
    stop, returns what it reported, and kills only this child if it does not exit in time."""

    proc: Any
    conn: Connection

    async def stop(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        info: dict[str, Any] = {}
        try:
            self.conn.send("stop")
            if await loop.run_in_executor(None, self.conn.poll, STOP_TIMEOUT):
                info = self.conn.recv()
        except (OSError, EOFError):
            pass
        await loop.run_in_executor(None, self.proc.join, STOP_TIMEOUT)
        if self.proc.is_alive():  # only this child, by its own handle
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()
        return info


@dataclass
class NodeProc(ChildProc):
    """A node running in a child process; ``stop`` returns what the child reported."""

    p2p_port: int
    api_port: int
    token: str
    height: int

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @classmethod
    async def start(cls, datadir: str, params: ChainParams, peers: Sequence[tuple[str, int]] = ()) -> NodeProc:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child_main, args=(datadir, params, list(peers), child), daemon=True)
        proc.start()
        child.close()
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, parent.poll, START_TIMEOUT)
        if not ready:
            proc.kill()
            proc.join(5)
            raise TimeoutError(f"the node in process {proc.pid} did not start in {START_TIMEOUT:g} s")
        info = parent.recv()
        return cls(proc, parent, info["p2p"], info["api"], info["token"], info["height"])



# --- a raw P2P client ------------------------------------------------------------------------


class ClientHandler:
    """The handler of a client that only sends: it claims genesis as its best block (so the
    node never syncs from it) and ignores what the node sends."""

    def __init__(self, genesis_hash: bytes) -> None:
        self.genesis_hash = genesis_hash
        self.received = 0
        self.disconnected: list[str] = []

    def best(self) -> tuple[int, bytes]:
        return 0, self.genesis_hash

    async def on_message(self, peer: Peer, msg: Any) -> None:
        self.received += 1

    async def on_peer_connected(self, peer: Peer) -> None:
        pass

    async def on_peer_disconnected(self, peer: Peer, reason: str) -> None:
        self.disconnected.append(reason)


async def open_client(
    chain_id: str, genesis_hash: bytes, port: int, limits: Limits | None = None, timeout: float = 10.0
) -> tuple[Network, Peer]:
    """A non-listening :class:`Network` connected (handshaken) to ``127.0.0.1:port``; ``limits``
    are the client's own (its flood control of what the node sends it)."""
    handler = ClientHandler(genesis_hash)
    net = Network(chain_id=chain_id, genesis_hash=genesis_hash, node_id=os.urandom(16), listen_port=None,
                  handler=handler, limits=limits)
    await net.start()
    net.connect("127.0.0.1", port)
    try:
        await wait_until(lambda: bool(net.peers), timeout, "the P2P handshake", 0.01)
    except BaseException:
        await net.stop()
        raise
    return net, net.peers[0]
