"""Deterministic training and integer scoring.

Training is a pure function of (space, genotype, recipe, declared seed, training data) on CPU:

- it runs inside :func:`deterministic_cpu`: one intra-op thread and
  ``torch.use_deterministic_algorithms(True)``, restored when the last concurrent training
  in the process ends (the settings are process-global);
- one ``torch.Generator`` seeded with :func:`derive_seed` (sha256 of the recipe seed and the
  declared seed) initialises the weights (:func:`.model.initialize`) and then draws the
  per-epoch shuffles (``torch.randperm``); torch's global RNG is never read;
- each epoch visits the samples in a fresh random order in batches of ``batch_size``; the last
  partial batch of an epoch is dropped when the data holds at least one full batch (the next
  shuffle reaches those samples), because a tiny last batch makes BatchNorm statistics noisy;
- loss: mean cross-entropy; the learning rate of each step comes from
  :meth:`.recipe.Recipe.lr_at`.

Bitwise equality is guaranteed for the same torch build on the same kind of CPU; across CPU
instruction sets or torch versions floating-point kernels may round differently, which is why
retrain verification compares scores within a tolerance counted in test samples.

Scoring is integer: :func:`evaluate` counts correct predictions. A sample whose logits are not
all finite counts as wrong, and ties between equal maximal logits go to the lowest class
(``torch.argmax`` semantics on finite values), so the count is well defined.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset, digits_splits, to_tensors
from .model import build_model
from .recipe import Recipe
from .weights import serialize_weights

__all__ = [
    "ProgressCallback",
    "deterministic_cpu",
    "derive_seed",
    "train",
    "evaluate",
    "score",
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

    The settings are process-wide, so the context is counted: when several threads train at
    once (a node verifying while a miner in the same process trains), the first to enter saves
    the previous settings and the last to leave restores them.
    """
    global _settings_depth, _settings_saved
    with _settings_lock:
        if _settings_depth == 0:
            _settings_saved = (
                torch.get_num_threads(),
                torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
            )
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(True)
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
    generator = torch.Generator().manual_seed(derive_seed(recipe.seed, seed))
    on_cpu = torch.device(device).type == "cpu"
    guard = deterministic_cpu() if on_cpu else contextlib.nullcontext()
    with guard:
        model = build_model(
            space_name, genotype, 10, data.shape, generator=generator
        )
        model.to(device).train()
        x, y = to_tensors(data, device)
        optimiser = _make_optimiser(model, recipe)
        n = len(data)
        batch = min(recipe.batch_size, n)
        steps_per_epoch = n // batch
        total = steps_per_epoch * recipe.epochs
        step = 0
        for epoch in range(recipe.epochs):
            order = torch.randperm(n, generator=generator).to(device)
            loss_sum = 0.0
            for b in range(steps_per_epoch):
                idx = order[b * batch : (b + 1) * batch]
                for group in optimiser.param_groups:
                    group["lr"] = recipe.lr_at(step, total)
                optimiser.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x[idx]), y[idx])
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                loss_sum += float(loss.detach())
                step += 1
            if progress is not None:
                progress(epoch + 1, recipe.epochs, loss_sum / max(1, steps_per_epoch))
        model = model.to("cpu").eval()
        weights = serialize_weights(model)
    return model, weights


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
    correct = 0
    with deterministic_cpu(), torch.inference_mode():
        for start in range(0, len(data), _EVAL_BATCH):
            logits = model(xt[start : start + _EVAL_BATCH])
            finite = torch.isfinite(logits).all(dim=1)
            pred = torch.argmax(torch.nan_to_num(logits), dim=1)
            ok = (pred == yt[start : start + _EVAL_BATCH]) & finite
            correct += int(ok.sum())
    return correct


def validation_score(model: nn.Module, validation: Dataset | None = None) -> int:
    """Correct predictions on the validation split (default: the built-in task's)."""
    return score(model, validation if validation is not None else digits_splits().validation)

