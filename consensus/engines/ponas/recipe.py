"""Training recipes: the pinned, integer-only description of how a task trains a model.

A recipe is consensus data (a task pins one; a retrain verification replays it), so it holds
no floats: rates are integers in parts per million (``lr_ppm = 50_000`` is 0.05) and are
converted to floats only inside :mod:`.train`. Its wire form is the flat list of
:meth:`Recipe.to_list` (field order as declared).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

__all__ = [
    "RecipeError", "Recipe", "REGTEST", "DEVNET", "MNIST1D_DEVNET", "MNIST1D_REGTEST", "PRESETS", "OPTIMISERS",
    "SCHEDULES",
]

OPTIMISERS = ("sgd", "adam")
SCHEDULES = ("constant", "linear")
PPM = 1_000_000

_MAX_EPOCHS = 10_000
_MAX_BATCH = 1 << 16
_MAX_SEED = (1 << 64) - 1


class RecipeError(ValueError):
    """A malformed recipe. Reason: ``bad-recipe``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True, slots=True)
class Recipe:
    """How to train: all fields are ints or short strings.

    - ``epochs`` (1..10,000), ``batch_size`` (1..65,536).
    - ``optimiser``: ``"sgd"`` (momentum, not Nesterov) or ``"adam"`` (betas 0.9 / 0.999,
      eps 1e-8, L2 weight decay added to the gradient, as ``torch.optim.Adam``).
    - ``lr_ppm``, ``momentum_ppm``, ``weight_decay_ppm``: parts per million.
    - ``schedule``: ``"constant"``, or ``"linear"``: the rate at step ``t`` of ``T`` total steps
      is ``lr_ppm * (T - t) / (PPM * T)`` (one correctly rounded division of exact integers, so
      no libm function is involved).
    - ``seed``: the recipe's own seed (0..2**64-1), mixed with the miner's declared training
      seed (see :func:`.train.derive_seed`).
    - ``train_subset``: train on the first ``train_subset`` training samples only (0 = all).
    - ``average_epochs``: 0, or the model's parameters are replaced after training by their
      mean over every optimiser step of the last ``average_epochs`` epochs (stochastic weight
      averaging, Izmailov et al. 2018; at most ``epochs``).
    - ``bn_recompute``: 0, or 1: after training (and averaging) the BatchNorm running statistics
      are recomputed as exact means over the training set in the training order of batches
      (one pass in train mode without gradients, cumulative average).
    - ``shared_init``: 0, or 1: the initial weights are drawn from the recipe's seed and the
      training set alone (:func:`.train.init_seed`), the same for every declared seed, and the
      declared seed draws only the order of the samples. A cell's score then depends on its
      genotype and the task epoch (whose training set it is) far more than on the miner's seed:
      the seed's share of a score is mostly the initial draw's (docs/task.md, trial 4).

    The last three were added later (:data:`LATER_FIELDS`): a recipe that leaves them at 0 has
    the wire form it had before they existed, so the score tables' recipes stay what they were.
    """

    epochs: int
    batch_size: int
    optimiser: str
    lr_ppm: int
    momentum_ppm: int
    weight_decay_ppm: int
    seed: int
    schedule: str = "constant"
    train_subset: int = 0
    average_epochs: int = 0
    bn_recompute: int = 0
    shared_init: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("optimiser", "schedule"):
                if not isinstance(value, str):
                    raise RecipeError("bad-recipe", f"{f.name} must be a string")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RecipeError("bad-recipe", f"{f.name} must be a non-negative int")
        if not 1 <= self.epochs <= _MAX_EPOCHS:
            raise RecipeError("bad-recipe", f"epochs {self.epochs}")
        if not 1 <= self.batch_size <= _MAX_BATCH:
            raise RecipeError("bad-recipe", f"batch_size {self.batch_size}")
        if self.optimiser not in OPTIMISERS:
            raise RecipeError("bad-recipe", f"optimiser {self.optimiser!r}")
        if self.schedule not in SCHEDULES:
            raise RecipeError("bad-recipe", f"schedule {self.schedule!r}")
        if not 1 <= self.lr_ppm <= 10 * PPM:
            raise RecipeError("bad-recipe", f"lr_ppm {self.lr_ppm}")
        if self.momentum_ppm >= PPM or self.weight_decay_ppm > PPM:
            raise RecipeError("bad-recipe", "momentum or weight decay out of range")
        if self.seed > _MAX_SEED:
            raise RecipeError("bad-recipe", "seed above 2**64-1")
        if self.average_epochs > self.epochs:
            raise RecipeError("bad-recipe", f"average_epochs {self.average_epochs} > epochs {self.epochs}")
        if self.bn_recompute not in (0, 1):
            raise RecipeError("bad-recipe", f"bn_recompute {self.bn_recompute}")
        if self.shared_init not in (0, 1):
            raise RecipeError("bad-recipe", f"shared_init {self.shared_init}")

    @property
    def lr(self) -> float:
        """Base learning rate as a float (``lr_ppm / 1e6``)."""
        return self.lr_ppm / PPM

    @property
    def momentum(self) -> float:
        return self.momentum_ppm / PPM

    @property
    def weight_decay(self) -> float:
        return self.weight_decay_ppm / PPM

    def lr_at(self, step: int, total_steps: int) -> float:
        """The learning rate used for optimiser step ``step`` (0-based) of ``total_steps``."""
        if self.schedule == "linear" and total_steps > 0:
            return (self.lr_ppm * (total_steps - step)) / (PPM * total_steps)
        return self.lr_ppm / PPM

    def to_list(self) -> list[int | str]:
        """The wire form: field values in declaration order, without the trailing
        :data:`LATER_FIELDS` that are at their default (0)."""
        items = [getattr(self, f.name) for f in fields(self)]
        base = len(items) - LATER_FIELDS
        while len(items) > base and items[-1] == 0:
            items.pop()
        return items

    @classmethod
    def from_list(cls, items: list[int | str]) -> Recipe:
        """Inverse of :meth:`to_list`; raises ``bad-recipe`` on a wrong length or field."""
        names = [f.name for f in fields(cls)]
        if not isinstance(items, (list, tuple)) or not len(names) - LATER_FIELDS <= len(items) <= len(names):
            raise RecipeError("bad-recipe", f"expected {len(names) - LATER_FIELDS} to {len(names)} fields")
        recipe = cls(**dict(zip(names, items)))  # type: ignore[arg-type]
        if recipe.to_list() != list(items):  # one wire form per recipe: no trailing zeros of later fields
            raise RecipeError("bad-recipe", "a later field written at its default")
        return recipe


LATER_FIELDS = 3
"""Trailing fields added after the first recipes (``average_epochs``, ``bn_recompute``,
``shared_init``): omitted from the wire form while 0 (from the last one back)."""


REGTEST = Recipe(
    epochs=3,
    batch_size=64,
    optimiser="sgd",
    lr_ppm=100_000,
    momentum_ppm=900_000,
    weight_decay_ppm=500,
    seed=0,
    schedule="linear",
    train_subset=0,
)
"""Tests: about 0.3 s per training on one core; validation accuracy ~70-85%, far above chance."""

DEVNET = dataclasses.replace(REGTEST, epochs=20)
"""Devnet: the regtest recipe trained longer, about 2.5 s per training on one core, so that a
verifier's retrain stays under 10% of a miner's round (bench/bench_verify.py)."""


MNIST1D_DEVNET = Recipe(
    epochs=3,
    batch_size=64,
    optimiser="sgd",
    lr_ppm=50_000,
    momentum_ppm=900_000,
    weight_decay_ppm=500,
    seed=0,
    schedule="linear",
    train_subset=0,
    shared_init=1,
)
"""MNIST-1D devnet: 3 epochs of 4,000 samples, batch 64, SGD momentum 0.9, weight decay 5e-4,
linear decay from 0.05, the initial weights drawn from the task epoch (``shared_init``: the
declared seed draws only the order of the samples; two seeds of the 48 cells of trial 4 then
agree at rho 0.94 instead of 0.50); about 3 s a training on one core with the pinned kernels
(consensus.engines.ponas.exact). A budget, not a convergence: the contest is which cell learns
the task best in it. Chosen by measurement (80 cells, two seeds, 5,000 test samples): from 0.1 the
cells crowd at the top (median 94%, the top tenth 3 points above it); 6 epochs at 0.1 saturate
(median 98%, top tenth 0.6 points above); noisier data (correlated noise 0.4, i.i.d. 0.05) spread
them (7 points) but made the seeds disagree (rho 0.14 in the top third); 0.05 spreads them
(median 84%, top tenth 10 points above) with the seeds agreeing as at 0.1 in the top third (rho
0.57 against 0.56). docs/task.md has the table."""

MNIST1D_REGTEST = dataclasses.replace(MNIST1D_DEVNET, epochs=2, batch_size=32, lr_ppm=100_000)
"""MNIST-1D tests: 2 epochs of the regtest preset's 320 samples, batch 32, from 0.1 (well under a
second; far above chance, not a contest)."""

PRESETS: dict[str, Recipe] = {
    "regtest": REGTEST, "devnet": DEVNET, "mnist1d-regtest": MNIST1D_REGTEST, "mnist1d-devnet": MNIST1D_DEVNET,
}
