"""``ponas nas``: look at a search space and train one architecture the way a miner would.

* ``ponas nas info`` describes a space (size, operations and edges, or widths and depths) and,
  with ``--subspaces N``, the N near-equal contiguous subspaces a pool manager would hand out.
* ``ponas nas train`` trains one genotype with a chain preset's pinned recipe and a declared
  seed (exactly what a retrain verification replays), and reports its validation score, size,
  weights hash and training time; ``--out`` writes the canonical safetensors weights. With
  ``--genesis FILE`` it uses that chain's task instead of a preset's: for a ``mnist1d`` chain,
  exactly (pinned kernels) on the training set of ``--epoch`` (the data derive from the genesis
  hash), so the weights hash is the one every verifier's retrain gives.

The work is done by :func:`space_info`, :func:`check_training` and :func:`train_candidate`,
which return plain data; the command functions only parse, call and print. Library errors
(genotype, recipe, weights, data) are re-raised as :class:`~consensus.errors.ConsensusError` with the same reason code,
which ``ponas`` prints as ``error: REASON: detail`` and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from consensus.errors import ConsensusError
from consensus.files import write_bytes_atomic
from consensus.params import DEFAULT_TASK, PRESETS, TASKS, ChainParams, load_params

__all__ = ["register_nas", "task_info", "space_info", "check_training", "train_candidate", "TrainingJob", "TrainReport", "ProgressBar"]

_SPACE_NAMES = ("nb201", "nb201-1d", "mlp")
_MAX_SEED = (1 << 64) - 1


def _as_consensus_error(exc: Exception) -> ConsensusError:
    """A library error (``GenotypeError``, ``RecipeError``, ...) as a ConsensusError, same reason."""
    reason = getattr(exc, "reason", "bad-args")
    detail = getattr(exc, "detail", str(exc))
    return ConsensusError(reason, detail)


# --- the work -----------------------------------------------------------------------------------


def task_info(task: str, preset: str = "devnet") -> dict[str, Any]:
    """What a chain of ``task`` (``preset``'s sizes) trains on and how it is scored."""
    from consensus.engines.ponas.model import NB201_1D_CELLS, NB201_1D_CHANNELS
    from consensus.params import preset_params

    ponas = preset_params(preset, task=task, genesis_time=0).ponas  # bad-preset, bad-task
    info: dict[str, Any] = {"task": task, "preset": preset, "space": ponas.space, "recipe": ponas.recipe,
                            "test_set_size": ponas.test_set_size}
    if task == "mnist1d":
        info |= {
            "input": "40-point sequences (MNIST-1D: ten 12-point templates padded, scaled, sheared, translated, "
                     "noised; generated bit-exactly from the chain)",
            "network": f"stem, {NB201_1D_CELLS} cell(s) at {NB201_1D_CHANNELS} channels, stride-2 reduction, "
                       f"{NB201_1D_CELLS} cell(s) at {2 * NB201_1D_CHANNELS}, global average pool, linear",
            "train_size": ponas.train_size, "validation_size": ponas.validation_size,
            "epoch_rounds": ponas.epoch_rounds,
            "data": "per task epoch (epoch_rounds rounds) the generator's parameters, training set and validation "
                    "split derive from the genesis hash; each round's test set from the round's revealed key",
            "scoring": "exact: correct answers of the round's test set, recomputed bit-exactly by every node "
                       "(pinned CPU kernels); retrain check: the same weights hash",
        }
    else:
        info |= {
            "input": "8x8 images (scikit-learn's digits)",
            "data": "fixed public train / validation split; test sets drawn from the held-out digits by round key",
            "scoring": f"correct answers of the round's test set, within {ponas.score_tolerance} samples",
        }
    return info


def space_info(space_name: str, subspaces: int | None = None) -> dict[str, Any]:
    """A plain description of the space ``space_name`` and, if asked, its ``subspaces`` pieces.

    Raises ``unknown-space`` and ``bad-subspace`` (N outside ``1..size``) as ConsensusError.
    """
    from consensus.engines.ponas.space import (
        MLP_MAX_DEPTH,
        MLP_WIDTHS,
        NB201_EDGES,
        NB201_OPS,
        GenotypeError,
        MLPSpace,
        NB201Space,
        get_space,
    )

    try:
        space = get_space(space_name)
        if subspaces is not None and not 1 <= subspaces <= space.size:
            raise GenotypeError("bad-subspace", f"N must be 1..{space.size} (the space's size), got {subspaces}")
        pieces = space.partition(subspaces) if subspaces is not None else None
    except GenotypeError as exc:
        raise _as_consensus_error(exc) from None
    info: dict[str, Any] = {"space": space.name, "size": space.size}
    if isinstance(space, NB201Space):
        info["operations"] = list(NB201_OPS)
        info["edges"] = [f"{a}->{b}" for a, b in NB201_EDGES]
        info["genotype_format"] = "|e0~0|+|e1~0|e2~1|+|e3~0|e4~1|e5~2|  (edge k's operation, ~i = from node i)"
    elif isinstance(space, MLPSpace):
        info["widths"] = list(MLP_WIDTHS)
        info["depths"] = [1, MLP_MAX_DEPTH]
        info["genotype_format"] = "mlp:W1-W2-...  (hidden widths, first layer first)"
    info["first"] = space.encode(0)
    info["last"] = space.encode(space.size - 1)
    if pieces is not None:
        info["subspaces"] = [
            {"index": k, "start": s.start, "stop": s.stop, "size": s.size, "description": s.describe()}
            for k, s in enumerate(pieces)
        ]
    return info


@dataclass(frozen=True, slots=True)
class TrainReport:
    """What one training produced."""

    space: str
    genotype: str
    index: int  # the genotype's position in the space's order
    preset: str
    recipe: dict[str, Any]
    seed: int
    validation_correct: int
    validation_total: int
    parameters: int
    weights_hash: str  # hex sha256 of the canonical weights bytes
    weights_bytes: int
    train_seconds: float

    @property
    def validation_percent(self) -> float:
        return 100.0 * self.validation_correct / self.validation_total if self.validation_total else 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["validation_percent"] = round(self.validation_percent, 2)
        out["train_seconds"] = round(self.train_seconds, 3)
        return out


@dataclass(frozen=True, slots=True)
class TrainingJob:
    """A checked request: the space, the genotype's index and the preset's pinned recipe."""

    space_name: str
    genotype: str
    index: int
    preset: str
    recipe_name: str
    recipe: Any  # consensus.engines.ponas.recipe.Recipe
    seed: int
    data: Any = None  # consensus.engines.ponas.mnist1d.ChainData of a mnist1d chain; None: digits
    epoch: int = 0


def check_training(
    genotype: str, preset: str | None, seed: int = 0, space_name: str | None = None, *,
    genesis: ChainParams | None = None, epoch: int = 0, task: str | None = None,
) -> TrainingJob:
    """Check a training request before any work: ``bad-seed``, ``bad-preset``, ``bad-task``,
    ``unknown-space``, ``bad-genotype``, ``bad-epoch``. ``space_name`` defaults to the task's
    space. The task is ``genesis``'s chain's when given (``preset`` is then only a label), else
    ``task`` (default ``DEFAULT_TASK``) on ``preset``'s reference chain (genesis time
    ``REFERENCE_GENESIS_TIME``, the preset's default beacon: for ``mnist1d`` the data bench/paper's
    score tables were built on)."""
    from consensus.engines.ponas.recipe import PRESETS as RECIPES
    from consensus.engines.ponas.space import GenotypeError, get_space
    from consensus.params import REFERENCE_GENESIS_TIME, preset_params

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MAX_SEED:
        raise ConsensusError("bad-seed", f"seed {seed!r} not in 0..2**64-1")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= _MAX_SEED:
        raise ConsensusError("bad-epoch", f"epoch {epoch!r} not in 0..2**64-1")
    if genesis is not None:
        if genesis.engine != "ponas":
            raise ConsensusError("bad-genesis", f"the chain's engine is {genesis.engine}, not ponas")
        label = preset or genesis.chain_id
    elif preset is None:
        raise ConsensusError("bad-preset", "give --preset or --genesis")
    else:
        genesis = preset_params(preset, task=task, genesis_time=REFERENCE_GENESIS_TIME)  # bad-preset, bad-task
        label = preset
    ponas = genesis.ponas
    data = None
    if ponas.task == "mnist1d":
        from consensus.chain import genesis_block
        from consensus.engines.ponas.mnist1d import ChainData

        data = ChainData(genesis_block(genesis).header.hash(), ponas.train_size, ponas.validation_size,
                         ponas.test_set_size, ponas.epoch_rounds)
    try:
        space = get_space(space_name or ponas.space)
        index = space.decode(genotype)
    except GenotypeError as exc:
        raise _as_consensus_error(exc) from None
    if data is not None and space.name != "nb201-1d":
        raise ConsensusError("unknown-space", f"the mnist1d task trains nb201-1d, not {space.name}")
    return TrainingJob(space.name, genotype, index, label, ponas.recipe, RECIPES[ponas.recipe], seed, data, epoch)


def train_candidate(job: TrainingJob, progress: Any = None) -> tuple[TrainReport, bytes]:
    """Train a checked job from scratch (the pinned recipe, the declared seed, the public
    training data: what a retrain verification replays); return (report, weights bytes).
    A mnist1d job trains exactly: the process must not have run torch before (it pins here)."""
    from consensus.engines.ponas.model import parameter_count
    from consensus.engines.ponas.train import train_for_task
    from consensus.engines.ponas.weights import weights_hash

    start = time.perf_counter()
    trained = train_for_task(job.space_name, job.genotype, job.recipe, job.seed, data=job.data, epoch=job.epoch,
                             progress=progress)
    seconds = time.perf_counter() - start
    model, weights = trained.model, trained.weights
    correct, total = trained.validation_correct, trained.validation_total
    report = TrainReport(
        space=job.space_name,
        genotype=job.genotype,
        index=job.index,
        preset=job.preset,
        recipe={"name": job.recipe_name, **asdict(job.recipe)},
        seed=job.seed,
        validation_correct=correct,
        validation_total=total,
        parameters=parameter_count(model),
        weights_hash=weights_hash(weights).hex(),
        weights_bytes=len(weights),
        train_seconds=seconds,
    )
    return report, weights


class ProgressBar:
    """Training progress on ``stream`` (stderr): a bar redrawn with ``\\r`` on a terminal, else
    one plain line every few epochs (about ten lines per training, and always the last epoch)."""

    WIDTH = 24

    def __init__(self, stream: TextIO | None = None, label: str = "training") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = label
        self.start = time.perf_counter()
        self.drawn = 0

    def __call__(self, epoch: int, epochs: int, loss: float) -> None:
        elapsed = time.perf_counter() - self.start
        text = f"{self.label} epoch {epoch:>{len(str(epochs))}}/{epochs}  loss {loss:.4f}  {elapsed:6.1f}s"
        if self.tty:
            filled = self.WIDTH * epoch // epochs
            line = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {text}"
            self.stream.write("\r" + line.ljust(self.drawn))
            self.drawn = len(line)
        elif epoch == epochs or epoch % max(1, epochs // 10) == 0:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End a redrawn line (so what follows starts on a fresh one)."""
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = 0


# --- the commands -------------------------------------------------------------------------------


def register_nas(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("nas", help="explore a search space; train one architecture")
    nsub = p.add_subparsers(dest="nas_command", metavar="ACTION")
    nsub.required = True
    info = nsub.add_parser("info", help="describe a search space and its subspaces")
    info.add_argument("--task", choices=TASKS, default=DEFAULT_TASK, help=f"the chain task (default {DEFAULT_TASK})")
    info.add_argument("--space", choices=_SPACE_NAMES, help="default: the task's space")
    info.add_argument("--subspaces", type=int, metavar="N", help="also list the N near-equal subspaces")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_nas_info)
    tr = nsub.add_parser(
        "train",
        help="train one genotype with a preset's pinned recipe",
        description="Train GENOTYPE from scratch with the preset's pinned recipe and the declared "
        "seed (what a retrain verification replays); print its validation score, parameter count, "
        "weights hash and training time.",
    )
    tr.add_argument("--genotype", required=True, help="canonical genotype, e.g. '|nor_conv_3x3~0|+|...|'")
    tr.add_argument("--preset", choices=PRESETS, help="chain preset whose recipe and data to use (its reference chain)")
    tr.add_argument("--task", choices=TASKS, default=DEFAULT_TASK,
                    help=f"the preset's task (default {DEFAULT_TASK}; ignored with --genesis)")
    tr.add_argument("--genesis", metavar="FILE", help="train for this chain's task instead (mnist1d: exactly, on "
                    "the data derived from its genesis)")
    tr.add_argument("--epoch", type=int, default=0, help="mnist1d: the task epoch whose training set to use (default 0)")
    tr.add_argument("--seed", type=int, default=0, help="declared training seed (default 0)")
    tr.add_argument("--space", choices=_SPACE_NAMES, help="default: the task's space (nb201-1d for mnist1d; nb201 for digits)")
    tr.add_argument("--out", metavar="FILE", help="write the safetensors weights here")
    tr.add_argument("--json", action="store_true")
    tr.set_defaults(func=cmd_nas_train)


def cmd_nas_info(args: argparse.Namespace) -> int:
    task = task_info(args.task)
    info = space_info(args.space or task["space"], args.subspaces)
    if args.json:
        print(json.dumps({**info, "task": task}, indent=2))
        return 0
    print(f"task        {task['task']}: {task['input']}")
    for name in ("network", "data", "scoring"):
        if name in task:
            print(f"{name:<11} {task[name]}")
    sizes = ", ".join(f"{k.removesuffix('_size')} {task[k]:,}" for k in ("train_size", "validation_size", "test_set_size")
                      if k in task)
    print(f"{task['preset']:<11} {sizes}; recipe {task['recipe']}"
          + (f"; {task['epoch_rounds']} rounds per task epoch" if "epoch_rounds" in task else ""))
    print(f"space       {info['space']}")
    print(f"size        {info['size']:,} architectures")
    if "operations" in info:
        print(f"operations  {', '.join(info['operations'])}")
        print(f"edges       {', '.join(info['edges'])}")
    else:
        print(f"widths      {', '.join(map(str, info['widths']))}")
        print(f"depths      {info['depths'][0]}..{info['depths'][1]} hidden layers")
    print(f"genotype    {info['genotype_format']}")
    print(f"first       {info['first']}")
    print(f"last        {info['last']}")
    if "subspaces" in info:
        pieces = info["subspaces"]
        print(f"\n{len(pieces)} subspaces:")
        print(f"{'#':>4}  {'range':>15}  {'size':>6}  description")
        for s in pieces:
            span = f"[{s['start']}, {s['stop']})"
            print(f"{s['index']:>4}  {span:>15}  {s['size']:>6}  {s['description']}")
    return 0


def cmd_nas_train(args: argparse.Namespace) -> int:
    if args.out and os.path.exists(args.out):
        raise ConsensusError("file-exists", f"{args.out} exists; remove it or choose another --out")
    if args.out and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise ConsensusError("bad-out", f"no directory for {args.out}")
    genesis = load_params(args.genesis) if args.genesis else None
    job = check_training(args.genotype, args.preset, args.seed, args.space, genesis=genesis, epoch=args.epoch,
                         task=args.task)
    if job.data is not None:
        from consensus.engines.ponas.exact import pin_kernels

        pin_kernels()  # exact training: before the process's first torch operation
    import consensus.engines.ponas.train  # noqa: F401 - load torch before the bar's clock starts

    bar = ProgressBar(sys.stderr)
    try:
        report, weights = train_candidate(job, progress=bar)
    finally:
        bar.close()
    if args.out:
        try:
            write_bytes_atomic(args.out, weights)
        except OSError as exc:
            raise ConsensusError("write-failed", f"{args.out}: {exc}") from None
    if args.json:
        out = report.to_json()
        out["out"] = args.out
        print(json.dumps(out, indent=2))
        return 0
    r = report
    recipe = r.recipe
    print(f"architecture   {r.genotype}  ({r.space} #{r.index})")
    print(
        f"recipe         {r.preset}: {recipe['epochs']} epochs, batch {recipe['batch_size']}, "
        f"{recipe['optimiser']} lr {recipe['lr_ppm'] / 1e6:g} ({recipe['schedule']}), seed {r.seed}"
        + (" (orders the samples; the initial weights are the epoch's)" if recipe.get("shared_init") else "")
    )
    print(f"validation     {r.validation_correct} / {r.validation_total} correct ({r.validation_percent:.2f}%)")
    print(f"parameters     {r.parameters:,}")
    print(f"weights hash   {r.weights_hash}")
    print(f"weights size   {r.weights_bytes:,} bytes")
    print(f"training time  {r.train_seconds:.2f} s")
    if args.out:
        print(f"wrote {args.out}")
    return 0
