"""Which training recipe makes the seeds agree among the best cells: a side-by-side trial.

Takes ``--cells`` cells spread evenly over the top quarter of the committed 3,000-cell sample of
the mnist1d table of the recipe before ``shared_init`` (``v1/nb201_mnist1d_devnet_e0.csv.gz``, ranked by its test column), trains each
with two declared seeds (1 and 2: neither chose the cells) under every variant, and prints per
variant: Spearman rho between the seeds' test scores (5,000 held-out samples of ``paper-test``),
rho between two test keys (``paper-test`` and ``paper-test-2``) for the same models, the mean
absolute seed gap in points, the mean score and the seconds per training. Variants:

- ``base``: the recipe before ``shared_init`` (``mnist1d-devnet`` as the v1 tables were built: the
  declared seed draws the initial weights and the order of the samples);
- ``bnr``: then the BatchNorm statistics recomputed on the training set (cumulative averages);
- ``swa``: the weights averaged over every step of the last epoch, then ``bnr``;
- ``swa2``: the weights averaged over the last two epochs (of 4, from 0.05), then ``bnr``;
- ``e4``: 4 epochs;
- ``n6k-e2``, ``n12k-e1``: the same number of steps as the recipe over a larger training set
  (6,000 samples twice, 12,000 once) instead of 4,000 three times: EcoNAS (CVPR 2020) found that
  at a fixed budget more samples and fewer epochs keep rankings more consistent;
- trial 4, about the same cost: ``w24-n8k-e1`` (24 channels), ``w32-n6k-e1`` (32 channels),
  ``b128-n16k-e1`` and ``b128-n8k-e2`` (batch 128 from 0.1), ``k2-n8k-e1`` (two cells per stage);
- ``order-shared``: one data order for every cell and seed (the seed draws only the weights);
  ``init-shared``: one initial draw (``derive_seed(recipe seed, 2**40)``) for every cell and
  seed, the seed draws only the order: what the chain's ``shared_init`` does with a draw per
  task epoch (:func:`consensus.engines.ponas.train.init_seed`).

Besides the seeds' rho it prints one seed's noise (sd of the seeds' difference over sqrt 2), the
cells' own spread and the reliability (the cells' share of one score's variance).

    python bench/paper/recipe_trials.py --cells 48 --workers 2 --variants base bnr swa

Trials only: a variant the chain adopts moves into ``consensus/engines/ponas/train.py`` and the
recipe (a genesis change).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]

import build_table as bt  # noqa: E402
import correlate as c  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Variant:
    epochs: int = 3
    avg: int = 0  # average the weights over the last `avg` epochs (0 = none)
    bnr: bool = False  # recompute the BatchNorm statistics on the training set
    train_size: int = 0  # training samples (0: the chain's)
    channels: int = 0  # first stage's channels (0: the space's)
    batch: int = 0  # batch size (0: the recipe's)
    lr_ppm: int = 0  # peak learning rate (0: the recipe's)
    cells: int = 0  # cells per stage (0: the network's)
    shared: str = ""  # "order": one data order for every cell and seed; "init": one initial draw


VARIANTS = {
    "base": Variant(),
    "bnr": Variant(bnr=True),
    "swa": Variant(avg=1, bnr=True),
    "swa2": Variant(epochs=4, avg=2, bnr=True),
    "e4": Variant(epochs=4),
    "n6k-e2": Variant(epochs=2, train_size=6000),
    "n12k-e1": Variant(epochs=1, train_size=12000),
    # trial 4: wider, larger batches, deeper
    "w24-n8k-e1": Variant(epochs=1, train_size=8000, channels=24),
    "w32-n6k-e1": Variant(epochs=1, train_size=6000, channels=32),
    "b128-n16k-e1": Variant(epochs=1, train_size=16000, batch=128, lr_ppm=100_000),
    "b128-n8k-e2": Variant(epochs=2, train_size=8000, batch=128, lr_ppm=100_000),
    "k2-n8k-e1": Variant(epochs=1, train_size=8000, cells=2),
    # common random numbers: the seed draws only the initial weights, or only the data order
    "order-shared": Variant(shared="order"),
    "init-shared": Variant(shared="init"),
}


def _fit_variant(model, x, y, recipe, generator, avg_epochs: int, bnr: bool):  # type: ignore[no-untyped-def]
    """``generator`` draws the data order (it drew the initial weights before, or not)."""
    import torch
    import torch.nn.functional as F
    from torch.nn.modules.batchnorm import _BatchNorm

    from consensus.engines.ponas.train import _make_optimiser

    model.train()
    optimiser = _make_optimiser(model, recipe)
    n = len(y)
    batch = min(recipe.batch_size, n)
    steps_per_epoch = n // batch
    total = steps_per_epoch * recipe.epochs
    params = [p for p in model.parameters()]
    avg = [torch.zeros_like(p) for p in params] if avg_epochs else None
    count = 0
    step = 0
    for epoch in range(recipe.epochs):
        order = torch.randperm(n, generator=generator)
        for b in range(steps_per_epoch):
            idx = order[b * batch : (b + 1) * batch]
            for group in optimiser.param_groups:
                group["lr"] = recipe.lr_at(step, total)
            optimiser.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimiser.step()
            step += 1
            if avg is not None and epoch >= recipe.epochs - avg_epochs:
                with torch.no_grad():
                    for a, p in zip(avg, params):
                        a.add_(p)
                count += 1
    with torch.no_grad():
        if avg is not None:
            for a, p in zip(avg, params):
                p.copy_(a / count)
        if bnr:
            for m in model.modules():
                if isinstance(m, _BatchNorm):
                    m.reset_running_stats()
                    m.momentum = None  # cumulative average
            for start in range(0, n - batch + 1, batch):
                model(x[start : start + batch])
            for m in model.modules():
                if isinstance(m, _BatchNorm):
                    m.momentum = 0.1
    return model.eval()


def work(job: tuple[str, int, int]) -> tuple[str, int, int, dict[str, int], float]:
    name, index, seed = job
    from consensus.engines.ponas.exact import exact_cpu, pin_kernels

    pin_kernels()
    import numpy as np
    import torch

    from consensus.engines.ponas.mnist1d import ChainData, generate
    from consensus.engines.ponas.model import build_model, sequence_input
    from consensus.engines.ponas.recipe import PRESETS
    from consensus.engines.ponas.space import get_space
    from consensus.engines.ponas.train import derive_seed, score_sequences

    data = bt.mnist1d_data(0)
    v = VARIANTS[name]
    chain = ChainData(bytes.fromhex(data.genesis), v.train_size or data.train_size, data.validation_size, 5000, 1)
    base = PRESETS["mnist1d-devnet"]
    recipe = dataclasses.replace(base, shared_init=0, epochs=v.epochs, batch_size=v.batch or base.batch_size,
                                 lr_ppm=v.lr_ppm or base.lr_ppm)
    xa, ya = chain.train(0)
    genotype = get_space("nb201-1d").encode(index)
    start = time.perf_counter()
    with exact_cpu():
        generator = torch.Generator().manual_seed(derive_seed(recipe.seed, seed))
        fixed = torch.Generator().manual_seed(derive_seed(recipe.seed, 1 << 40))
        init_gen, order_gen = {"order": (generator, fixed), "init": (fixed, generator)}.get(v.shared, (generator, generator))
        if v.cells:
            from consensus.engines.ponas.model import NB201Network1D, initialize

            with torch.device("meta"):
                model = NB201Network1D(get_space("nb201-1d").ops(genotype), 10, 1, v.channels or 16, v.cells)
            model = initialize(model.to_empty(device="cpu"), init_gen)
        else:
            model = build_model("nb201-1d", genotype, 10, (1, 1, xa.shape[1]), channels=v.channels or None,
                                generator=init_gen)
        model = _fit_variant(model, sequence_input(xa), torch.from_numpy(ya.astype(np.int64)), recipe, order_gen,
                             v.avg, v.bnr)
    seconds = time.perf_counter() - start
    scores = {}
    for key in ("paper-test", "paper-test-2"):
        x, y = generate(bt.test_key(key), 5000, chain.task(0), bt.TEST_DOMAIN)
        scores[key] = score_sequences(model, x, y)
    return name, index, seed, scores, seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, default=48)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=["base", "bnr", "swa"], choices=sorted(VARIANTS))
    p.add_argument("--json", type=Path, default=HERE / "recipe_trials.json")
    args = p.parse_args()
    table = bt.read_table(HERE / "v1" / "nb201_mnist1d_devnet_e0.csv.gz")
    ranked = sorted(table, key=lambda i: (-table[i].test_correct, i))
    top = ranked[: len(ranked) // 4]
    cells = [top[round(k * (len(top) - 1) / (args.cells - 1))] for k in range(args.cells)]
    jobs = [(v, i, s) for v in args.variants for i in cells for s in (1, 2)]
    print(f"{len(cells)} cells of the top quarter of {len(table)}; {len(jobs)} trainings", flush=True)
    res: dict[tuple[str, int, int], tuple[dict[str, int], float]] = {}
    t0 = time.time()
    with ProcessPoolExecutor(args.workers) as ex:
        for k, (name, i, s, scores, sec) in enumerate(ex.map(work, jobs), 1):
            res[(name, i, s)] = (scores, sec)
            if k % 20 == 0:
                print(f"  {k}/{len(jobs)} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    out = {}
    print("| variant | rho seeds | rho test keys | mean |seed gap| (points) | seed sd | cell sd | reliability "
          "| mean score | s/training |")
    print("|---|---|---|---|---|---|---|---|---|")
    for v in args.variants:
        a = [res[(v, i, 1)][0]["paper-test"] / 50 for i in cells]
        b = [res[(v, i, 2)][0]["paper-test"] / 50 for i in cells]
        a2 = [res[(v, i, 1)][0]["paper-test-2"] for i in cells]
        gap = sum(abs(x - y) for x, y in zip(a, b)) / len(a)
        sec = sum(res[(v, i, s)][1] for i in cells for s in (1, 2)) / (2 * len(cells))
        # one seed's noise (sd of the seeds' difference / sqrt 2) and the cells' own spread (the
        # variance of the seeds' mean less the noise's share of it); reliability: the share of
        # one seed's score variance among these cells that is the cell's, not the seed's
        noise = statistics.pvariance([x - y for x, y in zip(a, b)]) / 2
        spread = max(0.0, statistics.pvariance([(x + y) / 2 for x, y in zip(a, b)]) - noise / 2)
        row = {"rho_seeds": c.spearman(a, b), "rho_test_keys": c.spearman(a, a2), "gap_points": gap,
               "seed_sd": noise ** 0.5, "cell_sd": spread ** 0.5, "reliability": spread / (spread + noise),
               "mean_pct": sum(a + b) / len(a + b), "seconds": sec}
        out[v] = row
        print(f"| {v} | {row['rho_seeds']:.3f} | {row['rho_test_keys']:.3f} | {gap:.2f} | {row['seed_sd']:.2f} "
              f"| {row['cell_sd']:.2f} | {row['reliability']:.2f} | {row['mean_pct']:.2f}% | {sec:.2f} |")
    args.json.write_text(json.dumps({"cells": cells, "variants": out}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
