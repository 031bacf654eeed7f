"""Round rules of the ``ponas`` engine (design section 4), without the model.

A round ``h`` produces block ``h``:

1. *open*: when round ``h-1``'s reveal window ends, ``h`` opens on the best round-``h-1``
   block;
2. *commit*: until the commit deadline, miners sign :class:`Commitment` s to sealed headers;
3. *close*: the closer signs a :class:`RoundClose` that names the parent, reveals the test key
   and fixes the commitments it received in time by Merkle root and count;
4. *reveal*: miners publish candidate blocks, each carrying its commitment with a proof of
   membership in the close;
5. *select*: the best verified score wins; ties go to the earlier commitment in the close's
   order, then to the lower block hash.

Liveness: a round with no valid candidate is closed again on the same parent with the
beacon's next key (its key index grows, which :func:`check_close` allows). The timeline
itself (windows, deadlines, retries) is node policy, driven by ``node/rounds.py``.

Everything here is pure: time is a parameter and nothing touches the network or the disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from consensus import beacon
from consensus.crypto import PrivateKey, verify
from consensus.errors import InvalidBlock, InvalidRound
from consensus.merkle import merkle_proof, merkle_root, verify_proof
from consensus.params import PonasParams
from consensus.types import ZERO_SIG, Block, Commitment, Header, RoundClose, RoundSeal

#: The task id of the built-in digits task.
BUILTIN_TASK = bytes(32)
#: How many beacon keys a close may skip past the previous close (retries, silent rounds).
MAX_KEY_GAP = 10_000


# --- commitments ----------------------------------------------------------------------------


def make_commitment(
    key: PrivateKey,
    chain_id: str,
    *,
    height: int,
    parent: bytes,
    task_id: bytes,
    txs_root: bytes,
    payouts_root: bytes,
    genotype: str,
    weights_hash: bytes,
    seed: int,
    seq: int = 0,
) -> Commitment:
    draft = Commitment(
        height, parent, task_id, txs_root, payouts_root, genotype, weights_hash, seed, seq, key.public_key, ZERO_SIG
    )
    return replace(draft, signature=key.sign(draft.digest(chain_id)))


def commitment_for(header: Header, key: PrivateKey, chain_id: str, seq: int = 0) -> Commitment:
    """The commitment that binds everything ``header`` declares except its score."""
    return make_commitment(
        key, chain_id, height=header.height, parent=header.parent, task_id=header.task_id,
        txs_root=header.txs_root, payouts_root=header.payouts_root, genotype=header.genotype,
        weights_hash=header.weights_hash, seed=header.seed, seq=seq,
    )


def check_commitment(c: Commitment, chain_id: str, params: PonasParams) -> None:
    """Context-free commitment rules: the seq bound and the miner's signature."""
    if not 0 <= c.seq < params.max_commitments_per_key:
        raise InvalidRound("too-many-commitments", f"seq {c.seq}, a key may commit {params.max_commitments_per_key}")
    if not verify(c.miner, c.digest(chain_id), c.signature):
        raise InvalidRound("bad-commitment-sig", "commitment not signed by its miner")


@dataclass
class CommitmentSet:
    """The closer's collection of one round's commitments, in arrival order.

    It admits a commitment only for this round (height, parent, task), before the deadline,
    once per ``(miner, seq)``, and at most ``max_commitments_per_key`` per miner.
    """

    height: int
    parent: bytes
    task_id: bytes
    deadline: float
    chain_id: str
    params: PonasParams
    items: list[Commitment] = field(default_factory=list)
    _seen: set[tuple[bytes, int]] = field(default_factory=set)
    _hashes: set[bytes] = field(default_factory=set)

    def add(self, c: Commitment, now: float) -> bool:
        """Admit ``c``; False if it is already in; raises :class:`InvalidRound` if refused."""
        if (c.height, c.parent, c.task_id) != (self.height, self.parent, self.task_id):
            raise InvalidRound("commit-wrong-round", f"commitment for height {c.height}, round {self.height}")
        if now > self.deadline:
            raise InvalidRound("commit-too-late", "the commit deadline has passed")
        h = c.hash()
        if h in self._hashes:
            return False
        check_commitment(c, self.chain_id, self.params)
        if (c.miner, c.seq) in self._seen:
            raise InvalidRound("duplicate-seq", f"seq {c.seq} already used by this miner")
        if sum(1 for m, _ in self._seen if m == c.miner) >= self.params.max_commitments_per_key:
            raise InvalidRound("too-many-commitments", "this key has used all its commitments")
        self._seen.add((c.miner, c.seq))
        self._hashes.add(h)
        self.items.append(c)
        return True

    def root(self) -> bytes:
        return commitments_root(self.items)


def commitments_root(commitments: Sequence[Commitment]) -> bytes:
    return merkle_root([c.hash() for c in commitments])


def round_seal(close: RoundClose, commitments: Sequence[Commitment], index: int) -> RoundSeal:
    """The seal of a candidate for ``commitments[index]`` in ``close``."""
    leaves = [c.hash() for c in commitments]
    return RoundSeal(close, commitments[index], index, merkle_proof(leaves, index))


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


def expected_closer(task_id: bytes, params: PonasParams, requester: bytes | None = None) -> bytes:
    """The beacon closes the built-in task; a posted task's requester closes its own."""
    if task_id == BUILTIN_TASK or requester is None:
        return params.beacon_pubkey
    return requester


def check_close(
    close: RoundClose,
    chain_id: str,
    params: PonasParams,
    *,
    prev_key: bytes,
    prev_key_index: int,
    requester: bytes | None = None,
) -> None:
    """Check a close's signer, signature and test key.

    ``prev_key``/``prev_key_index`` are the test key of the close that finalised the parent
    (or the genesis anchor at index 0). For the built-in task the test key must be the
    beacon's key number ``key_index``: hashing it ``key_index - prev_key_index`` times gives
    ``prev_key``.
    """
    want = expected_closer(close.task_id, params, requester)
    if close.closer != want:
        raise InvalidRound("wrong-closer", "the close is not signed by this round's closer")
    if not verify(close.closer, close.digest(chain_id), close.signature):
        raise InvalidRound("bad-close-sig", "the close's signature is invalid")
    if close.commitments_count < 0:
        raise InvalidRound("bad-close", "negative count")
    if close.task_id == BUILTIN_TASK or requester is None:
        gap = close.key_index - prev_key_index
        if not 0 < gap <= MAX_KEY_GAP or not beacon.verify_key(close.test_key, close.key_index, prev_key, prev_key_index):
            raise InvalidRound("bad-test-key", "the test key is not the beacon's next key")


# --- candidates -----------------------------------------------------------------------------


def check_candidate(block: Block, chain_id: str, params: PonasParams) -> Commitment:
    """The cheap rules of a candidate block against the close in its seal (no model yet;
    the close itself is checked by :func:`check_close`).

    In order: the block carries a seal; the header names its close and round; the close
    includes the commitment; the commitment is signed and within the per-key bound; the
    header declares exactly what was committed. Returns the commitment.
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
    committed = (c.height, c.parent, c.task_id, c.txs_root, c.payouts_root, c.genotype, c.weights_hash, c.seed)
    declared = (
        header.height, header.parent, header.task_id, header.txs_root, header.payouts_root,
        header.genotype, header.weights_hash, header.seed,
    )
    if committed != declared:
        names = ("height", "parent", "task", "txs_root", "payouts_root", "genotype", "weights_hash", "seed")
        diff = [n for n, a, b in zip(names, committed, declared) if a != b]
        raise InvalidBlock("header-mismatch", f"header differs from the commitment in {', '.join(diff)}")
    return c


def candidate_rank(score: int, commit_index: int, block_hash: bytes) -> tuple[int, int, bytes]:
    """A sort key: the smallest key wins (best score, then earlier commitment, then lower hash)."""
    return (-score, commit_index, block_hash)


def select_winner(candidates: Sequence[Block]) -> Block | None:
    """The winner among verified candidates of one round, by :func:`candidate_rank`."""
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda b: candidate_rank(b.header.score, b.proof.index if b.proof else 1 << 62, b.header.hash()),
    )


def fork_weight(header: Header, commit_index: int) -> int:
    """A block's weight in fork choice, so that among siblings the selection rule decides:
    every block outweighs any score (length first), then a higher score, then an earlier
    commitment. Scores are below 2**32 (test samples or parts per million)."""
    return (1 << 64) + (min(header.score, (1 << 32) - 1) << 32) + ((1 << 32) - 1 - min(commit_index, (1 << 32) - 1))
