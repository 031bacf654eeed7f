"""Benchmark of the chain core: signature checks, block import and memory, side by side.

Run ``python bench/bench_core.py`` (about a minute and a half) or ``--quick`` (about 20 s).

* Signature checks per second over the same messages (the digests of real signed transfers):
  raw ``cryptography`` (OpenSSL), raw PyNaCl (libsodium) on one and two threads, the project's
  :func:`consensus.crypto.verify` and :func:`~consensus.crypto.verify_many`, and the
  transaction validation path (:func:`consensus.state.check_signatures`, which also computes
  every transfer's digest). Every rate is also given as a ratio to raw PyNaCl on one thread;
  the target is that the validation path keeps at least 0.7 of the raw rate of the library
  it uses, compared thread for thread (PASS/FAIL).
* Transfers per second through full block import (validation, undo data, one synced batch
  per block) into a real LevelDB datadir, and into :class:`~node.storage.MemoryKV` to separate
  the storage cost; plus the cost of the main parts of one block's validation.
* Peak memory: ``ru_maxrss`` of the process, and the ``tracemalloc`` peak of Python
  allocations during import (LevelDB's own C allocations are not traced).

Rates are the best of several rounds, the rounds interleaved so that every row sees the same
machine; ``cpu/wall`` shows whether a threaded row really had two cores (another process on
a small machine shows up as a ratio near 1).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for tests.builders

import nacl.bindings  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: E402

from consensus.chain import genesis_block  # noqa: E402
from consensus.crypto import verify, verify_many  # noqa: E402
from consensus.params import ChainParams  # noqa: E402
from consensus.state import check_signatures, state_root, validate_body  # noqa: E402
from consensus.types import Block, Transfer  # noqa: E402
from node.chain import Chain  # noqa: E402
from node.storage import MemoryKV, open_datadir  # noqa: E402
from tests.builders import Clock, keys, make_params, pow_block, transfer  # noqa: E402

Triple = tuple[bytes, bytes, bytes]
TARGET_RATIO = 0.7


@dataclass(frozen=True, slots=True)
class Config:
    senders: int
    block_txs: int
    blocks: int
    sig_blocks: int  # how many blocks' transfers the signature rows check
    sig_rounds: int
    import_rounds: int
    traced_blocks: int


FULL = Config(senders=200, block_txs=2_000, blocks=12, sig_blocks=3, sig_rounds=5, import_rounds=3, traced_blocks=3)
QUICK = Config(senders=200, block_txs=2_000, blocks=4, sig_blocks=1, sig_rounds=3, import_rounds=2, traced_blocks=1)


@dataclass
class Timing:
    """Wall and CPU seconds of each round of one measured row."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def best(self) -> float:
        return min(self.wall)

    def cpu_ratio(self) -> float:
        i = self.wall.index(self.best())
        return self.cpu[i] / self.wall[i]


def timed(fn: Callable[[], object], into: Timing) -> None:
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    into.wall.append(time.perf_counter() - t0)
    into.cpu.append(time.process_time() - c0)


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- the workload ---------------------------------------------------------------------------


def build_blocks(cfg: Config) -> tuple[ChainParams, list[Block]]:
    """``cfg.blocks`` sealed pow blocks of ``cfg.block_txs`` transfers on a fresh chain.

    Every sender sends ``block_txs / senders`` transfers per block with consecutive nonces, to
    a pool of 1,000 recipients that are not senders (so the account set grows as on a real
    chain)."""
    senders = keys(cfg.senders, seed=7)
    params = make_params(senders, coins=1_000_000)
    recipients = [hashlib.sha256(b"recipient" + i.to_bytes(4, "big")).digest()[:20] for i in range(1_000)]
    miner = hashlib.sha256(b"miner").digest()[:20]
    per_sender = cfg.block_txs // cfg.senders
    builder = Chain(MemoryKV(), params, clock=Clock())
    blocks: list[Block] = []
    for b in range(cfg.blocks):
        txs: list[Transfer] = []
        for s, key in enumerate(senders):
            for j in range(per_sender):
                to = recipients[(b * cfg.block_txs + s * per_sender + j) % len(recipients)]
                txs.append(transfer(params, key, to, 1_000 + j, nonce=b * per_sender + j))
        block = pow_block(params, builder.tip, builder.accounts, miner, txs)
        builder.import_block(block)
        blocks.append(block)
    return params, blocks


# --- signature rows -------------------------------------------------------------------------


def raw_cryptography(items: Sequence[Triple]) -> None:
    for pk, msg, sig in items:
        Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)


def raw_nacl(items: Sequence[Triple]) -> None:
    for pk, msg, sig in items:
        nacl.bindings.crypto_sign_open(sig + msg, pk)


_CONTROL_DATA = bytes(1 << 20)


def sha256_chunks(count: int) -> None:
    for _ in range(count):
        hashlib.sha256(_CONTROL_DATA).digest()


def halves(items: Sequence[Triple]) -> list[Sequence[Triple]]:
    mid = len(items) // 2
    return [items[:mid], items[mid:]]


def bench_signatures(cfg: Config, params: ChainParams, txs: list[Transfer]) -> list[str]:
    cid = params.chain_id
    items: list[Triple] = [(tx.sender, tx.digest(cid), tx.signature) for tx in txs]
    assert all(verify_many(items, threads=1))
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bench")
    list(pool.map(time.sleep, [0.01, 0.01]))  # start both workers before timing
    verify_many(items[:128], threads=2)  # and the project's pool

    rows: list[tuple[str, str, Callable[[], object]]] = [
        ("a", "cryptography raw (OpenSSL), 1 thread", lambda: raw_cryptography(items)),
        ("b", "PyNaCl raw crypto_sign_open, 1 thread", lambda: raw_nacl(items)),
        ("b2", "PyNaCl raw crypto_sign_open, 2 threads", lambda: list(pool.map(raw_nacl, halves(items)))),
        ("c", "consensus.crypto.verify, 1 thread", lambda: [verify(*it) for it in items]),
        ("d", "consensus.crypto.verify_many, 2 threads", lambda: verify_many(items, threads=2)),
        ("e1", "tx path, 1 thread: digest+verify_many(threads=1)",
         lambda: verify_many([(tx.sender, tx.digest(cid), tx.signature) for tx in txs], threads=1)),
        ("e2", "tx path: state.check_signatures (2 threads)", lambda: check_signatures(txs, cid)),
        ("-", "  of which: tx.digest only, 1 thread", lambda: [tx.digest(cid) for tx in txs]),
    ]
    timings = {key: Timing() for key, _, _ in rows}
    control = Timing()  # hashlib releases the GIL: two threads of it show whether two cores were free
    for _ in range(cfg.sig_rounds):
        for key, _, fn in rows:
            timed(fn, timings[key])
        timed(lambda: list(pool.map(sha256_chunks, [24, 24])), control)
    pool.shutdown()

    n = len(items)
    rate = {key: n / t.best() for key, t in timings.items()}
    base = rate["b"]
    out = [
        f"Signature checks: {n} transfers' digests, {cfg.sig_rounds} rounds, best round (median in brackets)",
        f"  {'':3}{'row':50}{'checks/s':>10}{'(median)':>10}{'vs b':>7}{'cpu/wall':>9}",
    ]
    for key, label, _ in rows:
        t = timings[key]
        median = n / statistics.median(t.wall)
        out.append(
            f"  {key:3}{label:50}{rate[key]:10.0f}{f'({median:.0f})':>10}{rate[key] / base:7.2f}{t.cpu_ratio():9.2f}"
        )
    for path, raw in (("e1", "b"), ("e2", "b2")):
        ratio = rate[path] / rate[raw]
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        out.append(f"  target {path}/{raw} >= {TARGET_RATIO} (validation path vs raw PyNaCl, same threads): "
                   f"{ratio:.2f} {verdict}")
    busy = sum(1 for c, w in zip(control.cpu, control.wall) if c / w < 1.8)
    out.append(f"  control (hashlib on 2 threads) had both cores in {cfg.sig_rounds - busy} of {cfg.sig_rounds} rounds"
               + ("" if not busy else "; another process took a core in the others (see the medians)"))
    digest_share = timings["-"].best() / timings["e1"].best()
    out.append(f"  digest share of the 1-thread path: {digest_share:.0%} (serial, under the GIL, in e2 too)")
    return out


# --- import rows ----------------------------------------------------------------------------


def import_all(chain: Chain, blocks: Sequence[Block]) -> list[float]:
    per_block = []
    for block in blocks:
        t0 = time.perf_counter()
        result = chain.import_block(block)
        per_block.append(time.perf_counter() - t0)
        assert result.status == "connected", result
    return per_block


def run_leveldb(params: ChainParams, blocks: Sequence[Block]) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="ponas-bench-") as tmp:
        dd = open_datadir(os.path.join(tmp, "node"), params.chain_id, genesis_block(params).header.hash())
        try:
            chain = Chain(dd.kv, params, clock=Clock())
            return import_all(chain, blocks)
        finally:
            dd.close()


def run_memory(params: ChainParams, blocks: Sequence[Block]) -> list[float]:
    return import_all(Chain(MemoryKV(), params, clock=Clock()), blocks)


def bench_import(cfg: Config, params: ChainParams, blocks: list[Block]) -> list[str]:
    runs: dict[str, list[list[float]]] = {"LevelDB": [], "MemoryKV": []}
    for _ in range(cfg.import_rounds):
        gc.collect()
        runs["LevelDB"].append(run_leveldb(params, blocks))
        gc.collect()
        runs["MemoryKV"].append(run_memory(params, blocks))
    txs = sum(len(b.txs) for b in blocks)
    out = [
        f"Block import: {len(blocks)} blocks x {cfg.block_txs} transfers ({cfg.senders} senders), "
        f"{cfg.import_rounds} round(s), best round",
        f"  {'store':12}{'blocks/s':>10}{'transfers/s':>13}{'ms/block':>10}{'slowest':>9}",
    ]
    for store, rounds in runs.items():
        best = min(rounds, key=sum)
        total = sum(best)
        out.append(
            f"  {store:12}{len(blocks) / total:10.2f}{txs / total:13.0f}{1000 * total / len(blocks):10.1f}"
            f"{1000 * max(best):9.1f}"
        )
    leveldb, memory = (min(sum(r) for r in runs[s]) for s in ("LevelDB", "MemoryKV"))
    out.append(f"  storage share (LevelDB - MemoryKV): {1000 * (leveldb - memory) / len(blocks):.1f} ms/block; "
               f"fsync in {tempfile.gettempdir()}: {fsync_ms(tempfile.gettempdir()):.2f} ms")

    # Where one block's time goes (the last block, on the state before it).
    last = blocks[-1]
    chain = Chain(MemoryKV(), params, clock=Clock())
    import_all(chain, blocks[:-1])
    accounts = dict(chain.accounts)
    parts: list[tuple[str, Callable[[], object]]] = [
        ("check_signatures (digests + verify, 2 threads)", lambda: check_signatures(last.txs, params.chain_id)),
        ("validate_body (encode, tx hashes, merkle, shapes)", lambda: validate_body(last, params)),
        ("block.encode()", last.encode),
        ("block.tx_hashes()", last.tx_hashes),
        (f"state_root over all {len(accounts)} accounts", lambda: state_root(accounts)),
    ]
    out.append("  parts of one block's import, MemoryKV (measured alone, best of 3):")
    for label, fn in parts:
        t = Timing()
        for _ in range(3):
            timed(fn, t)
        out.append(f"    {label:54}{1000 * t.best():8.1f} ms")
    return out


def bench_memory(cfg: Config, params: ChainParams, blocks: list[Block]) -> list[str]:
    traced = blocks[: cfg.traced_blocks]
    gc.collect()
    tracemalloc.start()
    try:
        run_leveldb(params, traced)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return [
        "Memory",
        f"  tracemalloc peak, import of {len(traced)} block(s) into a fresh LevelDB chain: {peak / 2**20:.1f} MiB "
        "(Python allocations made during the import; the blocks were built before)",
        f"  ru_maxrss of the whole run: {maxrss_mib():.1f} MiB",
    ]


def fsync_ms(directory: str) -> float:
    """Median latency of a 4 KiB write plus fsync in ``directory`` (what a synced batch pays)."""
    fd, path = tempfile.mkstemp(dir=directory)
    try:
        samples = []
        for _ in range(20):
            t0 = time.perf_counter()
            os.write(fd, bytes(4096))
            os.fsync(fd)
            samples.append(time.perf_counter() - t0)
        return 1000 * statistics.median(samples)
    finally:
        os.close(fd)
        os.unlink(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, about 20 s")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    started = time.perf_counter()
    load = os.getloadavg()
    print(f"bench_core ({'quick' if args.quick else 'full'}): Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, PyNaCl {nacl.__version__}, load average before {load[0]:.2f}")
    params, blocks = build_blocks(cfg)
    print(f"built {len(blocks)} blocks in {time.perf_counter() - started:.1f} s; "
          f"ru_maxrss {maxrss_mib():.1f} MiB")
    print()
    sig_txs = [tx for b in blocks[: cfg.sig_blocks] for tx in b.txs]
    for line in bench_signatures(cfg, params, sig_txs):
        print(line, flush=True)
    print()
    for line in bench_import(cfg, params, blocks):
        print(line, flush=True)
    print()
    for line in bench_memory(cfg, params, blocks):
        print(line, flush=True)
    print(f"\ntotal {time.perf_counter() - started:.1f} s; load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
