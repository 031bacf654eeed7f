"""The round service: drives the ``ponas`` round timeline on a node.

Per round it collects commitments (until the close), checks the close (from the network, or
makes it when this node holds the closer key), collects and pre-verifies candidates during the
reveal window (every cheap check, and the model evaluated on the round's test set: a
:class:`~consensus.engines.ponas.verify.Verdict`), asks for the best candidate to be retrained
when the task's policy wants it (one retrain at a time, the current best; its full verdict
comes back through :meth:`RoundService.on_retrained`), and when the window ends imports the
best candidate with its verdict (a candidate that fails gives way to the next best). A round
that ends with no valid candidate is closed again, on the same parent, with the beacon's next
key. The round's record (:func:`round_record`: its close, commitments, reveal set and every
candidate's fate) goes out with its block, for the node to store and the explorer to show.

Time is a parameter and nothing here waits: :meth:`RoundService.tick` is called with the
clock's reading and returns what the node must announce or compute; the expensive model
steps run elsewhere (the node's worker threads) and their results come back as values.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from consensus.beacon import BeaconChain
from consensus.chain import block_template, validate_block
from consensus.crypto import PrivateKey, address_of, format_address
from consensus.engines.ponas.engine import PonasEngine
from consensus.engines.ponas.rounds import (
    BUILTIN_TASK,
    MAX_FREE_COMMITMENTS,
    MAX_ROUND_COMMITMENTS,
    CommitmentSet,
    candidate_rank,
    check_close,
    check_commitment,
    check_reveal_set,
    commitments_root,
    entry_rank,
    is_backup,
    make_close,
    make_reveal_set,
    seal_tiebreak,
    tiebreak,
)
from consensus.engines.ponas.verify import Verdict
from consensus.errors import ConsensusError, InvalidBlock, InvalidRound
from consensus.types import Block, Commitment, Payout, RevealEntry, RevealSet, RoundClose
from node.chain import Chain, ImportResult
from node.mempool import Mempool

log = logging.getLogger("ponas.rounds")

MAX_EARLY_COMMITMENTS = 1024
#: A commitment admitted this many seconds before a close's timestamp and left out of it is a
#: dispute (gossip takes well under a second on a healthy network; the clocks may differ by
#: :data:`CLOSE_SKEW`).
DISPUTE_MARGIN = 5.0
MAX_DISPUTES = 50
#: Rounds for which a key whose candidate failed its retrain may not commit (it cost every
#: node a retrain). A fresh key costs nothing yet, so this binds only until commitments cost.
PENALTY_ROUNDS = 20
#: Seconds of clock difference allowed between a close's timestamp and this node's clock (a
#: close stamped before the commit deadline, or ahead of now, by more is refused).
CLOSE_SKEW = 2.0
#: Seconds between two requests to the peers for a candidate listed in the reveal set that
#: this node lacks.
FETCH_EVERY = 2.0
#: Rounds whose reveal-set winner a node remembers (to refuse other blocks of those rounds).
MAX_DECIDED = 16
#: Listed candidates asked of the peers in one request (a ``getblocks`` holds 16 at most).
GETBLOCKS_AT_ONCE = 16


#: At most this many commitments, and candidates, in a round's record: the protocol's limit of
#: commitments in a round (a candidate opens one commitment), so a full round's record stays
#: within a few MiB.
MAX_RECORD_ITEMS = MAX_ROUND_COMMITMENTS


@dataclass(frozen=True, slots=True)
class Standing:
    """One candidate of a round as a node saw it, for the round's record: its entry (block hash,
    claimed score, commitment index) and what came of it. ``status``: ``winner`` (the round's
    block), ``scored`` (its model passed this node's step, and it ranks below the winner),
    ``refused`` (``reason``: its model step, its retrain or its import failed, or it never
    came), ``not-listed`` (the reveal set leaves it out) or ``not-scored`` (a claim only: nodes
    score listed claims best first and stop at the first that holds). ``score``: this node's
    score of its model on the round's test set, where it computed one."""

    entry: RevealEntry
    status: str
    score: int | None = None
    reason: str | None = None


def round_record(
    height: int, parent: bytes, *, status: str, source: str, attempt: int, close: RoundClose | None,
    commitments: Sequence[Commitment], seen: dict[bytes, float], reveal_set: RevealSet | None,
    standings: Sequence[Standing], winner: bytes | None, at: float, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a node saw of a round, as JSON for people (the explorer's round page, ``GET
    /api/v1/rounds/H``): the close; the commitments in the close's order (before the close: as
    admitted), each with when this node first saw it; the closer's reveal set; and the
    leaderboard: every candidate, best claim first by the protocol's rank (claimed score, then
    the commitment's tie-break), with its status. ``status``: ``decided`` or ``in-progress``;
    ``source``: ``node`` (this node's round service), ``generate`` (a local ``ponas chain
    generate`` round) or ``block`` (only what the round's block carries). The lists hold at most
    :data:`MAX_RECORD_ITEMS` each (``truncated`` says when more were cut)."""

    def miner(index: int) -> str | None:
        return format_address(address_of(commitments[index].miner)) if 0 <= index < len(commitments) else None

    def rank(s: Standing) -> tuple[int, int, bytes]:
        e = s.entry
        if close is not None and 0 <= e.index < len(commitments):
            return candidate_rank(e.score, tiebreak(close.test_key, commitments[e.index].hash()), e.block_hash)
        return candidate_rank(e.score, (1 << 32) - 1, e.block_hash)

    listed = None if reveal_set is None else {e.block_hash for e in reveal_set.entries}
    board = sorted(standings, key=rank)
    record: dict[str, Any] = {
        "version": 1, "height": height, "parent": parent.hex(), "status": status, "source": source,
        "attempt": attempt, "at": at, "winner": None if winner is None else winner.hex(),
        "close": None if close is None else {
            "hash": close.hash().hex(), "key_index": close.key_index, "timestamp": close.timestamp,
            "commitments_count": close.commitments_count, "closer": close.closer.hex(),
            "test_key": close.test_key.hex(),
        },
        "commitments": {
            "count": len(commitments), "truncated": len(commitments) > MAX_RECORD_ITEMS,
            "items": [{"index": i, "hash": c.hash().hex(), "miner": format_address(address_of(c.miner)),
                       "key": c.miner.hex(), "seq": c.seq, "seen": seen.get(c.hash())}
                      for i, c in enumerate(commitments[:MAX_RECORD_ITEMS])],
        },
        "reveal_set": None if reveal_set is None else {
            "hash": reveal_set.hash().hex(), "timestamp": reveal_set.timestamp, "closer": reveal_set.closer.hex(),
            "entries": [{"block": e.block_hash.hex(), "score": e.score, "index": e.index}
                        for e in reveal_set.entries[:MAX_RECORD_ITEMS]],
        },
        "candidates": [{"rank": n, "block": s.entry.block_hash.hex(), "miner": miner(s.entry.index),
                        "index": s.entry.index, "claimed": s.entry.score, "score": s.score, "status": s.status,
                        "reason": s.reason, "listed": None if listed is None else s.entry.block_hash in listed}
                       for n, s in enumerate(board[:MAX_RECORD_ITEMS], start=1)],
        "candidates_truncated": len(board) > MAX_RECORD_ITEMS,
    }
    if extra:
        record.update(extra)
    return record


@dataclass(slots=True)
class Candidate:
    block: Block
    weights: bytes
    verdict: Verdict  # the model evaluated on the round's test set by this node
    retrained: Verdict | None = None  # the full verdict, once retrained (policy ``retrain``)
    failed: str | None = None  # why its retrain or import failed

    @property
    def score(self) -> int:
        return self.verdict.score

    @property
    def rank(self) -> tuple[int, int, bytes]:
        return candidate_rank(self.block.header.score, seal_tiebreak(self.block.proof), self.block.header.hash())


@dataclass
class Round:
    height: int
    parent: bytes
    opened: float
    deadline: float
    commitments: CommitmentSet
    close: RoundClose | None = None
    ordered: list[Commitment] = field(default_factory=list)  # the close's commitments, in order
    candidates: dict[bytes, Candidate] = field(default_factory=dict)
    attempt: int = 0
    # the (genotype, seed) pairs this round may not repeat (its branch's blocks in its task epoch)
    spent: tuple[tuple[str, int], ...] = ()
    # the commit deadline on the chain's timeline (the parent's close, or the failed attempt's,
    # plus the windows): no close may come before it, even where this node opened the round late
    earliest_close: float = 0.0
    # when this node first admitted each commitment (its hash): a close that leaves out one seen
    # well before it is a dispute
    arrived: dict[bytes, float] = field(default_factory=dict)
    # the closer's signed list of the candidates that count, and when this node got it
    reveal_set: RevealSet | None = None
    reveal_set_at: float = 0.0
    # candidates that passed the cheap checks (when first, and their entry), whatever came of
    # their model step; and those this node refused for good (model step, or given up missing)
    received: dict[bytes, tuple[float, RevealEntry]] = field(default_factory=dict)
    rejected: dict[bytes, str] = field(default_factory=dict)
    fetched: dict[bytes, float] = field(default_factory=dict)  # listed candidates asked of peers, when
    # candidates relayed by peers that passed the cheap checks, not scored yet: (block, weights,
    # the peer), scored in claim order only while one could still win (:meth:`next_evaluation`)
    held: dict[bytes, tuple[Block, bytes, Any]] = field(default_factory=dict)
    no_set_noted: bool = False

    @property
    def reveal_end(self) -> float | None:
        return None if self.close is None else self.close.timestamp + self.commitments.params.reveal_window


class AnnounceKind(Enum):
    COMMITMENT = "commitment"  # an early commitment admitted as its round opened: relay it
    CLOSE = "close"  # this node closed the round: send the close with its commitments
    BLOCK = "block"  # the round's block was imported: relay it
    RETRAIN = "retrain"  # retrain this candidate (the round's best) off the event loop
    REVEAL_SET = "reveal-set"  # this node (the closer) signed the round's reveal set: send it
    FETCH = "fetch"  # ask the peers for these candidates, listed in the reveal set and missing here
    RECORD = "record"  # a round this node followed ended with a block from elsewhere: store its record


@dataclass(frozen=True, slots=True)
class Announce:
    """Something the node must tell its peers (a close, a block, a commitment), or the one
    expensive step the round waits for (a retrain)."""

    kind: AnnounceKind
    close: RoundClose | None = None
    commitment: Commitment | None = None
    commitments: tuple[Commitment, ...] = ()
    block: Block | None = None
    weights: bytes = b""
    result: ImportResult | None = None
    reveal_set: RevealSet | None = None
    hashes: tuple[bytes, ...] = ()
    #: the round's record (:func:`round_record`) to store: with the round's ``BLOCK``, or alone
    record: dict[str, Any] | None = None


class RoundService:
    def __init__(
        self,
        chain: Chain,
        mempool: Mempool,
        now: float,
        closer: tuple[PrivateKey, BeaconChain] | None = None,
    ) -> None:
        if not isinstance(chain.engine, PonasEngine):
            raise ConsensusError("wrong-engine", "the round service runs the ponas engine")
        self.chain = chain
        self.engine: PonasEngine = chain.engine
        self.params = chain.params
        self.pp = chain.params.ponas
        self.mempool = mempool
        if closer is not None and closer[0].public_key != self.pp.beacon_pubkey and \
                not is_backup(closer[0].public_key, self.pp):
            raise ConsensusError("wrong-beacon", "the closer key is neither this chain's beacon nor its backup")
        self.closer = closer
        #: this node closes only when the beacon has been silent for ``closer_timeout`` seconds
        self.backup = closer is not None and is_backup(closer[0].public_key, self.pp)
        # Relayed commitments for a round this node has not opened yet: a peer connected the
        # parent first. Without them the closer could miss every commitment of a round.
        self._early: OrderedDict[bytes, Commitment] = OrderedDict()
        self._replayed: list[Commitment] = []  # early ones admitted, for the peers who lack them
        self._retraining: bytes | None = None  # the candidate being retrained, at most one
        self._evaluating: bytes | None = None  # the held candidate being scored, at most one
        self._penalised: dict[bytes, int] = {}  # miner key -> first round it may commit in again
        #: the latest disputes with the closer, newest first (see :meth:`_check_left_out`)
        self.disputes: deque[dict[str, Any]] = deque(maxlen=MAX_DISPUTES)
        #: close hash -> (its reveal set, the block this node took from it): the rounds decided
        #: by a reveal set, whose other blocks this node refuses (:meth:`route_block`)
        self.decided: OrderedDict[bytes, tuple[RevealSet, bytes, tuple[int, int, bytes]]] = OrderedDict()
        self.round = self._open(now)

    # --- timeline ---------------------------------------------------------------------------

    def _open(self, now: float, retry_of: Round | None = None) -> Round:
        tip = self.chain.tip
        if retry_of is not None and retry_of.reveal_end is not None:
            opened = retry_of.reveal_end
        elif tip.height == 0:
            opened = float(self.params.genesis_time)
        else:
            block = self.chain.get_block(self.chain.tip_hash)
            assert block is not None and block.proof is not None
            opened = block.proof.close.timestamp + self.pp.reveal_window
        earliest_close = opened + self.pp.commit_window  # the chain's timeline, whatever this node saw
        if now > opened + self.pp.commit_window:
            opened = now  # this node came late (start-up, sync): give miners a whole window
        deadline = opened + self.pp.commit_window
        chain = self.chain
        collected = CommitmentSet(
            tip.height + 1, self.chain.tip_hash, BUILTIN_TASK, deadline, self.params.chain_id, self.pp,
            stake=lambda miner: chain.account(address_of(miner)).balance,  # on the parent's state
        )
        attempt = retry_of.attempt + 1 if retry_of is not None else 0
        spent = tuple(self.engine.spent_work(tip, self.chain, tip.height + 1))
        r = Round(tip.height + 1, self.chain.tip_hash, opened, deadline, collected, attempt=attempt, spent=spent,
                  earliest_close=earliest_close)
        log.info("round open", extra={"height": r.height, "attempt": attempt, "deadline": round(deadline, 1)})
        for h, c in list(self._early.items()):
            if c.height < r.height or (c.height, c.parent) == (r.height, r.parent):
                del self._early[h]
            if (c.height, c.parent) == (r.height, r.parent):
                try:
                    self._check_penalty_at(c, r.height)
                    if collected.add(c, now):
                        self._replayed.append(c)
                        r.arrived.setdefault(c.hash(), now)
                except InvalidRound as exc:
                    log.debug("early commitment refused", extra={"reason": exc.reason})
        return r

    def keep_early(self, c: Commitment) -> bool:
        """Keep a commitment of a round this node may open next (for a parent it has not got
        yet), to admit it then. Checked as far as it can be now; bounded; False if not kept."""
        r = self.round
        if not r.height <= c.height <= r.height + 1 or (c.height, c.parent) == (r.height, r.parent):
            return False
        h = c.hash()
        if h in self._early:
            return False
        check_commitment(c, self.params.chain_id, self.pp)
        self._early[h] = c
        while len(self._early) > MAX_EARLY_COMMITMENTS:
            self._early.popitem(last=False)
        return True

    def phase(self, now: float) -> str:
        r = self.round
        if r.close is None:
            return "commit" if now < r.deadline else "closing"
        return "reveal"

    def info(self, now: float) -> dict[str, Any]:
        r = self.round
        close = r.close
        return {
            "height": r.height,
            "parent": r.parent.hex(),
            "task_id": BUILTIN_TASK.hex(),
            "space": self.pp.space,
            "recipe": self.pp.recipe,
            "phase": self.phase(now),
            "opened": r.opened,
            "deadline": r.deadline,
            "reveal_end": r.reveal_end,
            "commitments": len(r.ordered) if close else len(r.commitments),
            "candidates": len(r.candidates),
            "max_commitments_per_key": self.pp.max_commitments_per_key,
            "test_set_size": self.pp.test_set_size,
            "task": self.pp.task, "train_size": self.pp.train_size,
            "validation_size": self.pp.validation_size, "epoch_rounds": self.pp.epoch_rounds,
            "task_epoch": self.pp.task_epoch(r.height),
            "spent": [list(pair) for pair in r.spent],  # (genotype, seed) pairs already paid this epoch
            "reward": self.reward(),
            "attempt": r.attempt,
            "disputes": list(self.disputes),
            "reveal_set": None if r.reveal_set is None else {
                "hash": r.reveal_set.hash().hex(), "entries": len(r.reveal_set.entries),
                "timestamp": r.reveal_set.timestamp,
            },
            "close": None if close is None else {
                "hash": close.hash().hex(),
                "test_key": close.test_key.hex(),
                "key_index": close.key_index,
                "timestamp": close.timestamp,
                "commitments_count": close.commitments_count,
                "encoded": close.encode().hex(),
            },
        }

    def record(self, now: float) -> dict[str, Any]:
        """The round in progress as a round record (:func:`round_record`, ``in-progress``):
        its commitments so far, its reveal set once it came, its candidates so far."""
        r = self.round
        return self._record(r, None, now, "in-progress", extra={
            "phase": self.phase(now), "opened": r.opened, "deadline": r.deadline, "reveal_end": r.reveal_end})

    def _record(self, r: Round, winner: Block | None, now: float, status: str = "decided",
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
        commitments = r.ordered if r.close is not None else r.commitments.items
        win = None if winner is None else winner.header.hash()
        return round_record(r.height, r.parent, status=status, source="node", attempt=r.attempt, close=r.close,
                            commitments=commitments, seen=r.arrived, reveal_set=r.reveal_set,
                            standings=self._standings(r, winner), winner=win, at=now, extra=extra)

    def _standings(self, r: Round, winner: Block | None) -> list[Standing]:
        """Every candidate of ``r`` this node knows of (listed in the reveal set, received, or
        scored) and what came of it; the winner's block is one of them even where it came
        from elsewhere."""
        listed = self._listed(r)
        entries: dict[bytes, RevealEntry] = dict(listed or {})
        for h, (_seen, entry) in r.received.items():
            entries.setdefault(h, entry)
        for h, scored in r.candidates.items():
            if scored.block.proof is not None:
                entries.setdefault(h, RevealEntry(h, scored.block.header.score, scored.block.proof.index))
        win = None if winner is None else winner.header.hash()
        if win is not None and winner is not None and winner.proof is not None:
            entries.setdefault(win, RevealEntry(win, winner.header.score, winner.proof.index))
        out = []
        for h, entry in entries.items():
            cand = r.candidates.get(h)
            score = None if cand is None else cand.verdict.score
            if h == win:
                out.append(Standing(entry, "winner", score))
            elif h in r.rejected:
                out.append(Standing(entry, "refused", score, r.rejected[h]))
            elif cand is not None and cand.failed is not None:
                out.append(Standing(entry, "refused", score, cand.failed))
            elif listed is not None and h not in listed:
                out.append(Standing(entry, "not-listed", score, "not-in-reveal-set"))
            else:
                out.append(Standing(entry, "scored" if cand is not None else "not-scored", score))
        return out

    # --- inputs -----------------------------------------------------------------------------

    def reward(self) -> int:
        """What a block of this round pays out now: the subsidy and the fees of the transfers a
        template takes from the mempool (shown with the round, so that a miner splits it and
        asks for one template)."""
        txs = self.mempool.select(self.params.max_block_txs)
        return self.params.subsidy(self.round.height) + sum(tx.fee for tx in txs)

    def template(self, payouts: Sequence[Payout], genotype: str, weights_hash: bytes, seed: int, now: float) -> Block:
        """An unsealed candidate on the round's parent, with mempool transfers and roots. The
        last payout, if its amount is 0, takes what the others leave of the reward; payouts
        that add up to more than the reward (the fees changed since the miner read the round)
        are refused with ``stale-reward``."""
        parent = self.chain.tip
        if self.chain.tip_hash != self.round.parent:
            raise InvalidRound("round-moved", "the tip moved; fetch the round again")
        txs = self.mempool.select(self.params.max_block_txs)
        reward = self.params.subsidy(parent.height + 1) + sum(tx.fee for tx in txs)
        if sum(p.amount for p in payouts) > reward:
            raise InvalidRound("stale-reward", f"the payouts exceed the reward of {reward}: fetch the round again")
        ts = max(int(now), parent.timestamp + 1)
        return block_template(
            parent, self.chain.accounts, self.params, timestamp=ts, payouts=list(payouts), txs=txs,
            task_id=BUILTIN_TASK, genotype=genotype, weights_hash=weights_hash, seed=seed,
        )

    def add_commitment(self, c: Commitment, now: float) -> bool:
        """Admit a commitment for the open round; False if already known. A key whose candidate
        failed its retrain is refused for :data:`PENALTY_ROUNDS` rounds (``penalised-miner``)."""
        if self.round.close is not None:
            raise InvalidRound("commit-too-late", "the round is closed")
        self._check_penalty(c)
        new = self.round.commitments.add(c, now)
        if new:
            self.round.arrived.setdefault(c.hash(), now)
        return new

    def _check_penalty(self, c: Commitment) -> None:
        self._check_penalty_at(c, self.round.height)

    def _check_penalty_at(self, c: Commitment, height: int) -> None:
        until = self._penalised.get(c.miner)
        if until is not None and height < until:
            raise InvalidRound("penalised-miner", f"this key's candidate failed its retrain; it may commit again "
                                                  f"from round {until}")

    def penalised_until(self, miner: bytes) -> int | None:
        """The first round in which ``miner``'s key may commit again, if it is barred now."""
        until = self._penalised.get(miner)
        return until if until is not None and until > self.round.height else None

    def penalise(self, miner: bytes, reason: str) -> None:
        """Refuse ``miner``'s commitments for the next :data:`PENALTY_ROUNDS` rounds: its
        candidate cost this node a retrain and failed it (a model that saw more than the public
        training data, or weights the seed does not give)."""
        h = self.round.height
        self._penalised = {k: u for k, u in self._penalised.items() if u > h}  # bounded by live penalties
        self._penalised[miner] = h + 1 + PENALTY_ROUNDS
        log.warning("miner penalised", extra={"miner": miner.hex()[:16], "reason": reason, "until": h + 1 + PENALTY_ROUNDS})

    def add_close(self, close: RoundClose, commitments: Sequence[Commitment], now: float) -> bool:
        """Accept the round's close (or a retry's). False if already known or stale.

        The closer's power is cut to what it cannot help (protocol v2): the close must take the
        one key of this attempt (``wrong-key-index``: the previous close's index, plus one, plus
        the attempts that ended with no valid candidate), come no earlier than the commit
        deadline (``close-too-early``: that would cut the window and drop late commitments) and
        not from the future (``close-in-future``); a retry (a new key on the same parent) only
        once the reveal window has ended with no valid candidate (``retry-too-early``,
        ``retry-with-candidates``), so that it cannot throw away reveals it dislikes."""
        r = self.round
        if r.close is not None and close.hash() == r.close.hash():
            return False
        if close.height != r.height:
            if close.height < r.height:
                return False
            raise InvalidRound("close-ahead", f"close for height {close.height}, this node is at round {r.height}")
        if close.parent != r.parent:
            raise InvalidRound("close-other-parent", "the close names a parent this node does not have as tip")
        if r.close is not None and close.key_index <= r.close.key_index:
            return False
        prev_key, prev_index, prev_time = self.engine.previous_close(self.chain.tip, self.chain)
        check_close(close, self.params.chain_id, self.pp, prev_key=prev_key, prev_key_index=prev_index, prev_time=prev_time)
        if len(commitments) != close.commitments_count or commitments_root(commitments) != close.commitments_root:
            raise InvalidRound("bad-close-commitments", "the commitments sent do not match the close")
        if sum(1 for c in commitments if r.commitments.is_free(c.miner)) > MAX_FREE_COMMITMENTS:
            raise InvalidRound("too-many-free-commitments", f"the close gives more than {MAX_FREE_COMMITMENTS} places "
                                                            "to keys with less than one coin")
        if close.timestamp > now + CLOSE_SKEW:
            raise InvalidRound("close-in-future", f"the close is stamped {close.timestamp - now:.0f}s ahead of this node's clock")
        if r.close is not None:  # a retry: only after a reveal window that produced nothing valid
            reveal_end = r.reveal_end
            assert reveal_end is not None
            if now < reveal_end:
                raise InvalidRound("retry-too-early", f"the reveal window ends in {reveal_end - now:.1f}s")
            counted = self._listed(r)
            if any(c.failed is None and (counted is None or h in counted) for h, c in r.candidates.items()):
                raise InvalidRound("retry-with-candidates", "this node holds a valid candidate of the round")
            self.round = r = self._open(now, retry_of=r)
        want = prev_index + 1 + r.attempt
        if close.key_index != want:
            raise InvalidRound("wrong-key-index", f"attempt {r.attempt} of round {r.height} takes beacon key {want}, "
                                                  f"not {close.key_index}")
        if close.timestamp < r.earliest_close - CLOSE_SKEW:
            raise InvalidRound("close-too-early", f"the close is stamped {r.earliest_close - close.timestamp:.0f}s "
                                                  "before the commit deadline")
        takeover = r.earliest_close + self.pp.closer_timeout
        if is_backup(close.closer, self.pp) and close.timestamp < takeover - CLOSE_SKEW:
            raise InvalidRound("backup-too-early", f"the backup closer may close {takeover - close.timestamp:.0f}s later, "
                                                   "if the beacon has not closed by then")
        if any(self.pp.backup_pubkey) and not is_backup(close.closer, self.pp) and close.timestamp >= takeover:
            raise InvalidRound("closer-timed-out", "the beacon closes within closer_timeout of the deadline; "
                                                   "after that, the backup closer does")
        r.close = close
        r.ordered = list(commitments)
        log.info("round closed", extra={"height": r.height, "commitments": len(commitments), "key_index": close.key_index})
        self._check_left_out(r, close, commitments)
        return True

    def _check_left_out(self, r: Round, close: RoundClose, commitments: Sequence[Commitment]) -> None:
        """A dispute for each commitment this node admitted more than :data:`DISPUTE_MARGIN`
        seconds before the close's timestamp that the close leaves out: the closer may censor
        commitments, and this is how it shows (in the log and ``GET /round``'s ``disputes``)."""
        included = {c.hash() for c in commitments}
        by_hash = {c.hash(): c for c in r.commitments.items}
        for h, seen in r.arrived.items():
            if h in included or seen > close.timestamp - DISPUTE_MARGIN or h not in by_hash:
                continue
            self._dispute({
                "kind": "left-out-commitment", "height": r.height, "attempt": r.attempt, "close": close.hash().hex(),
                "key_index": close.key_index, "commitment": h.hex(), "miner": by_hash[h].miner.hex(),
                "seen_before_close_s": round(close.timestamp - seen, 1),
            })

    def add_candidate(self, block: Block, weights: bytes, now: float) -> Candidate:
        """Check a candidate of the current round as far as possible without retraining: the
        chain checks (:meth:`check_candidate`), the model's score, then :meth:`admit_candidate`.
        A node runs the model step in a worker thread between the two instead."""
        known = self.check_candidate(block, now)
        if known is not None:
            return known
        try:
            verdict = self.evaluate_candidate(block, weights)
        except InvalidBlock as exc:
            self.reject_candidate(block, exc.reason)
            raise
        return self.admit_candidate(block, weights, verdict)

    def check_candidate(self, block: Block, now: float) -> Candidate | None:
        """Everything about a candidate of the current round but its model: the round, the parent,
        header, seal, body and state. The candidate already admitted, if it was; else None."""
        known = self._of_this_round(block)
        if known is not None:
            return known
        r, h = self.round, block.header.hash()
        if h in r.rejected:
            raise InvalidBlock("candidate-refused-before", f"this node refused this candidate already ({r.rejected[h]})")
        listed = self._listed(r)
        if listed is not None and h not in listed:
            raise InvalidBlock("not-in-reveal-set", "the round's reveal set does not list this candidate")
        validate_block(block, self.chain.tip, self.chain.accounts, self.params, self.engine, self.chain, int(now),
                       self.mempool.verified, work=False)
        assert block.proof is not None  # validate_block checked the seal
        if h not in r.received:
            r.received[h] = (now, RevealEntry(h, block.header.score, block.proof.index))
        return None

    def reject_candidate(self, block: Block, reason: str) -> None:
        """The model step refused a candidate of the current round (its score, its weights): the
        closer leaves it out of the reveal set, a node does not wait for it, and its miner's key
        may not commit for :data:`PENALTY_ROUNDS` rounds (a false claim cost every node that
        scored it)."""
        r = self.round
        if r.close is not None and block.proof is not None and block.proof.close.hash() == r.close.hash():
            h = block.header.hash()
            r.held.pop(h, None)
            if h not in r.rejected and h not in r.candidates:
                r.rejected[h] = reason
                self.penalise(block.proof.commitment.miner, reason)

    def hold_candidate(self, block: Block, weights: bytes, origin: Any) -> None:
        """Keep a candidate a peer relayed (it passed :meth:`check_candidate`) to score when its
        claim may win: nodes score in claim order and stop at the first valid one, so an honest
        round costs one scoring, not one per candidate."""
        r = self.round
        h = block.header.hash()
        if h not in r.candidates and h not in r.rejected:
            r.held.setdefault(h, (block, weights, origin))

    def next_evaluation(self, now: float) -> tuple[Block, bytes, Any] | None:
        """The held candidate to score now, if any: once the reveal set has come (or the wait for
        it is over), the best claim held that it lists, one at a time, and only if no candidate
        already scored and still standing outranks it (it could not win). Nothing is scored
        during the window: the set may leave a candidate out, and of the candidates that count
        an honest round then costs one scoring (a score per new best claim as candidates arrive
        would cost about 1 + 1/2 + ... + 1/C)."""
        r = self.round
        if self._evaluating is not None or r.reveal_end is None:
            return None
        if r.reveal_set is None and now < r.reveal_end + self._set_wait():
            return None
        listed = self._listed(r)
        held = [(candidate_rank(b.header.score, seal_tiebreak(b.proof), h), h) for h, (b, _w, _o) in r.held.items()
                if h not in r.candidates and h not in r.rejected and (listed is None or h in listed)]
        if not held:
            return None
        best, h = min(held)
        standing = self._standing(r)
        if standing and standing[0].rank < best:
            return None
        self._evaluating = h
        return r.held[h]

    def candidate_data(self, h: bytes) -> tuple[Block, bytes] | None:
        """A candidate of the current round by block hash, scored or held: (block, weights)."""
        r = self.round
        if h in r.candidates:
            return r.candidates[h].block, r.candidates[h].weights
        if h in r.held:
            return r.held[h][0], r.held[h][1]
        return None

    def evaluated(self, block: Block, *, keep: bool = False) -> None:
        """A held candidate's model step ended (whatever came of it, whichever round is current);
        ``keep``: it ended on our own error, so the candidate stays held, to be scored again."""
        h = block.header.hash()
        if self._evaluating == h:
            self._evaluating = None
        if not keep:
            self.round.held.pop(h, None)

    # --- the reveal set -----------------------------------------------------------------------

    @staticmethod
    def _listed(r: Round) -> dict[bytes, RevealEntry] | None:
        """The reveal set's entries by block hash; None while the round has no reveal set."""
        return None if r.reveal_set is None else {e.block_hash: e for e in r.reveal_set.entries}

    def add_reveal_set(self, rs: RevealSet, now: float) -> bool:
        """Accept the closer's reveal set for the current attempt; False if known or stale.

        Refused: a set for a close this node does not hold (``reveal-set-unknown-close``; it
        may come before its close on another path), every rule of
        :func:`~consensus.engines.ponas.rounds.check_reveal_set`, and a set stamped ahead of
        this node's clock (``reveal-set-in-future``). A second, different set for the same
        close (the closer equivocating) is not taken: the first one stands and a dispute is
        logged. A candidate this node received well before the window's end and found valid
        that the set leaves out is a dispute too (the closer can still censor reveals): well
        before is :data:`DISPUTE_MARGIN` seconds, or half the window if that is shorter."""
        r = self.round
        if r.close is None or rs.close != r.close.hash():
            if rs.height < r.height or rs.close in self.decided:
                return False
            raise InvalidRound("reveal-set-unknown-close", "a reveal set for a close this node does not hold")
        if r.reveal_set is not None:
            if rs.hash() != r.reveal_set.hash():
                self._dispute({"kind": "two-reveal-sets", "height": r.height, "close": rs.close.hex(),
                               "first": r.reveal_set.hash().hex(), "second": rs.hash().hex()})
            return False
        check_reveal_set(rs, r.close, self.params.chain_id, self.pp)
        if rs.timestamp > now + CLOSE_SKEW:
            raise InvalidRound("reveal-set-in-future", f"the reveal set is stamped {rs.timestamp - now:.0f}s ahead "
                                                       "of this node's clock")
        r.reveal_set, r.reveal_set_at = rs, now
        log.info("reveal set", extra={"height": r.height, "entries": len(rs.entries)})
        listed = self._listed(r)
        assert listed is not None and r.reveal_end is not None
        margin = min(DISPUTE_MARGIN, self.pp.reveal_window / 2)
        for h, (seen, _entry) in r.received.items():
            if h in listed or h in r.rejected or seen > r.reveal_end - margin:
                continue
            cand = r.candidates.get(h)
            if cand is None or cand.failed is not None:
                continue
            self._dispute({"kind": "left-out-candidate", "height": r.height, "close": rs.close.hex(),
                           "candidate": h.hex(), "score": cand.block.header.score,
                           "seen_before_end_s": round(r.reveal_end - seen, 1)})
        return True

    def _set_wait(self) -> float:
        """How long after the window's end a node waits for the reveal set: ``closer_timeout``,
        twice that if the genesis names a backup closer (it signs when the closer is silent)."""
        return float(self.pp.closer_timeout * (2 if any(self.pp.backup_pubkey) else 1))

    def _make_reveal_set(self, r: Round, now: float) -> RevealSet:
        """The closer's reveal set: every candidate that passed the cheap checks by the window's
        end and that its model step has not refused (those still being scored are listed: every
        node scores them in turn)."""
        assert self.closer is not None and r.close is not None and r.reveal_end is not None
        entries: list[RevealEntry] = [entry for h, (seen, entry) in r.received.items()
                   if seen <= r.reveal_end and h not in r.rejected
                   and (h not in r.candidates or r.candidates[h].failed is None)]
        stamp = int(r.reveal_end) + (0 if r.close.closer == self.closer[0].public_key else self.pp.closer_timeout)
        return make_reveal_set(self.closer[0], self.params.chain_id, r.close, entries, max(int(now), stamp))

    def route_block(self, block: Block, named: bool = False) -> str:
        """How a block (sent as a block, not a candidate) with a round seal is taken.

        ``candidate``: it is of the current round, whose block comes from the selection (it
        joins the candidates, if the reveal set lists it, or while the set is awaited);
        ``block``: the ordinary path (import on its merits). A block of a round this node
        decided by its reveal set is refused unless it is the block taken: one the set does not
        list (``not-in-reveal-set``) or lists below it (``not-round-winner``), whatever a later
        close names, so that nothing held back, or revealed late, replaces the round's block
        (attacks 3 and 4), not even with the closer's help. The one exception: a listed
        candidate ranked above the block taken, which this node gave up as unavailable while
        the others had it, once a close signed by the closer names it (``named``): the node
        rejoins the chain the others follow (its verification still decides)."""
        assert block.proof is not None
        h, close_hash = block.header.hash(), block.proof.close.hash()
        decided = self.decided.get(close_hash)
        if decided is not None:
            rs, winner, winner_rank = decided
            if h == winner:
                return "block"
            entry = next((e for e in rs.entries if e.block_hash == h), None)
            if entry is None or (entry.score, entry.index) != (block.header.score, block.proof.index):
                raise InvalidBlock("not-in-reveal-set", f"the reveal set of round {block.header.height} does not list it")
            rank = candidate_rank(block.header.score, seal_tiebreak(block.proof), h)
            if named and rank < winner_rank:
                return "block"
            raise InvalidBlock("not-round-winner", f"round {block.header.height} was decided by its reveal set: "
                                                   "a better listed candidate passed")
        r = self.round
        if not named and r.close is not None and close_hash == r.close.hash() and block.header.parent == r.parent:
            return "candidate"
        return "block"  # (one named by a close of the next round: the others have moved on, follow them)

    def _dispute(self, dispute: dict[str, Any]) -> None:
        self.disputes.appendleft(dispute)
        log.warning("dispute", extra=dispute)

    def _of_this_round(self, block: Block) -> Candidate | None:
        """The candidate as admitted already, or None if it belongs to the current round (its
        close, its parent); else ``wrong-close`` or ``bad-prevblk``."""
        r = self.round
        known = r.candidates.get(block.header.hash())
        if known is not None:
            return known
        if r.close is None or block.proof is None or block.proof.close.hash() != r.close.hash():
            raise InvalidBlock("wrong-close", "not a candidate of this node's current round (or it ended)")
        if block.header.parent != self.chain.tip_hash:
            raise InvalidBlock("bad-prevblk", "the candidate is not on the round's parent")
        return None

    def evaluate_candidate(self, block: Block, weights: bytes) -> Verdict:
        """The model step: weights hash, strict load, score on the round's test set against the
        claim (no retraining). Reads no mutable round state but the close's test key, taken from
        the candidate's own proof, so it may run in another thread."""
        assert block.proof is not None  # check_candidate ran
        return self.engine.work_verdict(block, weights, retrain=False)

    def admit_candidate(self, block: Block, weights: bytes, verdict: Verdict) -> Candidate:
        """Add a candidate whose model step passed, if its round is still the current one (the
        round may have ended, or been retried, while the model was scored: ``wrong-close``)."""
        known = self._of_this_round(block)
        if known is not None:
            return known
        assert block.proof is not None  # _of_this_round checked it
        r, h = self.round, block.header.hash()
        cand = Candidate(block, weights, verdict)
        r.candidates[h] = cand
        log.info("candidate", extra={"height": r.height, "score": block.header.score, "hash": h.hex()[:16]})
        return cand

    # --- the clock ----------------------------------------------------------------------------

    # --- retraining -------------------------------------------------------------------------

    def _needs_retrain(self, cand: Candidate) -> bool:
        return self.engine.retrains and cand.retrained is None

    def next_retrain(self) -> Announce | None:
        """The retrain to start now, if any: the round's best candidate still standing, when
        the policy asks for retraining, it has not been retrained, and no retrain is running
        (one at a time: a queue of superseded bests once held a loaded node's round end for
        minutes)."""
        if self._retraining is not None:
            return None
        for cand in self._standing(self.round):
            if not self._needs_retrain(cand):
                return None
            self._retraining = cand.block.header.hash()
            return Announce(AnnounceKind.RETRAIN, block=cand.block, weights=cand.weights)
        return None

    def _standing(self, r: Round) -> list[Candidate]:
        """The round's candidates still standing, best first: once the round has its reveal
        set, only those it lists (by the set's claims)."""
        listed = self._listed(r)
        cands = [c for h, c in r.candidates.items()
                 if c.failed is None and h not in r.rejected and (listed is None or h in listed)]
        return sorted(cands, key=lambda c: c.rank)

    def on_retrained(self, block_hash: bytes, verdict: Verdict | None, reason: str = "") -> None:
        """The result of a :attr:`AnnounceKind.RETRAIN`: the full verdict, or None and the
        reason it failed. A candidate of a round that has ended meanwhile is forgotten."""
        if self._retraining == block_hash:
            self._retraining = None
        cand = self.round.candidates.get(block_hash)
        if cand is None:
            return
        if verdict is None:
            cand.failed = reason or "retrain-failed"
            log.warning("candidate failed its retrain", extra={"reason": cand.failed, "hash": block_hash.hex()[:16]})
            if cand.block.proof is not None:
                self.penalise(cand.block.proof.commitment.miner, cand.failed)
        else:
            cand.retrained = verdict

    # --- the clock ----------------------------------------------------------------------------

    def tick(self, now: float) -> list[Announce]:
        out = self._tick(now)
        replayed = [Announce(AnnounceKind.COMMITMENT, commitment=c) for c in self._replayed]
        self._replayed.clear()
        retrain = self.next_retrain()
        return replayed + out + ([retrain] if retrain is not None else [])

    def _tick(self, now: float) -> list[Announce]:
        out: list[Announce] = []
        r = self.round
        if self.chain.tip_hash != r.parent:  # the tip moved under us (a relayed block, a reorg)
            close = r.close
            tip = self.chain.get_block(self.chain.tip_hash) if close is not None else None
            if close is not None and tip is not None and tip.proof is not None and tip.proof.close.hash() == close.hash():
                # this round's block came from elsewhere (a close named it, a sync): what this
                # node saw of the round is still worth keeping
                out.append(Announce(AnnounceKind.RECORD, record=self._record(r, tip, now)))
            self.round = self._open(now)
            return out
        if r.close is None and now >= r.deadline and not len(r.commitments):
            # Nobody committed in time: no close could have a candidate. Every node gives the
            # round a fresh window from now (same height, parent and beacon key), so a miner
            # that came late is not refused for ever.
            r.opened, r.deadline = now, now + self.pp.commit_window
            r.commitments.deadline = r.deadline
            log.info("round extended: no commitment yet", extra={"height": r.height, "deadline": round(r.deadline, 1)})
        close_at = r.deadline if not self.backup else max(r.deadline, r.earliest_close) + self.pp.closer_timeout
        if r.close is None and self.closer is not None and now >= close_at and len(r.commitments):
            key, beacon = self.closer
            prev_key, prev_index = self.engine.previous_key(self.chain.tip, self.chain)
            index = prev_index + 1 + r.attempt
            close = make_close(
                key, self.params.chain_id, height=r.height, task_id=BUILTIN_TASK, parent=r.parent,
                test_key=beacon.key(index), key_index=index, commitments=r.commitments.items, timestamp=int(now),
            )
            r.close, r.ordered = close, list(r.commitments.items)
            log.info("closed the round", extra={"height": r.height, "commitments": len(r.ordered), "key_index": index})
            out.append(Announce(AnnounceKind.CLOSE, close=close, commitments=tuple(r.ordered)))
        reveal_end = r.reveal_end
        if reveal_end is None or now < reveal_end:
            return out
        assert r.close is not None
        own = self.closer is not None and r.close.closer == self.closer[0].public_key
        if r.reveal_set is None and self.closer is not None and (
                own or (self.backup and now >= reveal_end + self.pp.closer_timeout)):
            rs = self._make_reveal_set(r, now)
            r.reveal_set, r.reveal_set_at = rs, now
            log.info("signed the reveal set", extra={"height": r.height, "entries": len(rs.entries),
                                                     "as_backup": not own})
            out.append(Announce(AnnounceKind.REVEAL_SET, reveal_set=rs))
        if r.reveal_set is None:
            # the closer's reveal set fixes which candidates count: wait for it (and for the
            # backup's, if the genesis names a backup closer and the closer stays silent)
            if now < reveal_end + self._set_wait():
                return out
            if not r.no_set_noted:
                r.no_set_noted = True
                self._dispute({"kind": "no-reveal-set", "height": r.height, "close": r.close.hash().hex()
                               if r.close is not None else None, "waited_s": round(now - reveal_end, 1)})
        step = self._select(now, out)
        if isinstance(step, Announce):
            out.append(replace(step, record=self._record(r, step.block, now)))
            if r.reveal_set is not None and r.close is not None and step.block is not None:
                b = step.block
                self.decided[r.close.hash()] = (r.reveal_set, b.header.hash(),
                                                candidate_rank(b.header.score, seal_tiebreak(b.proof), b.header.hash()))
                while len(self.decided) > MAX_DECIDED:
                    self.decided.popitem(last=False)
            self.round = self._open(now)
        elif not step and self.chain.tip_hash == r.parent:
            log.warning("round without a valid candidate: retrying", extra={"height": r.height})
            self.round = self._open(now, retry_of=r)
            self.round.close = None
        return out

    def _select(self, now: float, out: list[Announce]) -> Announce | bool:
        """The round's block: the best candidate that passes, with its verdict, imported. True
        while it waits (for a retrain, off the event loop; for a listed candidate still on its
        way or being scored), False when no candidate is left.

        With a reveal set, the candidates are its entries, best claim first (the same list on
        every node); a listed candidate this node lacks is asked of its peers every
        :data:`FETCH_EVERY` seconds and given up ``closer_timeout`` seconds after the set came
        (a dispute: the closer listed what nobody could get). Without one (the closer sent
        none in time), the candidates this node holds."""
        r = self.round
        listed = self._listed(r)
        if listed is None or r.close is None:
            order: list[tuple[bytes, RevealEntry | None]] = [(c.block.header.hash(), None) for c in self._standing(r)]
        else:
            close, ordered = r.close, r.ordered
            ranked = sorted(listed.values(), key=lambda e: entry_rank(e, close, ordered))
            order = [(e.block_hash, e) for e in ranked]
            want = [e.block_hash for e in ranked if e.block_hash not in r.received and e.block_hash not in r.rejected
                    and now - r.fetched.get(e.block_hash, -FETCH_EVERY) >= FETCH_EVERY]
            if want:
                want = want[:GETBLOCKS_AT_ONCE]
                r.fetched.update((h, now) for h in want)
                out.append(Announce(AnnounceKind.FETCH, hashes=tuple(want)))
        for h, entry in order:
            if h in r.rejected:
                continue
            cand = r.candidates.get(h)
            if cand is None:
                assert entry is not None
                if now - r.reveal_set_at > self.pp.closer_timeout:
                    r.rejected[h] = "candidate-unavailable"
                    self._dispute({"kind": "listed-candidate-unavailable", "height": r.height, "candidate": h.hex(),
                                   "score": entry.score, "waited_s": round(now - r.reveal_set_at, 1)})
                    continue
                return True
            if cand.failed is not None:
                continue
            index = cand.block.proof.index if cand.block.proof is not None else -1
            if entry is not None and (cand.block.header.score, index) != (entry.score, entry.index):
                cand.failed = "reveal-entry-mismatch"  # the set's claim is not the block's: the closer's fault
                self._dispute({"kind": "reveal-entry-mismatch", "height": r.height, "candidate": h.hex()})
                continue
            if self._needs_retrain(cand):
                return True  # it waits for its retrain, off the event loop (tick)
            verdict = cand.retrained if self.engine.retrains else cand.verdict
            try:
                result = self.chain.import_block(cand.block, cand.weights, self.mempool.verified, verdict)
            except InvalidBlock as exc:
                cand.failed = exc.reason
                log.warning("candidate failed", extra={"reason": exc.reason, "hash": h.hex()[:16]})
                continue
            log.info("block", extra={"height": cand.block.header.height, "score": cand.block.header.score,
                                     "status": str(result.status)})
            return Announce(AnnounceKind.BLOCK, block=cand.block, weights=cand.weights, result=result)
        return False
