"""Helpers for the reliability harnesses (``soak_crash.py``, ``fuzz_decode.py``,
``fuzz_api.py``): the machine line, a plain text table, progress every few percent."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def machine(with_torch: bool = False) -> str:
    """CPU model, cores, RAM, Python (and torch's version when it is already imported or asked)."""
    text = f"{cpu_model()}, {os.cpu_count()} cores, {ram_gib():.0f} GiB RAM, Python {platform.python_version()}"
    if with_torch or "torch" in sys.modules:
        import torch

        text += f", torch {torch.__version__}"
    return text


def table(rows: Sequence[Sequence[object]], header: Sequence[str] | None = None) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[str(c) for c in r] for r in ([header] if header else []) + list(rows)]
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(max(len(r) for r in cells))]
    numeric = [all(_is_number(r[i]) for r in cells[1 if header else 0:] if i < len(r)) for i in range(len(widths))]
    lines = []
    for n, r in enumerate(cells):
        line = "  ".join(c.rjust(widths[i]) if numeric[i] and not (header and n == 0) else c.ljust(widths[i])
                         for i, c in enumerate(r))
        lines.append(line.rstrip())
        if header and n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


class Progress:
    """Prints a line each time ``step_pct`` more percent of ``total`` is done, quiet otherwise."""

    def __init__(self, total: int, what: str, step_pct: float = 5.0) -> None:
        self.total, self.what = max(total, 1), what
        self.step = max(1, int(self.total * step_pct / 100))
        self.next = self.step
        self.started = time.monotonic()

    def update(self, done: int, extra: str = "") -> None:
        if done < self.next and done < self.total:
            return
        while self.next <= done:
            self.next += self.step
        elapsed = time.monotonic() - self.started
        eta = elapsed / done * (self.total - done) if done else float("nan")
        print(f"  {self.what}: {done:,}/{self.total:,} ({100 * done / self.total:.0f} %), "
              f"{elapsed:.0f} s, about {eta:.0f} s left{'  ' + extra if extra else ''}", flush=True)
