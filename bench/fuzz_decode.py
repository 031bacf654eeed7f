"""Coverage-guided fuzzing (atheris, libFuzzer) of every decoder that takes bytes from outside.

Run ``python bench/fuzz_decode.py --inputs 1000000`` (the full run) or ``--inputs 20000`` (a
smoke run); ``--decoder NAME`` (repeatable) picks decoders, ``--list`` names them.

``--inputs N`` is the total, split evenly across the decoders that run (``--per-decoder``
makes it N for each). Each decoder is fuzzed in its own worker process, so that atheris
instruments the project's modules (``consensus``, ``p2p``, ``pool``, ``node``) for coverage
before they are imported, and libFuzzer's exit at the end of a run ends only that worker.

The decoders (``bench/_decoders.py`` says exactly what each call is): the P2P frame decoder,
the message envelope and each of the 15 message kinds, ``consensus.encoding.decode``, the
``decode`` of the consensus types, model weights loading, the pool protocol's messages and
the node API's POST bodies and path/query parsers (handlers called without a server, on a
fake node). Each has its own allowed error types (``ConsensusError``, ``p2p`` ``ProtocolError``,
``WeightsError``, the pool's ``ProtocolError``, ``ApiError`` 4xx); any other exception is a
crash. A crash does not stop the run: it is counted, and the first input of each distinct
crash (by exception type and the deepest project frame) is written to
``OUT/crashes/DECODER/crash-*.bin`` with its traceback beside it; replay one with
``--replay FILE --decoder NAME``. Worker logs are in ``OUT/logs``, corpora in ``OUT/corpus``
(OUT is ``/tmp/ponas-fuzz`` unless ``--out`` says otherwise). The exit status is 1 if
anything crashed.

``cov`` and ``ft`` are libFuzzer's counts at the end of a decoder's run: edges (branches of
the instrumented project bytecode) covered, and features (edges with hit counts, comparisons).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and tests

from bench._report import REPO_ROOT, machine, table  # noqa: E402

INSTRUMENTED = ["consensus", "p2p", "pool", "node", "nodeclient"]
DEFAULT_OUT = "/tmp/ponas-fuzz"


# --- the worker: one decoder under atheris ---------------------------------------------------


def _signature(exc: BaseException) -> str:
    """Exception type and the deepest frame inside the repository (not the harness)."""
    where = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename)
        if str(path).startswith(str(REPO_ROOT)) and "bench" not in path.parts:
            where = f"{path.relative_to(REPO_ROOT)}:{frame.lineno}"
    return f"{type(exc).__name__} at {where}"


def worker(name: str, runs: int, out: Path, seed: int) -> None:
    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED):
        import consensus.codec  # noqa: F401
        import consensus.encoding  # noqa: F401
        import consensus.engines.ponas.model  # noqa: F401
        import consensus.engines.ponas.weights  # noqa: F401
        import consensus.types  # noqa: F401
        import node.api  # noqa: F401
        import p2p.framing  # noqa: F401
        import p2p.messages  # noqa: F401
        import pool.protocol  # noqa: F401
    from bench._decoders import all_targets

    target = all_targets()[name]
    corpus = out / "corpus" / name
    crashes = out / "crashes" / name
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for s in target.seeds():
        (corpus / f"seed-{hashlib.sha1(s).hexdigest()}").write_bytes(s)
    hits: dict[str, int] = {}
    hits_file = crashes / "hits.json"
    hits_file.write_text("{}")

    def one(data: bytes) -> None:
        try:
            target.run(data)
        except target.allowed:
            pass
        except Exception as exc:  # noqa: BLE001 - anything else is what we are looking for
            sig = _signature(exc)
            if sig not in hits:
                digest = hashlib.sha1(data).hexdigest()
                (crashes / f"crash-{digest}.bin").write_bytes(data)
                (crashes / f"crash-{digest}.txt").write_text(
                    f"decoder {name}\n{sig}\nreplay: python bench/fuzz_decode.py --replay {crashes}/crash-{digest}.bin "
                    f"--decoder {name}\n\n" + "".join(traceback.format_exception(exc))[-8000:])
                print(f"CRASH {name}: {sig}: {str(exc)[:200]}", file=sys.stderr, flush=True)
            hits[sig] = hits.get(sig, 0) + 1
            hits_file.write_text(json.dumps(hits))

    args = [sys.argv[0], f"-runs={runs}", f"-seed={seed}", "-print_final_stats=1", "-rss_limit_mb=4096",
            "-timeout=60", f"-artifact_prefix={crashes}/", str(corpus)]
    atheris.Setup(args, one)
    print(f"FUZZ-START {time.time()}", flush=True)
    atheris.Fuzz()


# --- the parent: one worker per decoder, then the table --------------------------------------


@dataclass
class Result:
    name: str
    asked: int
    inputs: int = 0
    seconds: float = 0.0
    cov: str = "-"
    ft: str = "-"
    crashes: dict[str, int] = field(default_factory=dict)
    died: str = ""

    @property
    def crash_count(self) -> int:
        return sum(self.crashes.values()) + bool(self.died)


def run_worker(name: str, runs: int, out: Path, seed: int) -> Result:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--runs", str(runs), "--out", str(out),
           "--seed", str(seed)]
    with open(log, "wb") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO_ROOT, check=False)
    ended = time.time()
    text = log.read_text(errors="replace")
    res = Result(name, runs)
    started = re.search(r"^FUZZ-START ([0-9.]+)$", text, re.M)
    units = re.search(r"stat::number_of_executed_units:\s*(\d+)", text)
    if units:
        res.inputs = int(units.group(1))
    if started:
        res.seconds = ended - float(started.group(1))
    cov = re.findall(r"\bcov: (\d+) ft: (\d+)", text)
    if cov:
        res.cov, res.ft = cov[-1]
    hits_file = out / "crashes" / name / "hits.json"
    if hits_file.exists():
        res.crashes = json.loads(hits_file.read_text() or "{}")
    if proc.returncode != 0 or not units:
        tail = text.strip().splitlines()[-3:]
        res.died = f"worker rc {proc.returncode}: " + " | ".join(tail)
    return res


def replay(path: Path, name: str) -> int:
    from bench._decoders import all_targets

    target = all_targets()[name]
    data = path.read_bytes()
    try:
        target.run(data)
    except target.allowed as exc:
        print(f"{name}: allowed {type(exc).__name__}: {exc}")
        return 0
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return 1
    print(f"{name}: decoded without error")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=20_000,
                    help="inputs in total, split evenly across the decoders run (default 20000; the full run is 1000000)")
    ap.add_argument("--per-decoder", action="store_true", help="--inputs is for each decoder, not the total")
    ap.add_argument("--decoder", action="append", default=None, help="a decoder to fuzz (repeatable; default all)")
    ap.add_argument("--seed", type=int, default=None, help="libFuzzer's seed (default random, printed)")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"corpora, crashes and logs (default {DEFAULT_OUT})")
    ap.add_argument("--list", action="store_true", help="name the decoders and exit")
    ap.add_argument("--replay", type=Path, default=None, help="run one input (a crash file) through --decoder")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--runs", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.worker:
        worker(args.worker, args.runs, out, args.seed or 1)
        return 0
    from bench._decoders import target_names

    names = target_names()
    if args.list:
        print("\n".join(names))
        return 0
    if args.replay:
        if not args.decoder or len(args.decoder) != 1:
            ap.error("--replay needs one --decoder")
        return replay(args.replay, args.decoder[0])
    chosen = args.decoder or names
    unknown = [n for n in chosen if n not in names]
    if unknown:
        ap.error(f"unknown decoder(s) {unknown}; --list names them")
    seed = random.randrange(1, 2**31) if args.seed is None else args.seed
    share = [args.inputs] * len(chosen) if args.per_decoder else [
        args.inputs // len(chosen) + (i < args.inputs % len(chosen)) for i in range(len(chosen))]
    print(f"fuzz_decode: {sum(share):,} inputs over {len(chosen)} decoders, seed {seed}, out {out}", flush=True)
    started = time.monotonic()
    results = []
    for i, (name, runs) in enumerate(zip(chosen, share, strict=True)):
        res = run_worker(name, runs, out, seed + i)
        results.append(res)
        rate = res.inputs / res.seconds if res.seconds else 0.0
        print(f"  [{i + 1}/{len(chosen)}] {name}: {res.inputs:,} inputs, {rate:,.0f}/s, cov {res.cov}, "
              f"crashes {res.crash_count}{'  ' + res.died if res.died else ''}", flush=True)
    wall = time.monotonic() - started
    rows = []
    for r in results:
        rate = r.inputs / r.seconds if r.seconds else 0.0
        rows.append((r.name, f"{r.inputs:,}", f"{rate:,.0f}", r.cov, r.ft, r.crash_count))
    total_inputs = sum(r.inputs for r in results)
    total_crashes = sum(r.crash_count for r in results)
    fuzz_seconds = sum(r.seconds for r in results)
    rows.append(("total", f"{total_inputs:,}", f"{total_inputs / fuzz_seconds if fuzz_seconds else 0:,.0f}", "", "",
                 total_crashes))
    from importlib.metadata import version

    print(f"fuzz_decode: {'PASS' if total_crashes == 0 else 'FAIL'}")
    print(table(rows, ("decoder", "inputs", "inputs/s", "cov", "ft", "crashes")))
    for r in results:
        for sig, n in r.crashes.items():
            print(f"crash in {r.name}: {sig} ({n} inputs); reproducers in {out / 'crashes' / r.name}")
        if r.died:
            print(f"worker for {r.name} died: {r.died}; log {out / 'logs' / (r.name + '.log')}")
    print(f"seed {seed}, wall {wall:.0f} s, atheris {version('atheris')}, machine {machine(True)}")
    return 0 if total_crashes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
