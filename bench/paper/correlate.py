"""Does a cheap recipe rank architectures like the devnet recipe? Spearman on a fixed sample.

Usage (from the repo root)::

    python bench/paper/correlate.py                      # regtest vs devnet, 200 architectures
    python bench/paper/correlate.py --cheap regtest e6   # several cheap recipes, each vs devnet

The sample is ``build_table.sample_indices(--n, --sample-seed)`` (seeded, printed). Each recipe's
rows are trained through :func:`build_table.build` into a table of its own under ``--dir``
(default ``bench/paper/correlation/``, ``nb201_digits_<recipe>[_seed<S>].csv.gz``), so an
interrupted run resumes like any table build. These tables are kept apart from the full tables so
that each full table stays the product of one machine and torch build. The result (Spearman rank
correlation of validation scores, average ranks for ties; of held-out scores too; mean accuracy
and seconds per architecture) is merged into ``--json`` (default ``bench/paper/correlation.json``),
one entry per cheap recipe.

With ``--other-seeds``, every recipe is also trained with those training seeds, which measures
how noisy a single-seed ranking is: the noise ceiling (the reference against itself with another
seed), the cheap recipe against the reference with another seed (same-seed runs share initial
weights and shuffles, which inflates their agreement), and seed-averaged scores.

The mnist1d task (``--task mnist1d``)::

    python bench/paper/correlate.py --task mnist1d --epochs 0 1 2 --workers 2

asks whether a single training ranks the cells reliably enough for the chain, on the sample
``build_table.nested_sample(--n, --sample-seed)`` (default 200 cells; part of the full table's
sample of the same seed). Tables (``build_table.build``, resumable) under ``--dir`` (default
``bench/paper/correlation_mnist1d/``): the recipe (``--recipe``, default ``mnist1d-devnet``) with
training seeds ``--seeds A B`` (default 0 1) on task epoch ``--epochs[0]``; the top ``--top``
cells (default 20, by seed A's validation score, as a miner picks) retrained with seed A and
scored on held-out sets of two keys (``--test-keys``: the first also names the tables' key) of
``--keys-test-size`` samples (default: the preset's round test set, 20,000 on devnet; training
is exact, so the retrained validation scores must equal the first ones, which is checked); and
seed A on each further epoch of ``--epochs``. Scores are the held-out test counts
(``--test-size`` samples, 5,000 by default, for the tables; the sampling error of 5,000 samples
is a small part of two seeds' difference); validation scores give an extra rho. Printed, each against the issue's target:

- ``rho(seed A, seed B)`` over the sample (target >= 0.8), and within the top quarter by seed
  A (target >= 0.5);
- how many accuracy points the top tenth by seed A scores above the median cell, both on seed
  B (target >= 3);
- rho of the top cells' scores on the two test keys (target >= 0.9);
- for each pair of epochs, the overlap of their top 10 cells (and rho over the sample).

The results are merged into ``--json`` (default ``bench/paper/correlation_mnist1d.json``), one
entry per recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # build_table, beside this file

import build_table as bt  # noqa: E402

REFERENCE = "devnet"


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties getting the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = mean_rank
        i = j + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("need two sequences of the same length >= 2")
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return math.nan
    return sxy / math.sqrt(sxx * syy)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the average ranks (as scipy.stats.spearmanr)."""
    return pearson(average_ranks(x), average_ranks(y))


def compare(cheap: dict[int, bt.Row], ref: dict[int, bt.Row], indices: Sequence[int]) -> dict[str, Any]:
    a = [cheap[i] for i in indices]
    b = [ref[i] for i in indices]

    def acc(rows: list[bt.Row], test: bool) -> float:
        return statistics.fmean(
            (r.test_correct / r.test_total) if test else (r.val_correct / r.val_total) for r in rows
        )

    return {
        "n": len(indices),
        "spearman_val": round(spearman([r.val_correct for r in a], [r.val_correct for r in b]), 4),
        "spearman_test": round(spearman([r.test_correct for r in a], [r.test_correct for r in b]), 4),
        "cheap_mean_val_acc": round(acc(a, False), 4),
        "cheap_mean_test_acc": round(acc(a, True), 4),
        "ref_mean_val_acc": round(acc(b, False), 4),
        "ref_mean_test_acc": round(acc(b, True), 4),
        "cheap_mean_train_seconds": round(statistics.fmean(r.train_seconds for r in a), 3),
        "ref_mean_train_seconds": round(statistics.fmean(r.train_seconds for r in b), 3),
    }


def val_rho(x: dict[int, bt.Row], y: dict[int, bt.Row], indices: Sequence[int]) -> float:
    return round(spearman([x[i].val_correct for i in indices], [y[i].val_correct for i in indices]), 4)


def seed_mean_rho(xs: list[dict[int, bt.Row]], ys: list[dict[int, bt.Row]], indices: Sequence[int]) -> float:
    """rho of the validation scores averaged over seeds."""
    mx = [statistics.fmean(t[i].val_correct for t in xs) for i in indices]
    my = [statistics.fmean(t[i].val_correct for t in ys) for i in indices]
    return round(spearman(mx, my), 4)


def table_name(recipe: str, seed: int, main_seed: int) -> str:
    return recipe if seed == main_seed else f"{recipe}_seed{seed}"


# ---------------------------------------------------------------------------------------------
# mnist1d.

TARGETS = {"rho_seeds": 0.8, "rho_seeds_top_quarter": 0.5, "top_tenth_points": 3.0, "rho_test_keys_top": 0.9}


def top_cells(rows: dict[int, bt.Row], indices: Sequence[int], k: int, by: str = "test") -> list[int]:
    """The ``k`` best of ``indices`` by ``by`` (``test`` or ``val`` correct), ties to the lower index."""
    key = (lambda i: (-rows[i].test_correct, i)) if by == "test" else (lambda i: (-rows[i].val_correct, i))
    return sorted(indices, key=key)[:k]


def test_rho(x: dict[int, bt.Row], y: dict[int, bt.Row], indices: Sequence[int]) -> float:
    return round(spearman([x[i].test_correct for i in indices], [y[i].test_correct for i in indices]), 4)


def seed_metrics(a: dict[int, bt.Row], b: dict[int, bt.Row], indices: Sequence[int]) -> dict[str, Any]:
    """Two training seeds of the same cells: rho overall and in seed A's top quarter, and how far
    seed A's top tenth lies above the median cell on seed B (accuracy points)."""
    quarter = top_cells(a, indices, max(2, round(len(indices) / 4)))
    tenth = top_cells(a, indices, max(1, round(len(indices) / 10)))

    def pct(row: bt.Row) -> float:
        return 100.0 * row.test_correct / row.test_total

    median_b = statistics.median(pct(b[i]) for i in indices)
    top_b = statistics.fmean(pct(b[i]) for i in tenth)
    return {
        "rho_seeds": test_rho(a, b, indices),
        "rho_seeds_val": val_rho(a, b, indices),
        "top_quarter": len(quarter),
        "rho_seeds_top_quarter": test_rho(a, b, quarter),
        "top_tenth": len(tenth),
        "top_tenth_mean_acc_seed_b": round(top_b, 3),
        "median_acc_seed_b": round(median_b, 3),
        "top_tenth_points": round(top_b - median_b, 3),
        "mean_test_acc_seed_a": round(statistics.fmean(pct(a[i]) for i in indices), 3),
        "mean_train_seconds": round(statistics.fmean(r.train_seconds for t in (a, b) for r in (t[i] for i in indices)), 3),
    }


def epoch_metrics(tables: dict[int, dict[int, bt.Row]], indices: Sequence[int], k: int = 10) -> dict[str, Any]:
    """Per pair of epochs: how many of the top ``k`` cells (test score) they share, and rho."""
    tops = {e: top_cells(t, indices, min(k, len(indices))) for e, t in tables.items()}
    pairs: dict[str, Any] = {}
    epochs = sorted(tables)
    for n, e in enumerate(epochs):
        for f in epochs[n + 1 :]:
            pairs[f"{e}-{f}"] = {
                "top_overlap": len(set(tops[e]) & set(tops[f])),
                "rho": test_rho(tables[e], tables[f], indices),
            }
    return {"top_k": min(k, len(indices)), "top": {str(e): tops[e] for e in epochs}, "pairs": pairs}


def _verdict(value: float, target: float) -> str:
    if math.isnan(value):
        return "n/a"
    return "pass" if value >= target else "FAIL"


def main_mnist1d(args: argparse.Namespace) -> int:
    from consensus.engines.ponas.exact import pin_kernels

    pin_kernels()  # before this process's first torch operation (it trains when --workers 1)
    recipe = args.recipe
    if recipe not in bt.MNIST1D_RECIPES:
        raise SystemExit(f"correlate: --recipe {recipe} is not a mnist1d recipe: {sorted(bt.MNIST1D_RECIPES)}")
    if len(args.seeds) != 2 or args.seeds[0] == args.seeds[1]:
        raise SystemExit("correlate: --seeds takes two different training seeds")
    if len(args.test_keys) != 2 or args.test_keys[0] == args.test_keys[1]:
        raise SystemExit("correlate: --test-keys takes two different key names")
    epochs = list(dict.fromkeys(args.epochs))
    seed_a, seed_b = args.seeds
    key_a, key_b = args.test_keys
    indices = bt.nested_sample(args.n, args.sample_seed)
    print(f"sample of {len(indices)} (nested_sample, seed {args.sample_seed}): {indices}", flush=True)
    base = bt.mnist1d_data(epochs[0], args.data_preset, key_a, args.test_size)
    print(f"data: {args.data_preset} preset's genesis {base.genesis}, epochs {epochs}", flush=True)

    from consensus.params import preset_params

    keys_size = args.keys_test_size or preset_params(args.data_preset, task="mnist1d").ponas.test_set_size

    def table(seed: int, epoch: int, key: str, cells: Sequence[int], size: int | None = None) -> dict[int, bt.Row]:
        data = dataclasses.replace(base, epoch=epoch, test_key=key, test_size=size or base.test_size)
        out = args.dir / bt.default_out(recipe, data, seed).name
        return bt.build(recipe, out, cells, workers=args.workers, seed=seed, data=data)

    try:
        a = table(seed_a, epochs[0], key_a, indices)
        b = table(seed_b, epochs[0], key_a, indices)
        top = top_cells(a, indices, min(args.top, len(indices)), by="val")
        # the top cells, retrained, on two test sets of the chain's size (a round's test set)
        key_a_top = table(seed_a, epochs[0], key_a, top, keys_size)
        other_key = table(seed_a, epochs[0], key_b, top, keys_size)
        by_epoch = {epochs[0]: a}
        for e in epochs[1:]:
            by_epoch[e] = table(seed_a, e, key_a, indices)
    except KeyboardInterrupt:
        return 130

    res = seed_metrics(a, b, indices)
    res["top_by_val"] = len(top)
    res["rho_test_keys_top"] = test_rho(key_a_top, other_key, top)
    res["keys_test_size"] = keys_size
    res["retrain_identical"] = all(a[i].val_correct == other_key[i].val_correct == key_a_top[i].val_correct
                                   for i in top)
    if len(epochs) > 1:
        res["epochs"] = epoch_metrics(by_epoch, indices)

    doc: dict[str, Any] = json.loads(args.json.read_text()) if args.json.exists() else {}
    same = (doc.get("indices"), doc.get("genesis"), doc.get("test_size")) == (indices, base.genesis, base.test_size)
    if not same:
        doc = {}  # another sample or data: start over
    import torch

    doc.update(
        {
            "task": "mnist1d",
            "metric": "Spearman rank correlation (average ranks) of held-out test scores over the sample",
            "targets": TARGETS,
            "notes": {
                "rho_seeds": "seed A vs seed B (training seeds), epoch epochs[0], over the sample",
                "rho_seeds_top_quarter": "the same within seed A's top quarter (selection lowers it)",
                "top_tenth_points": "mean accuracy on seed B of seed A's top tenth minus the median cell's "
                "accuracy on seed B, in percentage points",
                "rho_test_keys_top": "seed A's top cells by validation score, retrained (exact), scored on "
                "held-out sets of two keys of keys_test_size samples (the chain's round test set): rho between "
                "the two test sets' scores",
                "epochs": "seed A per task epoch: overlap of the top 10 cells by test score, and rho",
            },
            "data_preset": args.data_preset,
            "genesis": base.genesis,
            "test_size": base.test_size,
            "sample_seed": args.sample_seed,
            "indices": indices,
        }
    )
    doc.setdefault("results", {})[recipe] = {
        "recipe": bt.MNIST1D_RECIPES[recipe].to_list(),
        "seeds": [seed_a, seed_b],
        "test_keys": [key_a, key_b],
        "epochs_trained": epochs,
        **res,
        "torch": torch.__version__,
        "workers": args.workers,
        "date": datetime.date.today().isoformat(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    bt.write_json(args.json, doc)

    print(f"\nmnist1d, recipe {recipe} {bt.MNIST1D_RECIPES[recipe].to_list()}, n={len(indices)}, "
          f"epoch {epochs[0]}, test = {base.test_size} held-out samples:")
    lines = [
        (f"rho(seed {seed_a}, seed {seed_b}), all {len(indices)}", res["rho_seeds"], "rho_seeds"),
        (f"rho(seed {seed_a}, seed {seed_b}), top quarter ({res['top_quarter']})", res["rho_seeds_top_quarter"],
         "rho_seeds_top_quarter"),
        (f"top tenth ({res['top_tenth']}) above the median, points", res["top_tenth_points"], "top_tenth_points"),
        (f"rho(key {key_a}, key {key_b}), top {len(top)} by val, {keys_size} samples", res["rho_test_keys_top"],
         "rho_test_keys_top"),
    ]
    print(f"  {'measure':<52} {'value':>8} {'target':>7}  result")
    for label, value, name in lines:
        print(f"  {label:<52} {value:>8.4f} {'>= ' + format(TARGETS[name], 'g'):>7}  {_verdict(value, TARGETS[name])}")
    print(f"  rho on validation scores (seeds): {res['rho_seeds_val']:.4f}; mean test acc {res['mean_test_acc_seed_a']:.2f}%; "
          f"{res['mean_train_seconds']:.3f} s per training")
    print(f"  retrained top cells identical (validation scores equal): {res['retrain_identical']}")
    if "epochs" in res:
        for pair, v in res["epochs"]["pairs"].items():
            print(f"  epochs {pair}: top-{res['epochs']['top_k']} overlap {v['top_overlap']}, rho {v['rho']:.4f}")
    print(f"wrote {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--task", choices=("digits", "mnist1d"), default="digits", help="task (default digits)")
    p.add_argument("--cheap", nargs="+", default=["regtest"], choices=sorted(set(bt.RECIPES) - {REFERENCE}))
    p.add_argument("--n", type=int, default=200, help="sample size (default 200)")
    p.add_argument("--sample-seed", type=int, default=bt.SAMPLE_SEED)
    p.add_argument("--seed", type=int, default=0, help="declared training seed (default 0)")
    p.add_argument(
        "--other-seeds",
        type=int,
        nargs="*",
        default=[],
        help="also train every recipe with these training seeds: gives the noise ceiling "
        f"({REFERENCE} vs itself with another seed), cross-seed and seed-averaged correlations",
    )
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dir", type=Path, default=None, help="where the sample's tables go (default by task)")
    p.add_argument("--json", type=Path, default=None, help="results (default by task)")
    m = p.add_argument_group("mnist1d")
    m.add_argument("--recipe", default="mnist1d-devnet", help="mnist1d recipe (default mnist1d-devnet)")
    m.add_argument("--seeds", type=int, nargs=2, default=[0, 1], help="two training seeds (default 0 1)")
    m.add_argument("--epochs", type=int, nargs="+", default=[0], help="task epochs (default 0)")
    m.add_argument("--test-keys", nargs=2, default=[bt.TEST_KEY, f"{bt.TEST_KEY}-2"], help="two held-out key names")
    m.add_argument("--top", type=int, default=20, help="cells retrained for the second test key (default 20)")
    m.add_argument("--data-preset", choices=("devnet", "regtest"), default="devnet")
    m.add_argument("--test-size", type=int, default=bt.TEST_SIZE, help="held-out samples of the tables")
    m.add_argument("--keys-test-size", type=int, default=0,
                   help="held-out samples of the two test keys' sets for the top cells (default: the preset's "
                        "round test set)")
    args = p.parse_args(argv)
    if args.task == "mnist1d":
        args.dir = args.dir or bt.HERE / "correlation_mnist1d"
        args.json = args.json or bt.HERE / "correlation_mnist1d.json"
        return main_mnist1d(args)
    args.dir = args.dir or bt.HERE / "correlation"
    args.json = args.json or bt.HERE / "correlation.json"

    indices = bt.sample_indices(args.n, args.sample_seed)
    print(f"sample of {len(indices)} (seed {args.sample_seed}): {indices}", flush=True)
    seeds = [args.seed] + [s for s in args.other_seeds if s != args.seed]
    others = seeds[1:]

    def table(recipe: str, seed: int) -> dict[int, bt.Row]:
        out = args.dir / bt.default_out(table_name(recipe, seed, args.seed)).name
        return bt.build(recipe, out, indices, workers=args.workers, device=args.device, seed=seed)

    try:
        tables = {(r, s): table(r, s) for r in [REFERENCE, *args.cheap] for s in seeds}
    except KeyboardInterrupt:
        return 130

    ref = tables[REFERENCE, args.seed]
    results: dict[str, dict[str, Any]] = {}
    for name in args.cheap:
        res = compare(tables[name, args.seed], ref, indices)
        if others:
            res["spearman_val_cross_seed"] = round(
                statistics.fmean(val_rho(tables[name, args.seed], tables[REFERENCE, s], indices) for s in others), 4
            )
            res["spearman_val_own_other_seed"] = round(
                statistics.fmean(val_rho(tables[name, args.seed], tables[name, s], indices) for s in others), 4
            )
            res["spearman_val_seed_mean"] = seed_mean_rho(
                [tables[name, s] for s in seeds], [tables[REFERENCE, s] for s in seeds], indices
            )
        results[name] = res

    doc: dict[str, Any] = json.loads(args.json.read_text()) if args.json.exists() else {}
    if doc.get("indices") not in (None, indices) or doc.get("seed") not in (None, args.seed):
        doc = {}  # another sample: start over
    doc.update(
        {
            "reference": REFERENCE,
            "reference_recipe": bt.RECIPES[REFERENCE].to_list(),
            "metric": "Spearman rank correlation (average ranks) of validation scores over the sample",
            "notes": {
                "spearman_val": f"cheap vs {REFERENCE}, both with training seed `seed`: the same initial "
                "weights and the same shuffles (derive_seed does not depend on the epochs), which inflates it",
                "spearman_val_cross_seed": f"cheap (seed `seed`) vs {REFERENCE} with each other seed, mean",
                "spearman_val_own_other_seed": "cheap vs itself with each other seed, mean",
                "spearman_val_seed_mean": f"scores averaged over all seeds, cheap vs {REFERENCE}",
                "noise_ceiling": f"{REFERENCE} vs itself with each other seed: no single-seed table can rank "
                f"like {REFERENCE} better than {REFERENCE} itself does",
            },
            "sample_seed": args.sample_seed,
            "seed": args.seed,
            "indices": indices,
        }
    )
    if others:
        doc["other_seeds"] = others
        doc["noise_ceiling"] = {
            "spearman_val": round(statistics.fmean(val_rho(ref, tables[REFERENCE, s], indices) for s in others), 4),
            "per_seed": {str(s): val_rho(ref, tables[REFERENCE, s], indices) for s in others},
        }
    doc.setdefault("results", {})
    import torch

    for name, res in results.items():
        doc["results"][name] = {
            "recipe": bt.RECIPES[name].to_list(),
            **res,
            "device": args.device,
            "torch": torch.__version__,
            "workers": args.workers,
            "date": datetime.date.today().isoformat(),
        }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    bt.write_json(args.json, doc)

    cols = ("recipe", "epochs", "rho(val)", "rho(test)", "x-seed", "own", "seedmean", "val acc", "s/arch")
    print(f"\nvs {REFERENCE} ({bt.RECIPES[REFERENCE].epochs} epochs), n={len(indices)}:")
    print("  ".join(f"{c:>9}" for c in cols))
    for name, r in doc["results"].items():
        cells = (
            name,
            r["recipe"][0],
            f"{r['spearman_val']:.4f}",
            f"{r['spearman_test']:.4f}",
            f"{r.get('spearman_val_cross_seed', math.nan):.4f}",
            f"{r.get('spearman_val_own_other_seed', math.nan):.4f}",
            f"{r.get('spearman_val_seed_mean', math.nan):.4f}",
            f"{r['cheap_mean_val_acc']:.3f}",
            f"{r['cheap_mean_train_seconds']:.3f}",
        )
        print("  ".join(f"{v:>9}" for v in cells))
    any_r = next(iter(doc["results"].values()))
    print(
        f"{REFERENCE}: val acc {any_r['ref_mean_val_acc']:.3f}, test acc {any_r['ref_mean_test_acc']:.3f}, "
        f"{any_r['ref_mean_train_seconds']:.3f} s/arch"
    )
    if "noise_ceiling" in doc:
        print(f"noise ceiling ({REFERENCE} vs itself, other seeds): rho(val) {doc['noise_ceiling']['spearman_val']:.4f}")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
