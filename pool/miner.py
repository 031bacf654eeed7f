"""The solo miner: search, commit and reveal against one node's REST API (docs/api.md).

``ponas mine --node URL --address ADDR`` runs :class:`Miner`. Per round (design section 4):

1. **follow**: poll ``GET /api/v1/round``; a round is identified by (height, parent, task,
   opened, deadline), so a retried round on the same parent is a new round;
2. **train** (commit phase only): a worker thread trains the genotypes that the search
   strategy proposes with the task's pinned recipe, one at a time, and the miner keeps the best
   by validation score. Training never depends on the parent block, so the best result (and the
   strategy's state) carry over from round to round while the task's space and recipe stay;
3. **commit**: once the deadline is within :func:`commit_margin` (time for one template and
   commitment round trip), ``POST /template`` with the payouts ``[[address, 0]]`` and the best
   genotype, weights hash and seed, sign a :class:`~consensus.types.Commitment` to the returned
   header (seq 0) and ``POST /commitments``. A better result found before the deadline is
   committed again with seq 1, 2, ... up to ``max_commitments_per_key``;
4. **reveal**: once the round's close appears, fetch the close's ordered commitments
   (``GET /round/commitments``), derive the test set from the close's test key, score each of
   our commitments that the close includes, and ``POST /candidates`` the best one: the template
   block with ``round_close`` and ``score`` set and the :class:`~consensus.types.RoundSeal`
   (close, commitment, index, Merkle siblings) attached, with its weights in base64.

The decisions are pure functions that tests call without a node: :func:`should_commit`,
:func:`check_template`, :func:`build_candidate`, :func:`choose_reveal`, :func:`parse_round`,
:func:`round_scores`.

Errors, separated as the style guide asks (the first two come from :mod:`wallet.client`,
the REST client the wallet and the miners share): :class:`NodeRejected` (a 4xx answer: our request
was refused with a stable reason; logged, not retried as is), :class:`NodeUnavailable` (no
connection, a timeout, a 5xx or a garbled answer: the node or the network broke; retried with
exponential backoff, after which the miner resumes where the round stands), and
:class:`MinerError` (bad local input or a node answer that contradicts what we asked).

Clock: deadlines come from the node and are compared with ``clock()`` (unix seconds); the
miner assumes the two clocks agree to well within the commit margin (NTP).

Logging: one ``key=value`` line per training and per round event on the ``ponas.miner``
logger; a short human line per round goes to ``report`` (stdout by default).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from consensus.crypto import PrivateKey, format_address, key_from_json, parse_address
from consensus.engines.ponas.rounds import commitment_for, commitments_root, round_seal
from consensus.errors import ConsensusError
from consensus.types import Block, Commitment, RoundClose
from pool.search import STRATEGIES, SearchError, SearchStrategy, make_strategy
from wallet.client import Backoff, NodeClient, NodeRejected, NodeUnavailable, normalise_url
from wallet.client import session as client_session

__all__ = [
    "Miner",
    "MinerError",
    "MinerStats",
    "RoundInfo",
    "CloseInfo",
    "TrainResult",
    "commit_margin",
    "should_commit",
    "parse_round",
    "check_template",
    "build_candidate",
    "choose_reveal",
    "round_scores",
    "train_one",
    "load_key_file",
]

log = logging.getLogger("ponas.miner")

#: At most this many seconds before the deadline are kept for the template + commit round trip.
COMMIT_MARGIN_MAX = 2.0
#: ... and at most this share of the commit window (short regtest windows).
COMMIT_MARGIN_SHARE = 0.2


# --- errors ---------------------------------------------------------------------------------


class MinerError(ValueError):
    """Bad local input or an answer that contradicts our request. ``reason`` is stable:
    ``bad-answer``, ``bad-template``, ``header-mismatch``, ``close-mismatch``,
    ``bad-commitments``, ``not-in-close``, ``wrong-engine``, ``no-key-file``, ``bad-key-file``,
    ``no-token-file``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


# --- pure decisions -------------------------------------------------------------------------


def commit_margin(window: float) -> float:
    """Seconds before the deadline at which the miner commits: ``min(2 s, 20% of the window)``."""
    return min(COMMIT_MARGIN_MAX, COMMIT_MARGIN_SHARE * max(0.0, window))


def should_commit(now: float, deadline: float, window: float, have_result: bool, committed: bool) -> bool:
    """Whether to commit now: we have a result that is not committed yet (``committed`` is
    also True when no seq is left), the deadline has not passed, and it is within the margin.

    Committing late lets the search use almost the whole window; the margin leaves time for
    the template and commitment requests.
    """
    if not have_result or committed or now >= deadline:
        return False
    return now >= deadline - commit_margin(window)


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """The round's close as the node announces it (``close`` in the round object)."""

    hash: bytes
    test_key: bytes
    key_index: int
    timestamp: float
    commitments_count: int
    close: RoundClose


@dataclass(frozen=True, slots=True)
class RoundInfo:
    """The round object of ``GET /api/v1/round``."""

    height: int
    parent: bytes
    task_id: bytes
    space: str
    recipe: str
    phase: str
    opened: float
    deadline: float
    reveal_end: float | None
    commitments: int
    max_commitments_per_key: int
    test_set_size: int
    close: CloseInfo | None

    @property
    def window(self) -> float:
        """Length of the commit window in seconds."""
        return self.deadline - self.opened

    @property
    def ident(self) -> tuple[int, bytes, bytes, float, float]:
        """What distinguishes one round from another (a retry has a new open and deadline)."""
        return (self.height, self.parent, self.task_id, self.opened, self.deadline)


def _field(data: dict[str, Any], name: str, kinds: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise MinerError("bad-answer", f"field {name!r} missing or of the wrong type: {value!r}"[:200])
    return value


def _hex(data: dict[str, Any], name: str, length: int | None = 32) -> bytes:
    text = _field(data, name, str)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise MinerError("bad-answer", f"field {name!r} is not hex") from None
    if length is not None and len(raw) != length:
        raise MinerError("bad-answer", f"field {name!r} holds {len(raw)} bytes, want {length}")
    return raw


def parse_round(data: Any) -> RoundInfo:
    """Parse and cross-check a round object; raises :class:`MinerError` ``bad-answer``.

    The close is decoded from its canonical encoding and must match the announced hash, test
    key, key index and height, so the miner never reveals against a close it cannot prove.
    """
    if not isinstance(data, dict):
        raise MinerError("bad-answer", "the round is a JSON object")
    number = (int, float)
    close: CloseInfo | None = None
    raw_close = data.get("close")
    if raw_close is not None:
        if not isinstance(raw_close, dict):
            raise MinerError("bad-answer", "close is an object or null")
        encoded = _hex(raw_close, "encoded", None)
        try:
            decoded = RoundClose.decode(encoded)
        except (ConsensusError, ValueError) as exc:
            raise MinerError("bad-answer", f"the close does not decode: {exc}") from None
        announced = _hex(raw_close, "hash")
        if decoded.hash() != announced or decoded.test_key != _hex(raw_close, "test_key"):
            raise MinerError("bad-answer", "the close's hash or test key differ from its encoding")
        close = CloseInfo(
            hash=announced,
            test_key=decoded.test_key,
            key_index=decoded.key_index,
            timestamp=float(raw_close.get("timestamp") or decoded.timestamp),
            commitments_count=decoded.commitments_count,
            close=decoded,
        )
    reveal_end = data.get("reveal_end")
    if reveal_end is not None and (isinstance(reveal_end, bool) or not isinstance(reveal_end, number)):
        raise MinerError("bad-answer", "reveal_end is a number or null")
    info = RoundInfo(
        height=_field(data, "height", int),
        parent=_hex(data, "parent"),
        task_id=_hex(data, "task_id"),
        space=_field(data, "space", str),
        recipe=_field(data, "recipe", str),
        phase=_field(data, "phase", str),
        opened=float(_field(data, "opened", number)),
        deadline=float(_field(data, "deadline", number)),
        reveal_end=None if reveal_end is None else float(reveal_end),
        commitments=_field(data, "commitments", int),
        max_commitments_per_key=_field(data, "max_commitments_per_key", int),
        test_set_size=_field(data, "test_set_size", int),
        close=close,
    )
    if close is not None and close.close.height != info.height:
        raise MinerError("bad-answer", f"the close is for height {close.close.height}, the round {info.height}")
    return info


@dataclass(frozen=True, slots=True)
class TrainResult:
    """One trained architecture (weights are the canonical safetensors bytes)."""

    genotype: str
    seed: int
    validation: int
    weights_hash: bytes
    weights: bytes = field(repr=False)
    seconds: float = 0.0


def check_template(block: Block, rnd: RoundInfo, result: TrainResult, address: bytes) -> None:
    """The node's template must be for this round, declare exactly our result, and pay only us.

    Raises :class:`MinerError` ``bad-template``: the tip moved under us, or a node that does
    not do what we asked (we would otherwise sign a commitment to someone else's payout).
    """
    h = block.header
    want = (rnd.height, rnd.parent, rnd.task_id, result.genotype, result.weights_hash, result.seed)
    got = (h.height, h.parent, h.task_id, h.genotype, h.weights_hash, h.seed)
    if got != want:
        names = ("height", "parent", "task", "genotype", "weights_hash", "seed")
        diff = [n for n, a, b in zip(names, got, want) if a != b]
        raise MinerError("bad-template", f"the template differs from the request in {', '.join(diff)}")
    if h.payouts_root != block.coinbase.payouts_root() or any(p.address != address for p in block.coinbase.payouts):
        raise MinerError("bad-template", "the template's coinbase pays someone else")
    if block.proof is not None or h.score or h.bits or h.nonce:
        raise MinerError("bad-template", "a template is unsealed")


def build_candidate(
    template_block: Block,
    close: RoundClose,
    commitments: Sequence[Commitment],
    my_commitment: Commitment,
    score: int,
) -> Block:
    """The candidate block: the template with ``round_close`` and ``score`` set and the seal
    proving ``my_commitment`` is in ``close`` (``commitments`` in the close's order).

    Raises :class:`MinerError`: ``header-mismatch`` (the template is not what was committed),
    ``close-mismatch`` (the close is for another round), ``bad-commitments`` (the list does not
    hash to the close's root and count), ``not-in-close`` (the closer left us out).
    """
    h, c = template_block.header, my_commitment
    committed = (c.height, c.parent, c.task_id, c.txs_root, c.payouts_root, c.genotype, c.weights_hash, c.seed)
    declared = (h.height, h.parent, h.task_id, h.txs_root, h.payouts_root, h.genotype, h.weights_hash, h.seed)
    if committed != declared:
        raise MinerError("header-mismatch", "the commitment does not bind this template")
    if (close.height, close.parent, close.task_id) != (h.height, h.parent, h.task_id):
        raise MinerError("close-mismatch", f"the close is for height {close.height} on another parent or task")
    if len(commitments) != close.commitments_count or commitments_root(commitments) != close.commitments_root:
        raise MinerError("bad-commitments", "the commitments do not hash to the close's root and count")
    mine = c.hash()
    index = next((i for i, other in enumerate(commitments) if other.hash() == mine), None)
    if index is None:
        raise MinerError("not-in-close", f"the close's {len(commitments)} commitments do not include ours")
    header = replace(h, round_close=close.hash(), score=score)
    return replace(template_block, header=header, proof=round_seal(close, commitments, index))


def choose_reveal(scored: Sequence[tuple[int, int]]) -> int:
    """Which of our included commitments to reveal, given ``(test score, index in close)``
    pairs: the best score, then the earlier commitment (the selection rule's tie-break).
    Returns the position in ``scored``."""
    if not scored:
        raise ValueError("nothing to reveal")
    return min(range(len(scored)), key=lambda i: (-scored[i][0], scored[i][1]))


# --- model work (torch; runs in a worker thread) --------------------------------------------


class _Aborted(Exception):
    """The miner is stopping: a training gives up at its next epoch."""


def train_one(
    space_name: str,
    recipe_name: str,
    genotype: str,
    seed: int,
    device: str = "cpu",
    abort: threading.Event | None = None,
) -> TrainResult:
    """Train ``genotype`` with the pinned recipe and ``seed``; score it on the validation split."""
    from consensus.engines.ponas.recipe import PRESETS
    from consensus.engines.ponas.train import train, validation_score
    from consensus.engines.ponas.weights import weights_hash

    recipe = PRESETS[recipe_name]

    def progress(done: int, total: int, loss: float) -> None:
        if abort is not None and abort.is_set():
            raise _Aborted()

    started = time.monotonic()
    model, weights = train(space_name, genotype, recipe, seed, device=device, progress=progress)
    validation = validation_score(model)
    return TrainResult(genotype, seed, validation, weights_hash(weights), weights, time.monotonic() - started)


def round_scores(results: Sequence[TrainResult], space_name: str, test_key: bytes, test_set_size: int) -> list[int]:
    """Each result's score on the round's test set (as every verifier recomputes it: the
    weights loaded back from their bytes, scored on ``round_test_set(test_key, size)``)."""
    from consensus.engines.ponas.data import round_test_set
    from consensus.engines.ponas.train import score
    from consensus.engines.ponas.weights import load_weights

    test_set = round_test_set(test_key, test_set_size)
    return [score(load_weights(r.weights, space_name, r.genotype), test_set) for r in results]


# --- local files ----------------------------------------------------------------------------


def load_key_file(path: str) -> PrivateKey:
    """A key file ``{"type": "ed25519", "seed": HEX, ...}`` (the node's key-file format)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise MinerError("no-key-file", f"no key file at {path}") from None
    except (OSError, ValueError) as exc:
        raise MinerError("bad-key-file", f"{path}: {exc}") from None
    try:
        return key_from_json(data, path)
    except ConsensusError as exc:
        raise MinerError(exc.reason, exc.detail) from None


def _decode_hex_object(kind: Any, data: Any, name: str) -> Any:
    if not isinstance(data, dict):
        raise MinerError("bad-answer", f"expected an object with {name!r}")
    raw = _hex(data, name, None)
    try:
        return kind.decode(raw)
    except (ConsensusError, ValueError) as exc:
        raise MinerError("bad-answer", f"{name} does not decode: {exc}") from None


# --- the miner ------------------------------------------------------------------------------


@dataclass
class MinerStats:
    rounds: int = 0
    trainings: int = 0
    commitments: int = 0
    candidates: int = 0
    wins: int = 0


@dataclass
class _Committed:
    result: TrainResult
    block: Block  # the template, unsealed
    commitment: Commitment


@dataclass
class _RoundState:
    """What the miner did in one round."""

    info: RoundInfo
    commits: list[_Committed] = field(default_factory=list)
    attempted: set[bytes] = field(default_factory=set)  # weights hashes refused for this round
    pending: _Committed | None = None  # posted, but the answer was lost
    next_seq: int = 0
    exhausted: bool = False
    scores: list[int] | None = None  # test scores of the included commitments, once computed
    revealed: bool = False
    candidate: bytes | None = None
    candidate_score: int | None = None
    reported: bool = False


@dataclass
class _Search:
    """The search of one task (space and recipe): kept across rounds."""

    space: str
    recipe: str
    strategy: SearchStrategy
    best: TrainResult | None = None
    trainings: int = 0


class Miner:
    """A solo miner following one node. See the module docstring for the round it plays.

    ``address`` (``pn1...``) receives the whole coinbase; ``key`` signs the commitments (an
    ephemeral key when None); ``token`` is the API write token (``token_file`` lets a 401
    re-read it); ``rng`` drives the search and the training seeds; ``clock`` gives unix
    seconds; ``report`` receives one human line per round (default: print to stdout).
    """

    def __init__(
        self,
        node_url: str,
        address: str,
        strategy_name: str = "evolution",
        device: str = "cpu",
        key: PrivateKey | None = None,
        token: str | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        *,
        token_file: str | None = None,
        report: Callable[[str], None] | None = None,
        poll_interval: float | None = None,
    ) -> None:
        self.address = parse_address(address)  # BadAddress (reason bad-address) on a typo
        self.address_text = format_address(self.address)
        if strategy_name not in STRATEGIES:
            raise SearchError("bad-strategy", f"unknown strategy {strategy_name!r}; use one of {', '.join(STRATEGIES)}")
        self.node_url = normalise_url(node_url)
        self.strategy_name = strategy_name
        self.device = device
        self.key = key if key is not None else PrivateKey.generate()
        self.token = token
        self.token_file = token_file
        self.rng = rng if rng is not None else random.Random()
        self.clock = clock
        self.report = report if report is not None else (lambda line: print(line, flush=True))
        self.poll_interval = poll_interval
        self.stats = MinerStats()
        self.chain_id: str | None = None
        self._client: NodeClient | None = None
        self._search: _Search | None = None
        self._round: _RoundState | None = None
        self._last_candidate: tuple[int, bytes, int] | None = None  # (height, hash, score)
        self._training_allowed = asyncio.Event()
        self._wake = asyncio.Event()
        self._abort = threading.Event()
        self._torch = threading.Lock()  # torch's deterministic mode is process-global: one job at a time
        self._down_since: float | None = None
        self._unknown_task: tuple[str, str] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> MinerStats:
        """Mine until ``stop`` is set; returns the counters. A training in progress is
        abandoned at its next epoch."""
        log.info("miner-start", extra={"node": self.node_url, "address": self.address_text,
                                       "miner_key": self.key.public_key.hex(), "strategy": self.strategy_name,
                                       "device": self.device})
        async with client_session() as session:
            self._client = NodeClient(session, self.node_url, self.token, self.token_file)
            trainer = asyncio.create_task(self._train_loop(stop), name="ponas-miner-train")
            try:
                await self._follow(stop)
            finally:
                # Let a training in its worker thread stop at its next epoch and end before we
                # return: torch's deterministic mode and thread count are process-wide settings
                # that a training left running would still hold.
                self._abort.set()
                try:
                    await asyncio.wait_for(asyncio.shield(trainer), 60)
                except (TimeoutError, asyncio.CancelledError):
                    trainer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await trainer
        log.info("miner-stop", extra=vars(self.stats))
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
                self._training_allowed.clear()
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
        search = self._search_for(rnd)
        if rnd.phase == "commit" and search is not None:
            self._training_allowed.set()
        else:
            self._training_allowed.clear()
        if rnd.phase == "commit" and search is not None:
            if st.pending is not None:
                await self._repost_pending(st)
            best = search.best
            committed = best is None or best.weights_hash in st.attempted or st.exhausted
            committed = committed or st.next_seq >= rnd.max_commitments_per_key
            if should_commit(self.clock(), rnd.deadline, rnd.window, best is not None, committed):
                assert best is not None
                await self._commit(st, best)
        if rnd.close is not None and not st.revealed:
            await self._reveal(st, rnd.close)
        if rnd.phase != "commit" and not st.commits and st.pending is None and not st.reported:
            st.reported = True
            why = "no trained model before the deadline" if search is None or search.best is None else "commit refused"
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
                log.info("won", extra={"height": height, "block": block_hash.hex(), "score": score})
                self.report(f"round {height}: WON with block {block_hash.hex()[:16]} (score {score})")
            elif rnd.height > height:
                self._last_candidate = None
        self._round = _RoundState(rnd)
        self.stats.rounds += 1
        log.info("round-open", extra={"height": rnd.height, "parent": rnd.parent.hex()[:16], "phase": rnd.phase,
                                      "window_s": f"{rnd.window:.1f}", "deadline_in_s": f"{rnd.deadline - self.clock():.1f}",
                                      "space": rnd.space, "recipe": rnd.recipe})

    def _search_for(self, rnd: RoundInfo) -> _Search | None:
        """The search for the round's task; a new task (space or recipe) starts a new search."""
        from consensus.engines.ponas.recipe import PRESETS
        from consensus.engines.ponas.space import GenotypeError, get_space

        s = self._search
        if s is not None and (s.space, s.recipe) == (rnd.space, rnd.recipe):
            return s
        try:
            space = get_space(rnd.space)
            if rnd.recipe not in PRESETS:
                raise GenotypeError("unknown-recipe", rnd.recipe)
        except GenotypeError:
            if self._unknown_task != (rnd.space, rnd.recipe):  # log once, not on every poll
                self._unknown_task = (rnd.space, rnd.recipe)
                log.error("unknown-task", extra={"space": rnd.space, "recipe": rnd.recipe})
            return None
        self._search = _Search(rnd.space, rnd.recipe, make_strategy(self.strategy_name, space, self.rng))
        log.info("search-start", extra={"space": rnd.space, "recipe": rnd.recipe, "strategy": self.strategy_name,
                                        "size": space.size})
        return self._search

    # -- commit ------------------------------------------------------------------------------

    async def _commit(self, st: _RoundState, result: TrainResult) -> None:
        assert self._client is not None and self.chain_id is not None
        rnd = st.info
        body = {
            "payouts": [[self.address_text, 0]],
            "genotype": result.genotype,
            "weights_hash": result.weights_hash.hex(),
            "seed": result.seed,
        }
        try:
            answer = await self._client.post("/api/v1/template", body)
            block: Block = _decode_hex_object(Block, answer, "block")
            check_template(block, rnd, result, self.address)
        except (NodeRejected, MinerError) as exc:
            st.attempted.add(result.weights_hash)
            log.warning("template-refused", extra={"height": rnd.height, "reason": exc.reason, "detail": exc.detail})
            return
        while st.next_seq < rnd.max_commitments_per_key:
            commitment = commitment_for(block.header, self.key, self.chain_id, st.next_seq)
            entry = _Committed(result, block, commitment)
            st.pending = entry
            try:
                ack = await self._client.post("/api/v1/commitments", {"commitment": commitment.encode().hex()})
            except NodeRejected as exc:
                st.pending = None
                if exc.reason == "duplicate-seq":  # e.g. this key committed before a restart
                    st.next_seq += 1
                    continue
                if exc.reason == "too-many-commitments":
                    st.exhausted = True
                st.attempted.add(result.weights_hash)
                log.warning("commit-refused", extra={"height": rnd.height, "seq": commitment.seq, "reason": exc.reason,
                                                     "detail": exc.detail})
                return
            self._accept_commit(st, entry, ack)
            return
        st.exhausted = True

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
        st.next_seq = entry.commitment.seq + 1
        self.stats.commitments += 1
        index = ack.get("index") if isinstance(ack, dict) else None
        log.info("committed", extra={"height": st.info.height, "seq": entry.commitment.seq, "index": index,
                                     "genotype": entry.result.genotype, "validation": entry.result.validation,
                                     "deadline_in_s": f"{st.info.deadline - self.clock():.2f}"})

    # -- reveal ------------------------------------------------------------------------------

    async def _reveal(self, st: _RoundState, close: CloseInfo) -> None:
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
        scores = st.scores
        if scores is None:  # computed once per round, even if posting the candidate is retried
            computed: list[int] = await asyncio.to_thread(
                self._locked, round_scores, [e.result for e in included], rnd.space, close.test_key, rnd.test_set_size
            )
            scores = st.scores = computed
        scored = [(s, positions[e.commitment.hash()]) for s, e in zip(scores, included)]
        pick = choose_reveal(scored)
        entry, score = included[pick], scores[pick]
        block = build_candidate(entry.block, close.close, ordered, entry.commitment, score)
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

    # -- training ----------------------------------------------------------------------------

    def _locked(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._torch:
            return fn(*args)

    async def _train_loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            search = self._search
            if not self._training_allowed.is_set() or search is None:
                await self._wait_gate(stop)
                continue
            genotype = search.strategy.propose()
            seed = self.rng.getrandbits(32)
            try:
                result: TrainResult = await asyncio.to_thread(
                    self._locked, train_one, search.space, search.recipe, genotype, seed, self.device, self._abort
                )
            except _Aborted:
                return
            except Exception as exc:  # e.g. CUDA out of memory: log, pause, go on
                failures += 1
                pause = min(30.0, 2.0**failures)
                log.error("training-failed", extra={"genotype": genotype, "error": f"{type(exc).__name__}: {exc}",
                                                    "retry_s": pause})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                continue
            failures = 0
            search.strategy.observe(genotype, result.validation)
            search.trainings += 1
            self.stats.trainings += 1
            improved = search.best is None or result.validation > search.best.validation
            if improved:
                search.best = result
                self._wake.set()  # the follower may want to commit it now
            best = search.best
            assert best is not None
            log.info("trained", extra={"n": search.trainings, "genotype": genotype, "seed": seed,
                                       "validation": result.validation, "seconds": f"{result.seconds:.2f}",
                                       "best": best.validation, "new_best": improved})

    async def _wait_gate(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._training_allowed.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
