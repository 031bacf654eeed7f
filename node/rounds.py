"""The round service: drives the ``ponas`` round timeline on a node.

Per round it collects commitments (until the close), checks the close (from the network, or
makes it when this node holds the closer key), collects and pre-verifies candidates during the
reveal window (every cheap check, and the model evaluated on the round's test set: a
:class:`~consensus.engines.ponas.verify.Verdict`), asks for the best candidate to be retrained
when the task's policy wants it (one retrain at a time, the current best; its full verdict
comes back through :meth:`RoundService.on_retrained`), and when the window ends imports the
best candidate with its verdict (a candidate that fails gives way to the next best). A round
that ends with no valid candidate is closed again, on the same parent, with the beacon's next
key.

Time is a parameter and nothing here waits: :meth:`RoundService.tick` is called with the
clock's reading and returns what the node must announce or compute; the expensive model
steps run elsewhere (the node's worker threads) and their results come back as values.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from consensus.beacon import BeaconChain
from consensus.chain import block_template, validate_block
from consensus.crypto import PrivateKey, address_of
from consensus.engines.ponas.engine import PonasEngine
from consensus.engines.ponas.rounds import (
    BUILTIN_TASK,
    CommitmentSet,
    candidate_rank,
    check_close,
    check_commitment,
    commitments_root,
    make_close,
    seal_tiebreak,
)
from consensus.engines.ponas.verify import Verdict
from consensus.errors import ConsensusError, InvalidBlock, InvalidRound
from consensus.types import Block, Commitment, Payout, RoundClose
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

    @property
    def reveal_end(self) -> float | None:
        return None if self.close is None else self.close.timestamp + self.commitments.params.reveal_window


class AnnounceKind(Enum):
    COMMITMENT = "commitment"  # an early commitment admitted as its round opened: relay it
    CLOSE = "close"  # this node closed the round: send the close with its commitments
    BLOCK = "block"  # the round's block was imported: relay it
    RETRAIN = "retrain"  # retrain this candidate (the round's best) off the event loop


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
        if closer is not None and closer[0].public_key != self.pp.beacon_pubkey:
            raise ConsensusError("wrong-beacon", "the closer key is not this chain's beacon")
        self.closer = closer
        # Relayed commitments for a round this node has not opened yet: a peer connected the
        # parent first. Without them the closer could miss every commitment of a round.
        self._early: OrderedDict[bytes, Commitment] = OrderedDict()
        self._replayed: list[Commitment] = []  # early ones admitted, for the peers who lack them
        self._retraining: bytes | None = None  # the candidate being retrained, at most one
        self._penalised: dict[bytes, int] = {}  # miner key -> first round it may commit in again
        #: the latest disputes with the closer, newest first (see :meth:`_check_left_out`)
        self.disputes: deque[dict[str, Any]] = deque(maxlen=MAX_DISPUTES)
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
            "close": None if close is None else {
                "hash": close.hash().hex(),
                "test_key": close.test_key.hex(),
                "key_index": close.key_index,
                "timestamp": close.timestamp,
                "commitments_count": close.commitments_count,
                "encoded": close.encode().hex(),
            },
        }

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
        if close.timestamp > now + CLOSE_SKEW:
            raise InvalidRound("close-in-future", f"the close is stamped {close.timestamp - now:.0f}s ahead of this node's clock")
        if r.close is not None:  # a retry: only after a reveal window that produced nothing valid
            reveal_end = r.reveal_end
            assert reveal_end is not None
            if now < reveal_end:
                raise InvalidRound("retry-too-early", f"the reveal window ends in {reveal_end - now:.1f}s")
            if any(c.failed is None for c in r.candidates.values()):
                raise InvalidRound("retry-with-candidates", "this node holds a valid candidate of the round")
            self.round = r = self._open(now, retry_of=r)
        want = prev_index + 1 + r.attempt
        if close.key_index != want:
            raise InvalidRound("wrong-key-index", f"attempt {r.attempt} of round {r.height} takes beacon key {want}, "
                                                  f"not {close.key_index}")
        if close.timestamp < r.earliest_close - CLOSE_SKEW:
            raise InvalidRound("close-too-early", f"the close is stamped {r.earliest_close - close.timestamp:.0f}s "
                                                  "before the commit deadline")
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
            dispute = {
                "kind": "left-out-commitment", "height": r.height, "attempt": r.attempt, "close": close.hash().hex(),
                "key_index": close.key_index, "commitment": h.hex(), "miner": by_hash[h].miner.hex(),
                "seen_before_close_s": round(close.timestamp - seen, 1),
            }
            self.disputes.appendleft(dispute)
            log.warning("dispute: the close left out a commitment seen in time", extra=dispute)

    def add_candidate(self, block: Block, weights: bytes, now: float) -> Candidate:
        """Check a candidate of the current round as far as possible without retraining: the
        chain checks (:meth:`check_candidate`), the model's score, then :meth:`admit_candidate`.
        A node runs the model step in a worker thread between the two instead."""
        known = self.check_candidate(block, now)
        if known is not None:
            return known
        return self.admit_candidate(block, weights, self.evaluate_candidate(block, weights))

    def check_candidate(self, block: Block, now: float) -> Candidate | None:
        """Everything about a candidate of the current round but its model: the round, the parent,
        header, seal, body and state. The candidate already admitted, if it was; else None."""
        known = self._of_this_round(block)
        if known is not None:
            return known
        validate_block(block, self.chain.tip, self.chain.accounts, self.params, self.engine, self.chain, int(now),
                       self.mempool.verified, work=False)
        return None

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
        for cand in sorted(self.round.candidates.values(), key=lambda c: c.rank):
            if cand.failed is not None:
                continue
            if not self._needs_retrain(cand):
                return None
            self._retraining = cand.block.header.hash()
            return Announce(AnnounceKind.RETRAIN, block=cand.block, weights=cand.weights)
        return None

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
            self.round = self._open(now)
            return out
        if r.close is None and now >= r.deadline and not len(r.commitments):
            # Nobody committed in time: no close could have a candidate. Every node gives the
            # round a fresh window from now (same height, parent and beacon key), so a miner
            # that came late is not refused for ever.
            r.opened, r.deadline = now, now + self.pp.commit_window
            r.commitments.deadline = r.deadline
            log.info("round extended: no commitment yet", extra={"height": r.height, "deadline": round(r.deadline, 1)})
        if r.close is None and self.closer is not None and now >= r.deadline and len(r.commitments):
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
        if reveal_end is not None and now >= reveal_end:
            if self._waiting_for_retrain():
                return out
            imported = self._select()
            if imported is not None:
                out.append(imported)
                self.round = self._open(now)
            elif self._waiting_for_retrain():
                return out  # the best failed its import: the next best's retrain comes first
            elif self.chain.tip_hash == r.parent:
                log.warning("round without a valid candidate: retrying", extra={"height": r.height})
                self.round = self._open(now, retry_of=r)
                self.round.close = None
        return out

    def _waiting_for_retrain(self) -> bool:
        """Whether the best candidate still standing waits for its retrain (running, or to
        be started by :meth:`next_retrain` on this tick)."""
        for cand in sorted(self.round.candidates.values(), key=lambda c: c.rank):
            if cand.failed is None:
                return self._needs_retrain(cand)
        return False

    def _select(self) -> Announce | None:
        """Import the best candidate still standing, with its verdict; one that fails the
        import's checks gives way to the next."""
        for cand in sorted(self.round.candidates.values(), key=lambda c: c.rank):
            if cand.failed is not None:
                continue
            if self._needs_retrain(cand):
                return None  # the next best waits for its retrain, off the event loop (tick)
            verdict = cand.retrained if self.engine.retrains else cand.verdict
            try:
                result = self.chain.import_block(cand.block, cand.weights, self.mempool.verified, verdict)
            except InvalidBlock as exc:
                cand.failed = exc.reason
                log.warning("candidate failed", extra={"reason": exc.reason, "hash": cand.block.header.hash().hex()[:16]})
                continue
            log.info("block", extra={"height": cand.block.header.height, "score": cand.block.header.score,
                                     "status": str(result.status)})
            return Announce(AnnounceKind.BLOCK, block=cand.block, weights=cand.weights, result=result)
        return None
