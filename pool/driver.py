"""Play the rounds against one node: follow, commit before the deadline, reveal after the close.

:class:`RoundDriver` is the one mining code path. What it commits comes from a
:class:`CandidateSource`: the pool manager (:mod:`pool.manager`), whose candidates are its
members' verified results and whose coinbase is split among them. Per round (design section 4):

1. **follow**: poll ``GET /api/v1/round``; a round is identified by (height, parent, task,
   opened, deadline), so a retried round on the same parent is a new round;
2. **commit**: once the deadline is within :func:`~pool.rounds.commit_margin`, ask the node
   for a template paying the source's split of the reward (``POST /template``), sign a
   :class:`~consensus.types.Commitment` to it (seq 0) and ``POST /commitments``; a better
   result found before the deadline is committed again with seq 1, 2, ... up to
   ``max_commitments_per_key``; a driver with several commit keys (:func:`commit_keys`) goes
   on with its next key when one is full, so it commits up to ``keys x max_commitments_per_key``;
3. **reveal**: once the round's close appears, fetch the close's ordered commitments, score
   our included commitments on the round's test set (best validation first, one at a time,
   stopping while :data:`REVEAL_MARGIN` of the reveal window is left), and
   ``POST /candidates`` the best scored, opened by its salt, with its weights.

Errors, separated as the style guide asks: :class:`~nodeclient.NodeRejected` (a 4xx: our
request was refused with a stable reason; logged, not retried as is),
:class:`~nodeclient.NodeUnavailable` (no connection, a timeout, a 5xx or a garbled answer:
retried with exponential backoff, after which the driver resumes where the round stands), and
:class:`~pool.rounds.MinerError` (a node answer that contradicts what we asked).

Clock: deadlines come from the node and are compared with ``clock()`` (unix seconds); the
driver assumes the two clocks agree to well within the commit margin (NTP).

Logging: one ``key=value`` line per round event on the ``ponas.miner`` logger; a short human
line per round goes to ``report`` (stdout by default).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from consensus.crypto import PrivateKey, derived_key, format_address
from consensus.engines.ponas.rounds import commitment_for, commitment_salt, commitments_root, tiebreak
from consensus.errors import ConsensusError
from consensus.types import Block, Commitment, Payout
from nodeclient import Backoff, NodeClient, NodeRejected, NodeUnavailable, normalise_url
from nodeclient import session as client_session
from pool.rounds import (
    CloseInfo,
    MinerError,
    RoundInfo,
    TrainResult,
    _decode_hex_object,
    build_candidate,
    check_template,
    choose_reveal,
    commit_margin,
    parse_round,
    round_scores,
    should_commit,
)

__all__ = ["CandidateSource", "DriverStats", "RoundDriver"]

log = logging.getLogger("ponas.miner")


class CandidateSource(Protocol):
    """What the driver commits, and whom it pays. Called on the event loop; must not block."""

    def prepare(self, rnd: RoundInfo) -> bool:
        """A round (or a poll of it) is seen; False if this task cannot be mined here."""
        ...

    def set_training(self, allowed: bool) -> None:
        """Training is useful now (the round is in its commit phase) or not."""
        ...

    def candidates(self, rnd: RoundInfo, k: int) -> list[TrainResult]:
        """Up to ``k`` results to commit for the round, best first, with their weights. The
        driver commits each (a key may commit up to the round's bound) and reveals the one that
        scores best on the round's test set: the validation split only estimates that score."""
        ...

    def rest_address(self) -> bytes:
        """The payout that takes what the split leaves (the pool's fee address)."""
        ...

    def payouts(self, result: TrainResult, reward: int) -> list[Payout]:
        """The coinbase split of ``reward`` if ``result`` wins; the amounts sum to ``reward``."""
        ...

    def round_opened(self, rnd: RoundInfo) -> None: ...

    def committed(self, rnd: RoundInfo, result: TrainResult, block: Block) -> None: ...

    def won(self, height: int, block_hash: bytes, score: int) -> None: ...


@dataclass
class DriverStats:
    rounds: int = 0
    commitments: int = 0
    candidates: int = 0
    wins: int = 0


MAX_COMMIT_KEYS = 64


def commit_keys(key: PrivateKey, count: int) -> list[PrivateKey]:
    """``key`` and ``count - 1`` keys derived from it (:func:`consensus.crypto.derived_key`), to
    commit under. The chain bounds the commitments of a key, not of a miner, so N solo miners
    commit N times what one pool of N members can under one key; a pool that commits under N
    keys has as many slots as they have. Derived deterministically, so a restarted pool commits
    under the same keys (and the node's ``duplicate-seq`` answers keep its sequence numbers).
    ``ValueError`` outside 1..:data:`MAX_COMMIT_KEYS`."""
    if not 1 <= count <= MAX_COMMIT_KEYS:
        raise ValueError(f"commit keys must be 1 to {MAX_COMMIT_KEYS}, not {count}")
    return [derived_key(key, i) for i in range(count)]


#: The share of the reveal window kept for posting the candidate (and the node's check of it):
#: the driver stops scoring its commitments once the rest of the window is this short.
REVEAL_MARGIN = 0.4


@dataclass
class _Committed:
    result: TrainResult
    block: Block  # the template, unsealed
    commitment: Commitment
    salt: bytes  # opens the commitment at the reveal; secret until then
    chain_id: str  # the chain the salted digest was made for
    key_index: int = 0


@dataclass
class _RoundState:
    """What the driver did in one round."""

    info: RoundInfo
    commits: list[_Committed] = field(default_factory=list)
    attempted: set[bytes] = field(default_factory=set)  # weights hashes refused for this round
    pending: _Committed | None = None  # posted, but the answer was lost
    next_seq: list[int] = field(default_factory=lambda: [0])  # per commit key
    full: set[int] = field(default_factory=set)  # commit keys the node reports full
    scores: list[int] | None = None  # test scores of the included commitments, once computed
    revealed: bool = False
    candidate: bytes | None = None
    candidate_score: int | None = None
    reported: bool = False


class RoundDriver:
    """Commits and reveals what ``source`` offers, on one node. ``key`` signs the commitments
    (an ephemeral key when None), with ``keys - 1`` more derived from it (:func:`commit_keys`);
    ``token`` is the API write token (``token_file`` lets a 401 re-read it); ``clock`` gives
    unix seconds; ``report`` receives one human line per round."""

    def __init__(
        self,
        node_url: str,
        source: CandidateSource,
        key: PrivateKey | None = None,
        token: str | None = None,
        clock: Callable[[], float] = time.time,
        *,
        token_file: str | None = None,
        report: Callable[[str], None] | None = None,
        poll_interval: float | None = None,
        scorer: Callable[..., Any] | None = None,
        keys: int = 1,
    ) -> None:
        self.node_url = normalise_url(node_url)
        self.source = source
        self.key = key if key is not None else PrivateKey.generate()
        self.keys = commit_keys(self.key, keys)
        self.token = token
        self.token_file = token_file
        self.clock = clock
        self.report = report if report is not None else (lambda line: print(line, flush=True))
        self.poll_interval = poll_interval
        self.stats = DriverStats()
        self.chain_id: str | None = None
        self._client: NodeClient | None = None
        self._round: _RoundState | None = None
        self._last_candidate: tuple[int, bytes, int] | None = None  # (height, hash, score)
        self._wake = asyncio.Event()
        self._down_since: float | None = None
        # scoring runs torch in a worker thread; the source may serialise it with its trainer
        self._scorer = scorer if scorer is not None else (lambda fn, *args: fn(*args))

    def wake(self) -> None:
        """A better result is there: poll now (it may be time to commit it)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> DriverStats:
        """Play rounds until ``stop`` is set; returns the counters."""
        log.info("driver-start", extra={"node": self.node_url, "miner_key": self.key.public_key.hex()})
        async with client_session() as session:
            self._client = NodeClient(session, self.node_url, self.token, self.token_file)
            await self._follow(stop)
        log.info("driver-stop", extra=vars(self.stats))
        return self.stats

    async def _sleep(self, stop: asyncio.Event, delay: float) -> None:
        """Wait ``delay`` seconds, or less if stopped or woken by a new best result."""
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=max(0.0, delay), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        self._wake.clear()

    # -- following the node ------------------------------------------------------------------

    async def _follow(self, stop: asyncio.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            try:
                if self.chain_id is None:
                    await self._connect()
                assert self._client is not None
                rnd = parse_round(await self._client.get("/api/v1/round"))
                if self._down_since is not None:
                    log.info("node-back", extra={"node": self.node_url, "down_s": f"{self.clock() - self._down_since:.1f}"})
                    self._down_since = None
                backoff.reset()
                await self._step(rnd)
                delay = self._poll_delay(rnd)
            except NodeUnavailable as exc:
                self.source.set_training(False)
                self.chain_id = None  # re-read the status: the node may have restarted
                delay = backoff.next()
                if self._down_since is None:
                    self._down_since = self.clock()
                    log.warning("node-unreachable", extra={"reason": exc.reason, "detail": exc.detail})
                log.debug("retry", extra={"in_s": delay})
            except (NodeRejected, MinerError) as exc:
                delay = backoff.next()
                log.warning("node-error", extra={"reason": exc.reason, "detail": exc.detail, "retry_s": delay})
            except Exception:  # a bug must not kill a long-running miner; it is logged in full
                delay = backoff.next()
                log.exception("miner-step-failed", extra={"retry_s": delay})
            await self._sleep(stop, delay)

    async def _connect(self) -> None:
        assert self._client is not None
        status = await self._client.get("/api/v1/status")
        if not isinstance(status, dict) or not isinstance(status.get("chain_id"), str):
            raise MinerError("bad-answer", "the status has no chain_id")
        if status.get("engine") not in (None, "ponas"):
            raise MinerError("wrong-engine", f"the node's chain uses the {status.get('engine')} engine")
        self.chain_id = status["chain_id"]
        log.info("connected", extra={"node": self.node_url, "chain_id": self.chain_id, "height": status.get("height")})

    def _poll_delay(self, rnd: RoundInfo) -> float:
        base = self.poll_interval if self.poll_interval is not None else min(0.5, max(0.1, rnd.window / 40))
        if rnd.phase == "commit":
            until = rnd.deadline - commit_margin(rnd.window) - self.clock()
            if until > 0:
                return min(base, until)
        return base

    async def _step(self, rnd: RoundInfo) -> None:
        if self._round is None or self._round.info.ident != rnd.ident:
            self._open_round(rnd)
        st = self._round
        assert st is not None
        st.info = rnd
        ready = self.source.prepare(rnd)
        self.source.set_training(rnd.phase == "commit" and ready)
        results = self.source.candidates(rnd, rnd.max_commitments_per_key * len(self.keys)) if ready else []
        if rnd.phase == "commit" and ready:
            if st.pending is not None:
                await self._repost_pending(st)
            for result in results:
                if st.pending is not None or self._free_key(st) is None:
                    break
                if result.weights_hash in st.attempted:
                    continue
                if not should_commit(self.clock(), rnd.deadline, rnd.window, True, False):
                    break
                await self._commit(st, result)
        if rnd.close is not None and not st.revealed:
            await self._reveal(st, rnd.close, rnd.reveal_end)
        if rnd.phase != "commit" and not st.commits and st.pending is None and not st.reported:
            st.reported = True
            why = "no trained model before the deadline" if not results else "commit refused"
            self.report(f"round {rnd.height}: no commitment ({why})")

    def _open_round(self, rnd: RoundInfo) -> None:
        old = self._round
        if old is not None and not old.reported:
            old.reported = True
            if old.commits and not old.revealed:
                self.report(f"round {old.info.height}: committed {len(old.commits)} but missed the reveal")
            elif not old.commits:
                self.report(f"round {old.info.height}: no commitment")
        if self._last_candidate is not None:
            height, block_hash, score = self._last_candidate
            if rnd.height == height + 1 and rnd.parent == block_hash:
                self.stats.wins += 1
                self._last_candidate = None
                self.source.won(height, block_hash, score)
                log.info("won", extra={"height": height, "block": block_hash.hex(), "score": score})
                self.report(f"round {height}: WON with block {block_hash.hex()[:16]} (score {score})")
            elif rnd.height > height:
                self._last_candidate = None
        self._round = _RoundState(rnd, next_seq=[0] * len(self.keys))
        self.stats.rounds += 1
        self.source.round_opened(rnd)
        log.info("round-open", extra={"height": rnd.height, "parent": rnd.parent.hex()[:16], "phase": rnd.phase,
                                      "window_s": f"{rnd.window:.1f}", "deadline_in_s": f"{rnd.deadline - self.clock():.1f}",
                                      "space": rnd.space, "recipe": rnd.recipe})

    # -- commit ------------------------------------------------------------------------------

    def _free_key(self, st: _RoundState) -> int | None:
        """The first commit key with a free slot this round, or None."""
        bound = st.info.max_commitments_per_key
        return next((i for i, seq in enumerate(st.next_seq) if seq < bound and i not in st.full), None)

    async def _commit(self, st: _RoundState, result: TrainResult) -> None:
        assert self._client is not None and self.chain_id is not None
        rnd = st.info
        try:
            block = await self._template(rnd, result)
        except (NodeRejected, MinerError) as exc:
            st.attempted.add(result.weights_hash)
            log.warning("template-refused", extra={"height": rnd.height, "reason": exc.reason, "detail": exc.detail})
            return
        while (i := self._free_key(st)) is not None:
            commitment = commitment_for(block.header, self.keys[i], self.chain_id, st.next_seq[i])
            salt = commitment_salt(self.keys[i], block.header, self.chain_id)
            entry = _Committed(result, block, commitment, salt, self.chain_id, i)
            st.pending = entry
            try:
                ack = await self._client.post("/api/v1/commitments", {"commitment": commitment.encode().hex()})
            except NodeRejected as exc:
                st.pending = None
                if exc.reason == "duplicate-seq":  # e.g. this key committed before a restart
                    st.next_seq[i] += 1
                    continue
                if exc.reason == "too-many-commitments":
                    st.full.add(i)
                    continue  # the next key may still commit it
                st.attempted.add(result.weights_hash)
                log.warning("commit-refused", extra={"height": rnd.height, "seq": commitment.seq, "reason": exc.reason,
                                                     "detail": exc.detail})
                return
            self._accept_commit(st, entry, ack)
            return

    async def _template(self, rnd: RoundInfo, result: TrainResult) -> Block:
        """The node's template for ``result`` paying what the source splits of the round's
        reward, in one request: the rest address comes last with amount 0, so that a fee that
        arrived since the round was read goes to it (``stale-reward`` if fees left instead)."""
        assert self._client is not None
        rest = self.source.rest_address()
        split = self.source.payouts(result, rnd.reward)
        payouts = [p for p in split if p.address != rest] + [Payout(rest, 0)]
        body = {"payouts": [[format_address(p.address), p.amount] for p in payouts], "genotype": result.genotype,
                "weights_hash": result.weights_hash.hex(), "seed": result.seed}
        block: Block = _decode_hex_object(Block, await self._client.post("/api/v1/template", body), "block")
        check_template(block, rnd, result, payouts)
        return block

    async def _repost_pending(self, st: _RoundState) -> None:
        """A commitment whose answer was lost: post it again (the node admits a known one as
        a no-op; ``duplicate-seq`` then means the first post went through)."""
        assert self._client is not None and st.pending is not None
        entry = st.pending
        try:
            ack = await self._client.post("/api/v1/commitments", {"commitment": entry.commitment.encode().hex()})
        except NodeRejected as exc:
            st.pending = None
            if exc.reason == "duplicate-seq":
                self._accept_commit(st, entry, {})
                return
            st.attempted.add(entry.result.weights_hash)
            log.warning("commit-refused", extra={"height": st.info.height, "seq": entry.commitment.seq,
                                                 "reason": exc.reason, "detail": exc.detail})
            return
        self._accept_commit(st, entry, ack)

    def _accept_commit(self, st: _RoundState, entry: _Committed, ack: Any) -> None:
        st.pending = None
        st.commits.append(entry)
        st.attempted.add(entry.result.weights_hash)
        st.next_seq[entry.key_index] = entry.commitment.seq + 1
        self.stats.commitments += 1
        self.source.committed(st.info, entry.result, entry.block)
        index = ack.get("index") if isinstance(ack, dict) else None
        log.info("committed", extra={"height": st.info.height, "key": entry.key_index, "seq": entry.commitment.seq,
                                     "index": index,
                                     "genotype": entry.result.genotype, "validation": entry.result.validation,
                                     "deadline_in_s": f"{st.info.deadline - self.clock():.2f}"})

    # -- reveal ------------------------------------------------------------------------------

    async def _reveal(self, st: _RoundState, close: CloseInfo, reveal_end: float | None = None) -> None:
        assert self._client is not None
        rnd = st.info
        # a commitment whose answer was lost may still be in the close
        ours = st.commits + ([st.pending] if st.pending is not None else [])
        if not ours:
            st.revealed = True
            return
        answer = await self._client.get("/api/v1/round/commitments")
        raw = answer.get("commitments") if isinstance(answer, dict) else None
        if not isinstance(raw, list):
            raise MinerError("bad-answer", "round/commitments has no list")
        try:
            ordered = [Commitment.decode(bytes.fromhex(h)) for h in raw]
        except (ConsensusError, ValueError, TypeError) as exc:
            raise MinerError("bad-answer", f"a commitment does not decode: {exc}") from None
        if len(ordered) != close.commitments_count or commitments_root(ordered) != close.close.commitments_root:
            # the node may not have caught up with its own close yet: try again next poll
            raise MinerError("bad-commitments", "round/commitments does not match the close's root and count")
        positions = {c.hash(): i for i, c in enumerate(ordered)}
        included = [e for e in ours if e.commitment.hash() in positions]
        log.info("closed", extra={"height": rnd.height, "close": close.hash.hex()[:16], "commitments": len(ordered),
                                  "ours": len(ours), "included": len(included)})
        if not included:
            st.revealed = st.reported = True
            log.warning("not-in-close", extra={"height": rnd.height, "ours": len(ours)})
            self.report(f"round {rnd.height}: committed {len(ours)} but the close left us out")
            return
        # best validation first, one at a time: on a loaded machine scoring all of them could
        # outlast the reveal window (a demo round was retried so), so scoring stops when one
        # more, as long as the last, would end past the point that leaves a reveal its margin
        # (REVEAL_MARGIN of the window), and the best scored so far is revealed
        included.sort(key=lambda e: -e.result.validation)
        scores = st.scores
        if scores is None:  # computed once per round, even if posting the candidate is retried
            scores = st.scores = []
            window = (reveal_end if reveal_end is not None else close.timestamp) - close.timestamp
            stop_at = close.timestamp + (1 - REVEAL_MARGIN) * window if window > 0 else float("inf")
            for e in included:
                started = self.clock()
                scores.extend(await asyncio.to_thread(
                    self._scorer, round_scores, [e.result], rnd.space, close.test_key, rnd.test_set_size))
                now = self.clock()
                if now + (now - started) > stop_at and len(scores) < len(included):  # another would end too late
                    log.warning("reveal-scoring-cut", extra={"height": rnd.height, "scored": len(scores),
                                                             "included": len(included)})
                    break
        included = included[: len(scores)]
        scored = [(s, tiebreak(close.test_key, e.commitment.hash())) for s, e in zip(scores, included)]
        pick = choose_reveal(scored)
        entry, score = included[pick], scores[pick]
        block = build_candidate(entry.block, close.close, ordered, entry.commitment, entry.salt, score, entry.chain_id)
        body = {"block": block.encode().hex(), "weights": base64.b64encode(entry.result.weights).decode("ascii")}
        try:
            ack = await self._client.post("/api/v1/candidates", body)
        except NodeRejected as exc:
            st.revealed = st.reported = True
            log.warning("reveal-refused", extra={"height": rnd.height, "reason": exc.reason, "detail": exc.detail})
            self.report(f"round {rnd.height}: candidate refused: {exc.reason}")
            return
        st.revealed = st.reported = True
        st.candidate, st.candidate_score = block.block_hash, score
        self._last_candidate = (rnd.height, block.block_hash, score)
        self.stats.candidates += 1
        log.info("revealed", extra={"height": rnd.height, "block": block.block_hash.hex(), "score": score,
                                    "test_set": rnd.test_set_size, "index": scored[pick][1],
                                    "genotype": entry.result.genotype,
                                    "node_score": ack.get("score") if isinstance(ack, dict) else None})
        self.report(
            f"round {rnd.height}: committed {len(ours)}, revealed {entry.result.genotype} "
            f"validation {entry.result.validation}, test score {score}/{rnd.test_set_size} "
            f"-> candidate {block.block_hash.hex()[:16]}"
        )
