"""Round rules of the ``ponas`` engine (design section 4), without the model.

A round ``h`` produces block ``h``:

1. *open*: when round ``h-1``'s reveal window ends, ``h`` opens on the best round-``h-1``
   block;
2. *commit*: until the commit deadline, miners sign :class:`Commitment` s to sealed headers,
   hidden by a salt (:func:`sealed_digest`);
3. *close*: the closer signs a :class:`RoundClose` that names the parent, reveals the test key
   and fixes the commitments it received in time by Merkle root and count;
4. *reveal*: miners publish candidate blocks, each carrying its commitment with a proof of
   membership in the close and the salt that opens it;
5. *select*: the best verified score wins; ties go to the lower :func:`tiebreak` (a hash of
   the test key and the commitment), then to the lower block hash.

Liveness: a round with no valid candidate is closed again on the same parent with the
beacon's next key (its key index grows by one per attempt, which :func:`check_close` bounds by
the time since the previous close: :func:`max_key_gap`). The timeline itself (windows,
deadlines, retries) is node policy, driven by ``node/rounds.py``; ``docs/protocol.md`` states
the whole round protocol (v2).

Everything here is pure: time is a parameter and nothing touches the network or the disk.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from consensus import beacon
from consensus.crypto import PrivateKey, signing_digest, verify
from consensus.errors import InvalidBlock, InvalidRound
from consensus.merkle import merkle_proof, merkle_root, verify_proof
from consensus.params import PonasParams
from consensus.types import ZERO_SIG, Block, Commitment, Header, RevealEntry, RevealSet, RoundClose, RoundSeal

#: The task id of the built-in digits task.
BUILTIN_TASK = bytes(32)
#: How many beacon keys a close may skip past the previous close (retries, silent rounds).
MAX_KEY_GAP = 10_000
#: The most commitments a close may hold: one round's candidates are bounded, and the close
#: with them (some 200 bytes each) stays far inside a P2P frame and its 10,000-item limit.
MAX_ROUND_COMMITMENTS = 4096
#: A key is funded for a round when it holds at least this on the round's parent state (base
#: units: 1 coin). Keys cost nothing; coins do.
FUNDED_BALANCE = 10**8
#: The most commitments a round takes from keys that are not funded: all that a flood of fresh
#: keys can take (the rest of the round's places are for funded keys), and so a bound on the
#: false claims such a flood can make every node score. A close with more is refused. Each false
#: claim costs a node one scoring (about 1.9 s of one core on a devnet round's 20,000 samples,
#: bench/bench_verify.py), so 16 bound a flood to about 30 s a round, 40% of a 75-second devnet
#: round; it was 64 while rounds tested on 5,000 samples (64 x 1.9 s would exceed the round).
MAX_FREE_COMMITMENTS = 16


# --- commitments ----------------------------------------------------------------------------


def commitment_salt(key: PrivateKey, header: Header, chain_id: str) -> bytes:
    """The salt that hides ``key``'s commitment to ``header``: a hash of the private key and the
    header's committed fields (as RFC 6979 derives signature nonces). Nobody without the key
    can compute it, so the commitment reveals nothing; its miner can recompute it at the reveal
    (after a restart too), and one header always gives one commitment."""
    core = replace(header, score=0, round_close=bytes(32))
    return signing_digest("ponas/commitment-salt/v2", chain_id, [key.seed, core.encode()])


def sealed_digest(header: Header, salt: bytes, chain_id: str) -> bytes:
    """What a commitment binds (its ``sealed`` field): the candidate's whole header but the two
    fields nobody can know before the close (the score and the close's hash), salted with 32
    secret bytes, in the chain's domain. Revealing the salt with the block opens it."""
    if len(salt) != 32:
        raise InvalidRound("bad-salt", "a salt is 32 bytes")
    core = replace(header, score=0, round_close=bytes(32))
    return signing_digest("ponas/sealed-header/v2", chain_id, [salt, core.encode()])


def make_commitment(
    key: PrivateKey,
    chain_id: str,
    *,
    height: int,
    parent: bytes,
    task_id: bytes,
    sealed: bytes,
    seq: int = 0,
) -> Commitment:
    draft = Commitment(height, parent, task_id, sealed, seq, key.public_key, ZERO_SIG)
    return replace(draft, signature=key.sign(draft.digest(chain_id)))


def commitment_for(header: Header, key: PrivateKey, chain_id: str, seq: int = 0) -> Commitment:
    """``key``'s commitment to ``header`` (all of it but its score and close), hidden by
    :func:`commitment_salt` (which the reveal's seal carries)."""
    return make_commitment(
        key, chain_id, height=header.height, parent=header.parent, task_id=header.task_id,
        sealed=sealed_digest(header, commitment_salt(key, header, chain_id), chain_id), seq=seq,
    )


def check_commitment(c: Commitment, chain_id: str, params: PonasParams) -> None:
    """Context-free commitment rules: the seq bound and the miner's signature."""
    if not 0 <= c.seq < params.max_commitments_per_key:
        raise InvalidRound("too-many-commitments", f"seq {c.seq}, a key may commit {params.max_commitments_per_key}")
    if not verify(c.miner, c.digest(chain_id), c.signature):
        raise InvalidRound("bad-commitment-sig", "commitment not signed by its miner")


@dataclass
class CommitmentSet:
    """One round's commitments as a node collects them (the closer's become the close), in
    arrival order.

    It admits a commitment only for this round (height, parent, task), before the deadline,
    once per ``(miner, seq)``, at most ``max_commitments_per_key`` per miner, and at most
    ``cap`` in all (:data:`MAX_ROUND_COMMITMENTS`: a close must fit on the wire). When it is
    full, a commitment whose key holds more coins on the round's parent state (``stake``: miner
    public key -> balance) than the poorest admitted key takes that key's newest place; else it
    is refused with ``round-full``. So a flood of fresh, empty keys fills only the places that
    nobody with coins wants, and cannot crowd out funded miners (keys cost nothing, coins do).
    With ``stake``, keys holding less than :data:`FUNDED_BALANCE` share
    :data:`MAX_FREE_COMMITMENTS` places (``free-places-full`` beyond). Admission is constant time
    per commitment (amortised), whatever the flood.
    """

    height: int
    parent: bytes
    task_id: bytes
    deadline: float
    chain_id: str
    params: PonasParams
    stake: Callable[[bytes], int] | None = None
    cap: int = 0  # 0: MAX_ROUND_COMMITMENTS
    _items: dict[bytes, Commitment] = field(default_factory=dict)  # hash -> commitment, arrival order
    _seen: set[tuple[bytes, int]] = field(default_factory=set)
    _per_key: dict[bytes, int] = field(default_factory=dict)
    _stakes: dict[bytes, int] = field(default_factory=dict)  # the parent state does not change: cached
    _poorest: list[tuple[int, int, bytes]] = field(default_factory=list)  # heap of (stake, -arrival, hash)
    _arrivals: int = 0
    _free: int = 0  # admitted commitments of keys that are not funded

    @property
    def items(self) -> list[Commitment]:
        """The admitted commitments, in arrival order."""
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def _stake_of(self, miner: bytes) -> int:
        if self.stake is None:
            return 0
        got = self._stakes.get(miner)
        if got is None:
            got = self._stakes[miner] = self.stake(miner)
        return got

    def add(self, c: Commitment, now: float) -> bool:
        """Admit ``c``; False if it is already in; raises :class:`InvalidRound` if refused."""
        if (c.height, c.parent, c.task_id) != (self.height, self.parent, self.task_id):
            raise InvalidRound("commit-wrong-round", f"commitment for height {c.height}, round {self.height}")
        if now > self.deadline:
            raise InvalidRound("commit-too-late", "the commit deadline has passed")
        h = c.hash()
        if h in self._items:
            return False
        check_commitment(c, self.chain_id, self.params)
        if (c.miner, c.seq) in self._seen:
            raise InvalidRound("duplicate-seq", f"seq {c.seq} already used by this miner")
        if self._per_key.get(c.miner, 0) >= self.params.max_commitments_per_key:
            raise InvalidRound("too-many-commitments", "this key has used all its commitments")
        stake = self._stake_of(c.miner)
        free = self.is_free(c.miner)
        if free and self._free >= MAX_FREE_COMMITMENTS:
            raise InvalidRound("free-places-full", f"the round's {MAX_FREE_COMMITMENTS} places for keys with less "
                                                   "than one coin are taken")
        if len(self._items) >= (self.cap or MAX_ROUND_COMMITMENTS):
            self._evict_poorer_than(stake)
        self._free += free
        self._arrivals += 1
        self._items[h] = c
        self._seen.add((c.miner, c.seq))
        self._per_key[c.miner] = self._per_key.get(c.miner, 0) + 1
        heapq.heappush(self._poorest, (stake, -self._arrivals, h))
        return True

    def _evict_poorer_than(self, stake: int) -> None:
        while self._poorest and self._poorest[0][2] not in self._items:  # already gone
            heapq.heappop(self._poorest)
        if not self._poorest or self._poorest[0][0] >= stake:
            raise InvalidRound("round-full", f"the round holds {len(self._items)} commitments, none from a key "
                                             f"with fewer coins than this one's ({stake} base units)")
        _stake, _arrival, h = heapq.heappop(self._poorest)
        gone = self._items.pop(h)
        self._per_key[gone.miner] -= 1  # its (miner, seq) stays used: one seq, one commitment
        self._free -= self.is_free(gone.miner)

    def is_free(self, miner: bytes) -> bool:
        """Whether ``miner``'s key commits on a free place (it is not funded); never without
        ``stake``."""
        return self.stake is not None and self._stake_of(miner) < FUNDED_BALANCE

    def index(self, c: Commitment) -> int:
        """``c``'s place among the admitted commitments (arrival order); ValueError if absent."""
        return list(self._items).index(c.hash())

    def root(self) -> bytes:
        return commitments_root(self.items)


def commitments_root(commitments: Sequence[Commitment]) -> bytes:
    return merkle_root([c.hash() for c in commitments])


def round_seal(close: RoundClose, commitments: Sequence[Commitment], index: int, salt: bytes) -> RoundSeal:
    """The seal of a candidate for ``commitments[index]`` in ``close``, opened by ``salt``."""
    leaves = [c.hash() for c in commitments]
    return RoundSeal(close, commitments[index], index, merkle_proof(leaves, index), salt)


# --- closes ---------------------------------------------------------------------------------


def make_close(
    closer: PrivateKey,
    chain_id: str,
    *,
    height: int,
    task_id: bytes,
    parent: bytes,
    test_key: bytes,
    key_index: int,
    commitments: Sequence[Commitment],
    timestamp: int = 0,
) -> RoundClose:
    draft = RoundClose(
        height, task_id, parent, test_key, commitments_root(commitments), len(commitments), key_index,
        timestamp, closer.public_key, ZERO_SIG,
    )
    return replace(draft, signature=closer.sign(draft.digest(chain_id)))


def expected_closers(task_id: bytes, params: PonasParams, requester: bytes | None = None) -> tuple[bytes, ...]:
    """Who may close: the beacon for the built-in task, and its backup closer if the genesis
    names one; a posted task's requester closes its own."""
    if task_id == BUILTIN_TASK or requester is None:
        return (params.beacon_pubkey, params.backup_pubkey) if any(params.backup_pubkey) else (params.beacon_pubkey,)
    return (requester,)


def is_backup(closer: bytes, params: PonasParams) -> bool:
    """Whether ``closer`` is the genesis's backup closer."""
    return any(params.backup_pubkey) and closer == params.backup_pubkey


def check_close(
    close: RoundClose,
    chain_id: str,
    params: PonasParams,
    *,
    prev_key: bytes,
    prev_key_index: int,
    prev_time: int | None = None,
    requester: bytes | None = None,
) -> None:
    """Check a close's signer, signature and test key.

    ``prev_key``/``prev_key_index`` are the test key of the close that finalised the parent
    (or the genesis anchor at index 0). For the built-in task the test key must be the
    beacon's key number ``key_index``: hashing it ``key_index - prev_key_index`` times gives
    ``prev_key``. With ``prev_time`` (that close's timestamp, or the genesis time) the key may
    skip only the keys that retries could have used in the time between (:func:`max_key_gap`):
    a closer cannot pick, among many keys, the one whose test set suits a friend
    (``key-skipped``).
    """
    if close.closer not in expected_closers(close.task_id, params, requester):
        raise InvalidRound("wrong-closer", "the close is not signed by this round's closer")
    if not verify(close.closer, close.digest(chain_id), close.signature):
        raise InvalidRound("bad-close-sig", "the close's signature is invalid")
    if close.commitments_count < 0:
        raise InvalidRound("bad-close", "negative count")
    if close.commitments_count > MAX_ROUND_COMMITMENTS:
        raise InvalidRound("close-too-large", f"{close.commitments_count} commitments, at most {MAX_ROUND_COMMITMENTS}")
    if close.task_id == BUILTIN_TASK or requester is None:
        gap = close.key_index - prev_key_index
        if not 0 < gap <= MAX_KEY_GAP or not beacon.verify_key(close.test_key, close.key_index, prev_key, prev_key_index):
            raise InvalidRound("bad-test-key", "the test key is not the beacon's next key")
        if prev_time is not None and gap > max_key_gap(params, prev_time, close.timestamp):
            raise InvalidRound("key-skipped", f"key {close.key_index} skips {gap - 1} keys; the retries since the "
                                              f"last close could use {max_key_gap(params, prev_time, close.timestamp) - 1}")
    if is_backup(close.closer, params) and prev_time is not None and \
            close.timestamp < prev_time + params.commit_window + params.closer_timeout:
        # the bound a syncing node can check; a node in the round checks the exact one (the
        # attempt's commit deadline plus closer_timeout)
        raise InvalidRound("backup-too-early", "the backup closer closes only after the beacon's closer_timeout")


def max_key_gap(params: PonasParams, prev_time: int, close_time: int) -> int:
    """How far past the previous close's key index a close at ``close_time`` may go: one key per
    attempt, and each attempt after the first takes a whole commit and reveal window (a retry
    opens when the failed attempt's reveal window ends). So ``1 + (elapsed - commit_window) //
    (commit_window + reveal_window)``, at least 1; ``elapsed`` is the time since the previous
    close (the genesis time for round 1). The timestamps are the closer's (a close stamped in
    the future is refused by the node that receives it), so a closer gets more keys only by
    holding its rounds back for as long as the retries would take."""
    elapsed = max(0, close_time - prev_time - params.commit_window)
    return 1 + int(elapsed // (params.commit_window + params.reveal_window))


# --- reveal sets ----------------------------------------------------------------------------


def make_reveal_set(
    closer: PrivateKey, chain_id: str, close: RoundClose, entries: Sequence[RevealEntry], timestamp: int,
) -> RevealSet:
    """The closer's signed list of the candidates of ``close``'s attempt it received by the end
    of the reveal window (entries put in commitment order)."""
    draft = RevealSet(close.height, close.hash(), tuple(sorted(entries, key=lambda e: e.index)), timestamp,
                      closer.public_key, ZERO_SIG)
    return replace(draft, signature=closer.sign(draft.digest(chain_id)))


def check_reveal_set(rs: RevealSet, close: RoundClose, chain_id: str, params: PonasParams) -> None:
    """A reveal set's rules against its close: the same round and attempt
    (``reveal-set-wrong-close``), signed by the close's signer, or by the backup closer once
    the close's signer has been silent ``closer_timeout`` seconds past the window's end
    (``wrong-closer``, ``bad-reveal-set-sig``, ``backup-too-early``), at most one entry per
    commitment of the close, in increasing commitment index (``bad-reveal-set``), and stamped no
    earlier than the reveal window's end (``reveal-set-too-early``: a closer that signed it
    sooner would cut the window)."""
    if rs.close != close.hash() or rs.height != close.height:
        raise InvalidRound("reveal-set-wrong-close", "the reveal set names another close")
    backup = rs.closer != close.closer and is_backup(rs.closer, params)
    if rs.closer != close.closer and not backup:
        raise InvalidRound("wrong-closer", "the reveal set is not signed by the round's closer")
    if not verify(rs.closer, rs.digest(chain_id), rs.signature):
        raise InvalidRound("bad-reveal-set-sig", "the reveal set's signature is invalid")
    last = -1
    for e in rs.entries:
        if not last < e.index < close.commitments_count:
            raise InvalidRound("bad-reveal-set", f"entry for commitment {e.index}: out of order or not in the close")
        last = e.index
    if rs.timestamp < close.timestamp + params.reveal_window:
        raise InvalidRound("reveal-set-too-early", "the reveal set is stamped before the reveal window's end")
    if backup and rs.timestamp < close.timestamp + params.reveal_window + params.closer_timeout:
        raise InvalidRound("backup-too-early", "the backup signs a reveal set only after the closer's closer_timeout")


def entry_rank(entry: RevealEntry, close: RoundClose, commitments: Sequence[Commitment]) -> tuple[int, int, bytes]:
    """:func:`candidate_rank` of a reveal set's entry, from the set and the close alone (its
    block may not be at hand yet)."""
    return candidate_rank(entry.score, tiebreak(close.test_key, commitments[entry.index].hash()), entry.block_hash)


# --- candidates -----------------------------------------------------------------------------


def check_candidate(block: Block, chain_id: str, params: PonasParams) -> Commitment:
    """The cheap rules of a candidate block against the close in its seal (no model yet;
    the close itself is checked by :func:`check_close`).

    In order: the block carries a seal; the header names its close and round; the close
    includes the commitment; the commitment is signed and within the per-key bound; the
    header, salted with the seal's salt, opens the commitment's ``sealed`` digest (it is the
    very header committed, score and close aside). Returns the commitment.
    """
    header = block.header
    if block.proof is None:
        raise InvalidBlock("no-commitment", "a ponas block carries its round seal")
    proof = block.proof
    close = proof.close
    if header.round_close != close.hash():
        raise InvalidBlock("bad-round-close", "the header names another close")
    if (header.height, header.parent, header.task_id) != (close.height, close.parent, close.task_id):
        raise InvalidBlock("close-mismatch", "height, parent or task differ from the close")
    c = proof.commitment
    if not verify_proof(close.commitments_root, c.hash(), proof.index, close.commitments_count, proof.siblings):
        raise InvalidBlock("commitment-not-in-close", "the close does not include this commitment")
    try:
        check_commitment(c, chain_id, params)
    except InvalidRound as exc:
        raise InvalidBlock(exc.reason, exc.detail) from None
    if (c.height, c.parent, c.task_id) != (header.height, header.parent, header.task_id):
        raise InvalidBlock("header-mismatch", "the commitment is for another height, parent or task")
    if sealed_digest(header, proof.salt, chain_id) != c.sealed:
        raise InvalidBlock("header-mismatch", "the header (with the seal's salt) is not the one committed")
    return c


def tiebreak(test_key: bytes, commitment_hash: bytes) -> int:
    """The tie rule between equal scores: ``sha256(tag || test_key || commitment hash)``'s first
    four bytes, lower first. Nobody can steer it: the test key is secret until the close (so a
    miner cannot grind its salt against it) and the closer's order of the commitments plays no
    part (nor who committed first)."""
    return int.from_bytes(hashlib.sha256(b"ponas/tiebreak/v2" + test_key + commitment_hash).digest()[:4], "big")


def seal_tiebreak(proof: RoundSeal | None) -> int:
    """:func:`tiebreak` of a block's seal (the last place for a block without one)."""
    if proof is None:
        return (1 << 32) - 1
    return tiebreak(proof.close.test_key, proof.commitment.hash())


def candidate_rank(score: int, tie: int, block_hash: bytes) -> tuple[int, int, bytes]:
    """A sort key: the smallest key wins (best score, then the lower :func:`tiebreak`, then the
    lower block hash)."""
    return (-score, tie, block_hash)


def select_winner(candidates: Sequence[Block]) -> Block | None:
    """The winner among verified candidates of one round, by :func:`candidate_rank`."""
    if not candidates:
        return None
    return min(candidates, key=lambda b: candidate_rank(b.header.score, seal_tiebreak(b.proof), b.header.hash()))


def fork_weight(header: Header, tie: int) -> int:
    """A block's weight in fork choice, so that among siblings the selection rule decides:
    every block outweighs any score (length first), then a higher score, then the lower
    :func:`tiebreak`. Scores are below 2**32 (test samples or parts per million)."""
    return (1 << 64) + (min(header.score, (1 << 32) - 1) << 32) + ((1 << 32) - 1 - min(tie, (1 << 32) - 1))
