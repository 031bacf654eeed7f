"""The asyncio P2P network: listening, dialing, the handshake, flood control, keepalive,
discouragement. This is the only module of ``p2p`` that does I/O; it moves bytes between
sockets and the sans-I/O :mod:`p2p.framing` and :mod:`p2p.messages`.

Connection life cycle (a task per connection, plus its writer and handler tasks)::

    accept / dial --> send Hello --> read Hello --(check)--> send HelloAck --> read HelloAck
        --> registered (net.peers, handler.on_peer_connected) --> reader + handler task
        --> cleanup (handler.on_peer_disconnected if registered; the socket always closed)

The handshake checks, in order: the first message is a ``hello`` (else ``expected-hello``), the
protocol version (``bad-version``), the chain id (``wrong-chain``), the genesis hash
(``wrong-genesis``), not ourselves (``self-connection``), not discouraged (``discouraged``), not a
second connection to the same node (``duplicate``); then the second message is a ``hello-ack``.
All of it must happen within ``handshake_timeout``.

What ends a connection, and what follows:

* :class:`~p2p.errors.PeerFault` - a ``ProtocolError`` (bad frame or message, wrong order) or
  ``Misbehaving`` (raised by the handler, e.g. ``bad-block``, or by the flood control,
  ``flood``): disconnect and discourage (see :mod:`p2p.discouragement` for the keying), logged
  at warning level with the reason.
* :class:`~p2p.errors.HandshakeRefused`: disconnect only. An outbound target refused for
  ``wrong-chain``, ``wrong-genesis``, ``bad-version`` or ``self-connection`` is given up.
* the peer or network broke it (``eof``, ``connection-lost``) or we gave up waiting
  (``handshake-timeout``, ``ping-timeout``), or a peer that does not read
  (``send-buffer-full``): disconnect only. Outbound targets are redialled with exponential
  backoff (0.5 s doubling to 30 s by default, with jitter; reset after a successful handshake).

Keepalive: a ``ping`` every ``ping_interval``; a peer from which nothing arrived for three
intervals is dropped (``ping-timeout``). Time our reader spends paused for our handler, and
stalls of our own event loop, do not count as the peer's silence.

Duplicates: when two nodes dial each other at once, both sides keep the connection dialled by
the node with the lower node id, so they agree without talking about it.

After the handshake each connection has a reader (in the connection task) and a handler task.
The reader answers ``ping``/``pong`` and ``getaddr`` itself (the latter once per connection,
from the peers' listen addresses), so a peer gets its pong even while our handler spends minutes
on a block; every other message waits in a per-peer inbox for the handler task, which calls
``handler.on_message`` one message at a time, in arrival order. When ``max_recv_buffer`` bytes
wait, the reader pauses (TCP backpressure). After the peer hangs up, what it sent before is
still handled; after we hang up, not. The handler may raise :class:`~p2p.errors.Misbehaving` to
have the peer dropped and discouraged; any other exception from it is logged and the connection
goes on (our bug is not the peer's fault).

Clocks: ``clock`` (monotonic by default) drives the flood buckets, keepalive and
discouragement; ``wall_clock`` only stamps ``connected_since`` for people. Sleeping uses the
event loop's own time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from p2p.discouragement import Discouraged, Discouragement, normalize_host
from p2p.errors import (
    ConnectionClosed,
    HandshakeRefused,
    Misbehaving,
    P2PError,
    PeerClosedByUs,
    PeerFault,
    ProtocolError,
)
from p2p.framing import HEADER_SIZE, MAX_FRAME, FrameDecoder, encode_frame
from p2p.messages import (
    MAX_ADDRS,
    MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    Addr,
    BlockMsg,
    GetAddr,
    Headers,
    Hello,
    HelloAck,
    Message,
    NetAddr,
    NotFound,
    Ping,
    Pong,
    decode_message,
    encode_message,
)
from p2p.ratelimit import TokenBucket

log = logging.getLogger("ponas.p2p")

USER_AGENT = "/ponas:0.1.0/"
INBOUND = "inbound"
OUTBOUND = "outbound"
#: Refusals after which an outbound target is not dialled again: the peer will not change.
GIVE_UP_REASONS = frozenset({"wrong-chain", "wrong-genesis", "bad-version", "self-connection"})


class Handler(Protocol):
    """What the network needs from the node."""

    def best(self) -> tuple[int, bytes]:
        """(height, hash) of our best block, for our ``Hello``."""
        ...

    async def on_message(self, peer: Peer, msg: Any) -> None: ...

    async def on_peer_connected(self, peer: Peer) -> None: ...

    async def on_peer_disconnected(self, peer: Peer, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Runtime limits of a network. Defaults follow Bitcoin Core where it has a number."""

    max_inbound: int = 64
    max_outbound: int = 8
    max_frame: int = MAX_FRAME
    #: The largest frame before the handshake is done: a ``hello`` is a few hundred bytes, so a
    #: stranger cannot make us buffer and decode megabytes before we know what it sends.
    handshake_max_frame: int = 4096
    handshake_timeout: float = 5.0
    connect_timeout: float = 5.0
    #: A ping every ``ping_interval`` seconds; a peer silent for three intervals is dropped.
    ping_interval: float = 30.0
    #: Flood control per peer: messages per second (and burst), bytes per second (and burst).
    msg_rate: float = 200.0
    msg_burst: float = 400.0
    #: Answers (headers, synced blocks, not-found, pongs) have their own, wider bucket: a node
    #: syncing fast must not take its source for a flooder, but unasked answers are bounded too.
    answer_rate: float = 2000.0
    answer_burst: float = 4000.0
    byte_rate: float = 32 * 1024 * 1024
    byte_burst: float = 128 * 1024 * 1024
    #: Bytes queued for a peer that does not read before we drop it (``send-buffer-full``).
    max_send_buffer: int = 64 * 1024 * 1024
    #: Bytes of a peer's messages read ahead of our handler before we stop reading from it.
    max_recv_buffer: int = 32 * 1024 * 1024
    discourage_seconds: float = 600.0
    backoff_min: float = 0.5
    backoff_max: float = 30.0
    #: How long ``stop`` waits for each stage of a graceful close before forcing it.
    stop_grace: float = 2.0
    read_size: int = 64 * 1024

    def __post_init__(self) -> None:
        if self.byte_burst < self.max_frame + HEADER_SIZE:
            raise ValueError("byte_burst must admit one frame of max_frame bytes")
        if not 0 < self.handshake_max_frame <= self.max_frame:
            raise ValueError("need 0 < handshake_max_frame <= max_frame")
        if self.backoff_min <= 0 or self.backoff_max < self.backoff_min:
            raise ValueError("need 0 < backoff_min <= backoff_max")


class Peer:
    """One connection. Public fields are read-only for the node, except ``best_height`` and
    ``best_hash``, which the node may update as the peer announces blocks."""

    __slots__ = (
        "host", "port", "direction", "node_id", "listen_port", "version", "user_agent", "best_height", "best_hash",
        "connected_since", "handshaken", "close_reason", "closed_by_us", "bytes_sent", "bytes_recv", "msgs_recv",
        "ping_rtt", "last_recv", "_net", "_reader", "_writer", "_decoder", "_pending", "_outbox", "_outbox_bytes",
        "_wakeup", "_writer_task", "_msg_bucket", "_answer_bucket", "_byte_bucket", "_ping_nonce", "_ping_sent", "_answered_getaddr",
        "_closed_event", "_paused", "_quiet_since", "_inbox", "_inbox_bytes", "_inbox_ready", "_inbox_space",
        "_handler_task", "_seq", "__weakref__",
    )

    def __init__(
        self, net: Network, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str,
        host: str, port: int,
    ) -> None:
        limits, now = net.limits, net.clock()
        self._seq = next(_PEER_SEQ)  # connection order (the newest is evicted first)
        self.host = host
        self.port = port
        self.direction = direction
        self.node_id = b""
        self.listen_port = 0
        self.version = 0
        self.user_agent = ""
        self.best_height = 0
        self.best_hash = b""
        self.connected_since = 0.0
        self.handshaken = False
        self.close_reason: str | None = None
        self.closed_by_us = False
        self.bytes_sent = 0
        self.bytes_recv = 0
        self.msgs_recv = 0
        self.ping_rtt: float | None = None
        self.last_recv = now
        self._net = net
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder(limits.handshake_max_frame)  # raised to max_frame after the handshake
        self._pending: deque[bytes] = deque()
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        self._wakeup = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._msg_bucket = TokenBucket(limits.msg_rate, limits.msg_burst, net.clock)
        self._answer_bucket = TokenBucket(limits.answer_rate, limits.answer_burst, net.clock)
        self._byte_bucket = TokenBucket(limits.byte_rate, limits.byte_burst, net.clock)
        self._ping_nonce: int | None = None
        self._ping_sent = now
        self._answered_getaddr = False
        self._closed_event = asyncio.Event()
        self._paused = False  # reading paused: our handler is behind on this peer's messages
        self._quiet_since = now  # the peer's silence is counted from here
        self._inbox: deque[tuple[Message, int]] = deque()  # read, waiting for the handler
        self._inbox_bytes = 0
        self._inbox_ready = asyncio.Event()
        self._inbox_space = asyncio.Event()
        self._handler_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        nid = self.node_id.hex()[:8] if self.node_id else "?"
        return f"<Peer {self.direction} {self.host}:{self.port} {nid}>"

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    async def send(self, msg: Message) -> None:
        """Queue ``msg`` for this peer. Raises :class:`PeerClosedByUs` or
        :class:`ConnectionClosed` once the connection is gone; never blocks on a slow peer
        (one that lets ``max_send_buffer`` bytes pile up is dropped instead)."""
        self._enqueue(self._net._frame(msg))

    def close(self, reason: str = "closed") -> None:
        """Drop the connection (not a discouragement); the handler hears ``reason``."""
        self._mark_closed(reason, by_us=True)

    async def wait_closed(self) -> None:
        """Return once the connection is closed (for whatever reason)."""
        await self._closed_event.wait()

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary for the API."""
        return {
            "node_id": self.node_id.hex(), "host": self.host, "port": self.port, "listen_port": self.listen_port,
            "direction": self.direction, "version": self.version, "user_agent": self.user_agent,
            "best_height": self.best_height, "best_hash": self.best_hash.hex(),
            "connected_since": self.connected_since, "bytes_sent": self.bytes_sent, "bytes_recv": self.bytes_recv,
            "ping_rtt": self.ping_rtt,
        }

    # --- internals ---------------------------------------------------------------------------

    def _enqueue(self, frame: bytes) -> None:
        if self.close_reason is not None:
            raise self._closed_error()
        if self._outbox_bytes and self._outbox_bytes + len(frame) > self._net.limits.max_send_buffer:
            self._mark_closed("send-buffer-full", by_us=True)
            raise self._closed_error()
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)
        self._wakeup.set()

    def _closed_error(self) -> P2PError:
        reason = self.close_reason or "closed"
        return PeerClosedByUs(reason) if self.closed_by_us else ConnectionClosed(reason)

    def _mark_closed(self, reason: str, by_us: bool) -> None:
        """Record why the connection ends (the first reason wins) and cut the socket, which
        wakes the read loop; the connection task does the rest of the cleanup."""
        if self.close_reason is not None:
            return
        self.close_reason = reason
        self.closed_by_us = by_us
        self._outbox.clear()
        self._outbox_bytes = 0
        self._closed_event.set()
        self._inbox_ready.set()  # let the handler task see the end
        self._inbox_space.set()  # and a reader paused on a full inbox read the EOF
        self._writer.transport.abort()

    async def _write_loop(self) -> None:
        writer = self._writer
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._outbox:
                    frame = self._outbox.popleft()
                    self._outbox_bytes -= len(frame)
                    self.bytes_sent += len(frame)
                    writer.write(frame)
                await writer.drain()
        except (ConnectionError, OSError) as exc:
            self._mark_closed("connection-lost", by_us=False)
            log.debug("write failed", extra={"peer": self.label, "detail": str(exc)})


@dataclass(eq=False)
class Target:
    """An outbound address the network keeps dialling while it runs."""

    host: str
    port: int
    seed: bool = False
    node_id: bytes | None = None  # learned from its Hello
    last_ip: str | None = None
    attempts: int = 0
    connects: int = 0  # successful handshakes
    last_error: str | None = None
    state: str = "idle"  # idle, dialing, connected, waiting, backoff, gave-up, stopped
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def info(self) -> dict[str, Any]:
        return {
            "host": self.host, "port": self.port, "seed": self.seed, "state": self.state, "attempts": self.attempts,
            "connects": self.connects, "last_error": self.last_error,
            "node_id": self.node_id.hex() if self.node_id else None,
        }


_PEER_SEQ = itertools.count()


def _answer(msg: Message) -> bool:
    """Messages that answer a request rather than push something unasked."""
    return isinstance(msg, (Headers, NotFound, Pong)) or (isinstance(msg, BlockMsg) and not msg.candidate)


class Network:
    """A node's P2P endpoint. ``start`` listens (``listen_port=0``: any free port, see
    :attr:`port`; ``None``: do not listen), ``stop`` closes everything."""

    def __init__(
        self,
        chain_id: str,
        genesis_hash: bytes,
        node_id: bytes,
        listen_host: str = "127.0.0.1",
        listen_port: int | None = 0,
        handler: Handler | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        limits: Limits | None = None,
        rng: random.Random | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        if handler is None:
            raise TypeError("a Network needs a handler")
        if len(genesis_hash) != 32 or len(node_id) not in (16, 32):
            raise ValueError("genesis_hash is 32 bytes and node_id 16 or 32")
        self.chain_id = chain_id
        self.genesis_hash = bytes(genesis_hash)
        self.node_id = bytes(node_id)
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.handler = handler
        self.clock = clock
        self.wall_clock = wall_clock
        self.limits = limits or Limits()
        self.rng = rng or random.Random()
        self.user_agent = user_agent
        self.port = 0
        self.discouragement = Discouragement(self.limits.discourage_seconds, clock)
        #: The last disconnections (most recent last), for the API and for tests.
        self.recent_disconnects: deque[dict[str, Any]] = deque(maxlen=200)
        self._running = False
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[Peer] = set()  # every open connection, handshaking ones included
        self._peers: list[Peer] = []  # handshaken, in order of arrival
        self._by_node: dict[bytes, Peer] = {}  # node id -> its connection (from a checked Hello on)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._targets: dict[tuple[str, int], Target] = {}
        self._outbound_slots = 0
        self._changed = asyncio.Event()

    # --- views --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def peers(self) -> list[Peer]:
        """Handshaken, open connections."""
        return [p for p in self._peers if not p.closed]

    @property
    def discouraged(self) -> list[Discouraged]:
        return self.discouragement.entries()

    @property
    def targets(self) -> list[Target]:
        return list(self._targets.values())

    def peer_by_node(self, node_id: bytes) -> Peer | None:
        peer = self._by_node.get(node_id)
        return peer if peer is not None and peer.handshaken and not peer.closed else None

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._running:
            raise RuntimeError("network already started")
        self._running = True
        try:
            if self.listen_port is not None:
                self._server = await asyncio.start_server(self._on_accept, self.listen_host, self.listen_port)
                self.port = self._server.sockets[0].getsockname()[1]
            self._spawn(self._maintain(), "p2p-maintain")
            for target in self._targets.values():
                self._start_dialing(target)
        except BaseException:
            await self.stop()
            raise
        log.info("p2p started", extra={"event": "start", "port": self.port, "node_id": self.node_id.hex()})

    async def stop(self) -> None:
        """Stop accepting, close every connection, cancel every task. Each stage waits
        ``stop_grace`` at most; whatever is left is aborted. Safe to call twice."""
        self._running = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for peer in list(self._conns):
            peer._mark_closed("shutdown", by_us=True)
        for target in self._targets.values():
            target.state = "stopped"
        grace = self.limits.stop_grace
        for _stage in range(2):
            tasks = [t for t in self._tasks if not t.done()]
            if not tasks:
                break
            for task in tasks:
                task.cancel()
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for peer in list(self._conns):  # a task stuck in the handler: force the socket shut
                peer._writer.transport.abort()
            if pending:
                log.warning("p2p tasks slow to stop", extra={"event": "stop", "count": len(pending)})
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), grace)
        await asyncio.sleep(0)  # let aborted transports run connection_lost and close their sockets
        self._conns.clear()
        self._peers.clear()
        self._by_node.clear()
        if server is not None:
            log.info("p2p stopped", extra={"event": "stop", "port": self.port})

    def connect(self, host: str, port: int) -> Target:
        """Keep an outbound connection to ``host:port``: dial now (or at ``start``) and redial
        with backoff whenever it drops, while the network runs. Idempotent per address."""
        return self._add_target(host, port, seed=False)

    def add_seed(self, host: str, port: int) -> Target:
        """A configured peer: like :meth:`connect`, callable before ``start``."""
        return self._add_target(host, port, seed=True)

    def _add_target(self, host: str, port: int, seed: bool) -> Target:
        key = (host, int(port))
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = Target(host, int(port), seed=seed)
        if self._running:
            self._start_dialing(target)
        return target

    async def forget(self, host: str, port: int) -> Target | None:
        """Stop keeping an outbound connection to ``host:port`` (a seed or not): the target is
        dropped, its dialling stops and the connection it holds closes (``shutdown``). Returns
        the target, or None if there was none. The other end may still dial us."""
        target = self._targets.pop((host, int(port)), None)
        if target is None:
            return None
        task = target._task
        while task is not None and not task.done():  # cancel again if a cleanup swallowed it
            task.cancel()
            await asyncio.wait([task], timeout=self.limits.stop_grace)
        target.state = "stopped"
        self._notify()
        return target

    def disconnect(self, node_id: bytes, reason: str = "disconnected") -> bool:
        """Close the connection with the node ``node_id`` (not a discouragement); True if there
        was one. A kept outbound target redials it: :meth:`forget` that first."""
        peer = self.peer_by_node(node_id)
        if peer is None:
            return False
        peer.close(reason)
        return True

    def broadcast(self, msg: Message, exclude: Peer | None = None) -> int:
        """Queue ``msg`` (encoded once) for every handshaken peer but ``exclude``; returns how
        many peers it was queued for. A peer whose send buffer is full is dropped."""
        frame = self._frame(msg)
        sent = 0
        for peer in self.peers:
            if peer is exclude:
                continue
            try:
                peer._enqueue(frame)
                sent += 1
            except P2PError:
                pass
        return sent

    # --- internals: tasks and events ----------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _notify(self) -> None:
        """Wake whoever waits for a connection to come or go."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def _frame(self, msg: Message) -> bytes:
        payload = encode_message(msg)
        if len(payload) > self.limits.max_frame:
            raise ValueError(f"{msg.KIND} message of {len(payload)} bytes exceeds max_frame")
        return encode_frame(payload)

    def _hello(self) -> Hello:
        height, best_hash = self.handler.best()
        return Hello(
            PROTOCOL_VERSION, self.chain_id, self.genesis_hash, height, bytes(best_hash), self.node_id,
            self.port, self.user_agent,
        )

    # --- inbound ------------------------------------------------------------------------------

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = _peername(writer)
        refusal = None
        if not self._running:
            refusal = "shutdown"
        elif self.discouragement.refuses_connection_from(host):
            refusal = "discouraged"
        elif sum(1 for p in self._conns if p.direction == INBOUND) >= self.limits.max_inbound \
                and not self._evict_inbound(host):
            refusal = "too-many-inbound"
        if refusal is not None:
            writer.transport.abort()
            self._record(host, port, INBOUND, None, refusal, True, False)
            log.info("inbound refused", extra={"event": "refuse", "peer": f"{host}:{port}", "reason": refusal})
            return
        peer = Peer(self, reader, writer, INBOUND, host, port)
        self._conns.add(peer)  # now, so that a stop before the task runs still closes it
        self._spawn(self._run_peer(peer), f"p2p-in-{host}:{port}")

    def _evict_inbound(self, host: str) -> bool:
        """With every inbound slot taken, make room for a connection from ``host`` if one
        address holds more slots than ``host`` would after it: that address's newest connection
        goes (``evicted``). So one host cannot keep all the slots (as in Bitcoin Core's
        eviction, with the address in place of the network group)."""
        inbound = [p for p in self._conns if p.direction == INBOUND and not p.closed]
        by_host: dict[str, list[Peer]] = {}
        for p in inbound:
            by_host.setdefault(normalize_host(p.host), []).append(p)
        crowded = max(by_host.values(), key=len, default=[])
        if len(crowded) <= len(by_host.get(normalize_host(host), [])) + 1:
            return False
        victim = max(crowded, key=lambda p: p._seq)
        victim._mark_closed("evicted", by_us=True)
        log.info("inbound evicted", extra={"event": "evict", "peer": victim.label, "for": host,
                                           "host_slots": len(crowded)})
        return True

    # --- outbound -----------------------------------------------------------------------------

    def _start_dialing(self, target: Target) -> None:
        if target._task is None or target._task.done():
            if target.state == "gave-up":
                return
            target._task = self._spawn(self._dial_loop(target), f"p2p-dial-{target.host}:{target.port}")

    def _dial_blocker(self, target: Target) -> str | None:
        if target.node_id is not None and target.node_id in self._by_node:
            return "connected"  # the same node reached us another way (it dialled us)
        if self.discouragement.refuses_connection_from(target.last_ip or target.host):
            return "discouraged"  # an IP-keyed entry; a loopback one is checked at its Hello
        if self._outbound_slots >= self.limits.max_outbound:
            return "no-slot"
        return None

    async def _dial_loop(self, target: Target) -> None:
        limits = self.limits
        delay = limits.backoff_min
        while self._running:
            blocker = self._dial_blocker(target)
            if blocker is not None:
                target.state = "waiting"
                target.last_error = blocker
                await self._wait_change(limits.backoff_max)
                continue
            target.state = "dialing"
            target.attempts += 1
            self._outbound_slots += 1
            try:
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(target.host, target.port), limits.connect_timeout
                    )
                except OSError as exc:
                    target.last_error = "connect-failed"
                    log.debug("dial failed", extra={"event": "dial", "peer": f"{target.host}:{target.port}",
                                                    "detail": str(exc) or type(exc).__name__})
                else:
                    host, _port = _peername(writer)
                    target.last_ip = host
                    peer = Peer(self, reader, writer, OUTBOUND, host, target.port)
                    await self._run_peer(peer, target)
                    target.last_error = peer.close_reason
                    if peer.handshaken:
                        delay = limits.backoff_min
                    if peer.close_reason in GIVE_UP_REASONS:
                        target.state = "gave-up"
                        log.warning("outbound target given up", extra={
                            "event": "give-up", "peer": f"{target.host}:{target.port}", "reason": peer.close_reason})
                        return
            finally:
                self._outbound_slots -= 1
                self._notify()
            if not self._running:
                break
            target.state = "backoff"
            await asyncio.sleep(delay * (0.75 + 0.5 * self.rng.random()))
            delay = min(delay * 2, limits.backoff_max)
        target.state = "stopped"

    # --- one connection -----------------------------------------------------------------------

    async def _run_peer(self, peer: Peer, target: Target | None = None) -> None:
        self._conns.add(peer)
        peer._writer_task = self._spawn(peer._write_loop(), f"p2p-write-{peer.label}")
        try:
            try:
                async with asyncio.timeout(self.limits.handshake_timeout):
                    await self._handshake(peer, target)
            except TimeoutError:
                raise PeerClosedByUs("handshake-timeout") from None
            peer.handshaken = True
            peer._decoder.max_frame = self.limits.max_frame
            peer.connected_since = self.wall_clock()
            self._peers.append(peer)
            if target is not None:
                target.connects += 1
                target.state = "connected"
            self._notify()
            log.info("peer connected", extra={
                "event": "connect", "peer": peer.label, "node_id": peer.node_id.hex(), "direction": peer.direction,
                "best_height": peer.best_height})
            try:
                await self.handler.on_peer_connected(peer)
            except PeerFault:
                raise
            except (ConnectionClosed, PeerClosedByUs):
                pass
            except Exception:
                log.exception("handler.on_peer_connected failed", extra={"peer": peer.label})
            peer._handler_task = self._spawn(self._handle_loop(peer), f"p2p-handle-{peer.label}")
            while True:
                await self._route(peer, *await self._next_message(peer))
        except PeerFault as exc:
            self._fault(peer, exc)
        except HandshakeRefused as exc:
            peer._mark_closed(exc.reason, by_us=True)
            log.info("handshake refused", extra={
                "event": "refuse", "peer": peer.label, "node_id": peer.node_id.hex(), "direction": peer.direction,
                "reason": exc.reason, "detail": exc.detail})
        except PeerClosedByUs as exc:
            peer._mark_closed(exc.reason, by_us=True)
        except ConnectionClosed as exc:
            peer._mark_closed(exc.reason, by_us=False)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            peer._mark_closed("connection-lost", by_us=False)
        except asyncio.CancelledError:
            peer._mark_closed("shutdown", by_us=True)
            raise
        finally:
            await self._cleanup(peer)

    async def _handshake(self, peer: Peer, target: Target | None) -> None:
        peer._enqueue(self._frame(self._hello()))
        msg, _size = await self._next_message(peer)
        if not isinstance(msg, Hello):
            raise ProtocolError("expected-hello", f"first message was {msg.KIND}")
        peer.node_id = msg.node_id
        if target is not None:
            target.node_id = msg.node_id
        self._check_hello(peer, msg)
        peer.version = min(msg.version, PROTOCOL_VERSION)
        peer.listen_port = msg.listen_port
        peer.user_agent = msg.user_agent
        peer.best_height = msg.best_height
        peer.best_hash = msg.best_hash
        peer._enqueue(self._frame(HelloAck()))
        msg, _size = await self._next_message(peer)
        if not isinstance(msg, HelloAck):
            raise ProtocolError("expected-hello-ack", f"second message was {msg.KIND}")

    def _check_hello(self, peer: Peer, hello: Hello) -> None:
        if hello.version < MIN_PROTOCOL_VERSION:
            raise HandshakeRefused("bad-version", f"version {hello.version} < {MIN_PROTOCOL_VERSION}")
        if hello.chain_id != self.chain_id:
            raise HandshakeRefused("wrong-chain", f"{hello.chain_id!r} is not {self.chain_id!r}")
        if hello.genesis != self.genesis_hash:
            raise HandshakeRefused("wrong-genesis", hello.genesis.hex())
        if hello.node_id == self.node_id:
            raise HandshakeRefused("self-connection")
        if self.discouragement.is_discouraged(peer.host, hello.node_id):
            raise HandshakeRefused("discouraged")
        existing = self._by_node.get(hello.node_id)
        if existing is not None and not existing.closed:
            if not self._prefer(peer, existing):
                raise HandshakeRefused("duplicate", f"already connected ({existing.direction})")
            existing._mark_closed("duplicate", by_us=True)
        self._by_node[hello.node_id] = peer

    def _prefer(self, new: Peer, old: Peer) -> bool:
        """Of two connections with one node, keep the one dialled by the lower node id (both
        ends compute the same answer); between two dialled by the same side, the older."""
        def dialer(p: Peer) -> bytes:
            return self.node_id if p.direction == OUTBOUND else p.node_id

        if dialer(new) == dialer(old):
            return False
        return dialer(new) < dialer(old)

    async def _next_message(self, peer: Peer) -> tuple[Message, int]:
        """The next message and its size on the wire; flood control and decoding here."""
        # Before the handshake is done, one frame at a time: the frames behind it (a peer may
        # pipeline its first messages) are checked against max_frame once it is.
        one = None if peer.handshaken else 1
        if not peer._pending and peer._decoder.buffered:
            peer._pending.extend(peer._decoder.feed(b"", one))
        while not peer._pending:
            data = await peer._reader.read(self.limits.read_size)
            if not data:
                raise ConnectionClosed("eof")
            peer.bytes_recv += len(data)
            peer._pending.extend(peer._decoder.feed(data, one))
        payload = peer._pending.popleft()
        peer.last_recv = peer._quiet_since = self.clock()
        if not peer._byte_bucket.take(len(payload) + HEADER_SIZE):
            raise Misbehaving("flood", f"over {self.limits.byte_rate:g} bytes/s")
        msg = decode_message(payload, self.limits.max_frame)
        # Answers to our own requests (headers, synced blocks, not-found, pongs) take from a
        # wider bucket: a node syncing fast must not take its source for a flooder.
        if _answer(msg):
            if not peer._answer_bucket.take(1):
                raise Misbehaving("flood", f"over {self.limits.answer_rate:g} answers/s")
        elif not peer._msg_bucket.take(1):
            raise Misbehaving("flood", f"over {self.limits.msg_rate:g} messages/s")
        peer.msgs_recv += 1
        return msg, len(payload) + HEADER_SIZE

    async def _route(self, peer: Peer, msg: Message, size: int) -> None:
        """Answer the control messages at once (so pings are answered even while our handler
        is busy); queue the rest, in order, for the peer's handler task."""
        if isinstance(msg, (Hello, HelloAck)):
            raise ProtocolError("unexpected-handshake", f"{msg.KIND} after the handshake")
        if isinstance(msg, Ping):
            peer._enqueue(self._frame(Pong(msg.nonce)))
            return
        if isinstance(msg, Pong):
            if msg.nonce == peer._ping_nonce:
                peer.ping_rtt = self.clock() - peer._ping_sent
                peer._ping_nonce = None
            return
        if isinstance(msg, GetAddr):
            if not peer._answered_getaddr:  # once per connection, as Bitcoin Core does
                peer._answered_getaddr = True
                peer._enqueue(self._frame(self._addr_for(peer)))
            return
        peer._inbox.append((msg, size))
        peer._inbox_bytes += size
        peer._inbox_ready.set()
        if peer._inbox_bytes > self.limits.max_recv_buffer:
            # Backpressure: stop reading until the handler catches up. The peer is not silent
            # meanwhile, we are deaf; keepalive does not count this time against it.
            peer._paused = True
            peer._inbox_space.clear()
            try:
                await peer._inbox_space.wait()
            finally:
                peer._paused = False
                peer._quiet_since = self.clock()

    async def _handle_loop(self, peer: Peer) -> None:
        """Feed the peer's queued messages to the handler, one at a time, in order. After the
        peer closed the connection the queue is still finished; after we closed it, not."""
        handler = self.handler
        while True:
            if not peer._inbox:
                if peer.closed:
                    return
                peer._inbox_ready.clear()
                await peer._inbox_ready.wait()
                continue
            if peer.closed and peer.closed_by_us:
                return
            msg, size = peer._inbox.popleft()
            peer._inbox_bytes -= size
            if peer._inbox_bytes <= self.limits.max_recv_buffer:
                peer._inbox_space.set()
            try:
                await handler.on_message(peer, msg)
            except PeerFault as exc:
                self._fault(peer, exc)
                return
            except (ConnectionClosed, PeerClosedByUs):
                return
            except Exception:
                log.exception("handler.on_message failed", extra={"peer": peer.label, "kind": msg.KIND})
    def _addr_for(self, asker: Peer) -> Addr:
        addrs = []
        for p in self.peers:
            if p is not asker and p.listen_port:
                addrs.append(NetAddr(p.host, p.listen_port))
        self.rng.shuffle(addrs)
        return Addr(tuple(addrs[:MAX_ADDRS]))

    def _fault(self, peer: Peer, exc: PeerFault) -> None:
        peer._mark_closed(exc.reason, by_us=True)
        entry = self.discouragement.discourage(peer.host, peer.node_id or None, exc.reason, exc.detail)
        log.warning("peer discouraged" if entry else "peer dropped (loopback peer without identity)", extra={
            "event": "discourage", "peer": peer.label, "node_id": peer.node_id.hex(), "direction": peer.direction,
            "reason": exc.reason, "detail": exc.detail, "kind": type(exc).__name__,
            "discouraged": entry is not None, "seconds": self.limits.discourage_seconds})

    async def _cleanup(self, peer: Peer) -> None:
        peer._mark_closed("closed", by_us=True)  # no-op unless nothing said why
        self._conns.discard(peer)
        if self._by_node.get(peer.node_id) is peer:
            del self._by_node[peer.node_id]
        for task in (peer._writer_task, peer._handler_task):
            if task is None or task.done():
                continue
            if task is peer._handler_task and not peer.closed_by_us:
                # the peer hung up: what it sent before still counts (a block, then EOF)
                with contextlib.suppress(Exception):
                    await task
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        peer._writer.transport.abort()
        self._record(peer.host, peer.port, peer.direction, peer.node_id, peer.close_reason or "closed",
                     peer.closed_by_us, peer.handshaken)
        if peer.handshaken:
            with contextlib.suppress(ValueError):
                self._peers.remove(peer)
            log.info("peer disconnected", extra={
                "event": "disconnect", "peer": peer.label, "node_id": peer.node_id.hex(),
                "direction": peer.direction, "reason": peer.close_reason, "by_us": peer.closed_by_us})
            try:
                await self.handler.on_peer_disconnected(peer, peer.close_reason or "closed")
            except Exception:
                log.exception("handler.on_peer_disconnected failed", extra={"peer": peer.label})
        self._notify()

    def _record(
        self, host: str, port: int, direction: str, node_id: bytes | None, reason: str, by_us: bool, handshaken: bool
    ) -> None:
        self.recent_disconnects.append({
            "host": host, "port": port, "direction": direction, "node_id": node_id.hex() if node_id else None,
            "reason": reason, "by_us": by_us, "handshaken": handshaken, "at": self.clock(),
        })

    # --- keepalive and housekeeping -----------------------------------------------------------

    async def _maintain(self) -> None:
        interval = self.limits.ping_interval
        tick = min(1.0, interval / 4)
        last = self.clock()
        while self._running:
            await asyncio.sleep(tick)
            now = self.clock()
            # After a stall of our own loop (a long synchronous validation), what the peers sent
            # meanwhile is still unread: judge silence on the next tick, not this one.
            stalled, last = now - last > 2 * tick, now
            for peer in self.peers:
                if now - peer._quiet_since > 3 * interval and not stalled and not peer._paused:
                    log.info("peer silent", extra={"event": "ping-timeout", "peer": peer.label,
                                                   "node_id": peer.node_id.hex()})
                    peer._mark_closed("ping-timeout", by_us=True)
                elif peer._ping_nonce is None and now - peer._ping_sent >= interval:
                    nonce = self.rng.getrandbits(64)
                    with contextlib.suppress(P2PError):
                        peer._enqueue(self._frame(Ping(nonce)))
                        peer._ping_nonce, peer._ping_sent = nonce, now
            self.discouragement.prune()


def _peername(writer: asyncio.StreamWriter) -> tuple[str, int]:
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return normalize_host(str(name[0])), int(name[1])
    return "?", 0


__all__ = ["Network", "Peer", "Target", "Limits", "Handler", "USER_AGENT", "INBOUND", "OUTBOUND", "GIVE_UP_REASONS"]
