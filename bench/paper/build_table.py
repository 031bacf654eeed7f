"""Score tables of NAS-Bench-201 cells, each trained once with one recipe: digits or mnist1d.

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

The mnist1d task (``--task mnist1d``)::

    python bench/paper/build_table.py --task mnist1d --sample 3000 --workers 2    # epoch 0
    python bench/paper/build_table.py --task mnist1d --epoch 1 --sample 200

Cells of ``get_space("nb201-1d")`` (the same 15,625 indices and genotype strings as ``nb201``)
are trained with :func:`~consensus.engines.ponas.train.train_sequences` (``--recipe``, default
``mnist1d-devnet``) on the training set of task epoch ``--epoch`` of a chain: the
:class:`~consensus.engines.ponas.mnist1d.ChainData` of the genesis of
``preset_params(--data-preset, task="mnist1d", genesis_time=PAPER_GENESIS_TIME)`` (default
preset devnet: 4,000 training samples; the genesis hash is in the meta file), exactly as a miner
of that chain trains. ``val`` is the epoch's validation split (1,000 for devnet); ``test`` is a
fixed held-out set of ``--test-size`` (default 5,000) samples,
``generate(test_key(--test-key), n, ChainData.task(epoch), b"paper-test")``: the epoch's task
parameters, a key that no round uses. Every process that trains pins the exact kernels
(:func:`~consensus.engines.ponas.exact.pin_kernels`) before its first torch operation, so a row
is the same on every covered x86-64 machine with the pinned torch build (CPU only; ``--device
cuda`` is refused). ``--sample N`` takes the first N cells of a seeded shuffle of the space
(:func:`nested_sample`), so a smaller sample is part of a larger one with the same seed; it is
recorded in the meta file. Default file: ``bench/paper/nb201_mnist1d_<recipe>_e<epoch>.csv.gz``
(suffixes for a non-default seed, data preset, test key or test size).
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
from consensus.engines.ponas.recipe import (  # noqa: E402
    DEVNET,
    MNIST1D_DEVNET,
    MNIST1D_REGTEST,
    REGTEST,
    Recipe,
)
from consensus.engines.ponas.space import get_space  # noqa: E402
from consensus.params import REFERENCE_GENESIS_TIME  # noqa: E402

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
MNIST1D_RECIPES: dict[str, Recipe] = {"mnist1d-devnet": MNIST1D_DEVNET, "mnist1d-regtest": MNIST1D_REGTEST}
TASK_RECIPES: dict[str, dict[str, Recipe]] = {"digits": RECIPES, "mnist1d": MNIST1D_RECIPES}
DEFAULT_RECIPE = {"digits": "regtest", "mnist1d": "mnist1d-devnet"}

# mnist1d: the chain whose data the tables use (a preset's genesis with a fixed time, so that
# every run derives the same genesis hash), and the fixed held-out test set.
MNIST1D_SPACE = "nb201-1d"
PAPER_GENESIS_TIME = REFERENCE_GENESIS_TIME  # consensus.params: the presets' reference chains
TEST_KEY = "paper-test"
TEST_DOMAIN = b"paper-test"
TEST_SIZE = 5000
_TEST_KEY_TAG = b"ponas/paper/mnist1d-test-key/v1/"


@dataclasses.dataclass(frozen=True, slots=True)
class Mnist1dData:
    """What a mnist1d table trains and scores on (all of it is in the meta file, and a table
    refuses rows made with other values). ``genesis`` is the chain's genesis hash (hex)."""

    preset: str
    genesis: str
    train_size: int
    validation_size: int
    epoch: int
    test_key: str = TEST_KEY
    test_size: int = TEST_SIZE


def test_key(name: str) -> bytes:
    """The key of a held-out test set: ``sha256(b"ponas/paper/mnist1d-test-key/v1/" || name)``."""
    import hashlib

    return hashlib.sha256(_TEST_KEY_TAG + name.encode()).digest()


def mnist1d_data(epoch: int = 0, preset: str = "devnet", key: str = TEST_KEY, test_size: int = TEST_SIZE) -> Mnist1dData:
    """The data of ``preset``'s mnist1d chain (genesis time :data:`PAPER_GENESIS_TIME`, the
    preset's chain id, sizes and default beacon), derived as the chain derives it."""
    from consensus.chain import genesis_block
    from consensus.params import preset_params

    if epoch < 0 or test_size < 1:
        raise ValueError("epoch >= 0 and test_size >= 1")
    params = preset_params(preset, task="mnist1d", genesis_time=PAPER_GENESIS_TIME)
    ponas = params.ponas
    genesis = genesis_block(params).header.hash()
    return Mnist1dData(preset, genesis.hex(), ponas.train_size, ponas.validation_size, epoch, key, test_size)


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


def default_out(recipe_name: str, data: Mnist1dData | None = None, seed: int = 0) -> Path:
    """``nb201_digits_<recipe>.csv.gz``; for mnist1d ``nb201_mnist1d_<recipe>_e<epoch>`` and a
    suffix for each non-default choice (``_seed<S>``, ``_<preset>data``, ``_key-<name>``,
    ``_test<size>``)."""
    if data is None:
        return HERE / f"nb201_digits_{recipe_name}.csv.gz"
    name = f"nb201_mnist1d_{recipe_name.removeprefix('mnist1d-')}_e{data.epoch}"
    if seed:
        name += f"_seed{seed}"
    if data.preset != "devnet":
        name += f"_{data.preset}data"
    if data.test_key != TEST_KEY:
        name += f"_key-{data.test_key}"
    if data.test_size != TEST_SIZE:
        name += f"_test{data.test_size}"
    return HERE / f"{name}.csv.gz"


# ---------------------------------------------------------------------------------------------
# Meta data.


# The meta fields that identify what a table's rows are: a run adds rows only to a table whose
# fields all match (absent fields, as in the digits tables, match absent ones).
IDENTITY = ("space", "task", "recipe", "seed", "data")


def new_meta(recipe_name: str, recipe: Recipe, seed: int, data: Mnist1dData | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "space": SPACE if data is None else MNIST1D_SPACE,
        "task": TASK if data is None else "mnist1d",
        "recipe_name": recipe_name,
        "recipe": recipe.to_list(),
        "recipe_fields": dataclasses.asdict(recipe),
        "seed": seed,
        "columns": list(COLUMNS),
    }
    if data is not None:
        from consensus.engines.ponas.mnist1d import ChainData

        chain = ChainData(bytes.fromhex(data.genesis), data.train_size, data.validation_size, 1, 1)
        meta["data"] = dataclasses.asdict(data)
        meta["data_notes"] = {
            "genesis": f"genesis hash of preset_params({data.preset!r}, task='mnist1d', "
            f"genesis_time={PAPER_GENESIS_TIME}); train and val are ChainData(genesis, ...).train/validation(epoch)",
            "test": "generate(sha256(b'ponas/paper/mnist1d-test-key/v1/' + test_key), test_size, "
            "ChainData.task(epoch), b'paper-test')",
            "test_key_hex": test_key(data.test_key).hex(),
            "task_params": dataclasses.asdict(chain.task(data.epoch)),
        }
    meta["runs"] = []
    return meta


def load_meta(
    path: Path, recipe_name: str, recipe: Recipe, seed: int, data: Mnist1dData | None = None
) -> dict[str, Any]:
    """The meta file, checked against the requested recipe, seed and data (new one if absent)."""
    fresh = new_meta(recipe_name, recipe, seed, data)
    if not path.exists():
        return fresh
    meta: dict[str, Any] = json.loads(path.read_text())
    differ = [k for k in IDENTITY if meta.get(k) != fresh.get(k)]
    if differ:
        raise TableError(
            f"{path} was made with recipe {meta.get('recipe')} seed {meta.get('seed')} "
            f"(differs in {', '.join(differ)}), not {recipe.to_list()} seed {seed}: use another --out"
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
    made = (
        f"devices: {', '.join(devices) or 'none'}; torch: {', '.join(sorted({r['torch'] for r in meta['runs']}))}; "
        "made by bench/paper/build_table.py; recipe fields and runs in the .meta.json beside this file"
    )
    recipe = f"recipe {meta['recipe_name']} {json.dumps(meta['recipe'])} (Recipe.to_list()), training seed {meta['seed']}"
    if meta.get("task") == "mnist1d":
        data = meta["data"]
        return [
            f"NAS-Bench-201 cells ({MNIST1D_SPACE}) on mnist1d, task epoch {data['epoch']} of the {data['preset']} "
            f"preset's chain (genesis {data['genesis']}), each trained once: {recipe}",
            f"rows: {rows} of {get_space(MNIST1D_SPACE).size}; val = the epoch's validation split "
            f"({data['validation_size']}), test = held-out set of {data['test_size']} from key {data['test_key']!r}; "
            "train_seconds = wall time of one training (machine-dependent)",
            made,
            "rows trained with pinned kernels (consensus.engines.ponas.exact): bit-exact on every covered "
            "x86-64 machine with the pinned torch build",
        ]
    header = [
        f"NAS-Bench-201 ({SPACE}) on the built-in digits task, each architecture trained once: {recipe}",
        f"rows: {rows} of {get_space(SPACE).size}; val = validation split, test = fixed held-out split; "
        "train_seconds = wall time of one training (machine-dependent)",
        made,
    ]
    if any(d != "cpu" for d in devices):
        header.append("WARNING: rows trained on cuda are NOT bitwise reproducible (cpu rows are, per torch build and CPU)")
    else:
        header.append("cpu rows are deterministic for one torch build on one kind of CPU; cuda rows would not be")
    return header


# ---------------------------------------------------------------------------------------------
# Training (runs in the workers).

_worker_state: dict[str, Any] = {}


def _worker_init(ignore_sigint: bool, data: dict[str, Any] | None = None) -> None:
    if ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
        _die_with_parent()
    if data is not None:
        from consensus.engines.ponas.exact import pin_kernels

        pin_kernels()  # before this process's first torch operation
        _mnist1d_arrays(Mnist1dData(**data))
        return
    import torch

    torch.set_num_threads(1)
    from consensus.engines.ponas.data import digits_splits

    _worker_state["splits"] = digits_splits()


def _mnist1d_arrays(data: Mnist1dData) -> tuple[Any, Any, Any]:
    """(train, validation, test) of ``data``, each ``(x, y)``; cached per process."""
    cached = _worker_state.get("mnist1d")
    if cached is not None and cached[0] == data:
        return cached[1]  # type: ignore[no-any-return]
    from consensus.engines.ponas.mnist1d import ChainData, generate

    chain = ChainData(bytes.fromhex(data.genesis), data.train_size, data.validation_size, data.test_size, 1)
    test = generate(test_key(data.test_key), data.test_size, chain.task(data.epoch), TEST_DOMAIN)
    arrays = (chain.train(data.epoch), chain.validation(data.epoch), test)
    _worker_state["mnist1d"] = (data, arrays)
    return arrays


def train_one_mnist1d(index: int, recipe_list: list[int | str], seed: int, data: dict[str, Any]) -> Row:
    """Train and score one nb201-1d cell on mnist1d (exact: pins the kernels, which fails in a
    process that has already run a torch operation)."""
    from consensus.engines.ponas.exact import pin_kernels

    pin_kernels()
    from consensus.engines.ponas.train import score_sequences, train_sequences

    train, validation, test = _mnist1d_arrays(Mnist1dData(**data))
    recipe = Recipe.from_list(recipe_list)
    genotype = get_space(MNIST1D_SPACE).encode(index)
    start = time.perf_counter()
    model, _ = train_sequences(genotype, recipe, seed, *train, space_name=MNIST1D_SPACE)
    seconds = time.perf_counter() - start
    return Row(
        index,
        genotype,
        score_sequences(model, *validation),
        len(validation[1]),
        score_sequences(model, *test),
        len(test[1]),
        seconds,
    )


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


def nested_sample(n: int, seed: int = SAMPLE_SEED) -> list[int]:
    """The first ``n`` indices of ``random.Random(seed).shuffle(range(size))``, sorted: a uniform
    sample, and the samples of one seed are nested (``n = 200`` lies inside ``n = 3000``).
    (:func:`sample_indices`, kept for the digits tables, is not nested.)"""
    size = get_space(SPACE).size
    if not 0 <= n <= size:
        raise ValueError(f"sample size {n} not in 0..{size}")
    order = list(range(size))
    random.Random(seed).shuffle(order)
    return sorted(order[:n])


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
    data: Mnist1dData | None = None,
    sample: dict[str, Any] | None = None,
) -> dict[int, Row]:
    """Train every index of ``indices`` (default: the whole space) not yet in ``out``; return
    all rows of the table (old and new). See the module docstring for the files.

    ``data`` selects the mnist1d task (None: digits); ``sample`` (``{"n": .., "seed": ..,
    "method": ..}``) describes how ``indices`` were drawn, for the meta file."""
    task = "digits" if data is None else "mnist1d"
    if recipe_name not in TASK_RECIPES[task]:
        raise TableError(f"recipe {recipe_name} is not one of {task}'s: {sorted(TASK_RECIPES[task])}")
    if data is not None and device != "cpu":
        raise TableError("mnist1d rows are trained exactly, on CPU only")
    recipe = TASK_RECIPES[task][recipe_name]
    size = get_space(SPACE).size
    wanted = list(range(size)) if indices is None else list(indices)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = load_meta(meta_path(out), recipe_name, recipe, seed, data)

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
        "requested": len(set(wanted)),
        "rows_added": 0,
        "seconds": 0.0,
        "complete": False,
    }
    if sample is not None:
        run_info["sample"] = sample
        if sample.get("n", 0) > meta.get("sample", {}).get("n", -1):
            meta["sample"] = sample  # the largest sample asked of this table
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
    data_arg = None if data is None else dataclasses.asdict(data)

    def submit_args(index: int) -> tuple[Any, ...]:
        if data_arg is None:
            return (train_one, index, recipe_list, seed, device)
        return (train_one_mnist1d, index, recipe_list, seed, data_arg)

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
            if workers <= 1:  # train_one_mnist1d pins this process itself, before it trains
                torch.set_num_threads(1)
                for index in todo:
                    fn, *fn_args = submit_args(index)
                    record(fn(*fn_args))
            else:
                ctx = mp.get_context("spawn")
                with ProcessPoolExecutor(
                    workers, mp_context=ctx, initializer=_worker_init, initargs=(True, data_arg)
                ) as pool:
                    pending: set[Future[Row]] = set()
                    it = iter(todo)
                    try:
                        for index in it:
                            pending.add(pool.submit(*submit_args(index)))
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
    p.add_argument("--task", choices=tuple(TASK_RECIPES), default="digits", help="task (default digits)")
    p.add_argument(
        "--recipe",
        choices=sorted({*RECIPES, *MNIST1D_RECIPES}),
        default=None,
        help="training recipe (default regtest for digits, mnist1d-devnet for mnist1d)",
    )
    p.add_argument("--out", type=Path, default=None, help="table path (default: see the module docstring)")
    p.add_argument("--epoch", type=int, default=0, help="mnist1d: the task epoch (default 0)")
    p.add_argument(
        "--data-preset", choices=("devnet", "regtest"), default="devnet", help="mnist1d: the chain preset (default devnet)"
    )
    p.add_argument("--test-key", default=TEST_KEY, help=f"mnist1d: name of the held-out set's key (default {TEST_KEY})")
    p.add_argument("--test-size", type=int, default=TEST_SIZE, help=f"mnist1d: held-out samples (default {TEST_SIZE})")
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

    recipe_name: str = args.recipe or DEFAULT_RECIPE[args.task]
    if recipe_name not in TASK_RECIPES[args.task]:
        p.error(f"--recipe {recipe_name} is not a {args.task} recipe: {sorted(TASK_RECIPES[args.task])}")
    data: Mnist1dData | None = None
    if args.task == "mnist1d":
        if args.device != "cpu":
            p.error("--task mnist1d trains exactly, on CPU only")
        if args.epoch < 0 or args.test_size < 1:
            p.error("--epoch must be >= 0 and --test-size >= 1")
        from consensus.engines.ponas.exact import pin_kernels

        pin_kernels()  # before this process's first torch operation (it trains when --workers 1)
        data = mnist1d_data(args.epoch, args.data_preset, args.test_key, args.test_size)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: CUDA is not available here")
    if args.workers < 1:
        p.error("--workers must be at least 1")
    out: Path = args.out if args.out is not None else default_out(recipe_name, data, args.seed)
    indices: list[int] | None = None
    sample: dict[str, Any] | None = None
    if args.indices is not None:
        indices = parse_indices(args.indices)
    elif args.sample is not None:
        if data is None:
            indices = sample_indices(args.sample, args.sample_seed)
            method = "sample_indices: sorted(random.Random(seed).sample(range(15625), n))"
        else:
            indices = nested_sample(args.sample, args.sample_seed)
            method = "nested_sample: the first n of random.Random(seed).shuffle(list(range(15625))), sorted"
        sample = {"n": args.sample, "seed": args.sample_seed, "method": method}
    try:
        rows = build(
            recipe_name,
            out,
            indices,
            workers=args.workers,
            device=args.device,
            limit=args.limit,
            seed=args.seed,
            order=args.order,
            flush_every=max(1, args.flush_every),
            progress_every=args.progress_every,
            data=data,
            sample=sample,
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
