"""The chain's data types: frozen, slotted dataclasses with one canonical encoding each.

Amounts are integers in base units (1 coin = 10**8 units); scores are integers. Nothing here
holds a float. Constructors check shapes and ranges, so a decoded object is well formed; the
rules that need context (state, parent, params) live in :mod:`consensus.state`,
:mod:`consensus.block` and the engines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from consensus.codec import Codec, Length
from consensus.crypto import PrivateKey, signing_digest, verify
from consensus.merkle import merkle_root

Hash32 = Annotated[bytes, Length(32)]
Address20 = Annotated[bytes, Length(20)]
PubKey32 = Annotated[bytes, Length(32)]
Sig64 = Annotated[bytes, Length(64)]
#: Heights and amounts are plain integers (aliases for readers); the codec and the
#: constructors check their ranges.
Height = int
Amount = int

ZERO_HASH = bytes(32)
ZERO_SIG = bytes(64)
COIN = 10**8
#: Amounts, balances and fees stay within a signed 64-bit integer.
MAX_AMOUNT = 2**63 - 1
MAX_TEXT = 256
MAX_EXTRA = 32


def _nonneg(name: str, value: int, upper: int = MAX_AMOUNT) -> None:
    if not 0 <= value <= upper:
        raise ValueError(f"{name} out of range: {value}")


@dataclass(frozen=True, slots=True)
class Payout(Codec):
    """One output of a coinbase: ``amount`` units to ``address``."""

    address: Address20
    amount: Amount

    def __post_init__(self) -> None:
        _nonneg("amount", self.amount)


@dataclass(frozen=True, slots=True)
class Coinbase(Codec):
    """The block reward (subsidy plus fees), split among ``payouts``: this is where a pool pays
    its members. ``height`` makes every coinbase unique."""

    TAG = 2
    height: Height
    payouts: tuple[Payout, ...]

    def __post_init__(self) -> None:
        _nonneg("height", self.height)

    @property
    def total(self) -> int:
        return sum(p.amount for p in self.payouts)

    def payouts_root(self) -> bytes:
        return merkle_root([p.hash() for p in self.payouts])


@dataclass(frozen=True, slots=True)
class Transfer(Codec):
    """Move ``amount`` from the key ``sender`` to ``recipient``, paying ``fee`` to the miner.

    ``nonce`` is the sender's account nonce (the number of transfers it sent before). The
    signature covers the chain id, so the transfer is void on any other chain.
    """

    TAG = 1
    sender: PubKey32
    recipient: Address20
    amount: Amount
    fee: Amount
    nonce: int
    signature: Sig64

    def __post_init__(self) -> None:
        _nonneg("amount", self.amount)
        _nonneg("fee", self.fee)
        _nonneg("nonce", self.nonce)

    def unsigned(self) -> list[object]:
        return [self.sender, self.recipient, self.amount, self.fee, self.nonce]

    def digest(self, chain_id: str) -> bytes:
        return signing_digest("ponas/transfer", chain_id, self.unsigned())

    def has_valid_signature(self, chain_id: str) -> bool:
        return verify(self.sender, self.digest(chain_id), self.signature)

    @classmethod
    def create(
        cls, key: PrivateKey, recipient: bytes, amount: int, fee: int, nonce: int, chain_id: str
    ) -> Transfer:
        draft = cls(key.public_key, recipient, amount, fee, nonce, ZERO_SIG)
        return cls(key.public_key, recipient, amount, fee, nonce, key.sign(draft.digest(chain_id)))


#: Every transaction kind a block body may carry (task posting joins later).
Transaction = Transfer  # a union once task posting joins


@dataclass(frozen=True, slots=True)
class Header(Codec):
    """A block header. One flat layout for every engine; an engine reads the fields it needs.

    ``pow`` uses ``bits`` and ``nonce``; ``ponas`` uses ``round_close``, ``task_id``,
    ``genotype``, ``weights_hash``, ``seed`` and ``score``. Unused fields are zero or empty.
    """

    version: int
    height: Height
    parent: Hash32
    timestamp: int
    engine: str
    txs_root: Hash32
    state_root: Hash32
    payouts_root: Hash32
    round_close: Hash32
    task_id: Hash32
    genotype: str
    weights_hash: Hash32
    seed: int
    score: int
    bits: int
    nonce: int
    extra: bytes

    def __post_init__(self) -> None:
        _nonneg("height", self.height)
        _nonneg("timestamp", self.timestamp, 2**40)
        _nonneg("seed", self.seed, 2**64 - 1)
        _nonneg("score", self.score, 2**64 - 1)
        _nonneg("bits", self.bits, 2**32 - 1)
        _nonneg("nonce", self.nonce, 2**64 - 1)
        if len(self.engine) > MAX_TEXT or len(self.genotype) > MAX_TEXT:
            raise ValueError("text field too long")
        if len(self.extra) > MAX_EXTRA:
            raise ValueError("extra too long")


@dataclass(frozen=True, slots=True)
class Commitment(Codec):
    """A miner's signed promise of a sealed header, made before the round's test key exists.

    Version 2 hides what it promises: ``sealed`` is
    :func:`consensus.engines.ponas.rounds.sealed_digest` of the whole candidate header but its
    score and round close (architecture, weights hash, seed, payouts, transactions, timestamp,
    extra), salted with 32 secret bytes that the candidate's seal opens at the reveal. Nothing
    gossiped before the close tells a copier which architecture or seed it holds, and one
    commitment opens to exactly one candidate. ``seq`` numbers a key's commitments in a round
    (0, 1, ...): a key may use at most ``max_commitments_per_key`` of them, and the closer
    admits one commitment per seq.
    """

    height: Height
    parent: Hash32
    task_id: Hash32
    sealed: Hash32
    seq: int
    miner: PubKey32
    signature: Sig64

    def unsigned(self) -> list[object]:
        return [self.height, self.parent, self.task_id, self.sealed, self.seq, self.miner]

    def digest(self, chain_id: str) -> bytes:
        return signing_digest("ponas/commitment/v2", chain_id, self.unsigned())


@dataclass(frozen=True, slots=True)
class RoundClose(Codec):
    """The closer's signed end of the commit phase of round ``height``.

    It accepts ``parent`` as the round's parent (making it final), reveals the round's
    ``test_key`` and fixes the set of commitments received in time by their Merkle root.
    ``key_index`` is the test key's place in the beacon's hash chain (it grows by one for
    every close, retries included), so the key can be checked against the previous one.
    ``timestamp`` (seconds) anchors the timeline: the reveal window ends ``reveal_window``
    seconds after it, and the next round opens then.
    """

    height: Height
    task_id: Hash32
    parent: Hash32
    test_key: Hash32
    commitments_root: Hash32
    commitments_count: int
    key_index: int
    timestamp: int
    closer: PubKey32
    signature: Sig64

    def unsigned(self) -> list[object]:
        return [
            self.height, self.task_id, self.parent, self.test_key, self.commitments_root,
            self.commitments_count, self.key_index, self.timestamp, self.closer,
        ]

    def digest(self, chain_id: str) -> bytes:
        return signing_digest("ponas/round-close", chain_id, self.unsigned())


@dataclass(frozen=True, slots=True)
class RevealEntry(Codec):
    """One candidate in a :class:`RevealSet`: its block hash, its claimed score and the index of
    its commitment in the close (which gives its tie-break before the block is at hand)."""

    block_hash: Hash32
    score: int
    index: int

    def __post_init__(self) -> None:
        _nonneg("score", self.score)
        _nonneg("index", self.index)


@dataclass(frozen=True, slots=True)
class RevealSet(Codec):
    """The closer's signed list of the candidates it received by the end of a round's reveal
    window (protocol v2). Every node selects the round's block among these entries only, best
    claim first, so the round's block is the same on every node and nothing revealed late, or
    held back, replaces it. ``entries`` are in increasing commitment ``index`` (one candidate
    per commitment); ``close`` is the hash of the round's close (an attempt)."""

    height: Height
    close: Hash32
    entries: tuple[RevealEntry, ...]
    timestamp: int
    closer: PubKey32
    signature: Sig64

    def unsigned(self) -> list[object]:
        return [self.height, self.close, [e.to_value() for e in self.entries], self.timestamp, self.closer]

    def digest(self, chain_id: str) -> bytes:
        return signing_digest("ponas/reveal-set", chain_id, self.unsigned())


@dataclass(frozen=True, slots=True)
class RoundSeal(Codec):
    """What makes a ``ponas`` block: the round's close, the miner's commitment, the
    commitment's Merkle proof of membership in the close (at ``index``), and the ``salt`` that
    opens the commitment (its ``sealed`` digest is the block's header salted with it)."""

    close: RoundClose
    commitment: Commitment
    index: int
    siblings: tuple[Hash32, ...]
    salt: Hash32


@dataclass(frozen=True, slots=True)
class Block(Codec):
    """Header plus body. Model weights travel and are stored apart, addressed by
    ``header.weights_hash``."""

    header: Header
    coinbase: Coinbase
    txs: tuple[Transaction, ...]
    proof: RoundSeal | None

    @property
    def block_hash(self) -> bytes:
        """The block's identity: the hash of its header."""
        return self.header.hash()

    def tx_hashes(self) -> list[bytes]:
        return [self.coinbase.hash()] + [tx.hash() for tx in self.txs]

    def compute_txs_root(self) -> bytes:
        return merkle_root(self.tx_hashes())
