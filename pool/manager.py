"""The pool manager (``ponas pool serve``): members search subspaces, the pool mines with the best.

One process holds:

- a websocket server for members (docs/pool-protocol.md): a signed challenge proves each
  member's payout address; each gets a ``job`` (task, subspaces, deadline) from the
  :class:`~pool.schedule.Scheduler`, sends heartbeats and shares, and uploads weights;
- share checking: cheap checks at once (job, subspace, duplicate, flood, range), then, for a
  random sample of shares and for every share that would become the pool's best, the uploaded
  weights are re-evaluated on the validation split (and a sample retrained from the recipe and
  seed): a member caught lying is banned and its shares are voided;
- a :class:`~pool.driver.RoundDriver` on the node, fed by this manager as its candidate
  source: the pool's best verified result is committed with a coinbase split by
  :func:`~pool.shares.split_reward` (pool fee, finder's bonus, PPLNS over the accepted shares),
  and revealed after the close;
- the :class:`~pool.store.PoolStore` (LevelDB): the accepted shares still in (or just out of) the
  PPLNS window, every training ever credited (so none is credited twice), bans, payouts, blocks
  won;
- the dashboard (``pool/dashboard.py``): a page at ``/`` with its data at ``/api/pool``, a page
  per worker at ``/worker/{id}`` with its data at ``/api/pool/workers/{id}``, and Prometheus
  text at ``/metrics``.

Solo mining is a pool of one: ``ponas mine`` runs a manager with no fee and one member in the
same process (:func:`solo`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import json
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from consensus.crypto import PrivateKey, format_address, parse_address
from consensus.types import Block, Payout
from nodeclient import NodeClient, session
from pool import protocol as P
from pool.dashboard import DASHBOARD_PAGE, RECENT_SHARES, WORKER_PAGE, Series
from pool.driver import RoundDriver
from pool.errors import PoolError
from pool.rounds import MinerError, RoundInfo, TrainResult
from pool.schedule import Move, Scheduler
from pool.search import SharedSearch
from pool.shares import DEFAULT_WINDOW_ROUNDS, Share, make_window, split_reward
from pool.store import CONFIRM_DEPTH, PoolStore, StoredShare

if TYPE_CHECKING:
    from consensus.engines.ponas.mnist1d import ChainData

__all__ = ["Manager", "ManagerConfig", "MemberConn"]

log = logging.getLogger("ponas.pool")

PPM = 1_000_000
#: Departures (left, banned, silent) the dashboard lists.
DEPARTED_KEPT = 100
#: Round opens a stored share outlives the PPLNS window by before it is pruned.
PRUNE_LAG_ROUNDS = 2
#: Notices (alerts, flags, departures) the dashboard shows, newest first.
NOTICES_SHOWN = 30
#: Seconds an ``/api/pool`` answer is served again (a big pool's snapshot is not free).
SNAPSHOT_TTL = 1.0
TOP_RESULTS = 8  # verified results kept to commit per commit key: up to the round's bound per key, best first
#: Seconds between full garbage collections of a manager with ``freeze_gc`` (measured, 1,000
#: members at 6,000 shares/s: without freezing, a full collection every 2-4 s as the heap grows,
#: each 50-150 ms with 150,000-450,000 objects, the open-loop p99 of bench/bench_pool.py).
GC_FULL_EVERY = 600.0
#: Shares of a stored batch credited and acknowledged before the event loop takes its other
#: work again (bench_pool, 1,000 members: a batch of hundreds of shares credited at once held the
#: loop for 20-150 ms, and the shares that came meanwhile made the next batch bigger).
CREDIT_CHUNK = 32
#: An address's bech32 text, remembered: the dashboard's snapshot writes every member's, at about
#: 0.1-0.2 ms each (1,000 members: 100-200 ms of the event loop a second while a page is open).
_address_text = functools.lru_cache(maxsize=1 << 14)(format_address)


@functools.lru_cache(maxsize=1 << 16)
def _cell_index(space: str, genotype: str) -> int:
    """A genotype's index in its space (``GenotypeError`` if none), remembered: every share is
    checked (a parse costs 15-20 µs), and a pool trains the same cells again under other seeds."""
    from consensus.engines.ponas.space import get_space

    return get_space(space).decode(genotype)


@dataclass
class ManagerConfig:
    node_url: str
    fee_address: bytes
    datadir: str
    fee_ppm: int = 10_000  # 1%
    finder_bonus_ppm: int = 5_000  # 0.5%, as P2Pool
    min_payout: int = 1  # base units: a member's smaller part goes to the other members (no dust outputs)
    window: int | None = None  # PPLNS window in work units (epochs of accepted trainings); None: by rounds
    window_rounds: int = DEFAULT_WINDOW_ROUNDS  # else the shares of the last this many rounds (P2Pool: ~3 blocks)
    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None
    token_file: str | None = None
    verify_rate: float = 0.25  # share of shares whose weights are re-evaluated
    retrain_rate: float = 0.05  # share of verified shares also retrained
    heartbeat: float = 2.0  # members' heartbeat interval
    heartbeat_timeout: float = 10.0
    grace: float = 30.0  # seconds a previous job's results are still accepted
    max_share_rate: float = 20.0  # shares per second per member before rate-limited
    max_address_share_rate: float = 40.0  # shares per second per payout address, all its workers together
    want_timeout: float = 30.0  # seconds to answer a ``want``: else the share's credit is void
    max_unanswered: int = 3  # ``want``s a payout address may leave unanswered before it is banned
    max_verify_queue: int = 256  # shown weights waiting for their check; beyond, left unchecked (counted)
    std_threshold: float = 0.25
    top_k: int = 3  # results that make their subspace's owner a high-reward member
    history: int = 8  # rounds of performance kept per member
    max_members: int = 2000
    solo: bool = False  # a pool of one: the whole coinbase to ``fee_address``
    commit_keys: int = 1  # keys the pool commits under (pool.driver.commit_keys)
    shared_search: bool = True  # one model of the space fed by every member (pool.search.SharedSearch)
    #: move the long-lived objects out of the cyclic collector's scans (``gc.freeze``) every second,
    #: with a full collection every ``GC_FULL_EVERY``: a process that runs the manager alone
    #: (``ponas pool serve``); off by default, since it acts on the whole process
    freeze_gc: bool = False
    proposals_queued: int = 2  # shared proposals each member holds at once (topped up per accepted share)


@dataclass
class MemberConn:
    """One connected member (an address and a worker)."""

    id: str
    address: bytes
    worker: str
    ws: web.WebSocketResponse
    joined: float
    last_seen: float
    throughput: float = 0.0
    trainings: int = 0
    accepted: int = 0
    rejected: int = 0
    rejects: dict[str, int] = field(default_factory=dict)  # rejected shares by reason
    verified: int = 0
    best: int = -1
    jobs: dict[int, tuple[float, list[tuple[int, int]]]] = field(default_factory=dict)  # job -> (sent, ranges)
    wanted: dict[int, tuple[float, P.Share, int]] = field(default_factory=dict)  # share id -> (asked, share, seq)
    pending: dict[int, P.Share] = field(default_factory=dict)  # shares seen, by id, kept for a while
    bucket: float = 0.0
    bucket_t: float = 0.0
    floods: int = 0
    silent: bool = False  # no message for longer than the heartbeat timeout (listed in ``departed``)
    reported: int | None = None  # the trainings its last heartbeat reported (the chart counts the increase)
    #: genotypes of the pool's shared search handed to it and not yet trained (it may train them
    #: outside its subspaces): genotype -> the job they came with
    proposed: dict[str, int] = field(default_factory=dict)
    #: its latest shares for its page, newest last: [time, id, genotype, validation, status, reason]
    #: (status ``accepted``, ``refused`` with its reason, ``verified`` or ``voided``)
    recent: deque[list[Any]] = field(default_factory=lambda: deque(maxlen=RECENT_SHARES))
    gone: tuple[str, float] | None = None  # why and when it was dropped (left, banned)

    def mark(self, share_id: int, status: str) -> None:
        """A recent accepted share's new status (``verified``, ``voided``)."""
        for entry in reversed(self.recent):
            if entry[1] == share_id and entry[4] in ("accepted", "verified"):
                entry[4] = status
                return


@dataclass
class _Result:
    """A verified result the pool can commit."""

    member: str
    address: bytes
    result: TrainResult


class Manager:
    def __init__(self, config: ManagerConfig, *, key: PrivateKey | None = None, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time, report: Callable[[str], None] | None = None,
                 chain_id: str = "") -> None:
        self.config = config
        self.rng = rng if rng is not None else random.Random()
        self.clock = clock
        self.report = report if report is not None else (lambda line: print(line, flush=True))
        self.key = key if key is not None else PrivateKey.generate()
        self.chain_id = chain_id
        self.members: dict[str, MemberConn] = {}
        self.scheduler: Scheduler | None = None
        self.window = make_window(config.window, config.window_rounds)
        self.store: PoolStore | None = None
        self.driver = RoundDriver(config.node_url, self, self.key, config.token, clock, token_file=config.token_file,
                                  report=self.report, keys=config.commit_keys,  # reveal scoring never waits for share checks
                                  scorer=self._score_round)
        self.top_results = TOP_RESULTS * config.commit_keys
        self.port = 0
        self._round: RoundInfo | None = None
        self._task: tuple[str, str] | None = None
        self._data: tuple[ChainData, int] | None = None  # a mnist1d chain's data and the round's epoch
        self.genesis: bytes | None = None  # the chain's genesis hash (the node's status)
        self._job_id = 0
        self._task_first_job = 0  # jobs before this one were for another task (or epoch): their shares are stale
        #: the last tasks, newest last: (first job, task, data); a share is checked on its own job's
        #: task and data, since an epoch can turn while its weights are on the way
        self._task_history: deque[tuple[int, tuple[str, str], tuple[ChainData, int] | None]] = deque(maxlen=4)
        self._top: list[_Result] = []  # the pool's best verified results, distinct genotypes, best first
        #: shares whose weights are asked for or being checked: (member, id) -> validation
        self._inflight: dict[tuple[str, int], int] = {}
        self._address_buckets: dict[bytes, list[float]] = {}  # payout address -> [tokens, time counted]
        # group commit: shares accepted by the checks, waiting for the one synced batch that
        # stores them all (written off the event loop); their trainings count as credited
        self._intake: list[tuple[MemberConn, P.Share, StoredShare, float]] = []
        #: seconds from a share's arrival to its ``accept`` (the latest 100,000; for the dashboard
        #: and bench/bench_pool.py, which compares it with what the members see)
        self.ack_latencies: deque[float] = deque(maxlen=100_000)
        self._intake_keys: set[tuple[str, int]] = set()
        self._intake_wake = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._committing: asyncio.Future[None] | None = None  # the batch being written, in its thread
        self._pruning: asyncio.Future[int] | None = None  # old shares being pruned, in a thread
        self._unanswered: dict[bytes, int] = {}  # payout address -> ``want``s it left unanswered
        #: what members reported (an underpaid block), newest first, for the dashboard
        self.alerts: deque[dict[str, Any]] = deque(maxlen=50)
        #: members that left, were banned or fell silent, newest last (the dashboard's alerts)
        self.departed: deque[dict[str, Any]] = deque(maxlen=DEPARTED_KEPT)
        self._tasks: set[asyncio.Future[None]] = set()  # background bookkeeping (wins, block checks)
        #: the stored shares' prune points (the window's oldest seq) at the last round opens
        self._prune_marks: deque[int] = deque()
        # shown weights waiting for their check, bounded: weights beyond it are not checked
        self._verify: asyncio.Queue[tuple[MemberConn, P.Share, bytes]] = asyncio.Queue(config.max_verify_queue)
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._client: NodeClient | None = None
        #: what each split was computed from: weights hash -> (window weights, finder, reward,
        #: last share seq); by the committed coinbase's payouts root (tests audit it)
        self._splits: dict[bytes, tuple[dict[bytes, int], bytes | None, int, int]] = {}
        self.split_log: dict[bytes, tuple[dict[bytes, int], bytes | None, int, int]] = {}
        self._last_reward: int | None = None
        self.stats: dict[str, int] = {"accepted": 0, "rejected": 0, "verified": 0, "banned": 0, "voided": 0, "won": 0,
                                      "unchecked": 0, "bonus_withheld": 0}
        #: the dashboard's chart: shares accepted and refused, trainings reported, per 10 s, last hour
        self.series = Series()
        self.started = clock()
        #: workers dropped lately (left, banned), for their pages; as many as ``departed`` lists
        self._gone: dict[str, MemberConn] = {}
        self._stopping = False  # stop() has begun
        self._gc_frozen = self._gc_full = time.monotonic()  # freeze_gc: last freeze, last full collection
        #: the pool's one search of the current task (None: members search their subspaces alone)
        self.shared: SharedSearch | None = None
        self._page_cache: tuple[float, bytes] | None = None  # /api/pool's last answer (monotonic time, JSON)

    # --- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        os.makedirs(self.config.datadir, exist_ok=True)
        # the manager's own reads of the node (its won blocks' coinbase and status); the driver
        # has its client for the round protocol
        self._http = session()
        self._client = NodeClient(self._http, self.config.node_url)
        if not self.chain_id:
            await self._learn_chain_id()
        self.store = PoolStore(os.path.join(self.config.datadir, "pool"), self.chain_id)
        for s in self.store.shares():
            self.window.add(Share(s.address, s.weight, s.height, s.seq))
        self._committer = asyncio.create_task(self._commit_loop())
        app = web.Application()
        app.router.add_get("/ws", self._ws_handler)
        app.router.add_get("/api/pool", self._api_pool)
        app.router.add_get("/api/pool/workers/{id}", self._api_worker)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._page)
        app.router.add_get("/worker/{id}", self._worker_page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("pool-listening", extra={"port": self.port, "fee_ppm": self.config.fee_ppm})

    async def _learn_chain_id(self) -> None:
        assert self._client is not None
        status = await self._client.get("/api/v1/status")
        self.chain_id = str(status.get("chain_id", "")) if isinstance(status, dict) else ""
        genesis = status.get("genesis") if isinstance(status, dict) else None
        try:
            self.genesis = bytes.fromhex(genesis) if isinstance(genesis, str) else None
        except ValueError:
            self.genesis = None

    async def run(self, stop: asyncio.Event) -> None:
        verifier = asyncio.create_task(self._verify_loop(stop))
        watcher = asyncio.create_task(self._watch_loop(stop))
        try:
            await self.driver.run(stop)
        finally:
            verifier.cancel()
            watcher.cancel()
            await self.stop()  # closes the members' connections first

    async def stop(self) -> None:
        """Undo :meth:`start`: the web server, the store (the shares still waiting for their
        group commit written first), the node client; safe to call twice."""
        self._stopping = True  # members dropped now keep their wanted shares' credit
        for m in list(self.members.values()):  # the server's cleanup would wait for their handlers
            with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
                await asyncio.wait_for(m.ws.close(code=WSCloseCode.GOING_AWAY, message=b"pool stopping"), 2.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None
        if self._committing is not None:  # a batch still being written: on disk before the store closes
            with contextlib.suppress(Exception):
                await self._committing
            self._committing = None
        if self._pruning is not None:
            with contextlib.suppress(Exception):
                await self._pruning
            self._pruning = None
        if self.store is not None:
            self.store.commit_shares([stored for _m, _share, stored, _t in self._intake])
            self._intake.clear()
            self.store.close()
            self.store = None
        if self._http is not None:
            await self._http.close()
            self._http = self._client = None
        if self.config.freeze_gc:
            import gc

            gc.unfreeze()

    def _score_round(self, fn: Callable[..., Any], *args: Any) -> Any:
        """The driver's reveal scoring (:func:`pool.rounds.round_scores`): a mnist1d round is
        scored exactly on the test set of its epoch's data."""
        data = self._data
        return fn(*args, data=data[0], epoch=data[1]) if data is not None else fn(*args)

    # --- CandidateSource ----------------------------------------------------------------------

    def prepare(self, rnd: RoundInfo) -> bool:
        from consensus.engines.ponas.recipe import PRESETS
        from consensus.engines.ponas.space import GenotypeError, get_space

        try:
            data = rnd.chain_data(self.genesis)
        except MinerError:
            return False
        data_epoch = (data, data.epoch(rnd.height)) if data is not None else None
        if (self._task, self._data) != ((rnd.space, rnd.recipe), data_epoch):
            try:
                space = get_space(rnd.space)
            except GenotypeError:
                return False
            if rnd.recipe not in PRESETS:
                return False
            self._task = (rnd.space, rnd.recipe)
            self._data = data_epoch  # a new epoch is a new task: its data differ
            self._task_first_job = self._job_id + 1
            self._task_history.append((self._task_first_job, self._task, self._data))
            self.scheduler = Scheduler(space, heartbeat_timeout=self.config.heartbeat_timeout,
                                       std_threshold=self.config.std_threshold, top_k=self.config.top_k,
                                       history=self.config.history)
            for m in self.members.values():
                self.scheduler.join(m.id, self.clock(), m.throughput or None)
            self._top = []
            # one model of the space for the pool (NAS-Bench-201 cells; other spaces: none)
            self.shared = SharedSearch(space, self.rng) if self.config.shared_search and SharedSearch.supports(space) \
                else None
            for m in self.members.values():
                m.proposed.clear()
            self._round = rnd
            self._send_jobs(replan=True)
        if rnd.reward > 0:  # the node's quote: the dashboard's expected payouts split it
            self._last_reward = rnd.reward
        if rnd.spent:  # results already in the chain's epoch earn nothing: make room for others
            self._top = [r for r in self._top if (r.result.genotype, r.result.seed) not in rnd.spent]
        self._round = rnd
        return True

    def set_training(self, allowed: bool) -> None:
        pass  # members train all the time: results carry over rounds of the same task

    @property
    def _best(self) -> _Result | None:
        return self._top[0] if self._top else None

    def candidates(self, rnd: RoundInfo, k: int) -> list[TrainResult]:
        """The best ``k`` results by validation that the round may take: a (genotype, seed)
        already in the round's task epoch (``rnd.spent``, e.g. the block we won last round) would
        be refused as ``repeated-work``."""
        return [r.result for r in self._top if (r.result.genotype, r.result.seed) not in rnd.spent][:k]

    def _add_top(self, res: _Result) -> bool:
        """Keep ``res`` among the best results if it belongs there; True if it is the best now."""
        same = [r for r in self._top if r.result.genotype == res.result.genotype]
        if same and same[0].result.validation >= res.result.validation:
            return False
        top = sorted([r for r in self._top if r.result.genotype != res.result.genotype] + [res],
                     key=lambda r: -r.result.validation)
        self._top = top[: self.top_results]
        return self._top[0] is res

    def rest_address(self) -> bytes:
        return self.config.fee_address

    def payouts(self, result: TrainResult, reward: int) -> list[Payout]:
        if self.config.solo:
            return [Payout(self.config.fee_address, reward)]
        found = next((r for r in self._top if r.result is result), None)
        finder = found.address if found is not None else None
        if found is not None and self._suspect(found.member):
            # the withholding statistic acts: a member that reports far fewer top results than
            # its share of the work predicts gets no finder's bonus (it goes to the PPLNS split)
            finder = None
            self.stats["bonus_withheld"] += 1
            log.warning("finder-suspect", extra={"member": found.member})
        weights = self.window.weights_by_member()
        self._last_reward = reward
        # the last share the split counts: the window's, not the store's next number (shares
        # staged or being written by the group commit are not credited yet)
        last_seq = self.window.last_seq
        self._splits[result.weights_hash] = (weights, finder, reward, last_seq)
        out = split_reward(reward, weights, fee_address=self.config.fee_address,
                           fee_ppm=self.config.fee_ppm, finder=finder, finder_bonus_ppm=self.config.finder_bonus_ppm,
                           min_payout=self.config.min_payout)
        if self._round is not None:
            # the pool's word, before anyone knows who wins: a member with a node checks it
            # against the coinbase of every block the pool wins (pool join --check)
            text = P.encode_commit(self._round.height, result.weights_hash, [(p.address, p.amount) for p in out])
            for m in list(self.members.values()):
                asyncio.ensure_future(self._send(m, text))
        return out

    def _suspect(self, member_id: str) -> bool:
        """Flagged by the scheduler's withholding statistic (a member it no longer knows is not)."""
        if self.scheduler is None:
            return False
        try:
            return self.scheduler.flagged(member_id)
        except PoolError:  # unknown-member: it left
            return False

    def round_opened(self, rnd: RoundInfo) -> None:
        self.window.advance(rnd.height)
        self._prune()
        if self.store is not None and any(b.status == "pending" for b in self.store.blocks()):
            self._background(self._check_blocks(rnd.height - 1))
        if self.scheduler is None:
            return
        pool_best = [(r.member, r.result.validation) for r in self._top[: self.config.top_k]]
        self.scheduler.end_round(self.clock(), pool_best)
        self._round = rnd
        self._send_jobs(replan=True)

    def _prune(self) -> None:
        """Forget stored shares that left the PPLNS window ``PRUNE_LAG_ROUNDS`` round opens ago
        (the lag keeps the shares of the last blocks' splits for a while, for audits). In a
        worker thread when the event loop runs (a round's shares, each with its training's
        credited mark: tens of milliseconds per 10,000), after the previous prune."""
        if self.store is None:
            return
        oldest = self.window.oldest_seq
        self._prune_marks.append(self.store.next_seq if oldest is None else oldest)
        if len(self._prune_marks) <= PRUNE_LAG_ROUNDS:
            return
        mark, store = self._prune_marks.popleft(), self.store
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the loop (tests): now
            self._pruned(store.prune(mark))
            return
        if self._pruning is not None and not self._pruning.done():
            self._prune_marks.appendleft(mark)  # the previous one is still running: at the next round
            return
        self._pruning = loop.run_in_executor(None, store.prune, mark)
        self._pruning.add_done_callback(self._prune_done)

    @staticmethod
    def _prune_done(future: asyncio.Future[int]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:  # the disk: the shares stay (and count as credited); the next round tries again
            log.error("shares-prune-failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            return
        Manager._pruned(future.result())

    @staticmethod
    def _pruned(n: int) -> None:
        if n:
            log.info("shares-pruned", extra={"pruned": n})

    def committed(self, rnd: RoundInfo, result: TrainResult, block: Block) -> None:
        if result.weights_hash in self._splits:
            self.split_log[block.header.payouts_root] = self._splits[result.weights_hash]
        self.report(f"round {rnd.height}: committed {result.genotype} (validation {result.validation}) paying "
                    f"{len(block.coinbase.payouts)} addresses")

    def won(self, height: int, block_hash: bytes, score: int) -> None:
        self.stats["won"] += 1
        self._background(self._record_win(height, block_hash, score))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)  # a reference until it ends (the loop keeps only weak ones)
        task.add_done_callback(self._tasks.discard)

    async def _check_blocks(self, tip: int) -> None:
        """Settle the won blocks still ``pending``: ``confirmed`` once canonical under
        ``CONFIRM_DEPTH`` blocks, ``orphaned`` once that deep off the canonical chain (their
        payouts leave the paid totals). ``tip``: the node's height."""
        client = self._client
        if client is None or self.store is None:
            return
        for block in [b for b in self.store.blocks() if b.status == "pending" and tip - b.height + 1 >= CONFIRM_DEPTH]:
            try:
                data = await client.get(f"/api/v1/blocks/{block.hash.hex()}")
                canonical = bool(data["canonical"])
            except Exception as exc:  # the node went away or lost it: ask again next round
                log.warning("block-check-failed", extra={"height": block.height, "error": f"{type(exc).__name__}: {exc}"})
                continue
            status = "confirmed" if canonical else "orphaned"
            self.store.set_block_status(block.height, status)
            self.report(f"block {block.height} {block.hash.hex()[:16]} won by the pool is {status}"
                        + ("" if canonical else ": its payouts leave the members' paid totals"))

    async def _record_win(self, height: int, block_hash: bytes, score: int) -> None:
        """Book a won block with the payouts its coinbase really holds (read from the node)."""
        client = self._client
        try:
            assert client is not None
            data = await client.get(f"/api/v1/blocks/{block_hash.hex()}")
            payouts = [Payout(parse_address(p["address"]), int(p["amount"])) for p in data["payouts"]]
        except Exception as exc:  # the node went away: the block is on chain anyway
            log.warning("win-not-booked", extra={"height": height, "error": f"{type(exc).__name__}: {exc}"})
            return
        if self.store is not None:
            self.store.record_block(height, block_hash, self.clock(), payouts)
        self.report(f"round {height}: the pool WON block {block_hash.hex()[:16]} (score {score}), "
                    f"{len(payouts)} addresses paid in the coinbase")

    # --- jobs ----------------------------------------------------------------------------------

    def _send_jobs(self, replan: bool = False, moves: list[Move] | None = None) -> None:
        """Send members their assignments: everyone, of a fresh plan (a new round, a new
        member); or, after ``moves`` (a member left or went silent), the members they touch."""
        rnd, sched = self._round, self.scheduler
        if rnd is None or sched is None or not self.members:
            return
        plan = sched.plan_round(self.clock(), self.rng) if replan else sched.plan
        assigned = plan.by_member()
        touched = None if moves is None else {m.to_member for m in moves} | {
            b for m in moves for b in [plan.backup_of(m.subspace)] if b is not None}
        for m in self.members.values():
            if touched is None or m.id in touched:
                self._send_job(m, assigned.get(m.id, []), rnd)

    def _send_job(self, m: MemberConn, assignments: list[Any], rnd: RoundInfo) -> None:
        self._job_id += 1
        ranges = [a.subspace.as_range() for a in assignments]
        now = self.clock()
        m.jobs[self._job_id] = (now, ranges)
        cutoff = now - self.config.grace - 60  # (one clock read: a re-plan sends a job to every member)
        for old in [j for j, (sent, _) in m.jobs.items() if sent < cutoff]:
            del m.jobs[old]
        subspaces = [{"start": a.subspace.start, "stop": a.subspace.stop, "role": a.role, "primary": a.primary}
                     for a in assignments]
        asyncio.ensure_future(self._send(m, P.encode(
            "job", job=self._job_id, height=rnd.height, parent=rnd.parent.hex(), task=rnd.task_id.hex(),
            space=rnd.space, recipe=rnd.recipe, deadline=rnd.deadline, subspaces=subspaces,
            **({"data": self._data[0].to_json(), "epoch": self._data[1]} if self._data else {}))))

    async def _send(self, m: MemberConn, text: str) -> None:
        if not m.ws.closed:
            try:
                await m.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                pass

    # --- websocket ------------------------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=P.MAX_FRAME, heartbeat=30)
        await ws.prepare(request)
        nonce = os.urandom(32)
        await ws.send_str(P.encode("challenge", version=P.VERSION, nonce=nonce.hex(), chain_id=self.chain_id,
                                   pool={"fee_ppm": self.config.fee_ppm, "finder_bonus_ppm": self.config.finder_bonus_ppm,
                                         "address": _address_text(self.config.fee_address),
                                         "key": self.key.public_key.hex()}))
        member: MemberConn | None = None
        try:
            msg = await ws.receive(timeout=15)
            if msg.type != WSMsgType.TEXT:
                return ws
            hello = P.parse_hello(P.decode(msg.data), self.chain_id, nonce, self.key.public_key)
            member = await self._admit(ws, hello)
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                await self._on_message(member, P.decode(msg.data))
        except P.ProtocolError as exc:
            await ws.send_str(P.encode("error", reason=exc.reason, detail=exc.detail))
            log.info("member-refused", extra={"reason": exc.reason, "detail": exc.detail,
                                              "member": member.id if member else None})
        except (TimeoutError, ConnectionError):
            pass
        finally:
            if member is not None and self.members.get(member.id) is member:
                self._drop(member, "left")
            await ws.close()
        return ws

    async def _admit(self, ws: web.WebSocketResponse, hello: P.Hello) -> MemberConn:
        assert self.store is not None
        reason = self.store.banned(hello.address)
        if reason is not None:
            raise P.ProtocolError("banned", f"this address was banned: {reason}")
        if hello.member in self.members:
            raise P.ProtocolError("duplicate-worker", f"{hello.member} is connected already")
        if len(self.members) >= self.config.max_members:
            raise P.ProtocolError("pool-full", "try another pool")
        now = self.clock()
        m = MemberConn(hello.member, hello.address, hello.worker, ws, now, now, hello.throughput or 0.0)
        self.members[m.id] = m
        self._gone.pop(m.id, None)
        await ws.send_str(P.encode("welcome", member=m.id, fee_ppm=self.config.fee_ppm,
                                   finder_bonus_ppm=self.config.finder_bonus_ppm, window=self.config.window,
                                   window_rounds=self._window_rounds(),
                                   heartbeat=self.config.heartbeat))
        log.info("member-joined", extra={"member": m.id})
        if self.scheduler is not None:
            self.scheduler.join(m.id, now, hello.throughput)
            self._send_jobs(replan=True)
        return m

    def _depart(self, m: MemberConn, why: str) -> None:
        self.departed.append({"member": m.id, "address": _address_text(m.address), "why": why,
                              "at": round(self.clock(), 1), "connected_s": round(self.clock() - m.joined, 1),
                              "accepted": m.accepted})

    def _drop(self, m: MemberConn, why: str) -> None:
        self.members.pop(m.id, None)
        self._depart(m, why)
        m.gone = (why, self.clock())
        # a share earns its credit only if it can be shown: a worker that leaves with weights
        # still wanted loses those shares' credit at once (it would keep it otherwise, since the
        # watchdog times out only connected workers' wants). Not counted towards an
        # ``ignored-want`` ban: an honest worker's connection may drop, and nothing is gained.
        # Not when the manager itself stops: its members did nothing wrong.
        for sid, (_asked, _share, seq) in ({} if self._stopping else m.wanted).items():
            self._void_share(seq)
            m.mark(sid, "voided")
        if m.wanted and not self._stopping:
            log.warning("wants-dropped", extra={"member": m.id, "voided": len(m.wanted)})
        m.wanted = {}
        m.pending = {}  # its weights will not come now; its counters and recent shares stay for its page
        if self.shared is not None and m.proposed:
            self.shared.release(list(m.proposed))  # someone else may train them
        m.proposed = {}
        self._gone.pop(m.id, None)
        self._gone[m.id] = m
        while len(self._gone) > DEPARTED_KEPT:
            del self._gone[next(iter(self._gone))]
        for key in [k for k in self._inflight if k[0] == m.id]:  # its weights will not come now
            del self._inflight[key]
        log.info("member-left", extra={"member": m.id, "why": why})
        if self.scheduler is not None:
            moves = self.scheduler.leave(m.id, self.clock())
            if moves:
                self._send_jobs(moves=moves)

    async def _on_message(self, m: MemberConn, data: dict[str, Any]) -> None:
        arrived = time.perf_counter()
        m.last_seen = self.clock()
        m.silent = False
        kind = data["type"]
        if kind == "heartbeat":
            _job, trainings, throughput = P.parse_heartbeat(data)
            if m.reported is not None and trainings > m.reported:  # the first says what it did before joining
                self.series.trainings(m.last_seen, trainings - m.reported)
            m.reported = trainings
            m.trainings, m.throughput = trainings, throughput
            if self.scheduler is not None:
                self.scheduler.heartbeat(m.id, m.last_seen, throughput)
        elif kind == "share":
            if not self._rate_ok(m, m.last_seen):  # before any parsing: floods cost us little
                # (per worker, then per payout address: five workers of one address share one)
                m.floods += 1
                await self._reject(m, data.get("id"), "rate-limited")
                if m.floods > 50:
                    raise P.ProtocolError("flood", "too many shares; reconnect later")
                return
            try:
                share = P.parse_share(data)
            except P.ProtocolError as exc:  # answered like any refused share; the session goes on
                await self._reject(m, data.get("id"), exc.reason, exc.detail)
                return
            await self._on_share(m, share, arrived)
        elif kind == "alert":
            # a member's own check found a block of the pool that pays it less than announced
            alert = {"member": m.id, "reason": str(data.get("reason", ""))[:64], "height": data.get("height"),
                     "detail": str(data.get("detail", ""))[:200], "time": self.clock()}
            self.alerts.appendleft(alert)
            log.error("member-alert", extra=alert)
        elif kind == "weights":
            sid, weights = P.parse_weights(data)
            shown = m.pending.pop(sid, None)  # checked once: a second copy is ignored
            if shown is None:
                return  # weights of a share we refused, forgot, or are checking already
            m.wanted.pop(sid, None)
            try:
                self._verify.put_nowait((m, shown, weights))
            except asyncio.QueueFull:  # our backlog, not the member's fault: its share keeps its credit
                self._inflight.pop((m.id, sid), None)
                self.stats["unchecked"] += 1
                log.warning("verify-queue-full", extra={"member": m.id, "share": sid, "queued": self._verify.qsize()})
        else:
            raise P.ProtocolError("bad-message", f"unknown type {kind!r}")

    async def _reject(self, m: MemberConn, share_id: Any, reason: str, detail: str | None = None,
                      share: P.Share | None = None) -> None:
        """Refuse a share: counted per member and reason (and in the chart), answered with the
        reason, listed in the member's recent shares (with its genotype and score if ``share``,
        the parsed share, is given)."""
        m.rejected += 1
        m.rejects[reason] = m.rejects.get(reason, 0) + 1
        self.stats["rejected"] += 1
        now = self.clock()
        self.series.refused(now)
        if share is not None:
            m.recent.append([now, share.id, share.genotype, share.validation, "refused", reason])
        else:
            m.recent.append([now, share_id if type(share_id) is int else None, None, None, "refused", reason])
        extra = {} if detail is None else {"detail": detail}
        await self._send(m, P.encode("reject", id=share_id, reason=reason, **extra))

    def _rate_ok(self, m: MemberConn, now: float) -> bool:
        """A token of the worker's bucket and one of its payout address's, or refused."""
        worker = self._take([m.bucket, m.bucket_t], self.config.max_share_rate, now)
        m.bucket, m.bucket_t = worker[0], worker[1]
        if not worker[2]:
            return False
        state = self._address_buckets.setdefault(m.address, [0.0, 0.0])
        address = self._take(state, self.config.max_address_share_rate, now)
        state[0], state[1] = address[0], address[1]
        if not address[2]:
            m.bucket += 1  # the worker's token back: the address refused it
        return address[2]

    @staticmethod
    def _take(state: list[float], cap: float, now: float) -> tuple[float, float, bool]:
        """A token bucket of ``cap`` tokens refilled at ``cap`` a second (``state``: tokens and
        the time they were counted; a fresh bucket is full): (tokens, time, taken)."""
        tokens, t = state
        tokens = min(cap, tokens + (now - t) * cap) if t else cap
        if tokens < 1:
            return tokens, now, False
        return tokens - 1, now, True

    async def _on_share(self, m: MemberConn, share: P.Share, arrived: float) -> None:
        reason = self._check_share(m, share)
        if reason is not None:
            await self._reject(m, share.id, reason, share=share)
            return
        assert self.store is not None and self._round is not None
        from consensus.engines.ponas.recipe import PRESETS

        weight = PRESETS[self._task[1]].epochs if self._task else 1
        stored = self.store.stage_share(m.address, m.worker, weight, self._round.height, share.genotype, share.seed,
                                        share.validation)
        self._intake.append((m, share, stored, arrived))
        self._intake_keys.add((share.genotype, share.seed))
        self._intake_wake.set()

    async def _commit_loop(self) -> None:
        """Group commit: every share accepted since the last batch is written in one synced
        LevelDB batch, in a worker thread (the event loop goes on taking shares meanwhile), and
        only then credited and acknowledged: an ``accept`` is never lost to a crash. A written
        batch is credited while the next one is being written, :data:`CREDIT_CHUNK` shares at a
        time with the event loop's other work in between: a big batch is no long pause."""
        written: list[tuple[MemberConn, P.Share, StoredShare, float]] | None = None  # stored, not yet credited
        while True:
            if written is None:
                await self._intake_wake.wait()
            self._intake_wake.clear()
            batch, self._intake = self._intake, []
            store = self.store
            writing = None
            if batch and store is not None:  # submitted to the worker thread now, before the credit below
                writing = self._committing = asyncio.get_running_loop().run_in_executor(
                    None, store.commit_shares, [stored for _m, _share, stored, _t in batch])
            if written is not None:  # in order: the previous batch's accepts go before this one's
                await self._credit_batch(written)
                written = None
            if writing is None:
                continue
            try:
                await asyncio.shield(writing)  # a stop waits for the write, then closes the store
            except asyncio.CancelledError:
                raise
            except Exception:  # the disk: these shares are not stored, nor acknowledged
                log.exception("share-commit-failed", extra={"shares": len(batch)})
                for m, share, _stored, _t in batch:
                    self._intake_keys.discard((share.genotype, share.seed))
                    await self._reject(m, share.id, "store-failed", share=share)
                continue
            written = batch

    async def _credit_batch(self, batch: list[tuple[MemberConn, P.Share, StoredShare, float]]) -> None:
        """Credit and acknowledge a stored batch, in order, yielding to the event loop every
        :data:`CREDIT_CHUNK` shares."""
        for i, (m, share, stored, arrived) in enumerate(batch):
            if i and i % CREDIT_CHUNK == 0:
                await asyncio.sleep(0)  # the messages that came meanwhile (shares, heartbeats) are read now
            self._intake_keys.discard((share.genotype, share.seed))
            await self._credit(m, share, stored)
            self.ack_latencies.append(time.perf_counter() - arrived)
        self._gc_step()

    def _gc_step(self) -> None:
        """With ``freeze_gc``: freeze what is alive now (at most once a second), so the cyclic
        collector's full passes scan only what came since, not the whole PPLNS window and every
        member's pending shares (acyclic: refcounting still frees them when they go); every
        :data:`GC_FULL_EVERY` seconds, unfreeze and collect everything (cycles that formed among
        frozen objects, e.g. a closed connection's, are freed then)."""
        if not self.config.freeze_gc:
            return
        import gc

        now = time.monotonic()
        if now - self._gc_full >= GC_FULL_EVERY:
            gc.unfreeze()
            gc.collect()
            self._gc_full = now
        if now - self._gc_frozen >= 1.0:
            gc.freeze()
            self._gc_frozen = now

    async def _credit(self, m: MemberConn, share: P.Share, stored: StoredShare) -> None:
        """A stored share: into the PPLNS window, acknowledged, and its weights asked for when
        it may enter the pool's best (or by sample). A share of an address banned while it was
        being written is voided instead."""
        assert self.store is not None
        if self.store.banned(m.address) is not None:
            self.store.void_share(stored.seq)
            return
        weight = stored.weight
        self.window.add(Share(m.address, weight, stored.height, stored.seq))
        m.accepted += 1
        m.pending[share.id] = share
        while len(m.pending) > 256:
            m.pending.pop(next(iter(m.pending)))
        self.stats["accepted"] += 1
        now = self.clock()
        self.series.accepted(now)
        m.recent.append([now, share.id, share.genotype, share.validation, "accepted", None])
        await self._send(m, f'{{"type":"accept","id":{share.id},"credit":{weight}}}')  # P.encode's bytes, hot path
        if self.shared is not None and share.job >= self._task_first_job:
            m.proposed.pop(share.genotype, None)
            self.shared.observe(share.genotype, share.validation, m.id)
            await self._propose(m)
        # a share that may enter the pool's best results must show its weights; others by sample
        if self._may_enter_top(share.validation) or self.rng.random() < self.config.verify_rate:
            self._inflight[(m.id, share.id)] = share.validation
            m.wanted[share.id] = (self.clock(), share, stored.seq)
            await self._send(m, P.encode("want", id=share.id))

    def _may_enter_top(self, validation: int) -> bool:
        """Fewer than ``top_results`` verified results and shares whose weights are asked for
        score ``validation`` or more. Counted up to that bound only: a big pool has thousands
        of shares waiting for their check (a sample of every share), asked for every share."""
        better = sum(1 for r in self._top if r.result.validation >= validation)
        if better >= self.top_results:
            return False
        for v in self._inflight.values():
            if v >= validation:
                better += 1
                if better >= self.top_results:
                    return False
        return True

    async def _propose(self, m: MemberConn) -> None:
        """Top up ``m``'s proposals from the pool's shared search (once it has learned enough):
        the cells its model ranks best among those nobody in the pool has trained in this task
        (once every cell is trained: the pool's best cells again, with ``m``'s own new seeds),
        which ``m`` trains before its own subspaces' and may train outside them."""
        if self.shared is None or not self.shared.ready or not m.jobs:
            return
        job = max(m.jobs)
        fresh = []
        while len(m.proposed) < self.config.proposals_queued:
            genotype = self.shared.propose()
            if genotype is None:
                break
            m.proposed[genotype] = job
            fresh.append(genotype)
        if fresh:
            await self._send(m, P.encode("propose", job=job, genotypes=fresh))

    def _check_share(self, m: MemberConn, share: P.Share) -> str | None:
        from consensus.engines.ponas.space import GenotypeError

        now = self.clock()
        job = m.jobs.get(share.job)
        if job is None or self._task is None or share.job < self._task_first_job:
            return "stale-job"
        _sent, ranges = job
        latest = max(m.jobs)
        if share.job != latest and now - m.jobs[latest][0] > self.config.grace:
            return "stale-job"  # replaced by a newer job more than ``grace`` seconds ago
        try:
            index = _cell_index(self._task[0], share.genotype)  # parsed once
        except GenotypeError:
            return "bad-share"
        for a, b in ranges:
            if a <= index < b:
                break
        else:
            if m.proposed.get(share.genotype, -1) < self._task_first_job:
                return "outside-subspace"  # neither its subspaces nor a proposal of this task
        if (share.genotype, share.seed) in self._intake_keys or \
                (self.store is not None and self.store.credited(share.genotype, share.seed)):
            return "duplicate"
        from consensus.engines.ponas.data import VALIDATION_SIZE

        if share.validation > (self._data[0].validation_size if self._data else VALIDATION_SIZE):
            return "bad-validation"
        return None

    # --- verification ---------------------------------------------------------------------------

    async def _verify_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            m, share, weights = await self._verify.get()
            self._inflight.pop((m.id, share.id), None)
            if m.id not in self.members and self.store is not None and self.store.banned(m.address):
                continue
            retrain = self.rng.random() < self.config.retrain_rate
            first, task, data = self._task_of(share.job)
            if task is None:
                continue  # a job older than every task kept: nothing to check it on, nothing it can win
            try:
                verdict, result = await asyncio.to_thread(_check_weights, task, share, weights, retrain, data)
            except Exception:  # a bug in checking must not take the pool down
                log.exception("verify-failed", extra={"member": m.id, "share": share.id})
                continue
            if verdict is not None:
                await self._ban(m, verdict)
                continue
            assert result is not None
            m.verified += 1
            m.mark(share.id, "verified")
            self.stats["verified"] += 1
            await self._send(m, P.encode("verified", id=share.id))
            if first == self._task_first_job and self._add_top(_Result(m.id, m.address, result)):
                self.driver.wake()
                log.info("pool-best", extra={"member": m.id, "genotype": result.genotype, "validation": result.validation})
            if self.scheduler is not None and m.id in self.members and first == self._task_first_job:
                self.scheduler.record(m.id, share.genotype, result.validation, self.clock())

    def _task_of(self, job: int) -> tuple[int, tuple[str, str] | None, tuple[ChainData, int] | None]:
        """The task a job was sent for: (its first job, (space, recipe), data and epoch); a share
        of a past epoch is checked on that epoch's data, and never enters the current top."""
        for first, task, data in reversed(self._task_history):
            if job >= first:
                return first, task, data
        return -1, None, None

    async def _ban(self, m: MemberConn, reason: str) -> None:
        assert self.store is not None
        self.store.ban(m.address, reason, self.clock())
        voided = self.store.void(m.address)
        self.window.void(m.address)
        self.stats["banned"] += 1
        self.stats["voided"] += voided
        self._top = [r for r in self._top if r.address != m.address]
        if self.shared is not None:  # its claimed scores no longer steer the pool's search
            self.shared.forget({w.id for w in [*self.members.values(), *self._gone.values()] if w.address == m.address})
        for worker in [*self.members.values(), *self._gone.values()]:
            if worker.address == m.address:
                for entry in worker.recent:
                    if entry[4] in ("accepted", "verified"):
                        entry[4] = "voided"
        log.warning("member-banned", extra={"member": m.id, "reason": reason, "voided": voided})
        self.report(f"banned {m.id}: {reason}; {voided} shares voided")
        for other in [c for c in self.members.values() if c.address == m.address]:
            await self._send(other, P.encode("banned", reason=reason))
            self._drop(other, "banned")
            await other.ws.close()

    async def _watch_loop(self, stop: asyncio.Event) -> None:
        """Heartbeats: a silent member's subspaces move at once; unanswered ``want`` voids."""
        while not stop.is_set():
            await asyncio.sleep(0.5)
            now = self.clock()
            moves = self.scheduler.check(now) if self.scheduler is not None else []
            if moves:
                self._send_jobs(moves=moves)
            for m in self.members.values():  # a dead worker's alert, once per silence
                if not m.silent and now - m.last_seen > self.config.heartbeat_timeout:
                    m.silent = True
                    self._depart(m, "silent")
                    log.warning("member-silent", extra={"member": m.id, "silent_s": round(now - m.last_seen, 1)})
            ban: dict[bytes, MemberConn] = {}
            for m in self.members.values():
                for sid, (asked, _share, seq) in list(m.wanted.items()):
                    if now - asked > self.config.want_timeout:
                        # no weights in time: the share's credit is void (a share earns its
                        # credit only if it can be shown), and the address is counted
                        del m.wanted[sid]
                        m.pending.pop(sid, None)
                        self._inflight.pop((m.id, sid), None)
                        self._void_share(seq)
                        m.mark(sid, "voided")
                        n = self._unanswered[m.address] = self._unanswered.get(m.address, 0) + 1
                        log.warning("want-unanswered", extra={"member": m.id, "share": sid, "unanswered": n})
                        if n >= self.config.max_unanswered:
                            ban[m.address] = m
            for m in ban.values():
                await self._ban(m, "ignored-want")

    def _void_share(self, seq: int) -> None:
        """One accepted share's credit taken back (its ``want`` went unanswered)."""
        if self.store is not None:
            self.store.void_share(seq)
        self.window.void_seq(seq)
        self.stats["voided"] += 1

    # --- dashboard ------------------------------------------------------------------------------

    def _window_rounds(self) -> int | None:
        return self.config.window_rounds if self.config.window is None else None

    def _expected(self, weights: dict[bytes, int]) -> dict[bytes, int]:
        """What each address would get if the pool won now: the split of the last reward the
        node quoted (subsidy plus fees), without a finder's bonus; empty before a quote."""
        if self._last_reward is None:
            return {}
        return {p.address: p.amount for p in split_reward(
            self._last_reward, weights, fee_address=self.config.fee_address, fee_ppm=self.config.fee_ppm,
            finder=None, finder_bonus_ppm=0, min_payout=self.config.min_payout)}

    def snapshot(self) -> dict[str, Any]:
        """The dashboard's data (``/api/pool``); amounts in base units. The keys other tools
        read stay; ``now`` (the manager's clock: ``last_seen`` and the notices' ``time`` are on
        it), ``space`` (the map of subspaces), ``series`` (the chart) and ``notices`` (what
        needs a person's eye) feed the page."""
        now = self.clock()
        weights = self.window.weights_by_member()
        expected = self._expected(weights)
        sched = self.scheduler.stats() if self.scheduler is not None else {}
        members = []
        for m in self.members.values():
            members.append({"member": m.id, "address": _address_text(m.address), "worker": m.worker,
                            "throughput": round(m.throughput, 3),
                            "trainings": m.trainings, "accepted": m.accepted, "rejected": m.rejected,
                            "rejects": dict(sorted(m.rejects.items())),
                            "verified": m.verified, "window_weight": weights.get(m.address, 0),
                            "expected_payout": expected.get(m.address) if expected else None,
                            "paid": self.store.paid(m.address) if self.store else 0,
                            "joined": m.joined, "last_seen": m.last_seen, "silent": m.silent,
                            "schedule": sched.get(m.id)})
        banned = {_address_text(a): r for a, r in (self.store.bans().items() if self.store else [])}
        rnd = self._round
        return {"now": now,
                "pool": {"key": self.key.public_key.hex(), "chain_id": self.chain_id,
                         "fee_ppm": self.config.fee_ppm, "finder_bonus_ppm": self.config.finder_bonus_ppm,
                         "fee_address": _address_text(self.config.fee_address), "window": self.config.window,
                         "window_rounds": self._window_rounds(), "window_units": self.window.total,
                         "min_payout": self.config.min_payout, "started": self.started,
                         "port": self.port, **self.stats},
                "round": None if rnd is None else {"height": rnd.height, "phase": rnd.phase, "space": rnd.space,
                                                   "recipe": rnd.recipe, "deadline": rnd.deadline,
                                                   "reward": self._last_reward},
                "best": None if self._best is None else {"member": self._best.member, "genotype": self._best.result.genotype,
                                                         "validation": self._best.result.validation},
                "members": members,
                "banned": banned,
                "departed": list(self.departed),
                "alerts": list(self.alerts),
                "blocks": [{"height": b.height, "hash": b.hash.hex(), "time": b.when, "status": b.status,
                            "total": sum(p.amount for p in b.payouts),
                            "payouts": [[_address_text(p.address), p.amount] for p in b.payouts]}
                           for b in (self.store.blocks() if self.store else [])],
                "space": self._space_map(sched),
                "series": {"bucket_s": self.series.width,
                           "buckets": self.series.buckets(now, since=self.started)},
                "notices": self._notices(sched, banned, now)}

    def _space_map(self, sched: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        """The current plan as the dashboard's map: every subspace in the space's order with its
        primary (None: unassigned), its backup, whether the primary is a high-reward member, and
        how many of the pool's best verified results lie in it."""
        if self.scheduler is None:
            return None
        space, plan = self.scheduler.space, self.scheduler.plan
        order = sorted(range(len(plan.subspaces)), key=lambda i: plan.subspaces[i].start)
        starts = [plan.subspaces[i].start for i in order]
        best = [0] * len(order)
        for r in self._top:
            try:
                index = space.decode(r.result.genotype)
            except ValueError:
                continue
            pos = bisect.bisect_right(starts, index) - 1
            if pos >= 0 and plan.subspaces[order[pos]].contains_index(index):
                best[pos] += 1
        tiles = []
        for pos, i in enumerate(order):
            sub, primary, backup = plan.subspaces[i], plan.primaries[i], plan.backups[i]
            tiles.append({"start": sub.start, "stop": sub.stop, "primary": primary, "backup": backup,
                          "high_reward": primary is not None and bool(sched.get(primary, {}).get("high_reward")),
                          "best": best[pos]})
        return {"name": space.name, "size": space.size, "plan": plan.number, "subspaces": tiles}

    def _notices(self, sched: dict[str, dict[str, Any]], banned: dict[str, str], now: float) -> list[dict[str, Any]]:
        """What needs a person's eye, newest first: members' underpaid reports, members the
        withholding statistic flags, and workers that left, were banned or fell silent."""
        out: list[dict[str, Any]] = []
        for a in self.alerts:
            out.append({"kind": a["reason"] or "alert", "member": a["member"], "time": a["time"],
                        "text": f"its own check of block {a['height']}: {a['detail']}"})
        for member_id, st in sched.items():
            if st["flagged"] and member_id in self.members:
                out.append({"kind": "withholding", "member": member_id, "time": now,
                            "text": f"reports far fewer top results than its share of the work predicts "
                                    f"(p={st['withholding_p']:.1e}): no finder's bonus"})
        for d in self.departed:
            why = d["why"]
            if why == "banned":
                text = f"banned ({banned.get(d['address'], 'reason unknown')}): its shares are voided"
            elif why == "silent":
                text = f"silent for more than {self.config.heartbeat_timeout:g} s: its subspaces moved"
            else:
                text = f"left after {_duration(d['connected_s'])}, {d['accepted']} shares accepted"
            out.append({"kind": why, "member": d["member"], "time": d["at"], "text": text})
        out.sort(key=lambda n: -n["time"])
        return out[:NOTICES_SHOWN]

    def worker_snapshot(self, member_id: str) -> dict[str, Any] | None:
        """A worker's page data (``/api/pool/workers/{id}``): a connected worker, or one dropped
        lately (the last ``DEPARTED_KEPT``); None for any other id. Payouts and the pending
        payout are its payout address's (what all its workers earn together)."""
        m = self.members.get(member_id) or self._gone.get(member_id)
        if m is None:
            return None
        now = self.clock()
        weights = self.window.weights_by_member()
        expected = self._expected(weights)
        sched = self.scheduler.stats().get(m.id) if self.scheduler is not None else None
        duties = []
        if self.scheduler is not None:
            plan = self.scheduler.plan
            for sub, primary, backup in zip(plan.subspaces, plan.primaries, plan.backups):
                if m.id in (primary, backup):
                    duties.append({"start": sub.start, "stop": sub.stop,
                                   "role": "primary" if primary == m.id else "backup",
                                   "primary": primary, "backup": backup})
            duties.sort(key=lambda d: (d["role"] != "primary", d["start"]))
        payouts = []
        for b in reversed(self.store.blocks() if self.store else []):
            amount = sum(p.amount for p in b.payouts if p.address == m.address)
            if amount:
                payouts.append({"height": b.height, "hash": b.hash.hex(), "time": b.when, "status": b.status,
                                "amount": amount})
        return {"now": now, "member": m.id, "address": _address_text(m.address), "worker": m.worker,
                "connected": self.members.get(m.id) is m, "silent": m.silent,
                "departed": None if m.gone is None else {"why": m.gone[0], "at": m.gone[1]},
                "banned": self.store.banned(m.address) if self.store else None,
                "joined": m.joined, "last_seen": m.last_seen, "throughput": round(m.throughput, 3),
                "trainings": m.trainings, "accepted": m.accepted, "rejected": m.rejected,
                "rejects": dict(sorted(m.rejects.items())), "verified": m.verified,
                "window_weight": weights.get(m.address, 0),
                "expected_payout": expected.get(m.address) if expected else None,
                "paid": self.store.paid(m.address) if self.store else 0,
                "address_workers": sorted(c.id for c in self.members.values() if c.address == m.address),
                "schedule": sched, "duties": duties,
                "recent": [{"time": t, "id": sid, "genotype": g, "validation": v, "status": st, "reason": why}
                           for t, sid, g, v, st, why in reversed(m.recent)],
                "payouts": payouts}

    async def _api_pool(self, request: web.Request) -> web.Response:
        # one snapshot a second however many dashboards poll; encoded off the event loop
        cached = self._page_cache
        if cached is None or time.monotonic() - cached[0] > SNAPSHOT_TTL:
            body = await asyncio.to_thread(_json_bytes, self.snapshot())
            self._page_cache = cached = (time.monotonic(), body)
        return web.Response(body=cached[1], content_type="application/json")

    async def _api_worker(self, request: web.Request) -> web.Response:
        member_id = request.match_info["id"]
        try:
            P.parse_member_id(member_id)
        except P.ProtocolError as exc:
            return _error(400, exc.reason, exc.detail)
        view = self.worker_snapshot(member_id)
        if view is None:
            return _error(404, "unknown-worker", f"no worker {member_id} is connected or left lately")
        return web.Response(body=await asyncio.to_thread(_json_bytes, view), content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        lines = [f"ponas_pool_members {len(self.members)}"]
        lines += [f"ponas_pool_{k} {v}" for k, v in self.stats.items()]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=DASHBOARD_PAGE, content_type="text/html")

    async def _worker_page(self, request: web.Request) -> web.Response:
        return web.Response(text=WORKER_PAGE, content_type="text/html")


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _error(status: int, reason: str, detail: str) -> web.Response:
    """The node API's error form: ``{"error": {"reason", "detail"}}``, ``reason`` stable."""
    return web.json_response({"error": {"reason": reason, "detail": detail}}, status=status)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"


def _check_weights(task: tuple[str, str] | None, share: P.Share, weights: bytes,
                   retrain: bool, data: tuple[ChainData, int] | None = None) -> tuple[str | None, TrainResult | None]:
    """Verdict on uploaded weights: None and the result, or the reason to ban. ``data``: a
    mnist1d chain's data and epoch, whose validation score and retrain are exact (the retrained
    weights must be the uploaded ones, byte for byte)."""
    import hashlib

    from consensus.engines.ponas.recipe import PRESETS
    from consensus.engines.ponas.weights import WeightsError, load_weights

    if task is None:
        return "bad-weights", None
    if hashlib.sha256(weights).digest() != share.weights_hash:
        return "bad-weights", None
    if data is not None:
        from consensus.engines.ponas.exact import pin_kernels
        from consensus.engines.ponas.train import score_sequences, train_sequences

        pin_kernels()  # before this check's first torch op
        chain_data, epoch = data
    try:
        model = load_weights(weights, task[0], share.genotype)
    except (WeightsError, ValueError):
        return "bad-weights", None
    if data is not None:
        if score_sequences(model, *chain_data.validation(epoch)) != share.validation:
            return "score-mismatch", None
        if retrain:
            _model, again = train_sequences(share.genotype, PRESETS[task[1]], share.seed, *chain_data.train(epoch),
                                            space_name=task[0])
            if hashlib.sha256(again).digest() != share.weights_hash:
                return "retrain-mismatch", None
    else:
        from consensus.engines.ponas.train import train, validation_score

        got = validation_score(model)
        if got != share.validation:
            return "score-mismatch", None
        if retrain:
            model2, _ = train(task[0], share.genotype, PRESETS[task[1]], share.seed)
            if abs(validation_score(model2) - share.validation) > 3:
                return "retrain-mismatch", None
    return None, TrainResult(share.genotype, share.seed, share.validation, share.weights_hash, weights, share.seconds)
