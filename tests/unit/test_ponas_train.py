"""Recipes and deterministic training (consensus.engines.ponas.recipe, .train).

Proves: recipes are integer-only, validated and round-trip through their wire list; training
the same (genotype, recipe, seed) in two separate processes and in this one gives weights with
the same sha256, whatever torch's global RNG state; other seeds (declared or recipe) give other
weights; training restores the thread count and the deterministic-algorithms flag; scores are
plain ints equal to a hand count, with non-finite logits counted wrong; REGTEST training learns
(far above chance); and a model trained on a round's test set scores higher on it than one
trained on the public training data (the signal the retrain check relies on).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from consensus.engines.ponas.data import Dataset, digits_splits, round_test_set
from consensus.engines.ponas.recipe import (
    DEVNET,
    MNIST1D_DEVNET,
    MNIST1D_REGTEST,
    PRESETS,
    REGTEST,
    Recipe,
    RecipeError,
)
from consensus.engines.ponas.train import (
    derive_seed,
    deterministic_cpu,
    evaluate,
    score,
    train,
    validation_score,
)
from consensus.engines.ponas.weights import load_weights, weights_hash

ROOT = str(pathlib.Path(__file__).resolve().parents[2])
GENOTYPE = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"

CHILD = """
import sys, torch
torch.manual_seed(int(sys.argv[1]))            # global RNG state must not matter
torch.rand(int(sys.argv[1]) % 7 + 1)
from consensus.engines.ponas.recipe import REGTEST
from consensus.engines.ponas.train import train
from consensus.engines.ponas.weights import weights_hash
_, w = train("nb201", sys.argv[2], REGTEST, int(sys.argv[3]))
sys.stdout.write(weights_hash(w).hex())
"""


def _start_training_subprocess(global_seed: int, genotype: str, seed: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(global_seed), genotype, str(seed)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _result(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out.strip()


def test_recipe_wire_roundtrip_and_presets() -> None:
    for recipe in (REGTEST, DEVNET, MNIST1D_REGTEST, MNIST1D_DEVNET):
        items = recipe.to_list()
        assert all(isinstance(v, (int, str)) and not isinstance(v, float) for v in items)
        assert Recipe.from_list(items) == recipe
    assert PRESETS == {"regtest": REGTEST, "devnet": DEVNET, "mnist1d-regtest": MNIST1D_REGTEST,
                       "mnist1d-devnet": MNIST1D_DEVNET}


def test_later_recipe_fields_keep_the_old_wire_form_while_zero() -> None:
    """``average_epochs``, ``bn_recompute`` and ``shared_init`` were added later: at 0 they are left out of the
    wire form (a recipe made before them reads and writes as it did); set, they are written; a
    later field written at its default is refused (one wire form per recipe)."""
    assert len(REGTEST.to_list()) == 9 and Recipe.from_list(REGTEST.to_list()) == REGTEST
    averaged = dataclasses.replace(REGTEST, average_epochs=1)
    assert averaged.to_list() == [*REGTEST.to_list(), 1] and Recipe.from_list(averaged.to_list()) == averaged
    both = dataclasses.replace(REGTEST, average_epochs=1, bn_recompute=1)
    assert both.to_list() == [*REGTEST.to_list(), 1, 1] and Recipe.from_list(both.to_list()) == both
    bn_only = dataclasses.replace(REGTEST, bn_recompute=1)
    assert bn_only.to_list() == [*REGTEST.to_list(), 0, 1]
    shared = dataclasses.replace(REGTEST, shared_init=1)
    assert shared.to_list() == [*REGTEST.to_list(), 0, 0, 1] and Recipe.from_list(shared.to_list()) == shared
    assert MNIST1D_DEVNET.shared_init == 1 and MNIST1D_REGTEST.shared_init == 1
    for bad in ([*REGTEST.to_list(), 0], [*REGTEST.to_list(), 1, 0], [*REGTEST.to_list(), 1, 1, 0],
                [*REGTEST.to_list(), 4], [*REGTEST.to_list(), 0, 2], [*REGTEST.to_list(), 0, 0, 2],
                [*REGTEST.to_list(), 1, 1, 1, 1]):
        with pytest.raises(RecipeError):
            Recipe.from_list(bad)
    with pytest.raises(RecipeError):
        Recipe.from_list(REGTEST.to_list()[:-1])


@pytest.mark.parametrize(
    "change",
    [
        {"epochs": 0}, {"batch_size": 0}, {"optimiser": "rmsprop"}, {"lr_ppm": 0},
        {"momentum_ppm": 1_000_000}, {"seed": -1}, {"seed": 2**64}, {"schedule": "cosine"},
        {"lr_ppm": 0.1}, {"epochs": True}, {"train_subset": -1}, {"optimiser": 1},
    ],
)
def test_bad_recipes_rejected(change: dict[str, object]) -> None:
    with pytest.raises(RecipeError) as e:
        dataclasses.replace(REGTEST, **change)  # type: ignore[arg-type]
    assert e.value.reason == "bad-recipe"


def test_linear_schedule_is_exact() -> None:
    r = dataclasses.replace(REGTEST, lr_ppm=100_000, schedule="linear")
    assert r.lr_at(0, 10) == 0.1 and r.lr_at(5, 10) == 0.05 and r.lr_at(9, 10) == 0.01
    assert dataclasses.replace(r, schedule="constant").lr_at(9, 10) == 0.1


def test_shared_init_draws_the_weights_from_the_training_set_and_the_seed_only_orders_it() -> None:
    """``shared_init``: two declared seeds start from the same weights (so their trainings differ
    only by the order of the samples), another training set starts from other weights, and the
    seed of the initial draw is the documented formula."""
    from consensus.engines.ponas.model import build_model
    from consensus.engines.ponas.train import _generators, init_seed, train_sequences

    rng = np.random.default_rng(5)
    x = rng.integers(-4000, 4000, (64, 40), dtype=np.int16)
    y = rng.integers(0, 10, 64, dtype=np.uint8)
    recipe = dataclasses.replace(MNIST1D_REGTEST, epochs=1)
    x_le = hashlib.sha256(x.astype("<i2").tobytes()).digest()
    expect = hashlib.sha256(b"ponas/init-seed/v1" + recipe.seed.to_bytes(8, "big") + x_le
                            + hashlib.sha256(y.tobytes()).digest()).digest()
    assert init_seed(recipe.seed, x, y) == int.from_bytes(expect[:8], "big") >> 1
    assert init_seed(recipe.seed, x.astype(">i2"), y) == init_seed(recipe.seed, x, y)  # byte order is fixed
    x2 = x.copy()
    x2[0, 0] += 1
    assert init_seed(recipe.seed, x2, y) != init_seed(recipe.seed, x, y)

    def first_weights(r: Recipe, seed: int, xs: np.ndarray) -> torch.Tensor:
        init, _ = _generators(r, seed, xs, y)
        return next(build_model("nb201-1d", GENOTYPE, 10, (1, 1, 40), generator=init).parameters()).detach().clone()

    assert torch.equal(first_weights(recipe, 1, x), first_weights(recipe, 2, x))
    assert not torch.equal(first_weights(recipe, 1, x), first_weights(recipe, 1, x2))
    old = dataclasses.replace(recipe, shared_init=0)
    assert not torch.equal(first_weights(old, 1, x), first_weights(old, 2, x))
    (_, w1), (_, w2) = (train_sequences(GENOTYPE, recipe, s, x, y, exact=False) for s in (1, 2))
    assert w1 != w2  # the seed still orders the samples


def test_derive_seed_formula() -> None:
    d = hashlib.sha256(b"ponas/train-seed/v1" + (3).to_bytes(8, "big") + (4).to_bytes(8, "big")).digest()
    assert derive_seed(3, 4) == int.from_bytes(d[:8], "big") >> 1
    assert derive_seed(3, 4) != derive_seed(4, 3)


def test_training_is_identical_across_processes() -> None:
    procs = [_start_training_subprocess(g, GENOTYPE, 42) for g in (1, 987)]  # run side by side
    a, b = (_result(p) for p in procs)
    torch.manual_seed(55)
    _, here = train("nb201", GENOTYPE, REGTEST, 42)
    assert len(a) == 64 and a == b == weights_hash(here).hex()


def test_seeds_change_the_weights() -> None:
    _, w1 = train("nb201", GENOTYPE, REGTEST, 1)
    _, w1_again = train("nb201", GENOTYPE, REGTEST, 1)
    _, w2 = train("nb201", GENOTYPE, REGTEST, 2)
    _, w3 = train("nb201", GENOTYPE, dataclasses.replace(REGTEST, seed=9), 1)
    assert w1 == w1_again
    assert len({w1, w2, w3}) == 3


def test_adam_and_mlp_train_deterministically() -> None:
    recipe = dataclasses.replace(REGTEST, optimiser="adam", lr_ppm=10_000, schedule="constant")
    m1, w1 = train("mlp", "mlp:64-32", recipe, 5)
    _, w2 = train("mlp", "mlp:64-32", recipe, 5)
    assert w1 == w2
    assert validation_score(m1) > 150


def test_training_restores_global_torch_settings() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        calls: list[tuple[int, int, float]] = []
        model, weights = train("nb201", GENOTYPE, REGTEST, 0, progress=lambda *a: calls.append(a))
        assert torch.get_num_threads() == 2
        assert not torch.are_deterministic_algorithms_enabled()
        assert [c[:2] for c in calls] == [(e, REGTEST.epochs) for e in range(1, REGTEST.epochs + 1)]
        assert all(np.isfinite(c[2]) for c in calls)
        with deterministic_cpu():
            assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert not model.training
    loaded = load_weights(weights, "nb201", GENOTYPE)
    assert validation_score(loaded) == validation_score(model)


def test_scores_are_ints_and_match_a_hand_count() -> None:
    model, _ = train("nb201", GENOTYPE, REGTEST, 3)
    val = digits_splits().validation
    correct = evaluate(model, val.x, val.y)
    assert type(correct) is int and type(validation_score(model)) is int
    with torch.no_grad():
        pred = model(torch.from_numpy(val.x.astype(np.float32)) / 16).argmax(1).numpy()
    assert correct == int((pred == val.y).sum()) == validation_score(model)
    assert correct > 150  # REGTEST learns: chance is about 30 of 297
    assert evaluate(model, val.x[:0], val.y[:0]) == 0


def test_non_finite_logits_count_as_wrong() -> None:
    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(len(x), 10)
            out[:, 0] = float("nan")  # argmax would otherwise be ill-defined
            out[1:, 3] = 1.0
            return out

    y = np.array([0, 3, 3, 0], dtype=np.uint8)
    assert evaluate(Broken(), np.zeros((4, 1, 8, 8), np.uint8), y) == 0


def test_training_on_the_test_set_scores_higher_on_it() -> None:
    test = round_test_set(b"\x05" * 32, 300)
    honest, _ = train("nb201", GENOTYPE, DEVNET, 1)
    leaky, _ = train("nb201", GENOTYPE, DEVNET, 1, train_data=Dataset(test.x.copy(), test.y.copy(), 16))
    honest_score, leaky_score = score(honest, test), score(leaky, test)
    assert leaky_score > honest_score + 15, (honest_score, leaky_score)
    assert leaky_score >= 290


def test_every_thread_that_enters_runs_on_one_thread() -> None:
    """Under OpenMP each thread has its own thread count. A worker thread that ran torch while
    the count was 2, and entered the context while another thread was inside, kept 2: found
    as a node whose retrain (one op at a time on two OpenMP threads, one starved by the miners)
    took minutes instead of seconds. Every entering thread now sets its own count."""
    import threading

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    inside, done, started = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def first() -> None:
        started.wait(10)
        with deterministic_cpu():
            seen["first"] = torch.get_num_threads()
            inside.set()
            done.wait(10)

    def second() -> None:
        torch.ones(3).sum()  # this thread's torch starts while the count is 2
        seen["second before"] = torch.get_num_threads()
        started.set()
        inside.wait(10)
        with deterministic_cpu():
            seen["second"] = torch.get_num_threads()
        done.set()

    try:
        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert seen == {"second before": 2, "first": 1, "second": 1}
    finally:
        torch.set_num_threads(previous)
