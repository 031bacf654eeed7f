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
"""

from __future__ import annotations

import argparse
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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
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
    p.add_argument("--dir", type=Path, default=bt.HERE / "correlation", help="where the sample's tables go")
    p.add_argument("--json", type=Path, default=bt.HERE / "correlation.json")
    args = p.parse_args(argv)

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
