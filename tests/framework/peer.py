"""A fake peer, after Bitcoin Core's ``P2PInterface``: it completes the P2P handshake with a
node, sends crafted messages (:mod:`p2p.messages`) and asserts the node's verdict.

The verdict is read where the node records it: every refused input is counted in
``node.metrics.rejects`` (labels ``source``, ``reason``), and a peer at fault is disconnected
and discouraged, with the reason in ``node.network.recent_disconnects``::

    peer = await FakePeer.connect(node)
    await peer.send_and_expect(BlockMsg(bad, b"", False), reason="bad-cb-amount", disconnected=True)

The peer reads everything the node sends in a background task (answering pings), so the node
never sees it as silent or slow; what arrived is in :attr:`FakePeer.received`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any, TypeVar

from consensus.chain import genesis_block
from consensus.params import ChainParams
from node.service import Node
from p2p import messages as M
from p2p.framing import FrameDecoder, encode_frame

T = TypeVar("T", bound=M.Message)


def reject_count(node: Node, reason: str | None = None, source: str = "p2p") -> float:
    """How many inputs from ``source`` the node refused, for ``reason`` or for any reason."""
    total = 0.0
    for metric in node.metrics.rejects.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("source") == source \
                    and (reason is None or sample.labels.get("reason") == reason):
                total += sample.value
    return total


class FakePeer:
    """One hand-driven connection to a node on 127.0.0.1 (``P2PInterface``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, node: Node | None,
                 node_id: bytes) -> None:
        self.reader, self.writer, self.node, self.node_id = reader, writer, node, node_id
        self.received: list[M.Message] = []
        self.closed = asyncio.Event()
        self._decoder = FrameDecoder()
        self._pending: list[bytes] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- connecting ------------------------------------------------------------------------------

    @classmethod
    async def connect(cls, node: Node, *, best_height: int = 0, node_id: bytes | None = None,
                      timeout: float = 5.0) -> FakePeer:
        """Connect to an in-process ``node`` and complete the handshake."""
        return await cls.open(node.p2p_port, node.params, node=node, best_height=best_height, node_id=node_id,
                              timeout=timeout)

    @classmethod
    async def open(cls, port: int, params: ChainParams, *, node: Node | None = None, best_height: int = 0,
                   node_id: bytes | None = None, timeout: float = 5.0, handshake: bool = True) -> FakePeer:
        """Connect to the node listening on ``port`` (any process); with ``handshake``, complete it."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(reader, writer, node, node_id or os.urandom(16))
        if handshake:
            genesis = genesis_block(params).header.hash()
            try:
                await peer.handshake(params.chain_id, genesis, best_height, timeout)
            except BaseException:
                await peer.close()
                raise
        return peer

    async def handshake(self, chain_id: str, genesis: bytes, best_height: int = 0, timeout: float = 5.0) -> None:
        self.send_nowait(M.Hello(M.PROTOCOL_VERSION, chain_id, genesis, best_height, genesis, self.node_id, 0,
                                 "/fake-peer/"))
        async with asyncio.timeout(timeout):
            kinds = [type(await self._read_one()).__name__ for _ in range(2)]
        assert kinds == ["Hello", "HelloAck"], f"the node answered the handshake with {kinds}"
        self.send_nowait(M.HelloAck())
        self._task = asyncio.create_task(self._read_loop(), name="fake-peer-reader")

    # --- sending and receiving -------------------------------------------------------------------

    def send_nowait(self, msg: M.Message) -> None:
        self.writer.write(encode_frame(M.encode_message(msg)))

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are: for malformed frames and other garbage."""
        self.writer.write(data)

    async def send(self, msg: M.Message) -> None:
        self.send_nowait(msg)
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def _read_one(self) -> M.Message:
        while True:
            if self._pending:
                return M.decode_message(self._pending.pop(0))
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("the node closed the connection")
            self._pending.extend(self._decoder.feed(data))

    async def _read_loop(self) -> None:
        try:
            while True:
                msg = await self._read_one()
                if isinstance(msg, M.Ping):
                    self.send_nowait(M.Pong(msg.nonce))
                self.received.append(msg)
                self._arrived.set()
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self.closed.set()
            self._arrived.set()

    async def wait_for_message(self, kind: type[T], timeout: float = 5.0, start: int = 0) -> T:
        """The first message of type ``kind`` received (from index ``start`` of :attr:`received`)."""
        async with asyncio.timeout(timeout):
            while True:
                for msg in self.received[start:]:
                    if isinstance(msg, kind):
                        return msg
                if self.closed.is_set():
                    raise AssertionError(f"disconnected before a {kind.__name__} arrived")
                self._arrived.clear()
                await self._arrived.wait()

    async def sync_with_node(self, timeout: float = 10.0) -> None:
        """Return once the node has handled every message this peer sent before (Bitcoin's
        ``sync_with_ping``; here a ``getheaders``, since pings are answered ahead of the queue)."""
        start = len(self.received)
        self.send_nowait(M.GetHeaders((b"\x00" * 32,), b"\x00" * 32))
        await self.wait_for_message(M.Headers, timeout, start)

    async def wait_closed(self, timeout: float = 5.0) -> bool:
        """True if the node closed the connection within ``timeout``."""
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.writer.transport.abort()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.closed.set()

    async def __aenter__(self) -> FakePeer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- verdicts ----------------------------------------------------------------------------------

    def disconnect_reason(self) -> str | None:
        """Why the node last disconnected this peer, as it recorded it."""
        assert self.node is not None and self.node.network is not None
        for rec in reversed(self.node.network.recent_disconnects):
            if rec["node_id"] == self.node_id.hex():
                return str(rec["reason"])
        return None

    def discouraged(self) -> bool:
        assert self.node is not None and self.node.network is not None
        return self.node.network.discouragement.is_discouraged("127.0.0.1", self.node_id)

    async def send_and_expect(self, msg: M.Message, reason: str | None = None, *, disconnected: bool | None = None,
                              timeout: float = 10.0) -> None:
        """Send ``msg`` and assert the node's verdict.

        ``reason``: the node counts one more refusal for it (``node.metrics.rejects``); None: the
        node accepts the message (no refusal counted, and the peer stays connected).
        ``disconnected``: True, the node drops this peer for ``reason`` and discourages it;
        False, it keeps the connection; None, either."""
        node = self.node
        assert node is not None, "send_and_expect reads the verdict of an in-process node"
        before, before_any = reject_count(node, reason), reject_count(node)
        await self.send(msg)
        if reason is None:
            await self.sync_with_node(timeout)
            assert reject_count(node) == before_any, f"the node refused {msg.KIND}: {self._rejects_since(node)}"
            return
        try:
            async with asyncio.timeout(timeout):
                while reject_count(node, reason) <= before:
                    if reject_count(node) > before_any:
                        break  # refused for another reason: say which below
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"no {reason!r} refusal of {msg.KIND} within {timeout}s") from None
        assert reject_count(node, reason) == before + 1, (
            f"expected one {reason!r} refusal of {msg.KIND}, the node counted {self._rejects_since(node)}")
        if disconnected is True:
            assert await self.wait_closed(timeout), f"the node kept a peer that sent {reason!r}"
            await _until(lambda: self.disconnect_reason() is not None, timeout)
            assert self.disconnect_reason() == reason, self.disconnect_reason()
            assert self.discouraged(), f"a peer dropped for {reason!r} is discouraged"
        elif disconnected is False:
            await self.sync_with_node(timeout)
            assert not self.closed.is_set(), f"the node dropped the peer: {self.disconnect_reason()}"

    def _rejects_since(self, node: Node) -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in node.metrics.rejects.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels.get("source") == "p2p":
                    out[sample.labels["reason"]] = sample.value
        return out


async def _until(cond: Any, timeout: float) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > end:
            return
        await asyncio.sleep(0.02)


__all__ = ["FakePeer", "reject_count"]
