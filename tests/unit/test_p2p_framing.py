"""The sans-I/O half of P2P, without an event loop.

It proves that:
* frames survive any chunking of the byte stream (hypothesis), several per chunk or one byte at
  a time, and partial data is kept until complete;
* a declared length over ``max_frame`` is rejected from its 4 header bytes alone, before any
  payload is buffered, and an empty frame is rejected; a broken stream stays broken;
* every message type round trips through the envelope, byte for byte;
* arbitrary bytes, arbitrary msgpack values and mutated valid messages decode to a message or
  raise ``ProtocolError`` - never another exception (hypothesis fuzz);
* the wire limits (2,000 headers, 101 locator hashes, 16 blocks, 1,000 addrs, ...) are enforced on
  decode with their own reasons, and constructors refuse to build what a peer would reject;
* the flood bucket and the discouragement table follow the injected clock, and discouragement
  keys a public address by IP and a loopback one by (IP, node id).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.chain import genesis_block
from consensus.encoding import encode
from consensus.types import Commitment, RevealEntry, RevealSet, RoundClose
from p2p import messages as M
from p2p.discouragement import Discouragement, discouragement_key, is_loopback
from p2p.errors import ConnectionClosed, Misbehaving, P2PError, PeerFault, ProtocolError
from p2p.framing import HEADER_SIZE, MAX_FRAME, FrameDecoder, encode_frame
from p2p.ratelimit import TokenBucket
from tests.builders import keys, make_params, transfer

K = keys(2, seed=7)
PARAMS = make_params(K)
GENESIS = genesis_block(PARAMS)
H = bytes(range(32))


# --- framing -----------------------------------------------------------------------------------


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points + [len(data)]:
        out.append(data[last:p])
        last = p
    return out


@given(
    st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=12),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
)
def test_frames_round_trip_under_any_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder(max_frame=300)
    got: list[bytes] = []
    for chunk in _chunks(stream, cuts):
        got.extend(decoder.feed(chunk))
    assert got == payloads
    assert decoder.buffered == 0


def test_partial_frame_is_kept_byte_by_byte() -> None:
    frame = encode_frame(b"abcdef")
    decoder = FrameDecoder()
    for byte in frame[:-1]:
        assert decoder.feed(bytes([byte])) == []
    assert decoder.buffered == len(frame) - 1
    assert decoder.feed(frame[-1:]) == [b"abcdef"]
    assert decoder.buffered == 0


def test_frame_of_exactly_max_frame_is_accepted() -> None:
    decoder = FrameDecoder(max_frame=1000)
    assert decoder.feed(encode_frame(b"x" * 1000)) == [b"x" * 1000]


def test_oversized_frame_rejected_from_its_header_before_buffering() -> None:
    decoder = FrameDecoder(max_frame=1000)
    with pytest.raises(ProtocolError) as err:
        decoder.feed((1001).to_bytes(HEADER_SIZE, "big"))  # the header alone, no payload yet
    assert err.value.reason == "oversized-frame"
    assert decoder.buffered == 0
    with pytest.raises(ProtocolError):  # the stream stays broken
        decoder.feed(b"more")


def test_default_max_frame_and_a_four_gib_claim() -> None:
    assert MAX_FRAME == 8 * 1024 * 1024
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="oversized-frame"):
        decoder.feed(encode_frame(b"ok") + b"\xff\xff\xff\xff")


def test_empty_frame_rejected() -> None:
    with pytest.raises(ProtocolError) as err:
        FrameDecoder().feed(b"\x00\x00\x00\x00")
    assert err.value.reason == "empty-frame"
    with pytest.raises(ValueError):
        encode_frame(b"")


# --- messages ----------------------------------------------------------------------------------


def _every_message() -> list[M.Message]:
    tx = transfer(PARAMS, K[0], K[1].address, 5, 0)
    commitment = Commitment(3, H, H, H, 0, K[0].public_key, bytes(64))
    close = RoundClose(3, H, H, H, H, 1, 0, 1_700_000_000, K[0].public_key, bytes(64))
    return [
        M.Hello(M.PROTOCOL_VERSION, PARAMS.chain_id, GENESIS.block_hash, 7, H, bytes(16), 8333, "/ponas:test/"),
        M.Hello(M.PROTOCOL_VERSION, "other", H, 0, H, bytes(32), 0, ""),
        M.HelloAck(),
        M.Ping(2**64 - 1),
        M.Pong(0),
        M.TxMsg(tx),
        M.TxBatch((tx, tx)),
        M.TxBatch(()),
        M.CommitmentMsg(commitment),
        M.CloseMsg(close, (commitment,)),
        M.CloseMsg(close),
        M.RevealSetMsg(RevealSet(3, H, (RevealEntry(H, 170, 0), RevealEntry(H, 0, 2)), 1_700_000_030, K[0].public_key,
                                 bytes(64))),
        M.RevealSetMsg(RevealSet(3, H, (), 1_700_000_030, K[0].public_key, bytes(64))),
        M.BlockMsg(GENESIS, b"\x00weights", True),
        M.BlockMsg(GENESIS, b"", False),
        M.GetHeaders((GENESIS.block_hash,) * M.MAX_LOCATOR, bytes(32)),
        M.Headers((GENESIS.header,) * 3),
        M.Headers(()),
        M.GetBlocks((H,) * M.MAX_GETBLOCKS),
        M.GetAddr(),
        M.Addr((M.NetAddr("127.0.0.1", 8333), M.NetAddr("node-1.example", 1))),
        M.NotFound((H, bytes(32))),
    ]


@pytest.mark.parametrize("msg", _every_message(), ids=lambda m: m.KIND)
def test_every_message_round_trips(msg: M.Message) -> None:
    payload = M.encode_message(msg)
    back = M.decode_message(payload)
    assert back == msg and type(back) is type(msg)
    assert M.encode_message(back) == payload


def test_every_kind_is_covered() -> None:
    assert {m.KIND for m in _every_message()} == set(M.MESSAGE_TYPES)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (["hello"], "bad-message"),
        ("ping", "bad-message"),
        ([1, [5]], "bad-message"),
        (["version", []], "unknown-message"),
        (["ping", [-1]], "bad-message"),
        (["ping", [True]], "bad-message"),
        (["ping", [1, 2]], "bad-message"),
        (["getblocks", [[b"short"]]], "bad-message"),
        (["hello", [1, "c", H, 0, H, bytes(20), 0, ""]], "bad-message"),  # node id of 20 bytes
        (["headers", [[GENESIS.header.to_value()] * (M.MAX_HEADERS + 1)]], "too-many-headers"),
        (["getheaders", [[H] * (M.MAX_LOCATOR + 1), H]], "too-many-locator-hashes"),
        (["getblocks", [[H] * (M.MAX_GETBLOCKS + 1)]], "too-many-blocks"),
        (["addr", [[["h", 1]] * (M.MAX_ADDRS + 1)]], "too-many-addrs"),
        (["notfound", [[H] * (M.MAX_NOTFOUND + 1)]], "too-many-hashes"),
        (["txs", [[[1]] * (M.MAX_TX_BATCH + 1)]], "too-many-txs"),
        (["reveals", [[3, H, [[H, 170, 0]] * (M.MAX_CLOSE_COMMITMENTS + 1), 1_700_000_030, bytes(32), bytes(64)]]],
         "too-many-entries"),
    ],
)
def test_bad_envelopes_and_limits(value: object, reason: str) -> None:
    with pytest.raises(ProtocolError) as err:
        M.decode_message(encode(value))  # type: ignore[arg-type]
    assert err.value.reason == reason


def test_bad_message_keeps_the_decode_reason() -> None:
    payload = M.encode_message(M.Ping(1))
    with pytest.raises(ProtocolError) as err:
        M.decode_message(payload + b"\x00")
    assert err.value.reason == "bad-message" and "trailing-bytes" in err.value.detail
    with pytest.raises(ProtocolError) as err:
        M.decode_message(b"\x92\xa4ping\x91\xcc\x01")  # 1 as uint8: valid msgpack, not canonical
    assert "non-canonical" in err.value.detail


def test_oversized_message_and_constructor_limits() -> None:
    payload = M.encode_message(M.BlockMsg(GENESIS, b"w" * 2000, False))
    with pytest.raises(ProtocolError, match="oversized-message"):
        M.decode_message(payload, max_size=1000)
    with pytest.raises(ValueError):
        M.Headers((GENESIS.header,) * (M.MAX_HEADERS + 1))
    with pytest.raises(ValueError):
        M.GetBlocks((H,) * (M.MAX_GETBLOCKS + 1))
    with pytest.raises(ValueError):
        M.Hello(1, "c", H, 0, H, bytes(8), 0, "")
    with pytest.raises(ValueError):
        M.NetAddr("h", 70000)


def _check_decodes_or_protocol_error(payload: bytes) -> None:
    try:
        msg = M.decode_message(payload)
    except ProtocolError as exc:
        assert exc.reason and isinstance(exc.reason, str)
        return
    assert M.encode_message(msg) == payload  # whatever decodes is canonical


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_garbage_bytes(payload: bytes) -> None:
    _check_decodes_or_protocol_error(payload)


_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.binary(max_size=40)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=30,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(M.MESSAGE_TYPES) + ["nope", ""]), _values)
def test_fuzz_envelopes_with_known_kinds(kind: str, body: object) -> None:
    _check_decodes_or_protocol_error(encode([kind, body]))  # type: ignore[list-item]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_every_message()), st.data())
def test_fuzz_mutated_valid_messages(msg: M.Message, data: st.DataObject) -> None:
    payload = bytearray(M.encode_message(msg))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        i = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
        payload[i] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=1, max_value=len(payload)))
    _check_decodes_or_protocol_error(bytes(payload[:cut]))


@settings(max_examples=200)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=64))
def test_fuzz_stream_through_decoder(stream: bytes, step: int) -> None:
    """A hostile byte stream fed through framing then messages: only ProtocolError."""
    decoder = FrameDecoder(max_frame=256)
    try:
        for i in range(0, len(stream), step):
            for payload in decoder.feed(stream[i : i + step]):
                _check_decodes_or_protocol_error(payload)
    except ProtocolError:
        pass


# --- error tree --------------------------------------------------------------------------------


def test_error_tree() -> None:
    assert issubclass(ProtocolError, PeerFault) and issubclass(Misbehaving, PeerFault)
    assert issubclass(ConnectionClosed, ConnectionError) and issubclass(ConnectionClosed, P2PError)
    err = Misbehaving("bad-block", "score mismatch")
    assert (err.reason, err.detail, str(err)) == ("bad-block", "score mismatch", "bad-block: score mismatch")


# --- flood bucket and discouragement -----------------------------------------------------------


@dataclass
class FakeClock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_bursts_then_refills_with_the_clock() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=20, clock=clock)
    assert all(bucket.take() for _ in range(20))
    assert not bucket.take()
    clock.now += 0.5  # five tokens back
    assert sum(bucket.take() for _ in range(10)) == 5
    clock.now += 100
    assert bucket.tokens <= 20 and bucket.take(20) and not bucket.take(1)


def test_discouragement_keys_public_ips_by_address() -> None:
    clock = FakeClock()
    table = Discouragement(duration=600, clock=clock)
    entry = table.discourage("203.0.113.5", b"\x01" * 16, "bad-block", "invalid score")
    assert entry is not None and entry.node_id is None
    assert table.is_discouraged("203.0.113.5", b"\x02" * 16)  # a fresh node id does not help
    assert table.refuses_connection_from("203.0.113.5")
    assert table.refuses_connection_from("::ffff:203.0.113.5")  # IPv4-mapped is the same address
    assert not table.refuses_connection_from("203.0.113.6")
    clock.now += 599
    assert table.refuses_connection_from("203.0.113.5")
    clock.now += 2
    assert not table.refuses_connection_from("203.0.113.5") and len(table) == 0


def test_discouragement_keys_loopback_by_node_id() -> None:
    clock = FakeClock()
    table = Discouragement(duration=60, clock=clock)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.8.9.10")
    bad, good = b"\xbb" * 16, b"\x99" * 16
    assert table.discourage("127.0.0.1", bad, "flood") is not None
    assert table.is_discouraged("127.0.0.1", bad)
    assert not table.is_discouraged("127.0.0.1", good)  # the other local nodes are unaffected
    assert not table.refuses_connection_from("127.0.0.1")  # checked at the Hello, not at accept
    assert table.discourage("127.0.0.1", None, "bad-message") is None  # no identity: not keyed
    assert discouragement_key("127.0.0.1", None) is None
    assert [e.reason for e in table.entries()] == ["flood"]
    assert table.entries()[0].to_json(clock.now)["node_id"] == bad.hex()


def test_discouragement_table_is_bounded() -> None:
    table = Discouragement(duration=60, clock=FakeClock(), max_entries=3)
    for i in range(5):
        table.discourage(f"198.51.100.{i}", None, "flood")
    assert len(table) == 3
    assert not table.is_discouraged("198.51.100.0") and table.is_discouraged("198.51.100.4")

