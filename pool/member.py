"""A pool member (``ponas pool join``): search the subspaces the manager assigns, stream shares.

The member connects to the manager's websocket (docs/pool-protocol.md), proves its payout
address by signing the manager's challenge, and then, for each ``job``, runs one search
strategy per assigned subspace (round robin between them), training one architecture at a
time in a worker thread with the task's pinned recipe. Every trained architecture is a
``share``; the weights of the last :data:`KEEP` results are kept to answer ``want``, and the
weights of each new best are sent unasked. A heartbeat reports the member's throughput.

A lost connection is retried with exponential backoff; the search state of each subspace is
kept, so a member that reconnects to the same assignment resumes where it was.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from consensus.crypto import PrivateKey, format_address
from nodeclient import Backoff
from pool import protocol as P
from pool.rounds import TrainResult, _Aborted, train_one
from pool.search import SearchStrategy, make_strategy

if TYPE_CHECKING:
    from consensus.engines.ponas.mnist1d import ChainData

__all__ = ["Member", "MemberStats"]

log = logging.getLogger("ponas.member")

#: Recent results whose weights are kept to answer ``want``.
KEEP = 64


@dataclass
class MemberStats:
    connections: int = 0
    jobs: int = 0
    trainings: int = 0
    accepted: int = 0
    rejected: int = 0
    verified: int = 0
    banned: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    proposals: int = 0  # genotypes the pool's shared search handed us
    blocks_checked: int = 0  # blocks the pool won whose coinbase paid this member what it announced
    underpaid: list[int] = field(default_factory=list)  # heights of blocks that paid it less


@dataclass
class _Job:
    id: int
    space: str
    recipe: str
    subspaces: list[tuple[int, int, str]]
    data: ChainData | None = None  # a mnist1d chain's data (None: digits)
    epoch: int = 0


class Member:
    """One member: ``key`` is the key of the payout address (it signs the hello); ``worker``
    names this machine; ``rng`` drives the search and the training seeds."""

    def __init__(
        self,
        url: str,
        key: PrivateKey,
        worker: str = "w0",
        strategy: str = "evolution",
        device: str = "cpu",
        rng: random.Random | None = None,
        *,
        heartbeat: float = 2.0,
        report: Callable[[str], None] | None = None,
        train: Callable[..., TrainResult] = train_one,
        pool_key: bytes | None = None,
        check_node: str | None = None,
    ) -> None:
        self.url = url if url.endswith("/ws") else url.rstrip("/") + "/ws"
        self.key = key
        self.pool_key = pool_key  # the pool's public key, if the member was given it: another is refused
        # the member's own node: every block the pool wins is checked against what the pool
        # announced at commit time (height -> weights hash -> this member's amount)
        self.check_node = check_node
        self._announced: OrderedDict[int, dict[bytes, int]] = OrderedDict()
        self.worker = worker
        self.strategy_name = strategy
        self.device = device
        self.rng = rng if rng is not None else random.Random()
        self.heartbeat_every = heartbeat
        self.report = report if report is not None else (lambda line: None)
        self.train = train
        self.stats = MemberStats()
        self.address = format_address(key.address)
        self._job: _Job | None = None
        self._strategies: dict[tuple[str, str, int, int], SearchStrategy] = {}
        self._turn = 0
        self._kept: OrderedDict[int, TrainResult] = OrderedDict()
        self._next_id = 0
        self._best: dict[int, int] = {}  # job -> best validation sent
        #: genotypes the pool's shared search handed us, trained before our own subspaces' (oldest
        #: first); dropped when the task changes
        self._proposals: deque[str] = deque(maxlen=P.MAX_PROPOSALS)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._job_ready = asyncio.Event()
        self._abort = threading.Event()
        self._started = time.monotonic()

    async def run(self, stop: asyncio.Event) -> MemberStats:
        """Work for the pool until ``stop`` is set or the manager bans us."""
        backoff = Backoff(0.5, 10.0)
        trainer = asyncio.create_task(self._train_loop(stop))
        checker = asyncio.create_task(self._check_loop(stop)) if self.check_node else None
        try:
            async with aiohttp.ClientSession() as session:
                while not stop.is_set() and self.stats.banned is None:
                    try:
                        await self._session(session, stop)
                        backoff.reset()
                    except (aiohttp.ClientError, OSError, TimeoutError, P.ProtocolError) as exc:
                        reason = getattr(exc, "reason", type(exc).__name__)
                        log.warning("pool-connection", extra={"url": self.url, "reason": reason})
                    except (KeyError, TypeError, ValueError) as exc:  # a manager that breaks the protocol
                        log.warning("pool-connection", extra={"url": self.url, "reason": "bad-message",
                                                              "detail": f"{type(exc).__name__}: {exc}"})
                    self._ws = None
                    self._job_ready.clear()
                    if stop.is_set() or self.stats.banned is not None:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), backoff.next())
        finally:
            if checker is not None:
                checker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await checker
            # a training in its worker thread stops at its next epoch; wait for it, since
            # torch's deterministic mode and thread count are process-wide settings
            self._abort.set()
            try:
                await asyncio.wait_for(asyncio.shield(trainer), 60)
            except (TimeoutError, asyncio.CancelledError, _Aborted):
                trainer.cancel()
                with contextlib.suppress(asyncio.CancelledError, _Aborted):
                    await trainer
        return self.stats

    async def _session(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        async with session.ws_connect(self.url, max_msg_size=P.MAX_FRAME, heartbeat=30) as ws:
            challenge = P.decode(await ws.receive_str(timeout=10))
            if challenge.get("type") != "challenge":
                raise P.ProtocolError("bad-message", "expected a challenge")
            nonce = bytes.fromhex(str(challenge.get("nonce", "")))
            chain_id = str(challenge.get("chain_id", ""))
            elapsed = time.monotonic() - self._started
            throughput = self.stats.trainings / elapsed if self.stats.trainings and elapsed > 0 else None
            pool = P.challenge_pool_key(challenge, self.pool_key)  # wrong-pool: a relayed challenge
            await ws.send_str(P.make_hello(self.key, chain_id, nonce, self.worker, throughput, pool=pool))
            welcome = P.decode(await ws.receive_str(timeout=10))
            if welcome.get("type") != "welcome":
                reason = str(welcome.get("reason", "refused"))
                if reason == "banned":
                    self.stats.banned = reason
                raise P.ProtocolError(reason, str(welcome.get("detail", "")))
            self._ws = ws
            self.stats.connections += 1
            self.report(f"joined {self.url} as {welcome.get('member')}")
            log.info("joined", extra={"url": self.url, "member": welcome.get("member")})
            beat = asyncio.create_task(self._heartbeats(ws, stop))
            try:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    await self._handle(ws, P.decode(msg.data))
                    if stop.is_set():
                        break
            finally:
                beat.cancel()

    async def _heartbeats(self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event) -> None:
        last, last_t = self.stats.trainings, time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(self.heartbeat_every)
            now = time.monotonic()
            rate = (self.stats.trainings - last) / max(1e-6, now - last_t)
            if self.stats.trainings == last:
                rate = self.stats.trainings / max(1e-6, now - self._started)
            last, last_t = self.stats.trainings, now
            job = self._job.id if self._job else 0
            await ws.send_str(P.encode("heartbeat", job=job, trainings=self.stats.trainings, throughput=round(rate, 4)))

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, data: dict[str, Any]) -> None:
        kind = data["type"]
        if kind == "job":
            subs = [(int(s["start"]), int(s["stop"]), str(s.get("role", "primary"))) for s in data.get("subspaces", [])]
            chain_data = None
            if data.get("data") is not None:
                from consensus.engines.ponas.mnist1d import ChainData

                chain_data = ChainData.from_json(data["data"])  # DataError (a ValueError): bad-message
            job = _Job(int(data["job"]), str(data["space"]), str(data["recipe"]), subs, chain_data,
                       int(data.get("epoch", 0)))
            old = self._job
            if old is None or (old.space, old.recipe, old.data, old.epoch) != (job.space, job.recipe, job.data, job.epoch):
                self._proposals.clear()  # another task: the pool's search starts afresh
            self._job = job
            self.stats.jobs += 1
            if subs:
                self._job_ready.set()
            else:
                self._job_ready.clear()
            log.info("job", extra={"job": data["job"], "height": data.get("height"), "subspaces": len(subs)})
        elif kind == "accept":
            self.stats.accepted += 1
        elif kind == "reject":
            self.stats.rejected += 1
            reason = str(data.get("reason"))
            self.stats.reasons[reason] = self.stats.reasons.get(reason, 0) + 1
        elif kind == "want":
            result = self._kept.get(int(data.get("id", -1)))
            if result is not None:
                await ws.send_str(P.encode("weights", id=int(data["id"]), weights=base64.b64encode(result.weights).decode()))
        elif kind == "propose":
            _job, genotypes = P.parse_propose(data)
            self._proposals.extend(genotypes)
            self.stats.proposals += len(genotypes)
        elif kind == "verified":
            self.stats.verified += 1
        elif kind == "commit":
            commit = P.parse_commit(data)
            mine = commit.payouts.get(self.key.address, 0)
            self._announced.setdefault(commit.height, {})[commit.weights_hash] = mine
            while len(self._announced) > 64:
                self._announced.popitem(last=False)
        elif kind in ("banned", "error"):
            if kind == "banned":
                self.stats.banned = str(data.get("reason"))
                self.report(f"banned by the pool: {data.get('reason')}")
            log.warning("pool-" + kind, extra={"reason": data.get("reason"), "detail": data.get("detail")})

    async def _check_loop(self, stop: asyncio.Event, every: float = 5.0) -> None:
        """Check each block the pool won against what it announced at commit time, on the
        member's own node: the coinbase must pay this member at least the announced amount. An
        underpayment is logged as an error, reported to the pool (its dashboard shows it) and
        makes ``pool join --check`` exit with status 3."""
        from nodeclient import NodeClient, NodeError, session

        async with session() as http:
            node = NodeClient(http, self.check_node or "")
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every)
                try:
                    tip = int((await node.get("/api/v1/status"))["height"])
                    for height in [h for h in self._announced if h <= tip]:
                        block = await node.get(f"/api/v1/blocks/{height}")
                        await self._check_block(height, block)
                except (NodeError, KeyError, TypeError, ValueError) as exc:
                    log.warning("check-node", extra={"node": self.check_node, "reason": getattr(exc, "reason", str(exc))})

    async def _check_block(self, height: int, block: dict[str, Any]) -> None:
        announced = self._announced.pop(height, {})
        won = announced.get(bytes.fromhex(str(block["header"]["weights_hash"])))
        if won is None:
            return  # the block of this height is not one of the pool's results
        paid = sum(int(p["amount"]) for p in block["payouts"] if p["address"] == self.address)
        if paid >= won:
            self.stats.blocks_checked += 1
            log.info("paid-as-announced", extra={"height": height, "amount": paid})
            return
        self.stats.underpaid.append(height)
        detail = f"block {height} pays this member {paid} base units, the pool announced {won}"
        log.error("underpaid", extra={"height": height, "paid": paid, "announced": won})
        self.report(f"UNDERPAID: {detail}")
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._ws.send_str(P.encode("alert", reason="underpaid", height=height, detail=detail))

    def _strategy_for(self, job: _Job) -> tuple[SearchStrategy, tuple[str, str, int, int]]:
        from consensus.engines.ponas.space import get_space

        start, stop, _role = job.subspaces[self._turn % len(job.subspaces)]
        self._turn += 1
        k = (job.space, job.recipe + (f"/epoch-{job.epoch}" if job.data else ""), start, stop)
        if k not in self._strategies:
            space = get_space(job.space)
            self._strategies[k] = make_strategy(self.strategy_name, space.subspace(start, stop), self.rng)
        return self._strategies[k], k

    async def _train_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            job = self._job
            if job is None or not job.subspaces or self._ws is None:
                self._job_ready.clear()
                waiter = asyncio.ensure_future(self._job_ready.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait([waiter, stopper], timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            strategy: SearchStrategy | None = None
            if self._proposals:  # the pool's shared search first
                genotype = self._proposals.popleft()
            else:
                strategy, _k = self._strategy_for(job)
                genotype = strategy.propose()
            seed = self.rng.getrandbits(32)
            try:
                # a mnist1d job trains exactly on its epoch's data (train_one pins the kernels)
                extra = {"data": job.data, "epoch": job.epoch} if job.data is not None else {}
                result = await asyncio.to_thread(self.train, job.space, job.recipe, genotype, seed, self.device,
                                                 self._abort, **extra)
            except _Aborted:
                return
            if strategy is not None:
                strategy.observe(genotype, result.validation)
            self.stats.trainings += 1
            await self._send_share(job, result)

    async def _send_share(self, job: _Job, result: TrainResult) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            return
        self._next_id += 1
        sid = self._next_id
        self._kept[sid] = result
        while len(self._kept) > KEEP:
            self._kept.popitem(last=False)
        await ws.send_str(P.encode("share", id=sid, job=job.id, genotype=result.genotype, seed=result.seed,
                                   validation=result.validation, weights_hash=result.weights_hash.hex(),
                                   seconds=round(result.seconds, 3)))
        if result.validation > self._best.get(job.id, -1):  # a new best: its weights go unasked
            self._best[job.id] = result.validation
            await ws.send_str(P.encode("weights", id=sid, weights=base64.b64encode(result.weights).decode()))
        log.info("share", extra={"id": sid, "genotype": result.genotype, "validation": result.validation,
                                 "seconds": f"{result.seconds:.2f}"})
