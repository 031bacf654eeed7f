"""Benchmark of the mining pool: share intake of the manager, and a partitioned pool against solo searchers.

Run ``python bench/bench_pool.py`` (about three to four minutes on two cores) or ``--quick``
(about a minute). Every row is measured in the same run; the tables come at the end.

* **Share intake over websockets** - a :class:`pool.manager.Manager` runs in a child process
  (``spawn``: the load generator in this process does not share its event loop), with no node:
  ``prepare`` is called with a made-up round, as ``tests/integration/test_pool_defences.py``
  does. ``verify_rate=0``: no share is sampled for weight checks, since the simulated members
  train nothing and a fake ``weights_hash`` would get them banned the moment their weights were
  checked; but the manager still sends ``want`` for every share that beats the pool's verified
  best, and without verification (no node, no ``run``) that best never exists, so every accepted
  share is followed by a ``want`` (counted, not answered). ``max_share_rate`` is raised so no
  member is rate-limited. The members are raw aiohttp websocket clients, each with its own
  Ed25519 key signing the hello; they connect while no round is prepared (so joining costs no
  re-plan), then ``prepare`` plans once and sends every member its job. Each member heartbeats
  every 2 s (as ``pool join`` does) and sends shares inside its subspaces, each with its own seed,
  so none is a duplicate. Phases, each bounded in count and time:

  - *saturation*: every member keeps one share in flight (send, wait for the answer, send the
    next) until the time limit: the manager's capacity, and the latency with all members waiting;
  - *open loop at 80% of that rate*: shares sent on a fixed schedule, members in turn: the
    latency of a manager below saturation. With 1,000 members two target rows follow (issue
    19): saturation at least 5,000 shares/s, and a p99 acknowledgement under 50 ms here;
  - *join / leave*: members join (and then leave) a pool whose round is open, one at a time:
    the time until every member holds its new job, since each join re-plans the whole pool.

  Side by side, the same work without websockets: ``PoolStore.add_share`` (one synced LevelDB
  batch per share, on the manager's filesystem and on tmpfs). The manager itself stores its
  shares by group commit: every share accepted while the previous batch was being written goes
  into the next synced batch, written in a worker thread; a share is acknowledged once stored.
* **Partitioned pool vs independent solo searchers** - real trainings on the digits task
  (``regtest`` recipe, CPU, :func:`pool.rounds.train_one`). For each round (a seed): (a) a pool of
  N members: a real :class:`pool.schedule.Scheduler` plans the round and each member runs one
  strategy per assigned subspace, in turn (as :class:`pool.member.Member` does); (b) N solo
  searchers over the whole space, same strategy, same number of trainings. Every searcher of a
  round trains with the round's seed, so a genotype scores the same whoever trains it: results are
  cached by (genotype, seed) and the duplicate count comes from the proposals, not the cache.
  The searchers' random generators are seeded per (round, searcher) and shared by the two
  strategies, so evolution's random start repeats random search's proposals (cache hits).
  A proposals-only table (no training: random search does not learn, so its proposals do not
  depend on scores) repeats the duplicate count over many rounds and at a larger size.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import multiprocessing as mp
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for tests.builders
sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _kit

import aiohttp  # noqa: E402
from _kit import ChildProc, maxrss_mib, median, own_peak_mib, wait_until  # noqa: E402

from consensus.crypto import PrivateKey  # noqa: E402
from consensus.engines.ponas.space import SearchSpace, get_space  # noqa: E402
from pool import protocol as P  # noqa: E402
from pool.rounds import RoundInfo  # noqa: E402
from pool.schedule import Scheduler  # noqa: E402
from pool.search import make_strategy  # noqa: E402
from tests.builders import keys  # noqa: E402

CHAIN_ID = "ponas-bench"
SPACE_NAME = "nb201"
RECIPE = "regtest"
FEE = keys(1, seed=90)[0]
START_TIMEOUT = 60.0
HEARTBEAT = 2.0  # the members' heartbeat interval (ManagerConfig.heartbeat)
STRATEGIES = ("random", "evolution")
OPEN_LOAD = 0.8  # the open-loop phase offers this share of the measured saturation rate
TARGET_RATE = 5000  # shares/s at saturation with 1,000 members (issue 19)
TARGET_P99 = 0.050  # seconds: p99 acknowledgement at OPEN_LOAD of saturation (issue 19)
LAG_TICK = 0.002  # seconds: the manager's event-loop pauses are how late a timer of this period fires


@dataclass(frozen=True, slots=True)
class Config:
    members: int
    connect_concurrency: int
    connect_timeout: float  # for the whole connection phase
    sat_seconds: float  # saturation phase: sending stops after this
    sat_per_member: int  # ... or after this many shares per member
    open_seconds: float
    joins: int
    leaves: int
    searchers: int
    trainings: int
    rounds: int
    max_trainings: int  # a hard cap on real trainings (cache misses)
    proposal_rounds: int  # proposals-only rows, at the trained size
    scale: tuple[int, int, int]  # proposals-only rows at a larger size: members, trainings, rounds
    open_rate: float | None = None  # the open loop's offered shares/s (None: OPEN_LOAD of saturation)


FULL = Config(members=1000, connect_concurrency=50, connect_timeout=90, sat_seconds=15, sat_per_member=100,
              open_seconds=8, joins=6, leaves=6, searchers=4, trainings=12, rounds=2, max_trainings=240,
              proposal_rounds=1000, scale=(64, 200, 3))
QUICK = Config(members=200, connect_concurrency=50, connect_timeout=30, sat_seconds=5, sat_per_member=100,
               open_seconds=4, joins=4, leaves=4, searchers=2, trainings=6, rounds=3, max_trainings=100,
               proposal_rounds=300, scale=(32, 100, 2))


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def raise_fd_limit(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def pct(xs: Sequence[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def ms(x: float) -> str:
    return f"{x * 1e3:,.1f} ms" if x == x else "-"


# --- the manager in a child process ------------------------------------------------------------


def bench_round() -> RoundInfo:
    now = time.time()
    return RoundInfo(1, b"\x01" * 32, b"\x02" * 32, SPACE_NAME, RECIPE, "commit", now, now + 3600, None, 0, 4, 200,
                     None)


def _manager_main(datadir: str, max_members: int, conn: Connection) -> None:
    logging.basicConfig(level=logging.ERROR)
    raise_fd_limit(2 * max_members + 256)
    asyncio.run(_manager_serve(datadir, max_members, conn))


async def _manager_serve(datadir: str, max_members: int, conn: Connection) -> None:
    from pool.manager import Manager, ManagerConfig

    config = ManagerConfig("http://127.0.0.1:9", FEE.address, datadir, verify_rate=0.0, retrain_rate=0.0,
                           max_share_rate=1e6, max_members=max_members, heartbeat=HEARTBEAT,
                           freeze_gc=True)  # as `ponas pool serve` runs it
    manager = Manager(config, rng=random.Random(5), report=lambda line: None, chain_id=CHAIN_ID)
    await manager.start()
    loop = asyncio.get_running_loop()
    lags: list[float] = []  # how late a LAG_TICK timer fires: the manager's event-loop pauses

    def tick(due: float) -> None:
        now = loop.time()
        lags.append(now - due)
        loop.call_at(now + LAG_TICK, tick, now + LAG_TICK)

    loop.call_at(loop.time() + LAG_TICK, tick, loop.time() + LAG_TICK)
    conn.send({"port": manager.port})
    try:
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd == "prepare":
                t0 = time.perf_counter()
                manager.prepare(bench_round())
                conn.send({"seconds": time.perf_counter() - t0})
            elif cmd == "probe":
                lat = sorted(manager.ack_latencies)
                manager.ack_latencies.clear()  # each probe reports the latencies since the last one
                late = sorted(lags)
                lags.clear()
                conn.send({"cpu": time.process_time(), "wall": time.perf_counter(), "stats": dict(manager.stats),
                           "members": len(manager.members),
                           "ack": [lat[len(lat) // 2], lat[int(len(lat) * 0.99)]] if lat else [float("nan")] * 2,
                           "lag": [late[int(len(late) * 0.99)], late[-1], sum(1 for x in late if x > 0.02)]
                           if late else [float("nan"), float("nan"), 0]})
            elif cmd == "detach":
                # teardown only: without a scheduler a closing member costs no re-assignment, so
                # closing a thousand connections does not re-plan the pool a thousand times
                manager.scheduler = None
                conn.send({})
            else:  # "stop"
                break
        info = {"maxrss_mib": own_peak_mib(), "stats": dict(manager.stats), "members": len(manager.members),
                "cpu": time.process_time()}
    finally:
        await manager.stop()  # (the shares waiting for their group commit written first)
    conn.send(info)


@dataclass
class ManagerProc(ChildProc):
    port: int

    @classmethod
    async def start(cls, datadir: str, max_members: int) -> ManagerProc:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_manager_main, args=(datadir, max_members, child), daemon=True)
        proc.start()
        child.close()
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, parent.poll, START_TIMEOUT):
            proc.kill()
            proc.join(5)
            raise TimeoutError(f"the manager in process {proc.pid} did not start in {START_TIMEOUT:g} s")
        return cls(proc, parent, parent.recv()["port"])

    async def ask(self, cmd: str, timeout: float = 120.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        self.conn.send(cmd)
        if not await loop.run_in_executor(None, self.conn.poll, timeout):
            raise TimeoutError(f"the manager did not answer {cmd!r} in {timeout:g} s")
        return self.conn.recv()



# --- simulated members -----------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    first: float = 0.0
    last: float = 0.0


@dataclass
class Client:
    idx: int
    key: PrivateKey
    ws: aiohttp.ClientWebSocketResponse | None = None
    job: int = 0
    ranges: list[tuple[int, int]] = field(default_factory=list)
    jobs: int = 0
    next_id: int = 0
    sent: dict[int, float] = field(default_factory=dict)
    waiting: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: str | None = None


class Swarm:
    """Raw websocket members of one manager; ``phase`` collects the answers to shares."""

    def __init__(self, url: str, space: SearchSpace) -> None:
        self.url = url
        self.space = space
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))
        self.clients: list[Client] = []
        self.failed: Counter[str] = Counter()
        self.jobs = 0
        self.wants = 0
        self.heartbeats = 0
        self.phase = Phase("idle")
        self.rng = random.Random(11)

    @property
    def live(self) -> list[Client]:
        return [c for c in self.clients if c.ws is not None and c.closed is None]

    async def connect(self, c: Client, timeout: float = 20.0) -> bool:
        try:
            await asyncio.wait_for(self._handshake(c), timeout)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError, TypeError, KeyError) as exc:
            reason = exc.reason if isinstance(exc, P.ProtocolError) else type(exc).__name__
            self.failed[reason] += 1
            return False
        self.clients.append(c)
        c.tasks = [asyncio.create_task(self._reader(c)), asyncio.create_task(self._heartbeats(c))]
        return True

    async def _handshake(self, c: Client) -> None:
        ws = await self.session.ws_connect(self.url, max_msg_size=P.MAX_FRAME, autoping=True)
        try:
            challenge = json.loads(await ws.receive_str())
            nonce = bytes.fromhex(challenge["nonce"])
            await ws.send_str(P.make_hello(c.key, challenge["chain_id"], nonce, f"w{c.idx}", throughput=1.0,
                                           pool=P.challenge_pool_key(challenge)))
            welcome = json.loads(await ws.receive_str())
            if welcome.get("type") != "welcome":
                raise P.ProtocolError(str(welcome.get("reason", "refused")))
        except BaseException:
            await ws.close()
            raise
        c.ws = ws

    async def _reader(self, c: Client) -> None:
        assert c.ws is not None
        try:
            async for msg in c.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                kind = data.get("type")
                if kind in ("accept", "reject"):
                    now = time.perf_counter()
                    t0 = c.sent.pop(data["id"], None)
                    if t0 is not None:
                        self.phase.latencies.append(now - t0)
                        self.phase.answers[kind if kind == "accept" else str(data.get("reason"))] += 1
                        self.phase.last = now
                    fut = c.waiting.pop(data["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                elif kind == "job":
                    c.job = int(data["job"])
                    c.ranges = [(int(s["start"]), int(s["stop"])) for s in data["subspaces"]]
                    c.jobs += 1
                    self.jobs += 1
                elif kind == "want":
                    self.wants += 1
                elif kind == "error":
                    c.closed = str(data.get("reason"))
        except (aiohttp.ClientError, ConnectionError, ValueError) as exc:
            c.closed = type(exc).__name__
        finally:
            if c.closed is None:
                c.closed = "closed"
            for fut in c.waiting.values():
                if not fut.done():
                    fut.set_result(None)

    async def _heartbeats(self, c: Client) -> None:
        await asyncio.sleep(self.rng.uniform(0, HEARTBEAT))
        while c.ws is not None and not c.ws.closed:
            try:
                await c.ws.send_str(P.encode("heartbeat", job=c.job, trainings=c.next_id, throughput=1.0))
            except (ConnectionError, RuntimeError):
                return
            self.heartbeats += 1
            await asyncio.sleep(HEARTBEAT)

    def share_text(self, c: Client) -> tuple[int, str]:
        c.next_id += 1
        sid = c.next_id
        a, b = c.ranges[sid % len(c.ranges)]
        genotype = self.space.encode(a + (sid * 7919) % (b - a))
        return sid, P.encode("share", id=sid, job=c.job, genotype=genotype, seed=c.idx * 1_000_000 + sid,
                             validation=self.rng.randrange(0, 298), weights_hash=os.urandom(32).hex(), seconds=0.4)

    async def send_share(self, c: Client, wait: bool) -> None:
        assert c.ws is not None
        sid, text = self.share_text(c)
        fut: asyncio.Future[None] | None = None
        if wait:
            fut = asyncio.get_running_loop().create_future()
            c.waiting[sid] = fut
        c.sent[sid] = time.perf_counter()
        self.phase.sent += 1
        try:
            await c.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            c.sent.pop(sid, None)
            c.waiting.pop(sid, None)
            return
        if fut is not None:
            await fut

    def outstanding(self) -> int:
        return sum(len(c.sent) for c in self.clients)

    async def close(self) -> None:
        for c in self.clients:
            for t in c.tasks:
                t.cancel()
        await asyncio.gather(*(c.ws.close() for c in self.clients if c.ws is not None), return_exceptions=True)
        await self.session.close()


# --- section 1: share intake -----------------------------------------------------------------


@dataclass
class Row:
    what: str
    value: str
    note: str = ""


def store_rate(datadir: str, n: int) -> float:
    """Shares per second through ``PoolStore.add_share`` alone (one synced batch each)."""
    from pool.store import PoolStore

    store = PoolStore(os.path.join(datadir, "pool"), CHAIN_ID)
    addr = FEE.address
    try:
        t0 = time.perf_counter()
        for i in range(n):
            store.add_share(addr, "w", 2, 1, "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", i, 200)
        return n / (time.perf_counter() - t0)
    finally:
        store.close()


async def bench_intake(cfg: Config, tmp: Path, rows: list[Row], notes: list[str]) -> None:
    limit = raise_fd_limit(2 * (cfg.members + cfg.joins) + 512)
    n_store = 300 if cfg.members >= 1000 else 150
    disk_before = store_rate(tempfile.mkdtemp(dir=tmp), n_store)  # fsync times drift: measured before and after
    space = get_space(SPACE_NAME)
    mgr = await ManagerProc.start(str(tmp / "manager"), cfg.members + cfg.joins + 10)
    swarm = Swarm(f"ws://127.0.0.1:{mgr.port}/ws", space)
    member_keys = keys(cfg.members + cfg.joins, seed=91)
    try:
        # connect, with no round prepared: a join costs no re-plan
        say(f"  connecting {cfg.members} members (fd limit {limit})")
        sem = asyncio.Semaphore(cfg.connect_concurrency)
        deadline = time.monotonic() + cfg.connect_timeout

        async def one(i: int) -> None:
            async with sem:
                if time.monotonic() > deadline:
                    swarm.failed["connection phase over"] += 1
                    return
                await swarm.connect(Client(i, member_keys[i]), min(20.0, max(1.0, deadline - time.monotonic())))

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(cfg.members)))
        t_conn = time.perf_counter() - t0
        n = len(swarm.clients)
        failed = ", ".join(f"{k} {v}" for k, v in swarm.failed.items()) or "none failed"
        rows.append(Row(f"connect + signed hello, {cfg.members} members, {cfg.connect_concurrency} at a time",
                        f"{n / t_conn:,.0f} /s", f"{n} connected in {t_conn:.1f} s; {failed}"))

        # one plan, one job each
        t0 = time.perf_counter()
        took = (await mgr.ask("prepare"))["seconds"]
        await wait_until(lambda: all(c.jobs for c in swarm.live), 60, "every member's first job", 0.01)
        t_jobs = time.perf_counter() - t0
        rows.append(Row(f"prepare: plan the round + a job to each of {n}", ms(t_jobs),
                        f"prepare() itself {ms(took)} in the manager; until the last job arrives here"))

        # the load generator's own collector stays out of the timed phases: its full passes over
        # 1,000 clients' objects would stall this process and then send shares in bursts
        gc.collect()
        gc.freeze()
        gc.disable()
        # saturation: one share in flight per member
        say("  saturation")
        swarm.phase = sat = Phase("saturation")
        before = await mgr.ask("probe")
        here = time.process_time()
        stop_at = time.perf_counter() + cfg.sat_seconds

        async def closed_loop(c: Client) -> None:
            for _ in range(cfg.sat_per_member):
                if time.perf_counter() > stop_at or c.closed is not None:
                    return
                await swarm.send_share(c, wait=True)

        sat.first = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(closed_loop(c) for c in swarm.live)), cfg.sat_seconds + 60)
        after = await mgr.ask("probe")
        wall = after["wall"] - before["wall"]
        sat_wall = sat.last - sat.first
        sat_rate = len(sat.latencies) / sat_wall if sat_wall > 0 else 0.0
        cpu = (after["cpu"] - before["cpu"]) / wall
        mine = (time.process_time() - here) / wall
        others = ", ".join(f"{k} {v}" for k, v in sat.answers.items() if k != "accept") or "no rejects"
        rows.append(Row(f"saturation: {n} members, 1 share in flight each", f"{sat_rate:,.0f} shares/s",
                        f"{sat.answers['accept']} accepted of {sat.sent} sent in {sat_wall:.1f} s; {others}; "
                        f"CPU: manager {cpu:.2f}, members {mine:.2f} of a core"))
        rows.append(Row("  acknowledgement latency (send -> accept)",
                        f"p50 {ms(median(sat.latencies))}", f"p99 {ms(pct(sat.latencies, 0.99))}, "
                        f"max {ms(max(sat.latencies, default=float('nan')))}"))
        rows.append(Row("  in the manager (arrival -> accept sent)", f"p50 {ms(after['ack'][0])}",
                        f"p99 {ms(after['ack'][1])}: the rest of the latency above is the sockets and this process"))
        rows.append(Row(f"  manager event loop: lateness of a {LAG_TICK * 1e3:g} ms timer", f"p99 {ms(after['lag'][0])}",
                        f"max {ms(after['lag'][1])}; {after['lag'][2]:,} wake-ups over 20 ms: the loop's pauses"))

        # open loop at 80% of the saturation rate (the target is set there)
        say("  open loop")
        rate = cfg.open_rate or max(10.0, sat_rate * OPEN_LOAD)
        load = f"{rate / sat_rate:.0%} of saturation" if sat_rate > 0 else "saturation unmeasured"
        swarm.phase = op = Phase("open")
        live = swarm.live
        before = await mgr.ask("probe")
        here = time.process_time()
        total = int(rate * cfg.open_seconds)
        op.first = start = time.perf_counter()
        sends = []
        for k in range(total):
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sends.append(asyncio.ensure_future(swarm.send_share(live[k % len(live)], wait=False)))
        await asyncio.gather(*sends)
        sent_over = time.perf_counter() - start
        gc.enable()
        gc.unfreeze()
        try:
            await wait_until(lambda: swarm.outstanding() == 0, 30, "the open-loop answers", 0.01)
        except TimeoutError:
            notes.append(f"open loop: {swarm.outstanding()} shares unanswered after 30 s")
        after = await mgr.ask("probe")
        wall = after["wall"] - before["wall"]
        cpu = (after["cpu"] - before["cpu"]) / wall
        mine = (time.process_time() - here) / wall
        others = ", ".join(f"{k} {v}" for k, v in op.answers.items() if k != "accept") or "no rejects"
        rows.append(Row(f"open loop at {rate:,.0f} shares/s offered ({load})",
                        f"{len(op.latencies) / max(1e-9, op.last - op.first):,.0f} shares/s",
                        f"{op.answers['accept']} accepted of {op.sent} sent over {sent_over:.1f} s; {others}; "
                        f"CPU: manager {cpu:.2f}, members {mine:.2f} of a core"))
        rows.append(Row("  acknowledgement latency (send -> accept)", f"p50 {ms(median(op.latencies))}",
                        f"p99 {ms(pct(op.latencies, 0.99))}, max {ms(max(op.latencies, default=float('nan')))}"))
        rows.append(Row("  in the manager (arrival -> accept sent)", f"p50 {ms(after['ack'][0])}",
                        f"p99 {ms(after['ack'][1])}: the rest of the latency above is the sockets and this process"))
        rows.append(Row(f"  manager event loop: lateness of a {LAG_TICK * 1e3:g} ms timer", f"p99 {ms(after['lag'][0])}",
                        f"max {ms(after['lag'][1])}; {after['lag'][2]:,} wake-ups over 20 ms: the loop's pauses"))
        if cfg.members >= 1000 and cfg.open_rate is None:
            ok_rate, p99 = sat_rate >= TARGET_RATE, pct(op.latencies, 0.99)
            ok_p99 = p99 < TARGET_P99
            rows.append(Row(f"target: saturation >= {TARGET_RATE:,} shares/s with {cfg.members} members",
                            "PASS" if ok_rate else "FAIL", f"measured {sat_rate:,.0f} shares/s"))
            rows.append(Row(f"target: p99 acknowledgement < {ms(TARGET_P99)} at {OPEN_LOAD:.0%} of saturation",
                            "PASS" if ok_p99 else "FAIL", f"measured {ms(p99)}"))

        # join and leave while the round is open: every one re-plans / re-sends to the pool
        say("  join / leave")
        join_own, join_all = [], []
        for j in range(cfg.joins):
            before_jobs, others_n = swarm.jobs, len(swarm.live)
            c = Client(cfg.members + j, member_keys[cfg.members + j])
            t0 = time.perf_counter()
            if not await swarm.connect(c):
                continue
            try:
                await wait_until(lambda c=c: c.jobs > 0, 60, "the new member's job", 0.002)
                join_own.append(time.perf_counter() - t0)
                await wait_until(lambda b=before_jobs, k=others_n: swarm.jobs >= b + k + 1, 60,
                                 "every member's new job", 0.002)
                join_all.append(time.perf_counter() - t0)
            except TimeoutError as exc:
                notes.append(f"join {j}: {exc}")
        n = len(swarm.live)
        rows.append(Row(f"a member joins an open round of ~{n} (x{len(join_all)})",
                        f"{ms(median(join_all))}",
                        f"median until all {n} members hold the new plan's job (max {ms(max(join_all, default=0))}); "
                        f"the joiner's own job after {ms(median(join_own))}"))
        leave_all: list[float] = []
        leave_jobs: list[int] = []
        leavers = [c for c in swarm.live if c.idx < cfg.leaves]
        for c in leavers:
            before_jobs, others_n = swarm.jobs, len(swarm.live) - 1
            t0 = time.perf_counter()
            assert c.ws is not None
            await c.ws.close()
            try:
                await wait_until(lambda b=before_jobs: swarm.jobs > b, 60, "the first job after a leave", 0.002)
                leave_all.append(time.perf_counter() - t0)
                await asyncio.sleep(0.3)  # let the rest of the leave's jobs arrive, then count them
                leave_jobs.append(swarm.jobs - before_jobs)
            except TimeoutError as exc:
                notes.append(f"leave {c.idx}: {exc}")
        n = len(swarm.live)
        rows.append(Row(f"a member leaves an open round of ~{n} (x{len(leave_all)})", f"{ms(median(leave_all))}",
                        f"median until the members taking over its subspaces got their job (max "
                        f"{ms(max(leave_all, default=0))}); {median(leave_jobs) if leave_jobs else 0:.0f} jobs per leave "
                        f"(of {others_n} members)"))
        closed = Counter(c.closed for c in swarm.clients if c.closed is not None and c.idx >= cfg.leaves)
        dropped = ", ".join(f"{k} {v}" for k, v in closed.items()) or "none"
        rows.append(Row("messages to the members", f"{swarm.jobs:,} jobs",
                        f"{swarm.wants:,} want (shares beating every verified or pending best); "
                        f"{swarm.heartbeats:,} heartbeats sent; members dropped by the manager: {dropped}"))
        await mgr.ask("detach")
    finally:
        await swarm.close()
        info = await mgr.stop()
    if info:
        rows.append(Row("manager process", f"{info['maxrss_mib']:,.0f} MiB peak RSS",
                        f"CPU {info['cpu']:.1f} s in all; accepted {info['stats']['accepted']:,}, "
                        f"rejected {info['stats']['rejected']:,}"))
    # the storage alone, on the same filesystem and on tmpfs
    disk_after = store_rate(tempfile.mkdtemp(dir=tmp), n_store)
    disk = (disk_before + disk_after) / 2
    rows.append(Row(f"PoolStore.add_share alone, {tmp.parent} ({n_store} shares)", f"{disk:,.0f} shares/s",
                    f"mean of {disk_before:,.0f} before and {disk_after:,.0f} after the manager runs; "
                    f"saturation intake / this = {sat_rate / disk:.2f}"))
    if os.path.isdir("/dev/shm"):
        shm = tempfile.mkdtemp(prefix="bench_pool-", dir="/dev/shm")
        try:
            mem = store_rate(shm, n_store)
        finally:
            shutil.rmtree(shm, ignore_errors=True)
        rows.append(Row(f"PoolStore.add_share alone, tmpfs ({n_store} shares)", f"{mem:,.0f} shares/s",
                        "the same synced batches with a free fsync"))


# --- section 2: pool vs solo -------------------------------------------------------------------


class Trainer:
    """``train_one`` with a cache by (genotype, seed); counts the real trainings."""

    def __init__(self, cap: int) -> None:
        self.cache: dict[tuple[str, int], int] = {}
        self.cap = cap
        self.trained = 0
        self.seconds: list[float] = []

    def __call__(self, genotype: str, seed: int) -> int:
        hit = self.cache.get((genotype, seed))
        if hit is not None:
            return hit
        if self.trained >= self.cap:
            raise RuntimeError(f"more than {self.cap} trainings: raise --max-trainings")
        from pool.rounds import train_one

        t0 = time.perf_counter()
        result = train_one(SPACE_NAME, RECIPE, genotype, seed)
        self.seconds.append(time.perf_counter() - t0)
        self.trained += 1
        self.cache[(genotype, seed)] = result.validation
        return result.validation


def _fake_score(genotype: str, seed: int) -> int:
    return 0


@dataclass
class Outcome:
    best: int
    trainings: int
    duplicates: int
    distinct: int


def search_round(space: SearchSpace, strategy: str, pooled: bool, n: int, t: int, rnd: int,
                 score: Any) -> Outcome:
    """One round of ``n`` searchers with ``t`` trainings each, in lock step (step by step, searcher
    by searcher). A training is a duplicate when another searcher trained that genotype before it
    in the round."""
    rngs = [random.Random(f"bench-pool/{rnd}/{i}") for i in range(n)]
    if pooled:
        sched = Scheduler(space)
        for i in range(n):
            sched.join(f"m{i:03d}", 0.0, 1.0)
        plan = sched.plan_round(0.0, random.Random(f"bench-pool/plan/{rnd}"))
        regions = [[a.subspace for a in plan.assignments_of(f"m{i:03d}")] for i in range(n)]
        searchers = [[make_strategy(strategy, sub, rngs[i]) for sub in regions[i]] for i in range(n)]
    else:
        searchers = [[make_strategy(strategy, space, rngs[i])] for i in range(n)]
    seed = 1000 + rnd  # the round's training seed, shared by every searcher
    trained_by: dict[str, set[int]] = {}
    best, dups = -1, 0
    for step in range(t):
        for i in range(n):
            strat = searchers[i][step % len(searchers[i])]  # in turn, as pool.member.Member does
            genotype = strat.propose()
            who = trained_by.setdefault(genotype, set())
            if who - {i}:
                dups += 1
            who.add(i)
            value = score(genotype, seed)
            strat.observe(genotype, value)
            best = max(best, value)
    return Outcome(best, n * t, dups, len(trained_by))


@dataclass
class Setting:
    label: str
    strategy: str
    pooled: bool
    outcomes: list[Outcome] = field(default_factory=list)


def bench_search(cfg: Config, rows: list[list[str]], prop_rows: list[list[str]], notes: list[str],
                 max_trainings: int) -> Trainer:
    space = get_space(SPACE_NAME)
    trainer = Trainer(max_trainings)
    settings = [Setting(f"{'pool' if pooled else 'solo'}", s, pooled) for s in STRATEGIES for pooled in (True, False)]
    for rnd in range(cfg.rounds):
        for st in settings:
            t0 = time.perf_counter()
            out = search_round(space, st.strategy, st.pooled, cfg.searchers, cfg.trainings, rnd, trainer)
            st.outcomes.append(out)
            say(f"  round {rnd} {st.label:<4} {st.strategy:<9} best {out.best} dup {out.duplicates}/{out.trainings} "
                f"({time.perf_counter() - t0:.1f} s, {trainer.trained} trained so far)")
    for st in settings:
        bests = [o.best for o in st.outcomes]
        total = sum(o.trainings for o in st.outcomes)
        dups = sum(o.duplicates for o in st.outcomes)
        rows.append([st.label, st.strategy, f"{cfg.searchers} x {cfg.trainings}",
                     f"{dups}/{total} = {dups / total:.1%}",
                     "/".join(str(o.distinct) for o in st.outcomes),
                     " ".join(str(b) for b in bests), f"{statistics.mean(bests):.1f}", str(min(bests))])

    # proposals only, random search (its proposals do not depend on scores)
    for n, t, rounds in ((cfg.searchers, cfg.trainings, cfg.proposal_rounds), cfg.scale):
        for pooled in (True, False):
            outs = [search_round(space, "random", pooled, n, t, 10_000 + r, _fake_score) for r in range(rounds)]
            dups = sum(o.duplicates for o in outs)
            total = sum(o.trainings for o in outs)
            with_dup = sum(1 for o in outs if o.duplicates)
            prop_rows.append(["pool" if pooled else "solo", f"{n} x {t}", str(rounds), f"{dups}/{total} = {dups / total:.3%}",
                              f"{with_dup}/{rounds}"])
    return trainer


# --- main --------------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> None:
    w = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w[i]) for i, h in enumerate(header))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about a minute")
    parser.add_argument("--members", type=int, help="simulated members for the intake section")
    parser.add_argument("--open-rate", type=float,
                        help=f"the open loop's offered shares/s (default {OPEN_LOAD * 100:.0f}%% of the saturation measured; "
                             "a fixed rate compares two versions at the same load; no target rows then)")
    parser.add_argument("--max-trainings", type=int, help="hard cap on real trainings in the search section")
    parser.add_argument("--skip-intake", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.members:
        cfg = dataclasses.replace(cfg, members=args.members)
    if args.open_rate:
        cfg = dataclasses.replace(cfg, open_rate=args.open_rate)
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    intake: list[Row] = []
    notes: list[str] = []
    search_rows: list[list[str]] = []
    prop_rows: list[list[str]] = []
    trainer = None
    t_intake = t_search = 0.0
    tmp = Path(tempfile.mkdtemp(prefix="bench_pool-"))
    try:
        if not args.skip_intake:
            say(f"== share intake ({cfg.members} members)")
            t0 = time.perf_counter()
            asyncio.run(bench_intake(cfg, tmp, intake, notes))
            t_intake = time.perf_counter() - t0
        if not args.skip_search:
            say(f"== pool vs solo ({cfg.searchers} searchers x {cfg.trainings} trainings x {cfg.rounds} rounds)")
            t0 = time.perf_counter()
            trainer = bench_search(cfg, search_rows, prop_rows, notes, args.max_trainings or cfg.max_trainings)
            t_search = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - started
    print(f"\nbench_pool ({'quick' if args.quick else 'full'}): Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"total {total:.0f} s, load average after {os.getloadavg()[0]:.2f}, this process peak {maxrss_mib():,.0f} MiB")
    if intake:
        print(f"\n1. Manager share intake over websockets on 127.0.0.1 ({t_intake:.0f} s; manager in a child process, "
              f"verify_rate 0, max_share_rate 1e6)")
        table(["measure", "value", "note"], [[r.what, r.value, r.note] for r in intake])
    if trainer is not None:
        secs = trainer.seconds
        print(f"\n2. Partitioned pool vs independent solo searchers, NB201 on digits, recipe {RECIPE}, CPU "
              f"({t_search:.0f} s; {trainer.trained} real trainings, median {median(secs):.2f} s each, "
              f"the first {secs[0] if secs else 0:.1f} s with torch's start; validation scores out of 297)")
        table(["setting", "strategy", "searchers x trainings", "duplicate trainings", "distinct genotypes/round",
               "best per round", "mean", "min"], search_rows)
        print("\n   random search, proposals only (no training): duplicate rate over many rounds")
        table(["setting", "searchers x trainings", "rounds", "duplicate trainings", "rounds with a duplicate"],
              prop_rows)
    print("\nnotes:")
    for line in NOTES + notes:
        print(f"- {line}")
    return 0


NOTES = [
    "intake: 'saturation' is the manager's capacity with every member waiting on its own answer; its latency is "
    "mostly queueing behind the other members' shares. 'open loop' offers 80% of that rate on a schedule. Latencies "
    "are taken in this process, which also runs every simulated member, so they include its own event-loop delays.",
    "intake: accepted shares are stored by group commit (one synced LevelDB batch for all that came while the "
    "previous batch was written, in a worker thread, off the event loop), each acknowledged once stored; compare "
    "the intake with the PoolStore.add_share rows (one synced batch per share), and the manager's CPU with 1.0: "
    "at saturation the manager's event loop is the limit when it is near 1.0. A 'want' goes out for a share that "
    "beats every verified and every pending best (and for a sample, here none: verify_rate 0).",
    "intake: 'manager event loop' is how late a 2 ms timer in the manager fires: its event loop's pauses (a long "
    "callback, a garbage collection, or, on a busy machine, the OS running another process).",
    "join / leave: a join re-plans the whole pool and sends every member a job; a leave moves the leaver's "
    "subspaces to its backups or the least-loaded members and sends a job only to those.",
    "search: a duplicate is a training of a genotype that another searcher of the same round trained before it. "
    "Inside the pool, random search cannot produce one (disjoint subspaces, no repeats inside a subspace); "
    "evolution cannot either while a member's subspaces stay disjoint from the others', which they do.",
    "search: the pool's members keep one strategy per subspace (4 subspaces per member by default) and take them "
    "in turn, so a member trains trainings/4 genotypes per subspace; evolution only mutates once 10 genotypes of "
    "a subspace are scored, so with these sizes the pool's evolution is its random search (same seeds: the same "
    "proposals, the same scores). A solo evolution searcher mutates from its 11th training on.",
    "search: best-per-round differences come from a handful of rounds and one training seed per round; read them "
    "as what these rounds gave, not as a measured gap between pool and solo.",
]


if __name__ == "__main__":
    sys.exit(main())
