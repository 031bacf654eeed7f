"""Score table of the digits task: every NAS-Bench-201 architecture trained once with one recipe.

Usage (from the repo root)::

    python bench/paper/build_table.py --recipe regtest --workers 1          # build or resume
    python bench/paper/build_table.py --recipe regtest --limit 500          # 500 more, then stop
    python bench/paper/build_table.py --recipe devnet --sample 200          # a seeded random sample

Each architecture (an index of ``get_space("nb201")``, 15,625 of them; isomorphic cells are not
merged) is trained with :func:`consensus.engines.ponas.train.train` on the public training split
of the built-in digits task, with the named recipe and the declared training seed ``--seed``,
then scored (integer correct counts) on the validation split and on the fixed held-out split
(``test``). ``train_seconds`` is the wall time of the training alone (machine-dependent).

Files, for ``--out PATH`` (default ``bench/paper/nb201_digits_<recipe>.csv.gz``):

- ``PATH``: the table, gzip'd CSV sorted by index, a few ``#`` comment lines first, then
  ``index,genotype,val_correct,val_total,test_correct,test_total,train_seconds``. It is
  rewritten atomically (temporary file, then rename) every ``--flush-every`` new rows and at the
  end of a run, also after Ctrl-C. It may hold only part of the space: count its rows.
- ``PATH.partial.csv``: the working file; one line per trained architecture, appended and
  flushed as each finishes (not meant to be committed). A torn last line (a kill mid-write) is
  dropped on the next start.
- ``PATH.meta.json``: the recipe (``Recipe.to_list()`` and fields), the training seed, and one
  entry per run (date, torch and Python version, device, CPU, workers, rows added).

Resuming: on start the rows already in ``PATH`` and in ``PATH.partial.csv`` are read and their
indices skipped, so a run can be stopped and restarted at any time, and a fresh checkout resumes
from the committed ``PATH`` alone. A run refuses to add to a table made with another recipe or
seed. The remaining indices are trained in a fixed pseudo-random order (``--order shuffled``, the
default), so that a partial table is a uniform random sample of the space.

Reproducibility: on CPU each training runs on one thread with deterministic algorithms, so a row
is a pure function of (architecture, recipe, seed) for one torch build on one kind of CPU; other
torch versions or CPUs may round differently and move a score by a sample or so. Rows trained
with ``--device cuda`` (search-only, allowed only when CUDA is available) are NOT bitwise
reproducible; the meta file records which device each run used, and the table's header says so
when any run used CUDA.

Parallelism: ``--workers N`` trains in N spawned processes, each on one thread.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import gzip
import io
import json
import multiprocessing as mp
import os
import platform
import random
import re
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._report import cpu_model as cpu_name  # noqa: E402  (network_run.py imports it from here)
from consensus.engines.ponas.recipe import DEVNET, REGTEST, Recipe  # noqa: E402
from consensus.engines.ponas.space import get_space  # noqa: E402

SPACE = "nb201"
TASK = "digits"
HERE = Path(__file__).resolve().parent
COLUMNS = ("index", "genotype", "val_correct", "val_total", "test_correct", "test_total", "train_seconds")
ORDER_SEED = "ponas/paper/nb201-table-order/v1"
SAMPLE_SEED = 201

RECIPES: dict[str, Recipe] = {
    "regtest": REGTEST,
    "devnet": DEVNET,
    # Middle recipes (regtest with more epochs), tried when regtest ranks too differently from devnet.
    "e6": dataclasses.replace(REGTEST, epochs=6),
    "e8": dataclasses.replace(REGTEST, epochs=8),
    "e10": dataclasses.replace(REGTEST, epochs=10),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One table row (one architecture)."""

    index: int
    genotype: str
    val_correct: int
    val_total: int
    test_correct: int
    test_total: int
    train_seconds: float

    def line(self) -> str:
        return (
            f"{self.index},{self.genotype},{self.val_correct},{self.val_total},"
            f"{self.test_correct},{self.test_total},{self.train_seconds:.3f}\n"
        )


class TableError(RuntimeError):
    """A table or meta file that does not match the requested run."""


# ---------------------------------------------------------------------------------------------
# Reading and writing rows.


def parse_row(fields: Sequence[str]) -> Row | None:
    """A row from its CSV fields, or None when it is malformed (wrong count, bad numbers, a
    genotype that is not the index's, scores out of range)."""
    if len(fields) != len(COLUMNS):
        return None
    try:
        row = Row(
            int(fields[0]),
            fields[1],
            int(fields[2]),
            int(fields[3]),
            int(fields[4]),
            int(fields[5]),
            float(fields[6]),
        )
    except ValueError:
        return None
    space = get_space(SPACE)
    if not 0 <= row.index < space.size or space.encode(row.index) != row.genotype:
        return None
    if not (0 <= row.val_correct <= row.val_total and 0 <= row.test_correct <= row.test_total):
        return None
    if not row.train_seconds >= 0.0:  # also rejects NaN
        return None
    return row


def read_partial(path: Path) -> tuple[dict[int, Row], int]:
    """Rows of a working file, and the byte offset just past its last well-formed line.

    A last line without its newline (torn by a kill) and any malformed line are skipped; the
    second value tells the caller whether to rewrite the file so that appends start on a fresh line.
    """
    rows: dict[int, Row] = {}
    if not path.exists():
        return rows, 0
    data = path.read_bytes()
    good = 0
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break  # torn last line
        text = data[pos:end].decode("utf-8", errors="replace")
        pos = end + 1
        if not text or text.startswith("#") or text.startswith("index,"):
            good = pos
            continue
        row = parse_row(next(csv.reader([text])))
        if row is not None:
            rows[row.index] = row
            good = pos
    return rows, good


def read_table(path: Path) -> dict[int, Row]:
    """Rows of a gzip'd table (``#`` comments and the header skipped)."""
    rows: dict[int, Row] = {}
    if not path.exists():
        return rows
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        lines = (line for line in f if line.strip() and not line.startswith("#"))
        for fields in csv.reader(lines):
            if fields and fields[0] == "index":
                continue
            row = parse_row(fields)
            if row is None:
                raise TableError(f"{path}: malformed row {fields!r}")
            rows[row.index] = row
    return rows


def write_table(path: Path, rows: dict[int, Row], header: Sequence[str]) -> None:
    """Write the table atomically: sorted by index, gzip with a fixed mtime (stable bytes)."""
    buf = io.StringIO()
    for line in header:
        buf.write(f"# {line}\n")
    buf.write(",".join(COLUMNS) + "\n")
    for index in sorted(rows):
        buf.write(rows[index].line())
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    os.replace(tmp, path)


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial.csv")


def meta_path(out: Path) -> Path:
    return out.with_name(out.name + ".meta.json")


def default_out(recipe_name: str) -> Path:
    return HERE / f"nb201_digits_{recipe_name}.csv.gz"


# ---------------------------------------------------------------------------------------------
# Meta data.


def new_meta(recipe_name: str, recipe: Recipe, seed: int) -> dict[str, Any]:
    return {
        "space": SPACE,
        "task": TASK,
        "recipe_name": recipe_name,
        "recipe": recipe.to_list(),
        "recipe_fields": dataclasses.asdict(recipe),
        "seed": seed,
        "columns": list(COLUMNS),
        "runs": [],
    }


def load_meta(path: Path, recipe_name: str, recipe: Recipe, seed: int) -> dict[str, Any]:
    """The meta file, checked against the requested recipe and seed (new one if absent)."""
    if not path.exists():
        return new_meta(recipe_name, recipe, seed)
    meta: dict[str, Any] = json.loads(path.read_text())
    if meta.get("recipe") != recipe.to_list() or meta.get("seed") != seed or meta.get("space") != SPACE:
        raise TableError(
            f"{path} was made with recipe {meta.get('recipe')} seed {meta.get('seed')}, "
            f"not {recipe.to_list()} seed {seed}: use another --out"
        )
    return meta


def write_json(path: Path, obj: object) -> None:
    """Indented JSON with lists of scalars on one line, written atomically."""
    text = json.dumps(obj, indent=2)
    text = re.sub(r"\[\s*([^\[\]{}]*?)\s*\]", lambda m: "[" + re.sub(r"\s*\n\s*", " ", m.group(1)) + "]", text)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def table_header(meta: dict[str, Any], rows: int) -> list[str]:
    devices = sorted({run["device"] for run in meta["runs"]})
    header = [
        f"NAS-Bench-201 ({SPACE}) on the built-in digits task, each architecture trained once: "
        f"recipe {meta['recipe_name']} {json.dumps(meta['recipe'])} (Recipe.to_list()), training seed {meta['seed']}",
        f"rows: {rows} of {get_space(SPACE).size}; val = validation split, test = fixed held-out split; "
        "train_seconds = wall time of one training (machine-dependent)",
        f"devices: {', '.join(devices) or 'none'}; torch: {', '.join(sorted({r['torch'] for r in meta['runs']}))}; "
        "made by bench/paper/build_table.py; recipe fields and runs in the .meta.json beside this file",
    ]
    if any(d != "cpu" for d in devices):
        header.append("WARNING: rows trained on cuda are NOT bitwise reproducible (cpu rows are, per torch build and CPU)")
    else:
        header.append("cpu rows are deterministic for one torch build on one kind of CPU; cuda rows would not be")
    return header


# ---------------------------------------------------------------------------------------------
# Training (runs in the workers).

_worker_state: dict[str, Any] = {}


def _worker_init(ignore_sigint: bool) -> None:
    if ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
        _die_with_parent()
    import torch

    torch.set_num_threads(1)
    from consensus.engines.ponas.data import digits_splits

    _worker_state["splits"] = digits_splits()


def train_one(index: int, recipe_list: list[int | str], seed: int, device: str) -> Row:
    """Train and score one architecture (in a worker, or in-process when ``--workers 1``)."""
    from consensus.engines.ponas.train import score, train

    if "splits" not in _worker_state:
        _worker_init(False)
    splits = _worker_state["splits"]
    recipe = Recipe.from_list(recipe_list)
    genotype = get_space(SPACE).encode(index)
    start = time.perf_counter()
    model, _ = train(SPACE, genotype, recipe, seed, train_data=splits.train, device=device)
    seconds = time.perf_counter() - start
    return Row(
        index,
        genotype,
        score(model, splits.validation),
        len(splits.validation),
        score(model, splits.held_out),
        len(splits.held_out),
        seconds,
    )


def _die_with_parent() -> None:
    """Linux: have the kernel send SIGTERM to this worker when its parent dies (no orphans)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------------------------------------
# Index selection.


def sample_indices(n: int, seed: int = SAMPLE_SEED) -> list[int]:
    """A seeded uniform sample of ``n`` distinct indices, sorted."""
    return sorted(random.Random(seed).sample(range(get_space(SPACE).size), n))


def parse_indices(spec: str) -> list[int]:
    """``"0-9,100,200-204"`` -> indices (ranges inclusive)."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    size = get_space(SPACE).size
    bad = [i for i in out if not 0 <= i < size]
    if bad:
        raise ValueError(f"indices out of range: {bad[:5]}")
    return out


def run_order(indices: Iterable[int], order: str) -> list[int]:
    todo = sorted(set(indices))
    if order == "shuffled":
        random.Random(ORDER_SEED).shuffle(todo)
    return todo


# ---------------------------------------------------------------------------------------------
# The build.


class Progress:
    """Rows done / total, rate and ETA on stderr, at most every ``every`` seconds."""

    def __init__(self, total: int, done_before: int, stream: TextIO, every: float = 5.0) -> None:
        self.total = total
        self.done_before = done_before
        self.new = 0
        self.stream = stream
        self.every = every
        self.start = time.monotonic()
        self.last = 0.0

    def tick(self) -> None:
        self.new += 1
        self.report()

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.start
        rate = self.new / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done_before - self.new
        eta = str(datetime.timedelta(seconds=int(left / rate))) if rate > 0 else "?"
        self.stream.write(
            f"[build_table] {self.done_before + self.new}/{self.total} rows ({self.new} this run), "
            f"{rate:.2f} arch/s, ETA {eta}\n"
        )
        self.stream.flush()


def build(
    recipe_name: str,
    out: Path,
    indices: Sequence[int] | None = None,
    *,
    workers: int = 1,
    device: str = "cpu",
    limit: int | None = None,
    seed: int = 0,
    order: str = "shuffled",
    flush_every: int = 200,
    progress_every: float = 5.0,
    stream: TextIO = sys.stderr,
) -> dict[int, Row]:
    """Train every index of ``indices`` (default: the whole space) not yet in ``out``; return
    all rows of the table (old and new). See the module docstring for the files."""
    recipe = RECIPES[recipe_name]
    size = get_space(SPACE).size
    wanted = list(range(size)) if indices is None else list(indices)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = load_meta(meta_path(out), recipe_name, recipe, seed)

    rows = read_table(out)
    partial = partial_path(out)
    from_partial, good = read_partial(partial)
    rows.update(from_partial)
    # Rewrite the working file from every known row, which drops a torn last line and carries
    # over the rows of a committed table (a fresh checkout has no working file).
    if good != (partial.stat().st_size if partial.exists() else 0) or len(from_partial) != len(rows):
        tmp = partial.with_name(partial.name + ".tmp")
        tmp.write_text("".join(rows[i].line() for i in sorted(rows)))
        os.replace(tmp, partial)

    todo = [i for i in run_order(wanted, order) if i not in rows]
    if limit is not None:
        todo = todo[: max(0, limit)]
    wanted_set = set(wanted)
    done_wanted = sum(1 for i in rows if i in wanted_set)
    stream.write(
        f"[build_table] recipe {recipe_name} {recipe.to_list()} seed {seed} device {device} workers {workers}: "
        f"{len(rows)} rows in {out.name}, {done_wanted}/{len(wanted_set)} of the requested done, {len(todo)} to train now\n"
    )
    stream.flush()

    import torch

    run_info: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "cuda_device": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "cpu": cpu_name(),
        "machine": platform.machine(),
        "workers": workers,
        "rows_added": 0,
        "seconds": 0.0,
        "complete": False,
    }
    if not todo:
        if rows and not out.exists():
            meta["runs"].append(run_info)
            _finish(out, meta, rows, run_info, time.monotonic())
        return rows
    meta["runs"].append(run_info)
    progress = Progress(len(wanted_set), done_wanted, stream, progress_every)
    started = time.monotonic()
    since_flush = 0
    recipe_list = recipe.to_list()

    with open(partial, "a", encoding="utf-8") as work:

        def record(row: Row) -> None:
            nonlocal since_flush
            work.write(row.line())  # one write per row
            work.flush()
            rows[row.index] = row
            run_info["rows_added"] += 1
            since_flush += 1
            if since_flush >= flush_every:
                since_flush = 0
                _finish(out, meta, rows, run_info, started)
            progress.tick()

        try:
            if workers <= 1:
                torch.set_num_threads(1)
                for index in todo:
                    record(train_one(index, recipe_list, seed, device))
            else:
                ctx = mp.get_context("spawn")
                with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(True,)) as pool:
                    pending: set[Future[Row]] = set()
                    it = iter(todo)
                    try:
                        for index in it:
                            pending.add(pool.submit(train_one, index, recipe_list, seed, device))
                            if len(pending) >= 4 * workers:
                                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                                for fut in done:
                                    record(fut.result())
                        while pending:
                            done, pending = wait(pending, return_when=FIRST_COMPLETED)
                            for fut in done:
                                record(fut.result())
                    except BaseException:
                        for fut in pending:
                            fut.cancel()
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise
        except KeyboardInterrupt:
            stream.write("[build_table] interrupted: writing the table of the rows done so far\n")
            _finish(out, meta, rows, run_info, started)
            progress.report(force=True)
            raise
    _finish(out, meta, rows, run_info, started)
    progress.report(force=True)
    return rows


def _finish(out: Path, meta: dict[str, Any], rows: dict[int, Row], run_info: dict[str, Any], started: float) -> None:
    run_info["seconds"] = round(time.monotonic() - started, 1)
    run_info["complete"] = len(rows) == get_space(SPACE).size
    meta["rows"] = len(rows)
    meta["complete"] = run_info["complete"]
    write_table(out, rows, table_header(meta, len(rows)))
    write_json(meta_path(out), meta)


# ---------------------------------------------------------------------------------------------
# CLI.


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--recipe", choices=sorted(RECIPES), default="regtest", help="training recipe (default regtest)")
    p.add_argument("--out", type=Path, default=None, help="table path (default bench/paper/nb201_digits_<recipe>.csv.gz)")
    p.add_argument("--workers", type=int, default=1, help="training processes, one thread each (default 1)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda rows are not bitwise reproducible")
    p.add_argument("--limit", type=int, default=None, help="train at most this many more architectures this run")
    p.add_argument("--seed", type=int, default=0, help="declared training seed (default 0)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--indices", type=str, default=None, help='only these indices, e.g. "0-99,500"')
    g.add_argument("--sample", type=int, default=None, help="only a seeded random sample of this many indices (seed --sample-seed)")
    p.add_argument("--sample-seed", type=int, default=SAMPLE_SEED, help=f"seed of --sample (default {SAMPLE_SEED})")
    p.add_argument("--order", choices=("shuffled", "index"), default="shuffled", help="training order (default shuffled)")
    p.add_argument("--flush-every", type=int, default=200, help="rewrite the gz table every N new rows (default 200)")
    p.add_argument("--progress-every", type=float, default=5.0, help="seconds between progress lines (default 5)")
    args = p.parse_args(argv)
    # SIGINT and SIGTERM both stop the run cleanly (the table is rewritten from the rows done).
    # A shell starts background jobs with SIGINT ignored, so install the handler explicitly.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: CUDA is not available here")
    if args.workers < 1:
        p.error("--workers must be at least 1")
    out: Path = args.out if args.out is not None else default_out(args.recipe)
    indices: list[int] | None = None
    if args.indices is not None:
        indices = parse_indices(args.indices)
    elif args.sample is not None:
        indices = sample_indices(args.sample, args.sample_seed)
    try:
        rows = build(
            args.recipe,
            out,
            indices,
            workers=args.workers,
            device=args.device,
            limit=args.limit,
            seed=args.seed,
            order=args.order,
            flush_every=max(1, args.flush_every),
            progress_every=args.progress_every,
        )
    except KeyboardInterrupt:
        return 130
    except TableError as e:
        print(f"build_table: {e}", file=sys.stderr)
        return 2
    print(f"{out}: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
