"""Record a real-network run for the paper's comparison: one pool against solo miners of equal
compute on a local devnet (real nodes, real training, no table).

Usage (from the repo root)::

    python bench/paper/network_run.py --rounds 30 --pool-keys 3     # a pool of 3 against 3 solo miners
    python bench/paper/network_run.py --rounds 12 --members 4 --solo 4 --dir /tmp/net

It runs ``ponas devnet up --preset devnet --fresh --base-port 0`` (the default task, MNIST-1D;
every member and every solo miner is one process with one training thread, so they have equal
compute; every committing key starts with the same coins), then writes
``bench/paper/network_mnist1d/devnet-poolM[-keysK]-soloS-DATE[-N].json`` (``--out``; the
digits runs of 2026-11-24 are in ``network/``): the command, the machine, the
trainings each miner process made (its ``share`` log lines: one per finished training) and the
devnet's ``summary.json`` (every block's winner, score and payouts). ``simulate.py``'s
experiment 5 simulates each such file's setup and compares. The devnet's progress is shown as
it runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from build_table import cpu_name  # noqa: E402

#: Runs of the default task (mnist1d); ``network/`` holds the digits runs of 2026-11-24.
DEFAULT_FOLDER = HERE / "network_mnist1d"
SHARE_LINE = re.compile(r"\bmsg=share\b")


def trainings(logs: Path) -> dict[str, int]:
    """Finished trainings per miner process (``member*`` and ``solo*`` logs)."""
    out = {}
    for log in sorted(logs.glob("*.log")):
        if log.stem.startswith(("member", "solo")):
            with log.open(errors="replace") as f:
                out[log.stem] = sum(1 for line in f if SHARE_LINE.search(line))
    return out


def record(devnet: Path, command: Sequence[str], folder: Path, members: int, solo: int, pool_keys: int = 1) -> Path:
    """Write the run's file from a finished devnet directory; returns its path."""
    summary = json.loads((devnet / "summary.json").read_text())
    date = dt.date.today().isoformat()
    keys = f"-keys{pool_keys}" if pool_keys > 1 else ""
    base = f"devnet-pool{members}{keys}-solo{solo}-{date}"
    path = folder / f"{base}.json"
    k = 2
    while path.exists():
        path = folder / f"{base}-{k}.json"
        k += 1
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "command": " ".join(["ponas", *command]),
        "date": date,
        "machine": f"{os.cpu_count()} cores ({cpu_name()})",
        "pool_keys": pool_keys,
        "trainings_per_process": trainings(devnet / "logs"),
        "summary": summary,
    }, indent=1) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15, help="blocks to mine (at least 10 for the issue's comparison)")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--solo", type=int, default=3)
    ap.add_argument("--pool-keys", type=int, default=1, help="keys the pool commits under (default 1)")
    ap.add_argument("--dir", default=str(REPO / "paper-devnet"), help="the devnet's directory (replaced)")
    ap.add_argument("--out", default=str(DEFAULT_FOLDER), help="where the run's file goes")
    args = ap.parse_args(argv)
    command = ["devnet", "up", "--dir", args.dir, "--fresh", "--preset", "devnet", "--rounds", str(args.rounds),
               "--pool-members", str(args.members), "--solo", str(args.solo), "--base-port", "0",
               "--pool-keys", str(args.pool_keys)]
    ponas = Path(sys.executable).with_name("ponas")
    rc = subprocess.call([str(ponas) if ponas.exists() else "ponas", *command])
    if rc != 0:
        print(f"network_run: the devnet failed (exit {rc}); nothing recorded", file=sys.stderr)
        return rc
    path = record(Path(args.dir), command, Path(args.out), args.members, args.solo, args.pool_keys)
    print(f"network_run: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
