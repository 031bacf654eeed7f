"""``bench/attacks.py`` runs and every attack in it is refused: the benchmark of the
round-protocol review stays a working program (it starts a node on 127.0.0.1, sends each attack
over a real socket and reads the node's own reason). The same attacks are tests of their own in
``tests/integration`` and ``tests/unit``; this one keeps the table honest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_attacks_refuses_every_attack() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "attacks.py")], capture_output=True, text=True,
                         timeout=240, cwd=ROOT)
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    done = re.search(r"(\d+) of (\d+) attacks refused", out)
    assert done is not None and done.group(1) == done.group(2) and int(done.group(2)) >= 20, out[-2000:]
    rows = [line for line in out.splitlines() if line.rstrip().endswith(("PASS", "FAIL"))]
    assert len(rows) == int(done.group(2)) and all(r.rstrip().endswith("PASS") for r in rows), out
