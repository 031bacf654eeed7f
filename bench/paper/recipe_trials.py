"""Which training recipe makes the seeds agree among the best cells: a side-by-side trial.

Takes ``--cells`` cells spread evenly over the top quarter of the committed 3,000-cell sample of
the mnist1d table (``nb201_mnist1d_devnet_e0.csv.gz``, ranked by its test column), trains each
with two declared seeds (1 and 2: neither chose the cells) under every variant, and prints per
variant: Spearman rho between the seeds' test scores (5,000 held-out samples of ``paper-test``),
rho between two test keys (``paper-test`` and ``paper-test-2``) for the same models, the mean
absolute seed gap in points, the mean score and the seconds per training. Variants:

- ``base``: the recipe as it is (``mnist1d-devnet``);
- ``bnr``: then the BatchNorm statistics recomputed on the training set (cumulative averages);
- ``swa``: the weights averaged over every step of the last epoch, then ``bnr``;
- ``swa2``: the weights averaged over the last two epochs (of 4, from 0.05), then ``bnr``;
- ``e4``: 4 epochs;
- ``n6k-e2``, ``n12k-e1``: the same number of steps as the recipe over a larger training set
  (6,000 samples twice, 12,000 once) instead of 4,000 three times: EcoNAS (CVPR 2020) found that
  at a fixed budget more samples and fewer epochs keep rankings more consistent.

    python bench/paper/recipe_trials.py --cells 48 --workers 2 --variants base bnr swa

Trials only: a variant the chain adopts moves into ``consensus/engines/ponas/train.py`` and the
recipe (a genesis change).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]

import build_table as bt  # noqa: E402
import correlate as c  # noqa: E402

VARIANTS = {
    # name: (epochs, average over the last `avg` epochs (0 = none), recompute BN statistics,
    # training samples (0: the chain's))
    "base": (3, 0, False, 0),
    "bnr": (3, 0, True, 0),
    "swa": (3, 1, True, 0),
    "swa2": (4, 2, True, 0),
    "e4": (4, 0, False, 0),
    "n6k-e2": (2, 0, False, 6000),
    "n12k-e1": (1, 0, False, 12000),
}


def _fit_variant(model, x, y, recipe, generator, avg_epochs: int, bnr: bool):  # type: ignore[no-untyped-def]
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
    epochs, avg_epochs, bnr, train_size = VARIANTS[name]
    chain = ChainData(bytes.fromhex(data.genesis), train_size or data.train_size, data.validation_size, 5000, 1)
    recipe = dataclasses.replace(PRESETS["mnist1d-devnet"], epochs=epochs)
    xa, ya = chain.train(0)
    genotype = get_space("nb201-1d").encode(index)
    start = time.perf_counter()
    with exact_cpu():
        generator = torch.Generator().manual_seed(derive_seed(recipe.seed, seed))
        model = build_model("nb201-1d", genotype, 10, (1, 1, xa.shape[1]), generator=generator)
        model = _fit_variant(model, sequence_input(xa), torch.from_numpy(ya.astype(np.int64)), recipe, generator,
                             avg_epochs, bnr)
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
    table = bt.read_table(HERE / "nb201_mnist1d_devnet_e0.csv.gz")
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
    print("| variant | rho seeds | rho test keys | mean |seed gap| (points) | mean score | s/training |")
    print("|---|---|---|---|---|---|")
    for v in args.variants:
        a = [res[(v, i, 1)][0]["paper-test"] for i in cells]
        b = [res[(v, i, 2)][0]["paper-test"] for i in cells]
        a2 = [res[(v, i, 1)][0]["paper-test-2"] for i in cells]
        gap = sum(abs(x - y) for x, y in zip(a, b)) / len(a) / 50
        sec = sum(res[(v, i, s)][1] for i in cells for s in (1, 2)) / (2 * len(cells))
        row = {"rho_seeds": c.spearman(a, b), "rho_test_keys": c.spearman(a, a2), "gap_points": gap,
               "mean_pct": sum(a + b) / len(a + b) / 50, "seconds": sec}
        out[v] = row
        print(f"| {v} | {row['rho_seeds']:.3f} | {row['rho_test_keys']:.3f} | {gap:.2f} | {row['mean_pct']:.2f}% | {sec:.2f} |")
    args.json.write_text(json.dumps({"cells": cells, "variants": out}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
