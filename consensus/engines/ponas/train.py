"""Deterministic training and integer scoring.

Training is a pure function of (space, genotype, recipe, declared seed, training data) on CPU:

- it runs inside :func:`deterministic_cpu`: one intra-op thread and
  ``torch.use_deterministic_algorithms(True)``, restored when the last concurrent training
  in the process ends (the settings are process-global);
- one ``torch.Generator`` seeded with :func:`derive_seed` (sha256 of the recipe seed and the
  declared seed) initialises the weights (:func:`.model.initialize`) and then draws the
  per-epoch shuffles (``torch.randperm``); torch's global RNG is never read. With
  ``recipe.shared_init`` a generator seeded with :func:`init_seed` (the recipe seed and the
  training set) initialises the weights instead, and the declared seed's generator draws only
  the shuffles;
- each epoch visits the samples in a fresh random order in batches of ``batch_size``; the last
  partial batch of an epoch is dropped when the data holds at least one full batch (the next
  shuffle reaches those samples), because a tiny last batch makes BatchNorm statistics noisy;
- loss: mean cross-entropy; the learning rate of each step comes from
  :meth:`.recipe.Recipe.lr_at`.

Bitwise equality is guaranteed for the same torch build on the same kind of CPU; across CPU
instruction sets or torch versions floating-point kernels may round differently, which is why
retrain verification compares scores within a tolerance counted in test samples.
The sequence path (:func:`train_sequences`, :func:`score_sequences`: the 1-D network on
MNIST-1D's int16 sequences) runs inside :func:`.exact.exact_cpu` instead, which pins the
kernels so that the weights and scores are the same bytes on every covered x86-64 machine.

Scoring is integer: :func:`evaluate` counts correct predictions. A sample whose logits are not
all finite counts as wrong, and ties between equal maximal logits go to the lowest class
(``torch.argmax`` semantics on finite values), so the count is well defined.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .data import Dataset, digits_splits, to_tensors
from .exact import exact_cpu
from .model import build_model, sequence_input
from .recipe import Recipe
from .weights import serialize_weights

if TYPE_CHECKING:
    from .mnist1d import ChainData

__all__ = [
    "ProgressCallback",
    "deterministic_cpu",
    "derive_seed",
    "init_seed",
    "train",
    "train_sequences",
    "Trained",
    "train_for_task",
    "evaluate",
    "score",
    "score_sequences",
    "validation_score",
]

ProgressCallback = Callable[[int, int, float], None]
"""``progress(epochs_done, epochs_total, mean_training_loss_of_that_epoch)``."""

_EVAL_BATCH = 1024


_settings_lock = threading.Lock()
_settings_depth = 0
_settings_saved: tuple[int, bool, bool] = (1, False, False)


@contextlib.contextmanager
def deterministic_cpu(threads: int = 1) -> Iterator[None]:
    """Run the body with ``threads`` intra-op threads and deterministic algorithms; restore after.

    Deterministic algorithms are a process-wide setting, so the context is counted: when
    several threads train at once (a node verifying while it scores a candidate), the first to
    enter saves the previous settings and the last to leave restores them. The thread count is
    set by every thread that enters, for itself: under OpenMP each thread has its own count, and
    a worker thread that had run torch before another thread set one thread kept two. Found in a
    loaded devnet: a node's retrain then ran each operation on two OpenMP threads, one of them
    starved by the miners, and a 3 s retrain took minutes.
    """
    global _settings_depth, _settings_saved
    with _settings_lock:
        if _settings_depth == 0:
            _settings_saved = (
                torch.get_num_threads(),
                torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
            )
            torch.use_deterministic_algorithms(True)
        torch.set_num_threads(threads)  # this thread's own count (see above)
        _settings_depth += 1
    try:
        yield
    finally:
        with _settings_lock:
            _settings_depth -= 1
            if _settings_depth == 0:
                prev_threads, prev_det, prev_warn = _settings_saved
                torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
                torch.set_num_threads(prev_threads)


class _ModelTurns:
    """Turns for model work in one process: one thread at a time, scoring before training.

    Torch work of two threads of one process (a node scoring a candidate while it retrains
    another; a solo miner scoring its commitments while it trains) slows both beyond sharing a
    core. Measured, scoring 5,000 MNIST-1D samples with the pinned kernels beside a training
    thread: on a quiet 2-core machine 0.69 s alone, 1.35 s beside it, 0.63 s taking turns; on the
    same machine running the demo devnet, 2.4 s alone and 23 s beside it. So model work takes
    turns: a training holds one for an optimiser step, a scoring for one batch. Scoring is what
    a deadline waits for (a reveal, a candidate's check), so a waiting scoring goes first;
    trainings go first come, first served (a plain lock would let one take it back step after
    step)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._busy = False
        self._scorings_waiting = 0
        self._queue: collections.deque[object] = collections.deque()

    @contextlib.contextmanager
    def turn(self, scoring: bool = False) -> Iterator[None]:
        with self._cond:
            if scoring:
                self._scorings_waiting += 1
                while self._busy:
                    self._cond.wait()
                self._scorings_waiting -= 1
            else:
                ticket = object()
                self._queue.append(ticket)
                while self._busy or self._scorings_waiting or self._queue[0] is not ticket:
                    self._cond.wait()
                self._queue.popleft()
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


MODEL_TURNS = _ModelTurns()
"""The process's turns for model work (:class:`_ModelTurns`): taken per optimiser step and per
scoring batch, never held across a call out."""


def derive_seed(recipe_seed: int, seed: int) -> int:
    """The generator seed: first 8 bytes (big-endian) of
    ``sha256(b"ponas/train-seed/v1" || uint64_be(recipe_seed) || uint64_be(seed))``, top bit clear.
    """
    if not 0 <= recipe_seed < 1 << 64 or not 0 <= seed < 1 << 64:
        raise ValueError("seeds must be in 0..2**64-1")
    digest = hashlib.sha256(
        b"ponas/train-seed/v1" + recipe_seed.to_bytes(8, "big") + seed.to_bytes(8, "big")
    ).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def init_seed(recipe_seed: int, x: np.ndarray, y: np.ndarray) -> int:
    """The initial weights' generator seed of a ``shared_init`` recipe: first 8 bytes
    (big-endian) of ``sha256(b"ponas/init-seed/v1" || uint64_be(recipe_seed) || sha256(x) ||
    sha256(y))``, top bit clear, where ``x`` and ``y`` are the training inputs and labels as
    little-endian bytes (C order) after ``train_subset``. The training set is the task epoch's,
    so every cell starts from a draw of its epoch, whatever seed a miner declares."""
    if not 0 <= recipe_seed < 1 << 64:
        raise ValueError("seeds must be in 0..2**64-1")
    digest = hashlib.sha256(b"ponas/init-seed/v1" + recipe_seed.to_bytes(8, "big"))
    for a in (x, y):
        arr = np.ascontiguousarray(a)
        digest.update(hashlib.sha256(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()).digest())
    return int.from_bytes(digest.digest()[:8], "big") >> 1


def _generators(recipe: Recipe, seed: int, x: np.ndarray, y: np.ndarray) -> tuple[torch.Generator, torch.Generator]:
    """(the initial weights' generator, the shuffles' generator) of a training: one generator
    for both unless ``recipe.shared_init``."""
    shuffles = torch.Generator().manual_seed(derive_seed(recipe.seed, seed))
    if not recipe.shared_init:
        return shuffles, shuffles
    return torch.Generator().manual_seed(init_seed(recipe.seed, x, y)), shuffles


def _make_optimiser(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    params = list(model.parameters())
    if recipe.optimiser == "sgd":
        return torch.optim.SGD(
            params,
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
            foreach=False,
        )
    return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay, foreach=False)


def train(
    space_name: str,
    genotype: str,
    recipe: Recipe,
    seed: int,
    train_data: Dataset | None = None,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
) -> tuple[nn.Module, bytes]:
    """Train ``genotype`` with ``recipe`` and the declared ``seed``; return (model, weights bytes).

    ``train_data`` defaults to the built-in task's public training split; any :class:`Dataset`
    works (a leakage test trains on a round's test set). ``recipe.train_subset`` keeps only the
    first samples. The model comes back on CPU in eval mode, and the bytes are
    :func:`.weights.serialize_weights` of it. ``device`` other than ``"cpu"`` (e.g. ``"cuda"``)
    is for search only: it is not bitwise reproducible and is never used for verification.
    """
    data = (train_data if train_data is not None else digits_splits().train).subset(
        recipe.train_subset
    )
    init, shuffles = _generators(recipe, seed, np.asarray(data.x), np.asarray(data.y))
    on_cpu = torch.device(device).type == "cpu"
    guard = deterministic_cpu() if on_cpu else contextlib.nullcontext()
    with guard:
        model = build_model(
            space_name, genotype, 10, data.shape, generator=init
        )
        x, y = to_tensors(data, device)
        return _fit(model, x, y, recipe, shuffles, device, progress)


def _fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: Recipe,
    generator: torch.Generator,
    device: str,
    progress: ProgressCallback | None,
) -> tuple[nn.Module, bytes]:
    """The training loop of :func:`train` (see the module docstring); ``generator`` draws the
    shuffles (it has initialised ``model`` first unless the recipe shares the initial draw)."""
    model.to(device).train()
    optimiser = _make_optimiser(model, recipe)
    n = len(y)
    batch = min(recipe.batch_size, n)
    steps_per_epoch = n // batch
    total = steps_per_epoch * recipe.epochs
    step = 0
    params = list(model.parameters())
    averaged: list[torch.Tensor] | None = None
    averaged_steps = 0
    for epoch in range(recipe.epochs):
        order = torch.randperm(n, generator=generator).to(device)
        loss_sum = 0.0
        average = recipe.average_epochs > 0 and epoch >= recipe.epochs - recipe.average_epochs
        if average and averaged is None:
            averaged = [torch.zeros_like(p) for p in params]
        for b in range(steps_per_epoch):
            idx = order[b * batch : (b + 1) * batch]
            for group in optimiser.param_groups:
                group["lr"] = recipe.lr_at(step, total)
            with MODEL_TURNS.turn():
                optimiser.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x[idx]), y[idx])
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                loss_sum += float(loss.detach())
                if average and averaged is not None:
                    with torch.no_grad():
                        for a, p in zip(averaged, params):
                            a.add_(p)
                    averaged_steps += 1
            step += 1
        if progress is not None:
            progress(epoch + 1, recipe.epochs, loss_sum / max(1, steps_per_epoch))
    with torch.no_grad():
        if averaged is not None and averaged_steps:
            for a, p in zip(averaged, params):
                p.copy_(a / averaged_steps)
        if recipe.bn_recompute:
            _recompute_batchnorm(model, x, batch)
    model = model.to("cpu").eval()
    return model, serialize_weights(model)


def _recompute_batchnorm(model: nn.Module, x: torch.Tensor, batch: int) -> None:
    """BatchNorm running statistics as exact means over ``x`` (in order, full batches of
    ``batch``): reset, one pass in train mode without gradients with cumulative averaging
    (``momentum=None``), then each layer's momentum as it was."""
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not layers:
        return
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for start in range(0, len(x) - batch + 1, batch):
        with MODEL_TURNS.turn():
            model(x[start : start + batch])
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum


def _sequence_arrays(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = np.asarray(x), np.asarray(y)
    if xa.dtype != np.int16 or xa.ndim != 2 or ya.dtype != np.uint8 or ya.shape != (len(xa),):
        raise ValueError(f"need int16 (N, L) and uint8 (N,), got {xa.dtype}{xa.shape} {ya.dtype}{ya.shape}")
    return xa, ya


def train_sequences(
    genotype: str,
    recipe: Recipe,
    seed: int,
    x: np.ndarray,
    y: np.ndarray,
    *,
    space_name: str = "nb201-1d",
    exact: bool = True,
    progress: ProgressCallback | None = None,
) -> tuple[nn.Module, bytes]:
    """Train the 1-D network of ``genotype`` on int16 Q12 sequences ``x`` ``(N, L)`` with labels
    ``y`` (uint8), e.g. :func:`.mnist1d.generate`'s output; return (model, weights bytes).

    Same procedure as :func:`train` (seed derivation, initialisation, shuffles, dropped last
    batch, ``recipe.train_subset``); the input is :func:`.model.sequence_input` of ``x``. With
    ``exact`` (the default) it runs inside :func:`.exact.exact_cpu`, so the bytes are the same on
    every covered machine, or it raises :class:`.exact.ExactnessError`; ``exact=False`` only
    fixes threads and algorithms (reproducible on this machine and build: for search).
    """
    xa, ya = _sequence_arrays(x, y)
    if 0 < recipe.train_subset < len(ya):
        xa, ya = xa[: recipe.train_subset], ya[: recipe.train_subset]
    guard = exact_cpu() if exact else deterministic_cpu()
    with guard:
        init, shuffles = _generators(recipe, seed, xa, ya)
        model = build_model(space_name, genotype, 10, (1, 1, xa.shape[1]), generator=init)
        xt = sequence_input(xa)
        yt = torch.from_numpy(ya.astype(np.int64))
        return _fit(model, xt, yt, recipe, shuffles, "cpu", progress)


def score_sequences(
    model: nn.Module, x: np.ndarray, y: np.ndarray, *, exact: bool = True
) -> int:
    """Correct predictions of a 1-D ``model`` on int16 sequences ``x`` with labels ``y`` (an
    int), in eval mode, with the rules of :func:`score` (non-finite logits count as wrong, ties
    go to the lowest class); ``exact`` as in :func:`train_sequences`."""
    xa, ya = _sequence_arrays(x, y)
    if len(ya) == 0:
        return 0
    model.eval()
    guard = exact_cpu() if exact else deterministic_cpu()
    with guard:
        return _count_correct(model, sequence_input(xa), torch.from_numpy(ya.astype(np.int64)))


def evaluate(
    model: nn.Module, x: np.ndarray, y: np.ndarray, max_value: int = 16
) -> int:
    """Number of samples of ``(x, y)`` that ``model`` classifies correctly (an int).

    ``x``: uint8 images ``(N, C, H, W)``, scaled by ``1 / max_value`` (16 for digits, 255 for
    CIFAR) exactly as in training. The model is put in eval mode (running BatchNorm statistics),
    on CPU, one thread, deterministic algorithms.
    """
    ds = Dataset(np.ascontiguousarray(x, dtype=np.uint8), np.ascontiguousarray(y, dtype=np.uint8), max_value)
    return score(model, ds)


def score(model: nn.Module, data: Dataset) -> int:
    """Correct predictions of ``model`` on ``data`` (see :func:`evaluate`)."""
    if len(data) == 0:
        return 0
    model.eval()
    xt, yt = to_tensors(data)
    with deterministic_cpu():
        return _count_correct(model, xt, yt)


def _count_correct(model: nn.Module, xt: torch.Tensor, yt: torch.Tensor) -> int:
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(yt), _EVAL_BATCH):
            with MODEL_TURNS.turn(scoring=True):
                logits = model(xt[start : start + _EVAL_BATCH])
            finite = torch.isfinite(logits).all(dim=1)
            pred = torch.argmax(torch.nan_to_num(logits), dim=1)
            ok = (pred == yt[start : start + _EVAL_BATCH]) & finite
            correct += int(ok.sum())
    return correct


@dataclasses.dataclass(frozen=True, slots=True)
class Trained:
    """A candidate trained for the chain's task: the model, its weights bytes and its score on
    the task's validation split (``validation_correct`` of ``validation_total``)."""

    model: nn.Module
    weights: bytes
    validation_correct: int
    validation_total: int


def train_for_task(
    space_name: str,
    genotype: str,
    recipe: Recipe,
    seed: int,
    *,
    data: ChainData | None = None,
    epoch: int = 0,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
) -> Trained:
    """Train a candidate as the chain's task trains it, and score it on the validation split:
    what a miner commits and a verifier's retrain replays.

    ``data`` is a ``mnist1d`` chain's data (:class:`.mnist1d.ChainData`; None: the digits
    task). For ``mnist1d`` the training is exact, on CPU whatever ``device`` says, on the
    training set of the task epoch ``epoch``, and the kernels are pinned here first
    (:func:`.exact.pin_kernels`: the process must not have run torch before its first exact
    training). For digits, ``device`` may be a GPU (search only: not reproducible).
    """
    if data is not None:
        from .exact import pin_kernels

        pin_kernels()
        model, weights = train_sequences(genotype, recipe, seed, *data.train(epoch), space_name=space_name,
                                         progress=progress)
        vx, vy = data.validation(epoch)
        return Trained(model, weights, score_sequences(model, vx, vy), len(vy))
    model, weights = train(space_name, genotype, recipe, seed, device=device, progress=progress)
    validation = digits_splits().validation
    return Trained(model, weights, score(model, validation), len(validation))


def validation_score(model: nn.Module, validation: Dataset | None = None) -> int:
    """Correct predictions on the validation split (default: the built-in task's)."""
    return score(model, validation if validation is not None else digits_splits().validation)

