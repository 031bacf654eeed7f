"""Networks on 127.0.0.1 (ephemeral ports), in one event loop, with hostile raw-socket peers.

It proves that:
* three networks connect, handshake (both Hellos, both HelloAcks), list each other as peers,
  broadcast a message that reaches every other node, keep each other alive with ping/pong and
  answer getaddr with their peers' listen addresses;
* a peer on another genesis or chain, or ourselves, is refused with its reason and the dialler
  gives the target up; two nodes dialling each other keep exactly one connection;
* hostile peers - garbage bytes, an oversized frame, a flood, a block the handler rejects with
  ``Misbehaving("bad-block")`` - are each disconnected and discouraged (their reconnection under
  the same node id is refused at the Hello) while two honest networks keep exchanging
  messages; a peer that never says hello times out; a silent peer is dropped by keepalive, but
  time our own slow handler takes is not counted as silence; inbound slots are limited;
* a dialler reconnects with backoff after the other side restarts on the same port;
* ``stop`` leaves no task and no socket behind: the ports can be bound again.

Every wait is bounded (``until`` polls for at most a few seconds).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from consensus.chain import genesis_block
from consensus.types import Transfer
from p2p import messages as M
from p2p.errors import Misbehaving
from p2p.framing import FrameDecoder, encode_frame
from p2p.network import Limits, Network, Peer
from tests.builders import make_params

CHAIN = "ponas-p2p-test"
GENESIS = bytes.fromhex("11" * 32)
OTHER_GENESIS = bytes.fromhex("22" * 32)
FAST = Limits(
    handshake_timeout=1.0, connect_timeout=1.0, ping_interval=0.2, backoff_min=0.05, backoff_max=0.4,
    stop_grace=0.5, msg_rate=50, msg_burst=100,
)
_ids = itertools.count(1)
BLOCK = genesis_block(make_params())  # built here: building it inside a test would stall the loop


def node_id() -> bytes:
    return next(_ids).to_bytes(16, "big")


class Recorder:
    """A handler that records what it hears and rejects every block as invalid."""

    def __init__(self, height: int = 0) -> None:
        self.height = height
        self.messages: list[tuple[bytes, Any]] = []
        self.connected: list[bytes] = []
        self.disconnected: list[tuple[bytes, str]] = []

    def best(self) -> tuple[int, bytes]:
        return self.height, GENESIS

    async def on_message(self, peer: Peer, msg: Any) -> None:
        if isinstance(msg, M.BlockMsg):
            raise Misbehaving("bad-block", "this test rejects every block")
        self.messages.append((peer.node_id, msg))

    async def on_peer_connected(self, peer: Peer) -> None:
        self.connected.append(peer.node_id)

    async def on_peer_disconnected(self, peer: Peer, reason: str) -> None:
        self.disconnected.append((peer.node_id, reason))

    def pings_from(self, nid: bytes) -> list[int]:
        return [m.tx.nonce for n, m in self.messages if n == nid and isinstance(m, M.TxMsg)]


async def until(pred: Callable[[], bool], timeout: float = 3.0, what: str = "condition") -> None:
    for _ in range(int(timeout / 0.01)):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def tx(n: int) -> M.TxMsg:
    return M.TxMsg(Transfer(bytes(32), bytes(20), 1, 1, n, bytes(64)))


@pytest.fixture
async def make_net() -> AsyncIterator[Callable[..., Any]]:
    nets: list[Network] = []

    async def make(genesis: bytes = GENESIS, chain: str = CHAIN, port: int = 0, limits: Limits = FAST,
                   handler: Recorder | None = None, nid: bytes | None = None) -> Network:
        net = Network(CHAIN if chain is None else chain, genesis, nid or node_id(), "127.0.0.1", port,
                      handler or Recorder(), limits=limits)
        await net.start()
        nets.append(net)
        return net

    try:
        yield make
    finally:
        for net in nets:
            await net.stop()


def connected(a: Network, b: Network) -> bool:
    return any(p.node_id == b.node_id for p in a.peers) and any(p.node_id == a.node_id for p in b.peers)


class RawPeer:
    """A hand-driven peer on a plain socket: speaks the protocol only as far as told to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, nid: bytes) -> None:
        self.reader, self.writer, self.node_id = reader, writer, nid
        self.decoder = FrameDecoder()
        self.pending: list[bytes] = []

    @classmethod
    async def open(cls, port: int, nid: bytes | None = None) -> RawPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, nid or node_id())

    def send(self, msg: M.Message) -> None:
        self.writer.write(encode_frame(M.encode_message(msg)))

    def hello(self, genesis: bytes = GENESIS) -> None:
        self.send(M.Hello(M.PROTOCOL_VERSION, CHAIN, genesis, 0, GENESIS, self.node_id, 0, "/raw/"))

    async def recv(self, timeout: float = 2.0) -> M.Message | None:
        """The next message, or None at EOF or reset."""
        async with asyncio.timeout(timeout):
            while not self.pending:
                try:
                    data = await self.reader.read(65536)
                except ConnectionError:
                    return None
                if not data:
                    return None
                self.pending.extend(self.decoder.feed(data))
        return M.decode_message(self.pending.pop(0))

    async def handshake(self) -> None:
        self.hello()
        kinds = [type(await self.recv()).__name__ for _ in range(2)]
        assert kinds == ["Hello", "HelloAck"], kinds
        self.send(M.HelloAck())

    async def closed_by_remote(self, timeout: float = 2.0) -> bool:
        """Read until EOF; True if the other side closed within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while (await self.recv(timeout)) is not None:
                    pass
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.writer.transport.abort()


def last_reason(net: Network, nid: bytes | None = None) -> str | None:
    for rec in reversed(net.recent_disconnects):
        if nid is None or rec["node_id"] == nid.hex():
            return str(rec["reason"])
    return None


# --- honest networks ---------------------------------------------------------------------------


async def test_three_nodes_handshake_broadcast_ping_and_addr(make_net: Callable[..., Any]) -> None:
    a, b, c = await make_net(), await make_net(), await make_net()
    b.connect("127.0.0.1", a.port)
    c.connect("127.0.0.1", a.port)
    c.connect("127.0.0.1", b.port)
    await until(lambda: connected(a, b) and connected(a, c) and connected(b, c), what="a full mesh")
    for net in (a, b, c):
        assert len(net.peers) == 2
    pa = next(p for p in a.peers if p.node_id == b.node_id)
    assert (pa.host, pa.direction, pa.listen_port, pa.best_height) == ("127.0.0.1", "inbound", b.port, 0)
    assert pa.connected_since > 0 and pa.info()["node_id"] == b.node_id.hex()
    assert next(p for p in b.peers if p.node_id == a.node_id).direction == "outbound"

    assert a.broadcast(tx(1)) == 2
    sender = next(p for p in b.peers if p.node_id == c.node_id)
    assert b.broadcast(tx(2), exclude=sender) == 1  # to a only
    hb, hc = b.handler, c.handler
    await until(lambda: hb.pings_from(a.node_id) == [1] and hc.pings_from(a.node_id) == [1], what="broadcast")
    await until(lambda: a.handler.pings_from(b.node_id) == [2], what="relay")
    assert hc.pings_from(b.node_id) == []

    await until(lambda: all(p.ping_rtt is not None for n in (a, b, c) for p in n.peers), what="ping/pong")
    await c.peers[0].send(M.GetAddr())
    target = c.peers[0]
    await until(lambda: any(isinstance(m, M.Addr) for _n, m in hc.messages), what="addr")
    addr = next(m for n, m in hc.messages if isinstance(m, M.Addr) and n == target.node_id)
    other = b if target.node_id == a.node_id else a
    assert M.NetAddr("127.0.0.1", other.port) in addr.addrs
    assert not any(isinstance(m, (M.Ping, M.Pong, M.GetAddr)) for n in (a, b, c) for _i, m in n.handler.messages)


@pytest.mark.parametrize(
    ("genesis", "chain", "reason"),
    [(OTHER_GENESIS, CHAIN, "wrong-genesis"), (GENESIS, "another-chain", "wrong-chain")],
)
async def test_incompatible_peer_refused_and_given_up(
    make_net: Callable[..., Any], genesis: bytes, chain: str, reason: str
) -> None:
    a = await make_net()
    x = await make_net(genesis=genesis, chain=chain)
    target = x.connect("127.0.0.1", a.port)
    await until(lambda: target.state == "gave-up", what="give up")
    assert target.last_error == reason and target.attempts == 1
    await until(lambda: last_reason(a) == reason, what="refusal on the listener")
    assert a.peers == [] and x.peers == []
    assert a.discouraged == [] and x.discouraged == []  # incompatible is not hostile


async def test_a_round_protocol_v1_peer_is_refused_by_version(make_net: Callable[..., Any]) -> None:
    """A peer of protocol version 1 (round protocol v1: its commitments and seals do not decode
    here) is refused at its hello with ``bad-version``, not taken for a hostile peer."""
    a = await make_net()
    old = await RawPeer.open(a.port)
    old.send(M.Hello(1, CHAIN, GENESIS, 0, GENESIS, old.node_id, 0, "/ponas:v1/"))
    assert await old.closed_by_remote()
    await until(lambda: last_reason(a) == "bad-version", what="bad-version")
    assert a.discouraged == [] and M.MIN_PROTOCOL_VERSION == M.PROTOCOL_VERSION == 2
    old.close()


async def test_self_connection_and_simultaneous_dials(make_net: Callable[..., Any]) -> None:
    a, b = await make_net(), await make_net()
    own = a.connect("127.0.0.1", a.port)
    a.connect("127.0.0.1", b.port)
    b.connect("127.0.0.1", a.port)
    await until(lambda: own.state == "gave-up", what="self-connection refused")
    assert own.last_error == "self-connection"
    await until(lambda: connected(a, b), what="one link")
    await asyncio.sleep(0.3)  # several backoff rounds: the duplicate must not flap
    assert len(a.peers) == 1 and len(b.peers) == 1
    # both ends kept the connection dialled by the lower node id
    keeper = a if a.node_id < b.node_id else b
    assert next(iter(keeper.peers)).direction == "outbound"


async def test_slow_handler_is_not_the_peers_silence(make_net: Callable[..., Any]) -> None:
    class Slow(Recorder):
        async def on_message(self, peer: Peer, msg: Any) -> None:
            if isinstance(msg, M.TxMsg) and msg.tx.nonce in (7, 8):
                await asyncio.sleep(0.6)  # twice the silence limit of 3 x 0.1 s
            await super().on_message(peer, msg)

    quick = Limits(ping_interval=0.1, handshake_timeout=1.0, backoff_min=0.05, backoff_max=0.4, stop_grace=0.5)
    a = await make_net(limits=replace(quick, max_recv_buffer=1000), handler=Slow())
    b = await make_net(limits=quick)
    b.connect("127.0.0.1", a.port)
    await until(lambda: connected(a, b), what="link")
    # a's handler is busy, but its reader still answers b's pings: neither side drops the other
    b.broadcast(tx(7))
    await until(lambda: a.handler.pings_from(b.node_id) == [7], what="slow delivery")
    assert connected(a, b) and a.handler.disconnected == [] and b.handler.disconnected == []
    # a's inbox overflows: a stops reading (backpressure) and does not count that as c's silence;
    # c, whose own limit is longer, waits; every message arrives, in order
    c = await make_net(limits=replace(quick, ping_interval=1.0))
    c.connect("127.0.0.1", a.port)
    await until(lambda: connected(a, c), what="second link")
    for n in [8, *range(10, 30)]:
        c.broadcast(tx(n))
    await until(lambda: any(p._paused for p in a.peers), timeout=1.0, what="reading paused")
    await until(lambda: a.handler.pings_from(c.node_id) == [8, *range(10, 30)], what="all, in order")
    assert connected(a, c) and a.handler.disconnected == []


# --- hostile peers -----------------------------------------------------------------------------


async def test_hostile_peers_discouraged_while_honest_keep_talking(make_net: Callable[..., Any]) -> None:
    a, b = await make_net(), await make_net()
    b.connect("127.0.0.1", a.port)
    await until(lambda: connected(a, b), what="honest link")
    rounds = itertools.count(100)

    async def honest_exchange() -> None:
        n = next(rounds)
        a.broadcast(tx(n))
        b.broadcast(tx(n + 1000))
        await until(lambda: n in b.handler.pings_from(a.node_id) and n + 1000 in a.handler.pings_from(b.node_id),
                    what=f"honest exchange {n}, a disconnects: {list(a.recent_disconnects)}")

    async def garbage(p: RawPeer) -> None:
        p.writer.write(encode_frame(b"\xc1\xc1 not msgpack"))

    async def oversized(p: RawPeer) -> None:
        p.writer.write((FAST.max_frame + 1).to_bytes(4, "big"))

    async def flood(p: RawPeer) -> None:
        for i in range(300):  # the limit is 50/s with a burst of 100
            p.send(M.Ping(i))

    async def bad_block(p: RawPeer) -> None:
        p.send(M.BlockMsg(BLOCK, b"", False))

    for attack, reason in [(garbage, "bad-message"), (oversized, "oversized-frame"), (flood, "flood"),
                           (bad_block, "bad-block")]:
        hostile = await RawPeer.open(a.port)
        await hostile.handshake()
        await attack(hostile)
        assert await hostile.closed_by_remote(), f"{reason}: not disconnected"
        hostile.close()
        nid = hostile.node_id
        await until(lambda: any(d.node_id == nid for d in a.discouraged), what=f"{reason} entry")  # noqa: B023
        entry = next(d for d in a.discouraged if d.node_id == hostile.node_id)
        assert entry.reason == reason and entry.host == "127.0.0.1"
        # the same peer comes back: refused at its Hello, no HelloAck
        again = await RawPeer.open(a.port, hostile.node_id)
        again.hello()
        got = [await again.recv(), await again.recv()]
        assert isinstance(got[0], M.Hello) and got[1] is None
        again.close()
        await until(lambda: last_reason(a, nid) == "discouraged", what="refusal")  # noqa: B023
        await honest_exchange()
        assert connected(a, b) and len(a.peers) == 1

    # hit and run: a bad block, then hang up at once; what it sent is still judged
    runner = await RawPeer.open(a.port)
    await runner.handshake()
    runner.send(M.BlockMsg(BLOCK, b"", True))
    runner.writer.close()
    await until(lambda: any(d.node_id == runner.node_id for d in a.discouraged), what="hit and run")
    await honest_exchange()

    assert {d.reason for d in a.discouraged} == {"bad-message", "oversized-frame", "flood", "bad-block"}
    assert len(a.discouraged) == 5
    assert b.node_id not in {d.node_id for d in a.discouraged}


async def test_anonymous_and_silent_peers(make_net: Callable[..., Any]) -> None:
    a = await make_net(limits=Limits(
        handshake_timeout=0.5, ping_interval=0.1, stop_grace=0.5, max_inbound=3, msg_rate=50, msg_burst=100))
    # garbage before any hello: dropped, but a loopback peer without identity cannot be keyed
    http = await RawPeer.open(a.port)
    http.writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # "GET " reads as a 1.2 GB length
    assert await http.closed_by_remote()
    await until(lambda: last_reason(a) == "oversized-frame", what="oversized first frame")
    # first message must be hello
    early = await RawPeer.open(a.port)
    early.send(M.Ping(1))
    assert await early.closed_by_remote()
    await until(lambda: last_reason(a) == "expected-hello", what="expected-hello")
    assert a.discouraged == []
    # says nothing: handshake timeout
    mute = await RawPeer.open(a.port)
    assert await mute.closed_by_remote(timeout=2.0)
    assert last_reason(a) == "handshake-timeout"
    # handshakes, then never answers a ping: keepalive drops it after 3 intervals
    silent = await RawPeer.open(a.port)
    await silent.handshake()
    await until(lambda: len(a.peers) == 1, what="silent peer registered")
    assert await silent.closed_by_remote(timeout=2.0)
    await until(lambda: last_reason(a, silent.node_id) == "ping-timeout", what="ping-timeout")
    assert a.handler.disconnected == [(silent.node_id, "ping-timeout")]
    # inbound slots: a fourth connection is refused at once
    held = [await RawPeer.open(a.port) for _ in range(3)]
    await until(lambda: len(a._conns) == 3, what="three inbound")
    extra = await RawPeer.open(a.port)
    assert await extra.closed_by_remote(timeout=1.0)
    assert last_reason(a) == "too-many-inbound"
    for p in [http, early, mute, silent, extra, *held]:
        p.close()


# --- restart and stop --------------------------------------------------------------------------


async def test_reconnect_with_backoff_after_restart(make_net: Callable[..., Any]) -> None:
    a = await make_net()
    b = await make_net()
    target = b.connect("127.0.0.1", a.port)
    await until(lambda: connected(a, b), what="first link")
    port, old_id = a.port, a.node_id
    await a.stop()
    await until(lambda: b.peers == [] and target.attempts >= 3, what="failed redials")
    assert target.last_error == "connect-failed" and target.state in ("backoff", "dialing")
    a2 = await make_net(port=port)
    await until(lambda: connected(a2, b), what="reconnected", timeout=3.0)
    assert a2.node_id != old_id and target.connects == 2
    assert [r for _n, r in b.handler.disconnected][:1] in (["eof"], ["connection-lost"])


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


async def test_clean_stop_leaves_no_task_or_socket() -> None:
    baseline_tasks = set(asyncio.all_tasks())
    baseline_fds = _open_fds()
    nets = [Network(CHAIN, GENESIS, node_id(), "127.0.0.1", 0, Recorder(), limits=FAST) for _ in range(3)]
    for net in nets:
        await net.start()
    nets[1].connect("127.0.0.1", nets[0].port)
    nets[2].connect("127.0.0.1", nets[0].port)
    with socket.socket() as s:  # a target that refuses: its dial loop sits in backoff
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    nets[2].connect("127.0.0.1", dead_port)
    await until(lambda: len(nets[0].peers) == 2, what="links")
    half = await RawPeer.open(nets[0].port)  # a connection stuck in its handshake
    half.hello()
    await asyncio.sleep(0.05)
    ports = [n.port for n in nets]
    for net in nets:
        await net.stop()
    await net.stop()  # twice is fine
    assert await half.closed_by_remote(timeout=1.0)
    half.close()
    await asyncio.sleep(0)
    assert set(asyncio.all_tasks()) - baseline_tasks == set()
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
    if baseline_fds is not None:
        await until(lambda: _open_fds() == baseline_fds, timeout=1.0, what="sockets closed")
    for net in nets:
        assert net.peers == [] and not net.running


async def test_stop_closes_everything_even_when_grace_fails() -> None:
    class Stubborn(Recorder):
        async def on_message(self, peer: Peer, msg: Any) -> None:
            self.messages.append((peer.node_id, msg))
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                await asyncio.sleep(10)  # ignores the first cancellation: the grace runs out

    baseline_tasks = set(asyncio.all_tasks())
    limits = replace(FAST, stop_grace=0.2)
    a = Network(CHAIN, GENESIS, node_id(), "127.0.0.1", 0, Stubborn(), limits=limits)
    b = Network(CHAIN, GENESIS, node_id(), "127.0.0.1", 0, Recorder(), limits=limits)
    await a.start()
    await b.start()
    b.connect("127.0.0.1", a.port)
    await until(lambda: connected(a, b), what="link")
    b.broadcast(tx(1))
    await until(lambda: len(a.handler.messages) == 1, what="stuck handler")
    async with asyncio.timeout(3):
        await a.stop()
        await b.stop()
    assert set(asyncio.all_tasks()) - baseline_tasks == set()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", a.port))
        s.listen()


async def test_first_frame_limit_host_eviction_and_unasked_answers(make_net: Callable[..., Any]) -> None:
    """Attack 10 of the round-protocol review, each bounded: a stranger's first frame may be
    only ``handshake_max_frame`` bytes (it was 8 MiB, decoded before its type was checked), while
    a handshaken peer's may be large; with every inbound slot taken, the address holding the
    most slots loses its newest connection to another address (one host took all 64); and
    answer-type messages nobody asked for (pongs, headers) are rate-limited too (they skipped
    the message rate)."""
    a = await make_net(limits=Limits(handshake_timeout=1.0, ping_interval=30, stop_grace=0.5, max_inbound=3,
                                     msg_rate=50, msg_burst=100, answer_rate=100, answer_burst=200))
    big = M.TxBatch(tuple(tx(i).tx for i in range(600)))  # about 100 KB
    assert 4096 < len(M.encode_message(big)) < Limits().max_frame
    stranger = await RawPeer.open(a.port)
    stranger.send(big)  # before any hello
    assert await stranger.closed_by_remote()
    await until(lambda: last_reason(a) == "oversized-frame", what="a large first frame refused")
    friend = await RawPeer.open(a.port)
    await friend.handshake()
    friend.send(big)  # after the handshake: max_frame applies
    await until(lambda: any(isinstance(m, M.TxBatch) for _, m in a.handler.messages), what="a large batch")
    # unasked answers: a burst of 200, then refused as a flood
    for i in range(400):
        friend.send(M.Pong(i))
    assert await friend.closed_by_remote()
    await until(lambda: last_reason(a, friend.node_id) == "flood", what="an answer flood")

    async def from_host(host: str) -> RawPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", a.port, local_addr=(host, 0))
        return RawPeer(reader, writer, node_id())

    held = [await RawPeer.open(a.port) for _ in range(3)]  # one host takes every slot
    for p in held:
        await p.handshake()
    await until(lambda: len(a._conns) == 3, what="three inbound from 127.0.0.1")
    second = await from_host("127.0.0.2")  # another address: 127.0.0.1's newest makes room
    await second.handshake()
    assert await held[-1].closed_by_remote(timeout=1.0)
    await until(lambda: last_reason(a) == "evicted", what="the crowded host's newest evicted")
    third = await from_host("127.0.0.3")  # 127.0.0.1 still holds two: one more goes
    await third.handshake()
    assert await held[-2].closed_by_remote(timeout=1.0)
    fourth = await from_host("127.0.0.4")  # one slot each now: refused
    assert await fourth.closed_by_remote(timeout=1.0)
    await until(lambda: last_reason(a) == "too-many-inbound", what="no more room")
    assert not await held[0].closed_by_remote(timeout=0.3)
    for p in [stranger, friend, second, third, fourth, *held]:
        p.close()
