"""Benchmark of a running node on 127.0.0.1: sync, transactions accepted, propagation, memory.

Run ``python bench/bench_node.py`` (a few minutes) or ``--quick`` (about a minute). Every row is
measured in the same run and printed side by side in one table at the end.

* **Sync** - a fresh node syncs headers first from one peer: the source datadir is built
  beforehand with :mod:`node.generate` and served by a node in a child process; the fresh node
  runs in this process. Timed from the fresh node's ``start()`` to its tip equalling the
  source's tip; blocks/s and MB/s of encoded blocks plus weights. For ``pow``: N blocks with
  transfers, and 2000 empty blocks (one full ``headers`` answer, whose blocks the fresh node
  asks for all at once; a row that fails shows the height reached and why the source was
  dropped). For ``ponas``: a few rounds (2 local miners, 1 training each); every block import
  re-verifies the model (evaluation on the round's test set, then a retrain under the
  ``retrain`` policy), so that rate is the retraining rate. The per-block verification cost
  is measured apart, by importing the same blocks into a fresh in-process chain.
* **Transactions accepted per second** - the same pre-signed transfers (200 funded senders,
  consecutive nonces) go to a fresh node (in a child process) (a) through
  ``POST /api/v1/transactions`` with a few concurrent requests, (b) through P2P ``tx``
  messages from raw clients (:class:`p2p.network.Network`, each client below the per-peer
  flood limit; timed until the node's mempool holds them all), and (c) the raw in-process rate
  of :meth:`node.mempool.Mempool.add` on a fresh mempool and of
  :func:`consensus.state.check_signatures`. Rates are given as a ratio to ``Mempool.add``.
  Two checks ride along: an observer peer with the default limits, connected while the API
  batch arrives, shows whether the node's relay of the batch trips that peer's flood control;
  and one P2P client sending the whole batch unpaced shows the per-peer flood limit.
* **Propagation** - five in-process nodes in a line (n0 - n1 - n2 - n3 - n4, each connected
  only to its neighbours; one event loop): a new ``pow`` block with transfers is imported on
  n0 and broadcast as the node does; timed until n4's tip is that block; median and max.
* **Peak memory** - ``ru_maxrss`` of this process and of the child processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for tests.builders
sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _kit

import aiohttp  # noqa: E402
from _kit import NodeProc, maxrss_mib, median, open_client, wait_until  # noqa: E402

from consensus.chain import genesis_block  # noqa: E402
from consensus.crypto import address_of  # noqa: E402
from consensus.params import ChainParams  # noqa: E402
from consensus.state import EMPTY_ACCOUNT, Account, check_signatures, genesis_accounts  # noqa: E402
from consensus.types import Transfer  # noqa: E402
from node.generate import generate_ponas_round, make_pow_block, open_chain  # noqa: E402
from node.mempool import Mempool  # noqa: E402
from node.service import Node, NodeConfig  # noqa: E402
from node.sync import HEADERS_MAX  # noqa: E402
from p2p import messages as M  # noqa: E402
from p2p.network import Limits  # noqa: E402
from tests.builders import Clock, keys, make_params, transfer  # noqa: E402
from tests.ponas_builders import BEACON, BEACON_CHAIN, ponas_params  # noqa: E402

SENDERS = keys(200, seed=7)
SINK = keys(1, seed=8)[0].address
MINERS = [k.address for k in keys(2, seed=31)]
#: Client-side limits for our own P2P clients: they must not drop the node for relaying to them.
CLIENT_LIMITS = Limits(msg_rate=1e6, msg_burst=1e6)
#: Disconnect reasons after which a syncing node will not get its blocks from that peer.
SYNC_FAULTS = {"flood", "discouraged"}


@dataclass(frozen=True, slots=True)
class Config:
    pow_blocks: int
    long_blocks: int  # empty pow blocks, as many as one Headers answer carries (HEADERS_MAX)
    pow_block_txs: int
    ponas_rounds: int
    tx_nonces: int  # transfers per sender in the tx rows (x 200 senders)
    api_concurrency: int
    p2p_clients: int
    raw_rounds: int
    prop_reps: int
    prop_block_txs: int
    sync_timeout: float
    tx_timeout: float
    reps: int  # repetitions of the pow sync and of the API and P2P batches (best reported)


FULL = Config(pow_blocks=500, long_blocks=HEADERS_MAX, pow_block_txs=10, ponas_rounds=25, tx_nonces=10,
              api_concurrency=8, p2p_clients=10, raw_rounds=3, prop_reps=10, prop_block_txs=100, sync_timeout=180, tx_timeout=60, reps=3)
QUICK = Config(pow_blocks=300, long_blocks=HEADERS_MAX, pow_block_txs=10, ponas_rounds=8, tx_nonces=10,
               api_concurrency=8, p2p_clients=10, raw_rounds=2, prop_reps=8, prop_block_txs=100, sync_timeout=90, tx_timeout=30, reps=1)


@dataclass
class Row:
    section: str
    what: str
    value: str
    ratio: str = ""
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    child_rss: list[float] = field(default_factory=list)

    def add(self, *args: str) -> None:
        self.rows.append(Row(*args))
        r = self.rows[-1]
        say(f"  {r.section:<12} {r.what:<44} {r.value:>16}  {r.ratio:>7}  {r.note}")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pow_params() -> ChainParams:
    return make_params(SENDERS, coins=1000)


def signed_transfers(params: ChainParams, nonces: int, start_nonce: int = 0) -> list[Transfer]:
    """``nonces`` transfers from each sender; nonce-major order, so a sender's nonces come in order."""
    return [transfer(params, k, SINK, 1000 + i, start_nonce + n) for n in range(nonces) for i, k in enumerate(SENDERS)]


def fmt_rate(x: float, unit: str) -> str:
    return f"{x:,.0f} {unit}" if x >= 100 else f"{x:,.2f} {unit}"


# --- 1. sync ----------------------------------------------------------------------------------


def build_pow_source(datadir: str, params: ChainParams, blocks: int, per_block: int) -> tuple[bytes, int, int]:
    """``blocks`` pow blocks of ``per_block`` transfers; returns (tip, height, bytes of the encoded blocks)."""
    txs = signed_transfers(params, -(-blocks * per_block // len(SENDERS)))
    size = 0
    clock = Clock()  # a second per block, in the past: never too new for the nodes
    with open_chain(datadir, params, clock=clock) as chain:
        for b in range(blocks):
            clock.now += 1
            block = make_pow_block(chain, SINK, txs[b * per_block : (b + 1) * per_block])
            chain.import_block(block)
            size += len(block.encode())
        return chain.tip_hash, chain.height, size


def build_ponas_source(datadir: str, params: ChainParams, cfg: Config) -> tuple[bytes, int, int, float]:
    """Rounds of 2 local miners with 1 training each; returns (tip, height, bytes, seconds)."""
    rng = random.Random(11)
    started = time.perf_counter()
    with open_chain(datadir, params) as chain:
        for _ in range(cfg.ponas_rounds):
            generate_ponas_round(chain, BEACON, BEACON_CHAIN, MINERS, 1, rng)
        size = 0
        for block in chain.iter_canonical(1):
            size += len(block.encode()) + len(chain.get_weights(block.header.weights_hash) or b"")
        return chain.tip_hash, chain.height, size, time.perf_counter() - started


async def timed_sync(tmp: Path, name: str, params: ChainParams, tip: bytes, timeout: float,
                     report: Report, rep: int = 0) -> tuple[float | None, int, list[str]]:
    """Serve ``tmp/name-src`` from a child process; time a fresh in-process node's sync to ``tip``.
    Returns (seconds, or None if the sync failed, the height reached, disconnect reasons seen).
    Gives up early once the fresh node has dropped its only peer for a fault."""
    src = await NodeProc.start(str(tmp / f"{name}-src"), params)
    dst = Node(NodeConfig(datadir=str(tmp / f"{name}-dst{rep}"), peers=[("127.0.0.1", src.p2p_port)]), params)

    def done_or_dropped() -> bool:
        net = dst.network
        dropped = net is not None and any(d["reason"] in SYNC_FAULTS for d in net.recent_disconnects)
        return dst.chain.tip_hash == tip or dropped

    t0 = time.monotonic()
    await dst.start()
    try:
        t1 = await wait_until(done_or_dropped, timeout, f"the {name} sync", 0.002)
        seconds: float | None = t1 - t0 if dst.chain.tip_hash == tip else None
    except TimeoutError:
        seconds = None
    finally:
        height = dst.chain.height
        reasons = [d["reason"] for d in dst.network.recent_disconnects] if dst.network else []
        await dst.stop()
        info = await src.stop()
        report.child_rss.append(info.get("maxrss_mib", 0.0))
    return seconds, height, reasons


def sync_row(report: Report, what: str, runs: list[tuple[float | None, int, list[str]]], height: int, size: int,
             extra: str = "") -> None:
    """One row from one or more syncs of the same source: the best, or the first failure."""
    for seconds, reached, reasons in runs:
        if seconds is None:
            report.add("sync", what, "FAILED", "", f"stalled at height {reached}/{height}; "
                       f"the fresh node dropped its source: {sorted(set(reasons))}")
            return
    times = [r[0] for r in runs if r[0] is not None]
    seconds = min(times)
    spread = f"best of {len(times)}, median {height / median(times):,.0f} blocks/s; " if len(times) > 1 else ""
    report.add("sync", what, fmt_rate(height / seconds, "blocks/s"), "",
               f"{spread}{size / seconds / 1e6:.3f} MB/s, {size / 1e6:.2f} MB in {seconds:.2f} s{extra}")


async def bench_sync_pow(tmp: Path, cfg: Config, report: Report) -> None:
    params = pow_params()
    for name, blocks, per_block, reps in (("pow", cfg.pow_blocks, cfg.pow_block_txs, cfg.reps),
                                          ("pow-long", cfg.long_blocks, 0, 1)):
        t = time.perf_counter()
        tip, height, size = build_pow_source(str(tmp / f"{name}-src"), params, blocks, per_block)
        say(f"built {height} pow blocks ({per_block} transfers each) in {time.perf_counter() - t:.1f} s")
        runs = [await timed_sync(tmp, name, params, tip, cfg.sync_timeout, report, rep) for rep in range(reps)]
        what = f"pow: {height} blocks x {per_block} transfers" + (" (one headers batch)" if per_block == 0 else "")
        sync_row(report, what, runs, height, size)
    report.notes.append(
        "sync: the source node runs in a child process, the fresh node in this one. Headers come in answers "
        f"of up to {HEADERS_MAX}; the fresh node keeps 16 blocks in flight per peer, and answers to its own "
        "requests are not counted against the peer's message-rate limit.")


async def bench_sync_ponas(tmp: Path, cfg: Config, report: Report) -> None:
    params = replace(ponas_params(), genesis_time=int(time.time()) - 60)
    tip, height, size, built = build_ponas_source(str(tmp / "ponas-src"), params, cfg)
    say(f"built {height} ponas rounds (2 miners, 1 training each) in {built:.1f} s")
    run = await timed_sync(tmp, "ponas", params, tip, cfg.sync_timeout, report)
    sync_row(report, f"ponas: {height} blocks (2 miners x 1 training)", [run], height, size, " (retraining-bound)")
    # Per-block verification, apart: import the same blocks into a fresh in-process chain.
    with open_chain(str(tmp / "ponas-src"), params) as src:
        blocks = [(b, src.get_weights(b.header.weights_hash)) for b in src.iter_canonical(1)]
    imports, evals = [], []
    with open_chain(str(tmp / "ponas-replay"), params) as chain:
        verifier = chain.engine.verifier  # type: ignore[attr-defined]
        for block, weights in blocks:
            assert weights is not None and block.proof is not None
            t = time.perf_counter()
            verifier.evaluate(weights, block.header.genotype, block.header.weights_hash, block.proof.close.test_key)
            evals.append(time.perf_counter() - t)
            t = time.perf_counter()
            chain.import_block(block, weights)
            imports.append(time.perf_counter() - t)
    report.add("sync", "ponas: import of one block, in-process", f"{median(imports) * 1e3:,.0f} ms",
               "", f"median; max {max(imports) * 1e3:,.0f} ms; evaluation alone {median(evals) * 1e3:,.0f} ms, "
               f"the rest is the retrain")
    report.notes.append(
        "sync ponas: every imported block is re-verified (evaluation + retrain, policy 'retrain'); the "
        "rate is dominated by the retraining, not by the network or storage.")


# --- 2. transactions --------------------------------------------------------------------------


def bench_raw(params: ChainParams, txs: Sequence[Transfer], cfg: Config) -> dict[str, float]:
    accounts = genesis_accounts(params)
    rates: dict[str, float] = {}
    for name in ("mempool", "sigs2", "sigs1"):
        best = float("inf")
        for _ in range(cfg.raw_rounds):
            t = time.perf_counter()
            if name == "mempool":
                pool = Mempool(params.chain_id, lambda a: accounts.get(a, EMPTY_ACCOUNT), max_count=len(txs) + 1)
                for tx in txs:
                    pool.add(tx)
                assert len(pool) == len(txs)
            else:
                check_signatures(txs, params.chain_id, None, threads=2 if name == "sigs2" else 1)
            best = min(best, time.perf_counter() - t)
        rates[name] = len(txs) / best
    return rates


async def mempool_count(session: aiohttp.ClientSession, api: str) -> int:
    async with session.get(f"{api}/api/v1/status") as resp:
        return int((await resp.json())["mempool"])


@dataclass
class TxRun:
    """One timed batch through one path into a fresh node."""

    rate: float
    held: int
    detail: str = ""
    dropped: list[str] = field(default_factory=list)


async def run_api(tmp: Path, name: str, params: ChainParams, txs: Sequence[Transfer], cfg: Config,
                  report: Report) -> TxRun:
    """POST the batch with ``api_concurrency`` requests in flight; an observer peer with the default
    limits listens to the node's relay."""
    node = await NodeProc.start(str(tmp / name), params)
    genesis = genesis_block(params).header.hash()
    observer, _peer = await open_client(params.chain_id, genesis, node.p2p_port)  # default limits
    bodies = [json.dumps({"tx": tx.encode().hex()}).encode() for tx in txs]
    headers = {"Authorization": f"Bearer {node.token}", "Content-Type": "application/json"}
    rejected: dict[str, int] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=cfg.api_concurrency)) as session:
            queue = iter(bodies)

            async def worker() -> None:
                for body in queue:  # a shared iterator: requests leave in order
                    async with session.post(f"{node.api}/api/v1/transactions", data=body, headers=headers) as resp:
                        if resp.status != 202:
                            reason = (await resp.json()).get("error", {}).get("reason", str(resp.status))
                            rejected[reason] = rejected.get(reason, 0) + 1
                        else:
                            await resp.read()

            t0 = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(cfg.api_concurrency))), cfg.tx_timeout)
            seconds = time.monotonic() - t0
            held = await mempool_count(session, node.api)
        await asyncio.sleep(0.5)  # let the relay reach the observer
        dropped = sorted({d["reason"] for d in observer.recent_disconnects})
    finally:
        await observer.stop()
        info = await node.stop()
        report.child_rss.append(info.get("maxrss_mib", 0.0))
    return TxRun(len(txs) / seconds, held, f"; rejected {rejected}" if rejected else "", dropped)


async def run_p2p(tmp: Path, name: str, params: ChainParams, txs: Sequence[Transfer], cfg: Config,
                  report: Report) -> TxRun:
    """Send the batch as ``tx`` messages over ``p2p_clients`` connections; time until the node's
    mempool holds it all (polled through the API)."""
    node = await NodeProc.start(str(tmp / name), params)
    genesis = genesis_block(params).header.hash()
    # Each client carries whole senders, so each sender's nonces arrive in order on one connection.
    groups = _partition(txs, cfg.p2p_clients)
    clients = []
    held = 0
    try:
        for _ in groups:
            net, peer = await open_client(params.chain_id, genesis, node.p2p_port, CLIENT_LIMITS)
            clients.append((net, peer))
        msgs = [[M.TxMsg(tx) for tx in g] for g in groups]
        async with aiohttp.ClientSession() as session:
            t0 = time.monotonic()
            for (_net, peer), group in zip(clients, msgs, strict=True):
                for msg in group:
                    await peer.send(msg)
            t1 = time.monotonic()
            deadline = t0 + cfg.tx_timeout
            while time.monotonic() < deadline:
                held = await mempool_count(session, node.api)
                if held >= len(txs):
                    break
                await asyncio.sleep(0.01)
            seconds = time.monotonic() - t0
        dropped = sorted({d["reason"] for net, _ in clients for d in net.recent_disconnects})
    finally:
        for net, _ in clients:
            await net.stop()
        info = await node.stop()
        report.child_rss.append(info.get("maxrss_mib", 0.0))
    return TxRun(held / seconds, held, f"; client send loop {(t1 - t0) * 1e3:.0f} ms", dropped)


def best_of(runs: list[TxRun]) -> tuple[TxRun, str]:
    best = max(runs, key=lambda r: r.rate)
    spread = f"best of {len(runs)}, median {median([r.rate for r in runs]):,.0f}; " if len(runs) > 1 else ""
    return best, spread


async def bench_p2p_one_peer(tmp: Path, params: ChainParams, txs: Sequence[Transfer], report: Report) -> None:
    """One client sends the whole batch unpaced: what the per-peer flood control lets in."""
    node = await NodeProc.start(str(tmp / "tx-p2p1"), params)
    genesis = genesis_block(params).header.hash()
    net, peer = await open_client(params.chain_id, genesis, node.p2p_port, CLIENT_LIMITS)
    held = -1
    try:
        async with aiohttp.ClientSession() as session:
            for tx in txs:
                if peer.closed:
                    break
                await peer.send(M.TxMsg(tx))
            try:
                await wait_until(lambda: peer.closed, 5.0, "a drop", 0.01)
            except TimeoutError:
                pass
            await asyncio.sleep(0.3)
            held = await mempool_count(session, node.api)
    finally:
        await net.stop()
        info = await node.stop()
        report.child_rss.append(info.get("maxrss_mib", 0.0))
    reasons = sorted({d["reason"] for d in info.get("disconnects", [])}) or ["still connected"]
    report.add("tx", "    one P2P peer sending the batch unpaced", f"{held}/{len(txs)} kept", "",
               f"node-side: {', '.join(reasons)} (Limits.msg_rate 200/s, burst 400; read-ahead lost)")


def bench_mempool_update(params: ChainParams, txs: Sequence[Transfer], report: Report, raw: float) -> None:
    """Mempool.update after a block that mined each sender's first transfer: it rebuilds the pool
    and re-checks every survivor (signature included)."""
    accounts = dict(genesis_accounts(params))
    pool = Mempool(params.chain_id, lambda a: accounts.get(a, EMPTY_ACCOUNT), max_count=len(txs) + 1)
    for tx in txs:
        pool.add(tx)
    mined = [tx for tx in txs if tx.nonce == 0]
    for tx in mined:
        a = address_of(tx.sender)
        accounts[a] = Account(accounts[a].balance - tx.amount - tx.fee, 1)
    t = time.perf_counter()
    pool.update(mined)
    seconds = time.perf_counter() - t
    survivors = len(txs) - len(mined)
    assert len(pool) == survivors
    report.add("tx", f"    Mempool.update after a block of {len(mined)}", f"{seconds * 1e3:,.0f} ms", "",
               f"{survivors} survivors re-added = {survivors / seconds:,.0f} tx/s ({survivors / seconds / raw:.2f} "
               "of add): survivors keep their checked signatures")


def _partition(txs: Sequence[Transfer], k: int) -> list[list[Transfer]]:
    index: dict[bytes, int] = {k_.public_key: i for i, k_ in enumerate(SENDERS)}
    per = -(-len(SENDERS) // k)
    groups: list[list[Transfer]] = [[] for _ in range(k)]
    for tx in txs:
        groups[index[tx.sender] // per].append(tx)
    return groups


async def bench_tx(tmp: Path, cfg: Config, report: Report) -> None:
    params = pow_params()
    txs = signed_transfers(params, cfg.tx_nonces)
    say(f"signed {len(txs)} transfers from {len(SENDERS)} senders")
    raw = bench_raw(params, txs, cfg)
    ref = raw["mempool"]
    report.add("tx", f"(c) raw Mempool.add, {len(txs)} transfers", fmt_rate(ref, "tx/s"), "1.00",
               "in-process, fresh mempool, best of rounds")
    report.add("tx", "    raw check_signatures, 2 threads", fmt_rate(raw["sigs2"], "tx/s"), f"{raw['sigs2'] / ref:.2f}", "")
    report.add("tx", "    raw check_signatures, 1 thread", fmt_rate(raw["sigs1"], "tx/s"), f"{raw['sigs1'] / ref:.2f}", "")
    bench_mempool_update(params, txs, report, ref)
    api_runs, p2p_runs = [], []
    for rep in range(cfg.reps):  # interleaved, so both paths see the same machine
        api_runs.append(await run_api(tmp, f"tx-api{rep}", params, txs, cfg, report))
        p2p_runs.append(await run_p2p(tmp, f"tx-p2p{rep}", params, txs, cfg, report))
    api, spread = best_of(api_runs)
    report.add("tx", f"(a) API POST, {cfg.api_concurrency} concurrent", fmt_rate(api.rate, "tx/s"),
               f"{api.rate / ref:.2f}", f"{spread}mempool {api.held}/{len(txs)}{api.detail}")
    dropped = sorted({r for run in api_runs for r in run.dropped})
    report.add("tx", "    relay check: observer peer (default limits)", "DROPPED NODE" if dropped else "kept node", "",
               f"reasons {dropped}: the node relays each API tx at once, faster than a peer accepts" if dropped else "")
    p2p, spread = best_of(p2p_runs)
    report.add("tx", f"(b) P2P tx messages, {cfg.p2p_clients} peers", fmt_rate(p2p.rate, "tx/s"), f"{p2p.rate / ref:.2f}",
               f"{spread}mempool {p2p.held}/{len(txs)}{p2p.detail}" + (f"; disconnects {p2p.dropped}" if p2p.dropped else ""))
    await bench_p2p_one_peer(tmp, params, txs, report)
    report.notes.append(
        "tx: the node runs in a child process, the clients in this one (2 cores shared); (b) spreads the batch "
        "over several peers because one peer may send at most 400 messages at once and 200/s after; the node "
        "relays accepted transfers to its other peers in batches (one message per 1,000) each tick.")


# --- 3. propagation ---------------------------------------------------------------------------


async def bench_propagation(tmp: Path, cfg: Config, report: Report) -> None:
    params = pow_params()
    txs = signed_transfers(params, -(-cfg.prop_reps * cfg.prop_block_txs // len(SENDERS)))
    nodes: list[Node] = []
    try:
        for i in range(5):
            peers = [("127.0.0.1", nodes[-1].p2p_port)] if nodes else []
            node = Node(NodeConfig(datadir=str(tmp / f"line{i}"), peers=peers), params)
            await node.start()
            nodes.append(node)
        want = [1, 2, 2, 2, 1]
        await wait_until(lambda: [len(n.network.peers) if n.network else 0 for n in nodes] == want, 20,
                         "the line of five", 0.01)
        n0, last = nodes[0], nodes[-1]
        totals: list[float] = []
        hops: list[list[float]] = [[] for _ in range(4)]
        for rep in range(cfg.prop_reps):
            block = make_pow_block(n0.chain, SINK, txs[rep * cfg.prop_block_txs : (rep + 1) * cfg.prop_block_txs])
            h = block.header.hash()
            n0.chain.import_block(block)
            n0.mempool.update(block.txs)
            assert n0.network is not None
            t0 = time.monotonic()
            n0.network.broadcast(M.BlockMsg(block, b"", False))  # as Node._on_block relays it
            arrived = [0.0] * 5
            end = t0 + 10
            while time.monotonic() < end and not arrived[4]:
                for i in range(1, 5):
                    if not arrived[i] and nodes[i].chain.tip_hash == h:
                        arrived[i] = time.monotonic() - t0
                await asyncio.sleep(0.0005)
            if not arrived[4]:
                report.add("propagation", "block to n4", "FAILED", "", f"rep {rep}: n4 at {last.chain.height}")
                return
            totals.append(arrived[4])
            for i in range(4):
                hops[i].append(arrived[i + 1] - (arrived[i] if i else 0.0))
            await asyncio.sleep(0.05)
    finally:
        for node in reversed(nodes):
            await node.stop()
    report.add("propagation", f"n0 -> n4, 4 hops, block of {cfg.prop_block_txs} transfers",
               f"{median(totals) * 1e3:.1f} ms", "",
               f"median of {len(totals)}; max {max(totals) * 1e3:.1f} ms; per hop median "
               + "/".join(f"{median(x) * 1e3:.1f}" for x in hops) + " ms")
    report.notes.append("propagation: the five nodes share one event loop, so hops never overlap in time.")


# --- main -------------------------------------------------------------------------------------


def print_table(report: Report, mode: str, total: float) -> None:
    w = [max(len(r.section) for r in report.rows), max(len(r.what) for r in report.rows),
         max(len(r.value) for r in report.rows)]
    line = f"{'section':<{w[0]}}  {'measure':<{w[1]}}  {'value':>{w[2]}}  {'/raw':>5}  note"
    print(f"\nbench_node ({mode}): Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, total {total:.0f} s, "
          f"load average after {os.getloadavg()[0]:.2f}")
    print(line)
    print("-" * len(line))
    for r in report.rows:
        print(f"{r.section:<{w[0]}}  {r.what:<{w[1]}}  {r.value:>{w[2]}}  {r.ratio:>5}  {r.note}")
    for n in report.notes:
        print(f"note: {n}")


async def run(cfg: Config, tmp: Path, report: Report) -> None:
    say("== sync (pow)")
    await bench_sync_pow(tmp, cfg, report)
    say("== sync (ponas)")
    await bench_sync_ponas(tmp, cfg, report)
    say("== transactions")
    await bench_tx(tmp, cfg, report)
    say("== propagation")
    await bench_propagation(tmp, cfg, report)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about a minute")
    parser.add_argument("--keep", action="store_true", help="keep the temporary datadirs")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    report = Report()
    tmp = Path(tempfile.mkdtemp(prefix="bench_node-"))
    try:
        asyncio.run(run(cfg, tmp, report))
    finally:
        if args.keep:
            say(f"datadirs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    children = report.child_rss or [0.0]
    report.add("memory", "peak ru_maxrss, this process", f"{maxrss_mib():,.0f} MiB", "",
               "fresh sync nodes (torch for ponas), clients, the 5-node line")
    report.add("memory", "peak RSS (VmHWM), largest child node", f"{max(children):,.0f} MiB", "",
               "sync sources, tx nodes: " + "/".join(f"{x:.0f}" for x in children) + " MiB")
    print_table(report, "quick" if args.quick else "full", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
