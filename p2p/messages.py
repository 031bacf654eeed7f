"""Wire messages and their envelope, sans I/O.

Every message is a frozen, slotted :class:`~consensus.codec.Codec` dataclass; the objects it
carries (blocks, transfers, commitments, closes) keep their own consensus encoding inside it.
The envelope is separate from the objects (Bitcoin's message header, our ``kind``): a frame's
payload is the canonical encoding of ``[kind, body]`` where ``kind`` is the message's short
name and ``body`` its codec value. Decoding is strict (the consensus decoder rejects trailing
bytes and non-canonical forms) and fails only with :class:`~p2p.errors.ProtocolError`:

* ``oversized-message`` - the payload is longer than allowed;
* ``bad-message`` - not a ``[str, body]`` envelope, or a body that does not decode (the
  consensus ``DecodeError`` reason is kept in ``detail``);
* ``unknown-message`` - a ``kind`` we do not know;
* a limit: ``too-many-headers`` (2,000), ``too-many-locator-hashes`` (101),
  ``too-many-blocks`` (16 asked at once), ``too-many-addrs`` (1,000), ``too-many-hashes``
  (1,000 in a ``notfound``), ``too-many-txs`` (1,000 in a ``txs`` batch), ``too-many-commitments`` (in a close), ``too-many-entries`` (in a reveal set). Limits are checked on the raw
  value before the body is decoded, and again by the constructors, so we cannot build what a
  peer would reject. The counts are Bitcoin Core's where it has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from consensus.codec import Codec
from consensus.encoding import decode, encode_checked
from consensus.errors import DecodeError
from consensus.types import MAX_TEXT, Block, Commitment, Hash32, Header, RevealSet, RoundClose, Transfer
from p2p.errors import ProtocolError
from p2p.framing import MAX_FRAME

#: 2: round protocol v2 (a commitment hides its header behind a salted digest; a block's seal
#: carries the salt), so a version-1 peer's commitments and blocks do not decode here.
PROTOCOL_VERSION = 2
#: The oldest version we talk to.
MIN_PROTOCOL_VERSION = 2

MAX_LOCATOR = 101
MAX_HEADERS = 2_000
MAX_GETBLOCKS = 16
MAX_ADDRS = 1_000
MAX_NOTFOUND = 1_000
MAX_TX_BATCH = 1_000
MAX_CLOSE_COMMITMENTS = 10_000
MAX_HOST = 255
NODE_ID_SIZES = (16, 32)


class _Limit(ValueError):
    """A constructor's count check; the codec turns it into ``DecodeError(reason)``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _at_most(reason: str, items: tuple[Any, ...], limit: int) -> None:
    if len(items) > limit:
        raise _Limit(reason, f"{len(items)} > {limit}")


def _range(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name} out of range: {value}")


@dataclass(frozen=True, slots=True)
class Hello(Codec):
    """The first message both sides send. ``node_id`` is a random per-process id (16 or 32
    bytes) that detects self-connections and duplicates and, on loopback, identifies the peer
    for discouragement; ``listen_port`` is 0 for a node that does not listen."""

    KIND: ClassVar[str] = "hello"
    version: int
    chain_id: str
    genesis: Hash32
    best_height: int
    best_hash: Hash32
    node_id: bytes
    listen_port: int
    user_agent: str

    def __post_init__(self) -> None:
        _range("version", self.version, 0, 2**32 - 1)
        _range("best_height", self.best_height, 0, 2**63 - 1)
        _range("listen_port", self.listen_port, 0, 65535)
        if len(self.node_id) not in NODE_ID_SIZES:
            raise ValueError(f"node_id is 16 or 32 bytes, not {len(self.node_id)}")
        if len(self.chain_id) > MAX_TEXT or len(self.user_agent) > MAX_TEXT:
            raise ValueError("text field too long")


@dataclass(frozen=True, slots=True)
class HelloAck(Codec):
    """"Your hello is acceptable": the handshake is done once both sides got one."""

    KIND: ClassVar[str] = "hello-ack"


@dataclass(frozen=True, slots=True)
class Ping(Codec):
    KIND: ClassVar[str] = "ping"
    nonce: int

    def __post_init__(self) -> None:
        _range("nonce", self.nonce, 0, 2**64 - 1)


@dataclass(frozen=True, slots=True)
class Pong(Codec):
    KIND: ClassVar[str] = "pong"
    nonce: int

    def __post_init__(self) -> None:
        _range("nonce", self.nonce, 0, 2**64 - 1)


@dataclass(frozen=True, slots=True)
class TxMsg(Codec):
    KIND: ClassVar[str] = "tx"
    tx: Transfer


@dataclass(frozen=True, slots=True)
class TxBatch(Codec):
    """Several transfers in one message: how a node relays a burst (one message, not one per
    transfer, so a busy node stays inside its peers' message-rate limits)."""

    KIND: ClassVar[str] = "txs"
    txs: tuple[Transfer, ...]

    def __post_init__(self) -> None:
        _at_most("too-many-txs", self.txs, MAX_TX_BATCH)


@dataclass(frozen=True, slots=True)
class CommitmentMsg(Codec):
    KIND: ClassVar[str] = "commitment"
    commitment: Commitment


@dataclass(frozen=True, slots=True)
class CloseMsg(Codec):
    """A round's close with the commitments it admitted, in the close's order (a node needs
    them to check membership proofs and the tie-break order)."""

    KIND: ClassVar[str] = "close"
    close: RoundClose
    commitments: tuple[Commitment, ...] = ()

    def __post_init__(self) -> None:
        _at_most("too-many-commitments", self.commitments, MAX_CLOSE_COMMITMENTS)


@dataclass(frozen=True, slots=True)
class RevealSetMsg(Codec):
    """The closer's signed reveal set of a round: which candidates count (round protocol v2).
    At most one entry per commitment of its close."""

    KIND: ClassVar[str] = "reveals"
    reveal_set: RevealSet

    def __post_init__(self) -> None:
        _at_most("too-many-entries", self.reveal_set.entries, MAX_CLOSE_COMMITMENTS)


@dataclass(frozen=True, slots=True)
class BlockMsg(Codec):
    """A block and its model weights (empty for ``pow`` chains). ``candidate``: a candidate of
    the current round's reveal; otherwise a relayed or synced block."""

    KIND: ClassVar[str] = "block"
    block: Block
    weights: bytes
    candidate: bool


@dataclass(frozen=True, slots=True)
class GetHeaders(Codec):
    """Headers after the first ``locator`` hash we share, up to ``stop`` (zero: as many as
    allowed)."""

    KIND: ClassVar[str] = "getheaders"
    locator: tuple[Hash32, ...]
    stop: Hash32

    def __post_init__(self) -> None:
        _at_most("too-many-locator-hashes", self.locator, MAX_LOCATOR)


@dataclass(frozen=True, slots=True)
class Headers(Codec):
    KIND: ClassVar[str] = "headers"
    headers: tuple[Header, ...]

    def __post_init__(self) -> None:
        _at_most("too-many-headers", self.headers, MAX_HEADERS)


@dataclass(frozen=True, slots=True)
class GetBlocks(Codec):
    """Blocks by hash, at most 16 at once (Bitcoin's blocks in flight per peer)."""

    KIND: ClassVar[str] = "getblocks"
    hashes: tuple[Hash32, ...]

    def __post_init__(self) -> None:
        _at_most("too-many-blocks", self.hashes, MAX_GETBLOCKS)


@dataclass(frozen=True, slots=True)
class GetAddr(Codec):
    KIND: ClassVar[str] = "getaddr"


@dataclass(frozen=True, slots=True)
class NetAddr(Codec):
    """A listening address: ``host`` (an IP or a name) and ``port``."""

    host: str
    port: int

    def __post_init__(self) -> None:
        _range("port", self.port, 1, 65535)
        if not 0 < len(self.host) <= MAX_HOST:
            raise ValueError("host is 1 to 255 characters")


@dataclass(frozen=True, slots=True)
class Addr(Codec):
    KIND: ClassVar[str] = "addr"
    addrs: tuple[NetAddr, ...]

    def __post_init__(self) -> None:
        _at_most("too-many-addrs", self.addrs, MAX_ADDRS)


@dataclass(frozen=True, slots=True)
class NotFound(Codec):
    """The asked hashes we do not have."""

    KIND: ClassVar[str] = "notfound"
    hashes: tuple[Hash32, ...]

    def __post_init__(self) -> None:
        _at_most("too-many-hashes", self.hashes, MAX_NOTFOUND)


Message = (
    Hello | HelloAck | Ping | Pong | TxMsg | TxBatch | CommitmentMsg | CloseMsg | RevealSetMsg | BlockMsg | GetHeaders
    | Headers | GetBlocks | GetAddr | Addr | NotFound
)

MESSAGE_TYPES: dict[str, type[Any]] = {
    cls.KIND: cls
    for cls in (
        Hello, HelloAck, Ping, Pong, TxMsg, TxBatch, CommitmentMsg, CloseMsg, RevealSetMsg, BlockMsg, GetHeaders, Headers,
        GetBlocks, GetAddr, Addr, NotFound,
    )
}

#: kind -> (index of the list field in the body, its limit, the reason): checked before decoding.
#: Lists checked against their limit before the body is decoded (a peer cannot make us decode
#: 10,000 entries to learn that 10,001 are too many): kind -> (path to the list inside the
#: body, limit, reason).
_RAW_LIMITS: dict[str, tuple[tuple[int, ...], int, str]] = {
    "close": ((1,), MAX_CLOSE_COMMITMENTS, "too-many-commitments"),
    "reveals": ((0, 2), MAX_CLOSE_COMMITMENTS, "too-many-entries"),
    "getheaders": ((0,), MAX_LOCATOR, "too-many-locator-hashes"),
    "headers": ((0,), MAX_HEADERS, "too-many-headers"),
    "getblocks": ((0,), MAX_GETBLOCKS, "too-many-blocks"),
    "addr": ((0,), MAX_ADDRS, "too-many-addrs"),
    "notfound": ((0,), MAX_NOTFOUND, "too-many-hashes"),
    "txs": ((0,), MAX_TX_BATCH, "too-many-txs"),
}
LIMIT_REASONS = frozenset(reason for _p, _n, reason in _RAW_LIMITS.values())


def _raw_list(body: object, path: tuple[int, ...]) -> object:
    """The value at ``path`` inside a raw (decoded but not yet typed) body, or None."""
    for i in path:
        if not isinstance(body, list) or len(body) <= i:
            return None
        body = body[i]
    return body


def encode_message(msg: Message) -> bytes:
    """The frame payload for ``msg``: the canonical encoding of ``[kind, body]``."""
    return encode_checked([msg.KIND, msg.to_value()])


def decode_message(payload: bytes, max_size: int = MAX_FRAME) -> Message:
    """Parse one frame payload. Raises only :class:`ProtocolError` (reasons in the module
    docstring)."""
    if len(payload) > max_size:
        raise ProtocolError("oversized-message", f"{len(payload)} > {max_size} bytes")
    try:
        value = decode(payload, max_size)
    except DecodeError as exc:
        raise ProtocolError("bad-message", f"{exc.reason}: {exc.detail}") from None
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str):
        raise ProtocolError("bad-message", "not a [kind, body] envelope")
    kind, body = value
    cls = MESSAGE_TYPES.get(kind)
    if cls is None:
        raise ProtocolError("unknown-message", repr(kind[:32]))
    limit = _RAW_LIMITS.get(kind)
    if limit is not None:
        items = _raw_list(body, limit[0])
        if isinstance(items, list) and len(items) > limit[1]:
            raise ProtocolError(limit[2], f"{kind}: {len(items)} > {limit[1]}")
    try:
        return cls.from_value(body)  # type: ignore[no-any-return]
    except DecodeError as exc:
        if exc.reason in LIMIT_REASONS:
            raise ProtocolError(exc.reason, exc.detail) from None
        raise ProtocolError("bad-message", f"{kind}: {exc.reason}: {exc.detail}") from None
    except RecursionError:
        raise ProtocolError("bad-message", f"{kind}: nested too deep") from None


__all__ = [
    "PROTOCOL_VERSION", "MIN_PROTOCOL_VERSION", "MAX_LOCATOR", "MAX_HEADERS", "MAX_GETBLOCKS", "MAX_ADDRS",
    "MAX_NOTFOUND", "MAX_CLOSE_COMMITMENTS", "Hello", "HelloAck", "Ping", "Pong", "TxMsg", "TxBatch", "CommitmentMsg",
    "CloseMsg", "RevealSetMsg", "BlockMsg", "GetHeaders", "Headers", "GetBlocks", "GetAddr", "NetAddr", "Addr", "NotFound",
    "Message", "MESSAGE_TYPES", "encode_message", "decode_message",
]
