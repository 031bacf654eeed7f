"""The decoders ``fuzz_decode.py`` fuzzes: for each one, the function that feeds it bytes,
the exceptions it is allowed to raise on bad input, and seed inputs built from real objects.

Everything here is plain Python (no atheris), so a reproducer replays with
``fuzz_decode.py --replay FILE --decoder NAME`` and a test could import the targets. Project
modules are imported inside the functions, so that the fuzz worker imports them under
atheris's coverage instrumentation.

A target raising anything outside its ``allowed`` tuple is a crash: in production that
exception escapes the decoder's callers (a P2P connection task, a pool session, an API
handler answering 500).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]
    about: str


# --- real objects to seed with ---------------------------------------------------------------


class _Objects:
    """Valid objects of every kind, built once with the test builders (no training: the
    ``ponas`` candidate declares a made-up weights hash, which decoding never checks)."""

    _cache: _Objects | None = None

    def __init__(self) -> None:
        from consensus.chain import block_template, genesis_block
        from consensus.state import genesis_accounts
        from consensus.types import Payout
        from tests.builders import keys, make_params, pow_block, transfer
        from tests.ponas_builders import GENOTYPES, Entry, close_round, ponas_params, reveal

        k = keys(3, seed=21)
        self.keys = k
        self.params = make_params(k)
        genesis = genesis_block(self.params)
        accounts = genesis_accounts(self.params)
        self.txs = [transfer(self.params, k[0], k[1].address, 5_000 + i, i) for i in range(3)]
        self.genesis = genesis
        self.pow_block = pow_block(self.params, genesis.header, accounts, k[2].address, self.txs)
        pp = ponas_params(k)
        pgen = genesis_block(pp)
        paccounts = genesis_accounts(pp)
        entries = []
        for i, key in enumerate(k[:2]):
            block = block_template(
                pgen.header, paccounts, pp, timestamp=pgen.header.timestamp + 20, payouts=[Payout(key.address, 0)],
                genotype=GENOTYPES[i], weights_hash=bytes([i + 1]) * 32, seed=i,
            )
            entries.append(Entry(key, block, b""))
        self.close, self.commitments = close_round(pp, pgen.header, entries)
        self.ponas_block = reveal(entries[0], self.close, self.commitments, score=7)
        self.ponas_params = pp
        self.genotypes = GENOTYPES

    @classmethod
    def get(cls) -> _Objects:
        if cls._cache is None:
            cls._cache = cls()
        return cls._cache

    def codec_objects(self) -> list[Any]:
        b, pb = self.pow_block, self.ponas_block
        assert pb.proof is not None
        return [b, pb, self.genesis, b.header, pb.header, b.coinbase, *b.coinbase.payouts, *self.txs,
                *self.commitments, self.close, pb.proof]

    def messages(self) -> list[Any]:
        from p2p import messages as m

        b, pb = self.pow_block, self.ponas_block
        return [
            m.Hello(1, self.params.chain_id, self.genesis.block_hash, 1, b.block_hash, bytes(range(16)), 8333, "ponas/0.1"),
            m.HelloAck(), m.Ping(7), m.Pong(2**64 - 1), m.TxMsg(self.txs[0]), m.TxBatch(tuple(self.txs)),
            m.CommitmentMsg(self.commitments[0]), m.CloseMsg(self.close, tuple(self.commitments)),
            m.BlockMsg(b, b"", False), m.BlockMsg(pb, b"\x00" * 16, True),
            m.GetHeaders((b.block_hash, self.genesis.block_hash), bytes(32)), m.Headers((self.genesis.header, b.header)),
            m.GetBlocks((b.block_hash,)), m.GetAddr(), m.Addr((m.NetAddr("127.0.0.1", 8333), m.NetAddr("node.example", 1))),
            m.NotFound((b.block_hash, pb.block_hash)),
        ]


def _nested(open_: bytes, close: bytes, depth: int = 5_000) -> bytes:
    """A hostile seed: nesting far deeper than any valid input (the API's old 500)."""
    return open_ * depth + close * depth


# --- consensus ------------------------------------------------------------------------------


def _encoding_target() -> Target:
    from consensus.encoding import decode
    from consensus.errors import ConsensusError

    def seeds() -> list[bytes]:
        return [o.encode() for o in _Objects.get().codec_objects()] + [b"\xc0", b"\x91" * 40 + b"\xc0", b"\xdc\xff\xff"]

    return Target("encoding", lambda data: decode(data) and None, (ConsensusError,), seeds,
                  "consensus.encoding.decode: the canonical msgpack subset")


def _codec_targets() -> list[Target]:
    from consensus import types as t
    from consensus.errors import ConsensusError

    def make(cls: type[Any]) -> Target:
        def seeds() -> list[bytes]:
            objs = _Objects.get().codec_objects()
            own = [o.encode() for o in objs if type(o) is cls]
            return own + [o.encode() for o in objs if type(o) is not cls][:3]

        return Target(f"type-{cls.__name__}", lambda data: cls.decode(data) and None, (ConsensusError,), seeds,
                      f"consensus.types.{cls.__name__}.decode")

    classes = [t.Block, t.Header, t.Transfer, t.Commitment, t.RoundClose, t.RoundSeal, t.Coinbase, t.Payout]
    return [make(c) for c in classes]


def _weights_target() -> Target:
    from consensus.engines.ponas.weights import WeightsError, load_weights

    def genotype() -> str:
        # The smallest model of the test genotypes (pooling only: 18 kB of weights), so that
        # libFuzzer's inputs stay small; the second genotype's weights seed the shape checks.
        return _Objects.get().genotypes[2]

    def seeds() -> list[bytes]:
        from consensus.engines.ponas.model import build_model
        from consensus.engines.ponas.weights import serialize_weights

        objs = _Objects.get()
        return [serialize_weights(build_model("nb201", g)) for g in objs.genotypes[1:]] + [b"\x08" + bytes(7) + b"{}"]

    def run(data: bytes) -> None:
        load_weights(data, "nb201", genotype())

    return Target("weights", run, (WeightsError,), seeds,
                  "consensus.engines.ponas.weights.load_weights (space nb201, the third test genotype)")


# --- p2p ------------------------------------------------------------------------------------


def _frame_target() -> Target:
    from p2p.errors import ProtocolError
    from p2p.framing import FrameDecoder, encode_frame
    from p2p.messages import decode_message, encode_message

    def run(data: bytes) -> None:
        # The first byte picks the chunk size the stream arrives in; every payload is then a message.
        if not data:
            return
        step = data[0] % 31 + 1
        decoder = FrameDecoder(max_frame=1 << 16)
        body = data[1:]
        for i in range(0, len(body), step):
            for payload in decoder.feed(body[i : i + step]):
                decode_message(payload, 1 << 16)

    def seeds() -> list[bytes]:
        msgs = _Objects.get().messages()
        stream = b"".join(encode_frame(encode_message(m)) for m in msgs[:8])
        return [bytes([n]) + stream for n in (0, 3, 30)] + [b"\x01" + bytes(4) + b"\x01", b"\x02\xff\xff\xff\xff"]

    return Target("p2p-frame", run, (ProtocolError,), seeds,
                  "p2p.framing.FrameDecoder.feed in chunks, each payload through decode_message")


def _message_targets() -> list[Target]:
    from consensus.encoding import encode_checked
    from p2p.errors import ProtocolError
    from p2p.messages import MESSAGE_TYPES, decode_message, encode_message

    def envelope_seeds() -> list[bytes]:
        return [encode_message(m) for m in _Objects.get().messages()] + [_nested(b"\x91", b"", 3_000) + b"\xc0"]

    targets = [Target("p2p-message", lambda data: decode_message(data) and None, (ProtocolError,), envelope_seeds,
                      "p2p.messages.decode_message: the [kind, body] envelope, every kind")]

    def make(kind: str) -> Target:
        prefix = b"\x92" + encode_checked(kind)  # [kind, <the fuzzed body>]

        def seeds() -> list[bytes]:
            return [encode_checked(m.to_value()) for m in _Objects.get().messages() if m.KIND == kind] or [b"\x90"]

        return Target(f"p2p-msg-{kind}", lambda data: decode_message(prefix + data) and None, (ProtocolError,), seeds,
                      f"p2p.messages.decode_message of a '{kind}' envelope around the fuzzed body")

    return targets + [make(kind) for kind in MESSAGE_TYPES]


# --- pool -----------------------------------------------------------------------------------


def _pool_target() -> Target:
    from pool import protocol as p

    nonce = bytes(32)
    chain_id = "ponas-test"

    def run(data: bytes) -> None:
        msg = p.decode(data)
        for parse in (lambda d: p.parse_hello(d, chain_id, nonce, bytes(32)), p.parse_share, p.parse_heartbeat, p.parse_weights):
            try:
                parse(msg)
            except p.ProtocolError:
                pass

    def seeds() -> list[bytes]:
        key = _Objects.get().keys[0]
        texts = [
            p.make_hello(key, chain_id, nonce, "rig-1", 2.5, pool=bytes(32)),
            p.encode("share", id=1, job=3, genotype="|none~0|", seed=9, validation=80, weights_hash="ab" * 32, seconds=1.5),
            p.encode("heartbeat", job=3, trainings=12, throughput=0.25),
            p.encode("weights", id=1, weights=base64.b64encode(b"\x00" * 24).decode()),
        ]
        return [t.encode() for t in texts] + [_nested(b"[", b"]"), _nested(b'{"a":', b"}")]

    return Target("pool-protocol", run, (p.ProtocolError,), seeds,
                  "pool.protocol.decode, then parse_hello, parse_share, parse_heartbeat, parse_weights on it")


# --- node API -------------------------------------------------------------------------------


class _Content:
    """The body as a stream (``request.content``), in chunks, as the API reads it."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def iter_chunked(self, n: int) -> Any:
        for i in range(0, len(self._body), n):
            yield self._body[i : i + n]


class _Request:
    """What the handlers read of an aiohttp request: the body (its length and its stream), the
    query, the path."""

    def __init__(self, body: bytes = b"", query: dict[str, str] | None = None) -> None:
        self._body = body
        self.content_length = len(body)
        self.content = _Content(body)
        self.query = query or {}
        self.match_info: dict[str, str] = {}
        self.headers: dict[str, str] = {}

    async def read(self) -> bytes:
        return self._body


class _Rounds:
    class round:  # noqa: N801 - mirrors RoundService.round
        height = 1

    def template(self, payouts: Any, genotype: str, weights_hash: bytes, seed: int, now: float) -> Any:
        return _Objects.get().ponas_block


class _Chain:
    height = 0

    def hash_at(self, height: int) -> bytes | None:
        return None

    def get_block(self, block_hash: bytes) -> Any:
        return None


class _Node:
    """A NodeView whose submissions accept anything: the target is what the API parses, not
    what the node's rules decide (those raise ConsensusError, a 400, anyway)."""

    token = "t"
    rounds = _Rounds()
    chain = _Chain()

    def clock(self) -> float:
        return 0.0

    async def submit_tx(self, tx: Any, source: str = "api") -> bytes:
        return bytes(32)

    async def submit_commitment(self, c: Any, source: str = "api") -> int:
        return 0

    async def submit_candidate(self, block: Any, weights: bytes, source: str = "api") -> int:
        return 0


def _drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never really waits (every await here completes at once)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("the handler awaited something that did not complete at once")


def _api_allowed() -> tuple[type[BaseException], ...]:
    from aiohttp import web

    from consensus.errors import ConsensusError
    from node.api import ApiError

    return (ApiError, ConsensusError, web.HTTPClientError)


def _api_targets() -> list[Target]:
    from node import api as a

    allowed = _api_allowed()

    def check_status(call: Callable[[], Any]) -> None:
        try:
            call()
        except a.ApiError as exc:
            if not 400 <= exc.status < 500:
                raise AssertionError(f"ApiError with status {exc.status}") from exc
            raise

    def make(route: str, handler: str, seeds: Callable[[], list[dict[str, Any]]]) -> Target:
        def run(data: bytes) -> None:
            api = a.Api(_Node())  # type: ignore[arg-type]
            check_status(lambda: _drive(getattr(api, handler)(_Request(data))))

        def seed_bytes() -> list[bytes]:
            return [json.dumps(s).encode() for s in seeds()] + [b"{not json", _nested(b"[", b"]"), b"\xff\xfe{\x00}\x00"]

        return Target(f"api-{route}", run, allowed, seed_bytes,
                      f"node.api POST /api/v1/{route}: _body and the handler's field parsers (fake node)")

    def tx_seeds() -> list[dict[str, Any]]:
        return [{"tx": t.encode().hex()} for t in _Objects.get().txs]

    def template_seeds() -> list[dict[str, Any]]:
        from consensus.crypto import format_address

        k = _Objects.get().keys
        return [{"payouts": [[format_address(k[0].address), 5], [format_address(k[1].address), 0]],
                 "genotype": _Objects.get().genotypes[0], "weights_hash": "ab" * 32, "seed": 3}]

    def commitment_seeds() -> list[dict[str, Any]]:
        return [{"commitment": c.encode().hex()} for c in _Objects.get().commitments]

    def candidate_seeds() -> list[dict[str, Any]]:
        o = _Objects.get()
        return [{"block": o.ponas_block.encode().hex(), "weights": base64.b64encode(b"\x00" * 24).decode()},
                {"block": o.pow_block.encode().hex(), "weights": ""}]

    def fields(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        api = a.Api(_Node())  # type: ignore[arg-type]
        for call in (lambda: a._hex(text, "hash", 32), lambda: a._address(text),
                     lambda: a._query_int(_Request(query={"limit": text}), "limit", 50, 1, 500),  # type: ignore[arg-type]
                     lambda: api._find_block(text)):
            try:
                check_status(call)
            except allowed:
                pass

    def field_seeds() -> list[bytes]:
        from consensus.crypto import format_address

        o = _Objects.get()
        return [format_address(o.keys[0].address).encode(), o.pow_block.block_hash.hex().encode(), b"42", b"0"]

    return [
        make("transactions", "post_tx", tx_seeds),
        make("template", "post_template", template_seeds),
        make("commitments", "post_commitment", commitment_seeds),
        make("candidates", "post_candidate", candidate_seeds),
        Target("api-fields", fields, allowed, field_seeds,
               "node.api _hex, _address, _query_int and the block reference of /blocks/{ref} on one text"),
    ]


def all_targets() -> dict[str, Target]:
    """Every target by name, in the order they run."""
    targets = [_frame_target(), *_message_targets(), _encoding_target(), *_codec_targets(), _weights_target(),
               _pool_target(), *_api_targets()]
    return {t.name: t for t in targets}


def target_names() -> list[str]:
    """The names without importing the project (for ``--help`` and the parent process)."""
    from p2p.messages import MESSAGE_TYPES

    return (["p2p-frame", "p2p-message"] + [f"p2p-msg-{k}" for k in MESSAGE_TYPES] + ["encoding"]
            + [f"type-{c}" for c in ("Block", "Header", "Transfer", "Commitment", "RoundClose", "RoundSeal", "Coinbase",
                                     "Payout")]
            + ["weights", "pool-protocol", "api-transactions", "api-template", "api-commitments", "api-candidates",
               "api-fields"])
