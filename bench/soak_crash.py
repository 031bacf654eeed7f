"""Soak of the crash test: N SIGKILLs of a node writing its datadir, and the checks after each.

Run ``python bench/soak_crash.py --kills 1000 [--seed S]`` (about 1.5 s a kill on 2 cores).

The scenario is ``tests.framework.crash``, the one ``tests/functional/test_feature_crash.py``
runs 40 times: a child mines a ``pow`` chain and acknowledges each block after
``import_block`` returned; it is SIGKILLed at a random moment (a fifth of the kills during
start-up, the rest a little after 0 to 10 acknowledged blocks), the datadir is reopened and
checked (tip, height index, block index, parent links, the tip block and its transactions,
the state root; every acknowledged block still canonical; the height at most one past the
last acknowledgement), and the next child resumes on the same datadir. Here nothing stops at
the first failure: every kill runs and the final table counts them. The exit status is 1 when
an acknowledged block was lost or an inconsistency found; the failing kills' details go to
stderr.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for tests.framework

from bench._report import Progress, machine, table  # noqa: E402
from tests.framework.crash import Tip, chain_params, kill_once, write_child  # noqa: E402


@dataclass
class Tally:
    asked: int = 0
    kills: int = 0
    before_ready: int = 0  # killed before the READY line
    before_first_ack: int = 0  # killed before any ACK (start-up, READY or not)
    acks: int = 0
    unacked_writes: int = 0
    lost: int = 0
    inconsistencies: int = 0
    failures: list[str] = field(default_factory=list)
    height: int = 0


def soak(kills: int, seed: int, workdir: Path, max_minutes: float | None = None) -> Tally:
    rng = random.Random(seed)
    params = chain_params()
    script = write_child(workdir)
    datadir = workdir / "node"
    errlog = workdir / "child.err"
    expected: Tip | None = None
    tally = Tally(asked=kills)
    progress = Progress(kills, "kills")
    deadline = time.monotonic() + max_minutes * 60 if max_minutes else float("inf")
    for i in range(kills):
        if time.monotonic() > deadline:
            print(f"  stopped after {i} of {kills} kills: --max-minutes {max_minutes:g} reached", flush=True)
            break
        out = kill_once(script, datadir, params, rng, errlog, expected)
        tally.kills += 1
        tally.before_ready += out.before_ready
        tally.before_first_ack += not out.run.acks
        tally.acks += len(out.run.acks)
        tally.unacked_writes += out.unacked_write
        tally.lost += len(out.lost)
        tally.inconsistencies += len(out.problems)
        if out.lost or out.problems:
            detail = f"kill {i}: lost ACKed heights {out.lost}; " + "; ".join(out.problems)
            tally.failures.append(detail)
            print(detail, file=sys.stderr, flush=True)
        if out.tip is not None:
            expected = out.tip
            tally.height = out.tip[0]
        progress.update(i + 1, f"height {tally.height}, lost {tally.lost}, inconsistencies {tally.inconsistencies}")
    return tally


def report(tally: Tally, seed: int, wall: float) -> str:
    rows = [
        ("kills done", f"{tally.kills} of {tally.asked}"),
        ("kills during start-up (before the first ACK)", tally.before_first_ack),
        ("  of which before READY", tally.before_ready),
        ("blocks acknowledged", tally.acks),
        ("unacknowledged writes (<= 1 per kill allowed)", tally.unacked_writes),
        ("lost acknowledged blocks (must be 0)", tally.lost),
        ("inconsistencies found (must be 0)", tally.inconsistencies),
        ("final height", tally.height),
        ("seed", seed),
        ("wall time", f"{wall:.0f} s ({wall / max(tally.kills, 1):.2f} s a kill)"),
        ("machine", machine()),
    ]
    verdict = "PASS" if tally.lost == 0 and tally.inconsistencies == 0 else "FAIL"
    return f"soak_crash: {verdict}\n" + table(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20, help="how many kills (default 20; the full run is 1000)")
    ap.add_argument("--seed", type=int, default=None, help="the kill schedule's seed (default: random, printed)")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop starting kills after this long; the table says how many ran (default: no limit)")
    ap.add_argument("--workdir", default=None, help="where the datadir goes (default: a temporary directory)")
    args = ap.parse_args(argv)
    seed = random.randrange(2**32) if args.seed is None else args.seed
    print(f"soak_crash: {args.kills} kills, seed {seed} (--seed {seed} replays the schedule)", flush=True)
    started = time.monotonic()
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        tally = soak(args.kills, seed, Path(args.workdir), args.max_minutes)
    else:
        with tempfile.TemporaryDirectory(prefix="ponas-soak-") as tmp:
            tally = soak(args.kills, seed, Path(tmp), args.max_minutes)
    print(report(tally, seed, time.monotonic() - started))
    return 0 if tally.lost == 0 and tally.inconsistencies == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
