"""The pool protocol's messages (docs/pool-protocol.md), without I/O: parse and check what a
peer sent, build what we send. A malformed message raises :class:`ProtocolError` with the
reason the document names."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from consensus.crypto import PrivateKey, address_of, format_address, parse_address, signing_digest, verify
from consensus.errors import ConsensusError

__all__ = ["VERSION", "MAX_FRAME", "ProtocolError", "Hello", "Share", "decode", "encode", "hello_digest", "challenge_pool_key",
           "make_hello", "parse_hello", "parse_share", "parse_heartbeat", "parse_weights", "parse_member_id",
           "parse_propose", "MAX_PROPOSALS"]

VERSION = 2  # 2: the hello signs the pool's key (a hello for one pool is refused by every other)
MAX_FRAME = 2 * 1024 * 1024
HELLO_DOMAIN = "ponas/pool-hello"
_WORKER = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_MAX_GENOTYPE = 256
_MAX_MEMBER_ID = 128  # an address (at most 90 characters), a dot, a worker (at most 32)


class ProtocolError(ValueError):
    """A message that breaks the protocol; ``reason`` is stable (``bad-message``,
    ``bad-hello``, ``bad-share``, ``bad-signature``, ``wrong-address``, ...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def encode(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def decode(text: str | bytes) -> dict[str, Any]:
    """One frame -> a JSON object with a string ``type``."""
    if len(text) > MAX_FRAME:
        raise ProtocolError("too-large", f"frame of {len(text)} bytes")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("bad-message", "not JSON") from None
    except RecursionError:  # nested deeper than the parser's stack: no message needs that
        raise ProtocolError("bad-message", "nested too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("bad-message", "a message is an object with a type")
    return data


def _int(data: dict[str, Any], name: str, reason: str, low: int = 0, high: int = 2**63 - 1) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(reason, f"{name} is an integer in [{low}, {high}]")
    return value


def _num(data: dict[str, Any], name: str, reason: str, default: float | None = None) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e9:
        raise ProtocolError(reason, f"{name} is a non-negative number")
    return float(value)


def _hex(data: dict[str, Any], name: str, reason: str, length: int) -> bytes:
    value = data.get(name)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != length:
        raise ProtocolError(reason, f"{name} is {length} bytes of hex")
    return raw


def hello_digest(chain_id: str, nonce: bytes, address: bytes, worker: str, pool: bytes) -> bytes:
    """What a member signs: the chain, the pool's challenge, the pool's public key (so that a
    pool that relays another pool's challenge gets a hello the other pool refuses), its
    address and its worker."""
    return signing_digest(HELLO_DOMAIN, chain_id, nonce + pool + address + worker.encode("ascii"))


def challenge_pool_key(challenge: dict[str, Any], expected: bytes | None = None) -> bytes:
    """The pool's public key in its challenge (``challenge.pool.key``); with ``expected`` (the
    key the member was given for the pool it meant to join), another key is ``wrong-pool``."""
    pool = challenge.get("pool")
    raw = pool.get("key") if isinstance(pool, dict) else None
    try:
        key = bytes.fromhex(raw) if isinstance(raw, str) else b""
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ProtocolError("bad-message", "the challenge names no pool key")
    if expected is not None and key != expected:
        raise ProtocolError("wrong-pool", f"the challenge is from pool {key.hex()[:16]}…, not the pool given "
                                          f"({expected.hex()[:16]}…): another pool relays it")
    return key


@dataclass(frozen=True, slots=True)
class Hello:
    address: bytes
    pubkey: bytes
    worker: str
    throughput: float | None

    @property
    def member(self) -> str:
        return f"{format_address(self.address)}.{self.worker}"


def parse_member_id(text: str) -> tuple[bytes, str]:
    """A member's id (:attr:`Hello.member`: ``ADDRESS.WORKER``) -> (address, worker); raises
    ``bad-worker-id`` for anything else (the dashboard's worker pages take it from their URL)."""
    if not isinstance(text, str) or len(text) > _MAX_MEMBER_ID or "." not in text:
        raise ProtocolError("bad-worker-id", "a worker id is ADDRESS.WORKER, as the dashboard lists it")
    address, worker = text.split(".", 1)  # bech32 has no dot; a worker may
    try:
        raw = parse_address(address)
    except ConsensusError as exc:
        raise ProtocolError("bad-worker-id", f"address: {exc.reason}") from None
    if format_address(raw) != address:  # one spelling per member: the one its hello gave
        raise ProtocolError("bad-worker-id", "the address is not in its canonical (lower-case) form")
    if not _WORKER.fullmatch(worker):
        raise ProtocolError("bad-worker-id", "the worker is 1-32 of [A-Za-z0-9_.-]")
    return raw, worker


def make_hello(key: PrivateKey, chain_id: str, nonce: bytes, worker: str, throughput: float | None = None,
               *, pool: bytes) -> str:
    address = key.address
    return encode("hello", version=VERSION, address=format_address(address), pubkey=key.public_key.hex(),
                  worker=worker, throughput=throughput,
                  signature=key.sign(hello_digest(chain_id, nonce, address, worker, pool)).hex())


def parse_hello(data: dict[str, Any], chain_id: str, nonce: bytes, pool: bytes) -> Hello:
    """Check a hello against our challenge: the key signs it for this pool (``pool``: our public
    key), and the address is the key's."""
    if data.get("type") != "hello" or data.get("version") != VERSION:
        raise ProtocolError("bad-hello", f"expected hello version {VERSION}")
    worker = data.get("worker")
    if not isinstance(worker, str) or not _WORKER.fullmatch(worker):
        raise ProtocolError("bad-hello", "worker is 1-32 of [A-Za-z0-9_.-]")
    try:
        address = parse_address(data.get("address"))  # type: ignore[arg-type]
    except ConsensusError as exc:
        raise ProtocolError("bad-hello", f"address: {exc.reason}") from None
    pubkey = _hex(data, "pubkey", "bad-hello", 32)
    signature = _hex(data, "signature", "bad-hello", 64)
    if address_of(pubkey) != address:
        raise ProtocolError("wrong-address", "the address is not the key's")
    if not verify(pubkey, hello_digest(chain_id, nonce, address, worker, pool), signature):
        raise ProtocolError("bad-signature", "the hello is not signed by the address's key for this challenge "
                                             "and this pool")
    throughput = data.get("throughput")
    return Hello(address, pubkey, worker, None if throughput is None else _num(data, "throughput", "bad-hello"))


@dataclass(frozen=True, slots=True)
class Commit:
    """The pool's word at commit time: if the block of ``height`` carries the result whose
    weights hash is ``weights_hash``, its coinbase pays ``payouts`` (address -> base units)."""

    height: int
    weights_hash: bytes
    payouts: dict[bytes, int]


def encode_commit(height: int, weights_hash: bytes, payouts: list[tuple[bytes, int]]) -> str:
    return encode("commit", height=height, weights_hash=weights_hash.hex(),
                  payouts=[[format_address(a), amount] for a, amount in payouts])


def parse_commit(data: dict[str, Any]) -> Commit:
    height = data.get("height")
    if type(height) is not int or height < 1:
        raise ProtocolError("bad-message", "commit: height is a positive integer")
    weights_hash = _hex(data, "weights_hash", "bad-message", 32)
    raw = data.get("payouts")
    if not isinstance(raw, list) or len(raw) > 10_000:
        raise ProtocolError("bad-message", "commit: payouts is a list")
    payouts: dict[bytes, int] = {}
    for item in raw:
        if not isinstance(item, list) or len(item) != 2 or type(item[1]) is not int or item[1] < 0:
            raise ProtocolError("bad-message", "commit: each payout is [address, amount]")
        try:
            address = parse_address(item[0])
        except (ConsensusError, TypeError):
            raise ProtocolError("bad-message", "commit: a payout's address") from None
        payouts[address] = payouts.get(address, 0) + item[1]
    return Commit(height, weights_hash, payouts)


@dataclass(frozen=True, slots=True)
class Share:
    id: int
    job: int
    genotype: str
    seed: int
    validation: int
    weights_hash: bytes
    seconds: float


def parse_share(data: dict[str, Any]) -> Share:
    genotype = data.get("genotype")
    if not isinstance(genotype, str) or not 0 < len(genotype) <= _MAX_GENOTYPE:
        raise ProtocolError("bad-share", "genotype is a string")
    return Share(_int(data, "id", "bad-share"), _int(data, "job", "bad-share"), genotype,
                 _int(data, "seed", "bad-share", 0, 2**64 - 1), _int(data, "validation", "bad-share"),
                 _hex(data, "weights_hash", "bad-share", 32), _num(data, "seconds", "bad-share", 0.0))


MAX_PROPOSALS = 16  # genotypes in one ``propose``


def parse_propose(data: dict[str, Any]) -> tuple[int, list[str]]:
    """A ``propose`` (manager to member): (job, genotypes the pool's shared search hands it)."""
    genotypes = data.get("genotypes")
    if not isinstance(genotypes, list) or not 0 < len(genotypes) <= MAX_PROPOSALS or not all(
            isinstance(g, str) and 0 < len(g) <= _MAX_GENOTYPE for g in genotypes):
        raise ProtocolError("bad-message", f"genotypes is a list of 1 to {MAX_PROPOSALS} genotype strings")
    return _int(data, "job", "bad-message"), list(genotypes)


def parse_heartbeat(data: dict[str, Any]) -> tuple[int, int, float]:
    """(job, trainings, throughput)."""
    return (_int(data, "job", "bad-message"), _int(data, "trainings", "bad-message"),
            _num(data, "throughput", "bad-message", 0.0))


def parse_weights(data: dict[str, Any]) -> tuple[int, bytes]:
    text = data.get("weights")
    if not isinstance(text, str):
        raise ProtocolError("bad-message", "weights is base64 text")
    try:
        return _int(data, "id", "bad-message"), base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("bad-message", "weights is not base64") from None
