"""Write ``docs/results.md`` from a simulation run: the paper's claims, measured.

Usage (from the repo root; ``make bench-paper`` runs the simulations, then this)::

    python bench/paper/report.py        # reads docs/results/mnist1d/ and docs/results/digits/, writes docs/results.md
    python bench/paper/report.py --results DIR [--baseline DIR] --out FILE

It reads ``simulate.json`` and the per-experiment tables and plots that
``bench/paper/simulate.py`` wrote into the results folder (the default task's run) and, when
given, a baseline folder (the digits task's run), the score tables' meta files and the
correlation files, and writes one page: a verdict per claim, computed from the numbers (so the
page says what the numbers say, whatever table it was made from), what changed from the
baseline side by side, the setup, every table and plot, the baseline's verdicts and tables, and
the limits of the study. Nothing in it is typed in by hand except the limits and the reasons.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_RESULTS = REPO / "docs" / "results" / "mnist1d"
DEFAULT_BASELINE = REPO / "docs" / "results" / "digits"
DEFAULT_OUT = REPO / "docs" / "results.md"
#: The date from which the devnet's pool runs one shared search (``ManagerConfig.shared_search``):
#: the real-network runs from then on are compared with the simulation's shared-search model.
SHARED_SEARCH_SINCE = "2026-12-06"
#: The two-seed correlation measurement of each task (``bench/paper/correlate.py``).
# The mnist1d paper runs on the table of the recipe before ``shared_init`` (``v1/``) until the
# current recipe's 3,000-cell table is built; its correlation measures are that recipe's too.
CORRELATION = {"digits": HERE / "correlation.json", "mnist1d": HERE / "v1" / "correlation_mnist1d.json"}
SECTIONS = (
    ("competitiveness", "1. Competitiveness: a pool against solo miners"),
    ("income", "2. Members' income"),
    ("search", "3. Search efficiency: partitioned against independent search"),
    ("churn", "4. Churn: backup members"),
    ("network", "5. The real network against the simulation"),
    ("strategy", "6. Search strategy: random search against regularised evolution"),
    ("collaboration", "7. Collaboration: a pool with one shared search"),
)


class ReportError(Exception):
    """A results folder this script cannot read; ``reason`` is stable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def f2(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.2f}"


def _nan_for_none(obj: Any) -> Any:
    """simulate.json writes NaN (a mean or CV with nothing to average) as null: read it back as NaN."""
    if obj is None:
        return math.nan
    if isinstance(obj, dict):
        return {k: _nan_for_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_for_none(v) for v in obj]
    return obj


def span(values: Sequence[float], at: Sequence[Any] = (), name: str = "N") -> str:
    """The first and the last value in percent, each with its ``name = at[i]`` when given."""
    def one(i: int) -> str:
        return pct(values[i]) + (f" at {name} = {at[i]}" if at else "")

    return one(0) if len(values) == 1 else f"{one(0)} to {one(-1)}"


def _window_text(setup: dict[str, Any]) -> str:
    """The PPLNS window of a setup: units, or rounds (``window`` None)."""
    if setup.get("window") is not None:
        return f"{setup['window']} units"
    return f"the shares of the last {setup.get('window_rounds')} rounds"


def _rows(results: dict[str, Any], name: str) -> list[dict[str, Any]]:
    exp = results.get(name)
    if not exp:
        return []
    return list(exp.get("rows") or exp.get("compute_sweep") or [])


def verdicts(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(claim, verdict, the numbers) per claim, from ``simulate.json``; claims whose experiment
    did not run are left out."""
    res = report["results"]
    out: list[tuple[str, str, str]] = []
    comp = [r for r in _rows(res, "competitiveness") if r["n"] >= 2]  # a pool of one is a solo miner
    if comp:
        ns = [r["n"] for r in comp]
        n_txt = f"N = {ns[0]}" + (f" to {ns[-1]}" if len(ns) > 1 else "")
        vs1 = [r["pool_share_vs_1"] for r in comp]
        ok = all(r["pool_share_vs_1"] - 2 * r["pool_share_vs_1_se"] > 0.5 for r in comp)
        carry_rounds = res["competitiveness"].get("carry_rounds")
        has_carry = all("pool_share_vs_1_carry" in r for r in comp)
        carry_ok = has_carry and all(r["pool_share_vs_1_carry"] - 2 * r["pool_share_vs_1_carry_se"] > 0.5 for r in comp)
        not_carry = [r["n"] for r in comp if has_carry and not
                     r["pool_share_vs_1_carry"] - 2 * r["pool_share_vs_1_carry_se"] > 0.5]
        under = [r["n"] for r in comp if r["pool_share_vs_1"] < r["proportional_vs_1"] - 2 * r["pool_share_vs_1_se"]]
        text = (f"Against one solo miner with one member's compute, a pool of {n_txt} members wins a share of rounds "
                f"of {span(vs1, ns)} when every round is a fresh search")
        if has_carry:
            text += (f", and {span([r['pool_share_vs_1_carry'] for r in comp], ns)} when every party keeps its results "
                     f"across tasks of {carry_rounds} rounds"
                     + (f" (not clearly above half at N = {', '.join(map(str, not_carry))})" if not_carry else ""))
        text += ". " + (f"Below its share of the compute, N/(N+1), at N = {', '.join(map(str, under))}: more compute "
                        "does not buy proportionally more blocks, because the winner is the best test score among a "
                        "few committed candidates, and validation predicts it weakly." if under else
                        "That matches its share of the compute, N/(N+1).")
        out.append(("A pool is more competitive than an individual miner (the paper's claim).",
                    "holds" if ok and (carry_ok or not has_carry) else "holds in part" if ok else "does not hold",
                    text))
        vs_n = [r["pool_share_vs_n"] for r in comp]
        keys = [r.get("pool_share_vs_n_keys") for r in comp]
        carry = [r.get("pool_share_vs_n_carry") for r in comp]
        fair = all(abs(v - 0.5) <= 2 * r["pool_share_vs_n_se"] + 0.02 for v, r in zip(vs_n, comp))
        better = all(v > 0.5 + 2 * r["pool_share_vs_n_se"] for v, r in zip(vs_n, comp))
        text = (f"Against N solo miners with the same total compute, the pool's share of rounds is {span(vs_n, ns)} "
                "(a party with half the compute would win 50%)")
        if all(v is not None for v in carry):
            text += f"; {span(carry, ns)} when results carry over tasks"
        if all(v is not None for v in keys):
            keys_se = [r.get("pool_share_vs_n_keys_se") or r["pool_share_vs_n_se"] for r in comp]
            k_fair = [n for n, v, se in zip(ns, keys, keys_se) if abs(v - 0.5) <= 2 * se]
            k_below = [n for n, v, se in zip(ns, keys, keys_se) if v < 0.5 - 2 * se]
            k_above = [n for n, v, se in zip(ns, keys, keys_se) if v > 0.5 + 2 * se]
            found = [f"about its fair share of 50% at N = {', '.join(map(str, k_fair))}" if k_fair else "",
                     f"above it at N = {', '.join(map(str, k_above))}" if k_above else "",
                     f"below it at N = {', '.join(map(str, k_below))}" if k_below else ""]
            text += (f". If the pool commits under N keys (`--commit-keys N`), as many candidates as the N solo miners "
                     f"together, it wins {span(keys, ns)}: " + ", ".join(f for f in found if f))
            if k_below:
                text += (" (the more parties, the more of them reveal the top test score, and a tie is a draw: one "
                         "ticket per commitment, the lower hash of the round's test key and the commitment wins)")
        text += (". The chain bounds commitments per key, not per miner, so under one key the pool reveals its best "
                 "of 8 candidates against the N solo miners' best of 8 N, and the party with more candidates wins "
                 "more rounds. Partitioning saves duplicate work (claim 4), but while the miners' compute is small "
                 "against the space, duplicates are rare anyway.")
        by_val = [r.get("pool_share_vs_n_by_val") for r in comp]
        if all(v is not None for v in by_val):
            lottery = all(abs(v - 1 / (n + 1)) <= 0.05 for v, n in zip(by_val, ns))
            text += (f" If every party had to reveal its best result by validation (no choice on the test set), the "
                     f"pool would win {span(by_val, ns)}, against one party's share 1/(N+1) of "
                     f"{span([1 / (n + 1) for n in ns], ns)}"
                     + (": the best architecture by validation is hardly better on the test set than another "
                        "party's, so the contest is close to a lottery over parties." if lottery else "."))
        verdict = "holds" if better else "holds only as a fair share" if fair else "does not hold"
        collab = _rows(res, "collaboration")
        if collab:
            cns = [r["n"] for r in collab]
            built = [r["shared_distinct"] for r in collab]
            ses = [math.nan if r.get("shared_distinct_se") is None else r["shared_distinct_se"] for r in collab]
            below = [n for n, v in zip(cns, built) if v < 0.5]
            clear = [n for n, v, se in zip(cns, built, ses) if v - 2 * se > 0.5]
            exp7 = res["collaboration"]
            verdict = "holds" if not below else "holds in part" if len(below) < len(collab) else "does not hold"
            text = (f"**The pool as the manager runs it** (one shared search fed by every member's results, its best "
                    f"{report['setup']['commit_k']} N distinct results committed under N keys, as many commitments "
                    f"as the N solo miners; experiment 7: tasks of {exp7.get('task_rounds', '?')} rounds, the solo "
                    f"miners running regularised evolution) wins {span(built, cns)} of the rounds against N solo "
                    f"miners of the same total compute (fair share 50%; ± in the table)"
                    + (f"; below half at N = {', '.join(map(str, below))}" if below else "")
                    + (f"; more than two standard errors above half at N = {', '.join(map(str, clear))}" if clear else "")
                    + ". **The paper's pool** (random search inside its subspaces, one key; experiment 1): " + text)
        out.append(("A pool is more competitive than the same compute mining solo.", verdict, text))
    inc = [r for r in _rows(res, "income") if r["n"] >= 2]
    if inc:
        paid = [r for r in inc if not math.isnan(r["member_cv_default"])]  # a pool that never won has no CV
        unpaid = [r["n"] for r in inc if math.isnan(r["member_cv_default"])]
        ratio = [(r["n"], r["member_mean_default"] / r["solo_mean"]) for r in inc if r["solo_mean"] > 0]
        steadier = [r["n"] for r in inc if r["member_cv_default"] < r["solo_cv"]]
        cv_text = ("member –" if not paid else
                   f"member {f2(paid[0]['member_cv_default'])} at N = {paid[0]['n']}"
                   + (f" to {f2(paid[-1]['member_cv_default'])} at N = {paid[-1]['n']}" if len(paid) > 1 else ""))
        cv_text += (f" (none at N = {', '.join(map(str, unpaid))}: the pool never won)" if unpaid else "")
        cv_text += (f", solo {f2(inc[0]['solo_cv'])} at N = {inc[0]['n']}"
                    + (f" to {f2(inc[-1]['solo_cv'])} at N = {inc[-1]['n']}" if len(inc) > 1 else ""))
        ratio_text = ("–" if not ratio else f"{ratio[0][1]:.2f} at N = {ratio[0][0]}"
                      + (f" to {ratio[-1][1]:.2f} at N = {ratio[-1][0]}" if len(ratio) > 1 else ""))
        verdict = "holds" if len(steadier) == len(inc) else "holds in part" if steadier else "does not hold"
        lead = ""
        collab = _rows(res, "collaboration")
        if collab:
            st = [r["n"] for r in collab if r["member_cv"] < r["solo_cv"]]
            verdict = "holds" if len(st) == len(collab) else "holds in part" if st else "does not hold"
            lead = ("**The pool as the manager runs it** (experiment 7): coefficient of variation of a member's income "
                    "per round " + "; ".join(f"N = {r['n']}: {f2(r['member_cv'])} against a solo miner's "
                                             f"{f2(r['solo_cv'])}" for r in collab)
                    + (f"; not steadier at N = {', '.join(str(r['n']) for r in collab if r['n'] not in st)}"
                       if len(st) < len(collab) else "") + ". **The paper's pool** (experiment 2): ")
        out.append((
            "Pool members earn a steadier income than solo miners of equal compute.",
            verdict,
            lead + f"Coefficient of variation of income per round: {cv_text}. Mean income of a member over "
            f"a solo miner's: {ratio_text}, which follows the pool's share of "
            f"rounds (claim above) less the {report['setup']['fee_ppm'] / 1e4:g}% fee. "
            + (f"Steadier at N = {', '.join(map(str, steadier))}" if steadier else "Never steadier")
            + (": where the pool rarely wins, its members' income is as lumpy as a solo miner's."
               if len(steadier) < len(inc) else ".")
            + (f" The pool's PPLNS window ({inc[-1]['window_default']}) keeps a big pool's members steadier than a "
               f"fixed {inc[-1]['window_fixed']} would, which covers only the end of its round: at N = {inc[-1]['n']} a "
               f"member's CV is {f2(inc[-1]['member_cv_default'])}, against {f2(inc[-1]['member_cv_fixed'])}."
               if inc[-1]["member_cv_default"] < inc[-1].get("member_cv_fixed", -math.inf) else "")))
    srch = res.get("search")
    if srch:
        rows_c = srch["compute_sweep"]
        dup_p = [r["pool_dup"] for r in rows_c]
        dup_b = [r["bare_dup"] for r in rows_c]
        dup_i = [r["indep_dup"] for r in rows_c]
        val_gain = [r["bare_val"] - r["indep_val"] for r in rows_c]
        cs = [r["compute"] for r in rows_c]
        ok = all(b <= i for b, i in zip(dup_b, dup_i))
        out.append((
            "Partitioning the space removes duplicate work.",
            "holds" if ok else "does not hold",
            f"Duplicate-evaluation rate across the compute sweep (N = {srch['compute_sweep'][0]['n']}): partitioned "
            f"without backups {span(dup_b, cs, 'c')}, with the backup rule {span(dup_p, cs, 'c')} (backups search their "
            f"primaries' subspaces again), independent {span(dup_i, cs, 'c')}. Best validation count at the deadline, "
            "partitioned minus independent: "
            f"{min(val_gain):+.2f} to {max(val_gain):+.2f} images."))
    churn = _rows(res, "churn")
    if churn:
        off = {r["p"]: r for r in churn if r["backups"] == "off"}
        on = [r for r in churn if r["backups"] == "on" and r["p"] > 0 and r["p"] in off]
        best: dict[float, dict[str, Any]] = {}
        for r in on:
            if r["p"] not in best or r["hr_complete"] > best[r["p"]]["hr_complete"]:
                best[r["p"]] = r
        lines = []
        for p, r in sorted(best.items()):
            o = off[p]
            lines.append(f"p = {p:g}: high-reward subspaces complete {pct(o['hr_complete'])} without backups, "
                         f"{pct(r['hr_complete'])} with threshold {r['threshold']:g} (all subspaces "
                         f"{pct(o['all_complete'])} and {pct(r['all_complete'])}; rounds won {pct(o['pool_share'])} and "
                         f"{pct(r['pool_share'])})")
        gain = max((r["hr_complete"] - off[p]["hr_complete"] for p, r in best.items()), default=0.0)
        cost = max((off[r["p"]]["all_complete"] - r["all_complete"] for r in on), default=0.0)
        default = [r for r in on if r["threshold"] == res["churn"].get("default_threshold", 0.25)]
        d_gain = max((r["hr_complete"] - off[r["p"]]["hr_complete"] for r in default), default=float("nan"))
        verdict = ("does not hold" if gain <= 0.005 else "holds weakly" if gain < 0.05
                   else "holds, at a cost" if cost > gain else "holds")
        text = ("; ".join(lines) + ". " if lines else "No churn rows with p > 0. ")
        text += (f"The best threshold gains at most {100 * gain:.1f} points of high-reward completion"
                 + (f" (the default 0.25: {100 * d_gain:.1f})" if d_gain == d_gain else "")
                 + f", and costs up to {100 * cost:.1f} points of completion over all subspaces: a backup member "
                 "searches its primary's subspaces with the compute its own subspaces would have had, so a silent "
                 "drop is covered only by work taken from elsewhere. Rounds won move within their standard error.")
        out.append(("Backup members make high-reward subspaces complete under churn (the paper's claim).", verdict,
                    text))
    net = res.get("network") or {}
    aggs = net.get("aggregates") or []
    if aggs:
        reals = [r for r in aggs if r["model"] == "real network"]
        carried = [r for r in aggs if r["model"] == "tasks of R rounds"]
        evolved = [r for r in aggs if r["model"] == "tasks of R rounds, evolution"]
        shared = [r for r in aggs if r["model"] == "tasks of R rounds, shared search"]

        def setup_text(real: dict[str, Any]) -> str:
            sims = [r for r in carried if r["setup"] == real["setup"]]
            evo = [r for r in evolved if r["setup"] == real["setup"]]
            return (f"{real['setup']}, {real['rounds']} rounds: the pool won {pct(real['pool_share'])} of them "
                    f"({real['direction']}); simulated with results kept across the task: " + ", ".join(
                        f"{pct(r['pool_share'])} at noise {r['noise']:g} ({r['direction']}: "
                        f"{'agrees' if r['agrees'] else 'disagrees'}; as few or fewer pool wins in "
                        f"{pct(r['p_pool_at_most_real'])} of simulated sets of runs, as many or more in "
                        f"{pct(r['p_pool_at_least_real'])})" for r in sims)
                    + ("" if not evo else "; with the miners' evolution, as on the devnet: " + ", ".join(
                        f"{pct(r['pool_share'])} at noise {r['noise']:g} ({'agrees' if r['agrees'] else 'disagrees'})"
                        for r in evo)))

        real_runs = [r for r in _rows(res, "network") if r["model"] == "real network"]
        dates = [re.search(r"\d{4}-\d{2}-\d{2}", str(r.get("run", ""))) for r in real_runs]
        if shared and real_runs and all(d and d.group(0) >= SHARED_SEARCH_SINCE for d in dates):
            # every run's pool ran the shared search (the devnet's pool since then): that model
            def shared_text(real: dict[str, Any]) -> str:
                sims = [r for r in shared if r["setup"] == real["setup"]]
                return (f"{real['setup']}, {real['rounds']} rounds: the pool won {pct(real['pool_share'])} of them "
                        f"({real['direction']}); simulated (the pool's shared search, the solo miners' evolution, "
                        "results kept across the run): " + ", ".join(
                            f"{pct(r['pool_share'])} at noise {r['noise']:g} ({r['direction']}: "
                            f"{'agrees' if r['agrees'] else 'disagrees'}; as few or fewer pool wins in "
                            f"{pct(r['p_pool_at_most_real'])} of simulated sets of runs, as many or more in "
                            f"{pct(r['p_pool_at_least_real'])})" for r in sims))

            ok = all(r["agrees"] for r in shared)
            unsettled = [r for r in reals if abs(r["pool_share"] - 0.5) <= 2 * math.sqrt(0.25 / max(1, r["rounds"]))]
            out.append((
                "The real network agrees in direction with the simulation (a pool against the same compute mining "
                "solo).",
                "does not hold" if not ok else "holds weakly" if unsettled else "holds",
                "; ".join(shared_text(r) for r in reals) + "."
                + (" The real share lies within two standard errors of half, so the direction is not settled by the "
                   "real runs alone." if unsettled else "")))
            reals = []  # done
        parts = [setup_text(r) for r in reals if r.get("pool_keys", 1) == 1]
        keyed = [setup_text(r) for r in reals if r.get("pool_keys", 1) > 1]
        if keyed:
            parts.append("beyond the issue's comparison, with the pool committing under several keys (a what-if "
                         "that `--commit-keys` makes real): " + "; ".join(keyed))
        runs = [r for r in _rows(res, "network") if r["model"] == "real network" and r.get("pool_keys", 1) == 1]
        won = ", ".join(f"{r['pool_wins']} of {r['rounds']}" for r in runs)
        spread = (f" Single runs under one key vary widely: the pool won {won}"
                  " rounds, and the simulation gives runs that far apart too (per-run table below)." if len(runs) > 1
                  else "")
        one_key = [r for r in carried if r.get("pool_keys", 1) == 1]
        ok = bool(one_key) and all(r["agrees"] for r in one_key)  # the project's pool: one key
        # is the real direction itself clear? the pool's share against half, two standard errors
        unsettled = [r for r in reals if r.get("pool_keys", 1) == 1
                     and abs(r["pool_share"] - 0.5) <= 2 * math.sqrt(0.25 / max(1, r["rounds"]))]
        def settle_text(real: dict[str, Any]) -> str:
            sims = [r["pool_share"] for r in carried if r["setup"] == real["setup"]]
            more = ("" if not sims else ", and the real pool won more rounds than the simulation's typical run"
                    if real["pool_share"] > max(sims) else ", and the real pool won fewer rounds than the "
                    "simulation's typical run" if real["pool_share"] < min(sims) else "")
            return (f" The real share {pct(real['pool_share'])} of {real['rounds']} rounds lies within two standard "
                    f"errors (± {pct(2 * math.sqrt(0.25 / real['rounds']))}) of half, so the real runs lean the "
                    f"simulation's way without settling the direction{more} (see the P columns below).")

        settle = "".join(settle_text(r) for r in unsettled)
        if reals:
            out.append((
                "The real network agrees in direction with the simulation (a pool against the same compute mining "
                "solo).",
                "does not hold" if not ok else "holds weakly" if unsettled else "holds",
                "; ".join(parts) + "." + spread + settle + " The devnet keeps one task, so the simulation whose "
                "parties keep their results across a task is the one that models it."))
    strat = _rows(res, "strategy")
    if strat:
        # lower by more than two standard errors of the difference (the races share no draws)
        lo = [r for r in strat if r["random_vs_1"] - r["evolution_vs_1"]
              > 2 * math.hypot(r["random_vs_1_se"], r["evolution_vs_1_se"])]
        out.append((
            "Partitioning suits the miners' evolutionary search as well as random search (beyond the paper).",
            "holds" if not lo else "holds in part" if len(lo) < len(strat) else "does not hold",
            "With tasks of " + str(res["strategy"].get("carry_rounds", "?")) + " rounds, the pool's share against one "
            "solo miner with random search and with regularised evolution: " + "; ".join(
                f"N = {r['n']}: {pct(r['random_vs_1'])} and {pct(r['evolution_vs_1'])} (against N solo miners "
                f"{pct(r['random_vs_n'])} and {pct(r['evolution_vs_n'])})" for r in strat) + ". A member evolves one "
            "population per assigned subspace, each fed a fraction of its trainings and kept to its index range, while "
            "a solo miner evolves one population over the whole space. "
            + (f"Evolution lowers the pool's share by more than two standard errors at N = "
               f"{', '.join(str(r['n']) for r in lo)}: there the partition costs the search its hill-climbing."
               if lo else "Evolution never lowers the pool's share by more than two standard errors.")))
    collab = _rows(res, "collaboration")
    if collab:
        at_half = [r for r in collab if r["shared"] >= 0.5]
        steady = [r for r in collab if r["member_cv"] < r["solo_cv"]]
        fair_and_steady = [r for r in collab if r in at_half and r in steady]
        exp = res["collaboration"]
        out.append((
            "A pool whose members share one search wins at least its fair share (50%) against N solo miners of the "
            "same compute, and its members' income is steadier than a solo miner's (issue 19).",
            "holds" if len(fair_and_steady) == len(collab) else "holds in part" if fair_and_steady else "does not hold",
            f"Tasks of {exp.get('task_rounds', '?')} rounds, a cell winning once per task, the solo miners running "
            f"regularised evolution; the pool's share with its shared search under N keys (spread over its best "
            f"{exp.get('pool_distinct', '?')} results): " + "; ".join(
                f"N = {r['n']}: {pct(r['shared'])} (all distinct {pct(r['shared_distinct'])}, one key "
                f"{pct(r['shared_1key'])}, one evolution per member and subspace {pct(r['evolution'])}; member CV "
                f"{f2(r['member_cv'])} against {f2(r['solo_cv'])})" for r in collab) + "."
            + (f" Below half at N = {', '.join(str(r['n']) for r in collab if r not in at_half)}." if len(at_half) < len(collab)
               else "")
            + (f" Members' income is not steadier at N = {', '.join(str(r['n']) for r in collab if r not in steady)}."
               if len(steady) < len(collab) else "")))
    return out


def _strip_title(md: str) -> str:
    lines = md.strip().splitlines()
    return "\n".join(lines[1:]).strip() if lines and lines[0].startswith("# ") else md.strip()


def _task_of(report: dict[str, Any], meta: dict[str, Any] | None) -> str:
    return str((meta or {}).get("task") or report.get("table", {}).get("task") or "digits")


def _meta(report: dict[str, Any]) -> dict[str, Any] | None:
    """The score table's meta file (beside the table), or None."""
    path = Path(str(report["table"]["path"]) + ".meta.json")
    if not path.is_absolute():
        path = REPO / path
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _table_section(meta: dict[str, Any] | None, report: dict[str, Any]) -> str:
    t = report["table"]
    task = _task_of(report, meta)
    where = ("the built-in digits task (validation {v} images, fixed held-out test {te} images)" if task == "digits" else
             "MNIST-1D, the default task, epoch 0 of the devnet reference chain (validation {v} samples, a held-out "
             "test set of {te} samples generated from a fixed key)").format(v=t["val_total"], te=t["test_total"])
    lines = [f"- **Score table**: `bench/paper/{Path(t['path']).name}`, {t['rows']:,} of {t['space_size']:,} "
             f"NAS-Bench-201 cells, each trained once on {where}; best validation {t['best_val']}, best test "
             f"{t['best_test']}."]
    if meta:
        runs = meta.get("runs", [])
        lines.append(f"  Recipe `{meta['recipe_name']}` {meta['recipe']}, seed {meta['seed']}; "
                     f"{'complete' if meta.get('complete') else 'partial: a uniform random sample of the space, rows trained in a fixed pseudo-random order'}; "
                     f"{len(runs)} build runs ({', '.join(sorted({r['torch'] + ' on ' + r['cpu'] + ' ' + r['device'] for r in runs}))}).")
    noise = report["setup"].get("seed_noise")
    if noise:
        lines.append("- **Seeds**: every party trains a cell with its own seed. The simulation adds to a party's result "
                     "for a cell a normal deviation measured from two seeds of the same cells (" + noise.get("source", "")
                     + "; standard deviations by validation range: " + ", ".join(
                         f"{'up to ' + format(b[0], 'g') if isinstance(b[0], int | float) and b[0] < math.inf else 'above'}: val "
                         f"{b[1]:.1f}, test {b[2]:.1f}, correlation {b[3]:.2f}" for b in noise["bins"]) + "), so two "
                     "parties' trainings of a cell differ as two seeds do, and a win spends only the winner's "
                     "(genotype, seed).")
    return "\n".join(lines)


def _correlation(task: str) -> dict[str, Any] | None:
    path = CORRELATION.get(task)
    try:
        return json.loads(path.read_text()) if path else None
    except (OSError, ValueError):
        return None


def _seed_rho(task: str) -> float | None:
    """Spearman rho of the test scores of two training seeds over 200 random cells, or None."""
    corr = _correlation(task)
    if not corr:
        return None
    if "noise_ceiling" in corr:
        return corr["noise_ceiling"].get("spearman_test", corr["noise_ceiling"].get("spearman_val"))
    for r in corr.get("results", {}).values():
        if "rho_seeds" in r:
            return float(r["rho_seeds"])
    return None


def _correlation_section(task: str) -> str:
    corr = _correlation(task)
    if not corr:
        return ""
    if "noise_ceiling" in corr:  # the digits measurement
        ceiling = corr.get("noise_ceiling", {}).get("spearman_val")
        parts = [f"{name} {r['spearman_val']:.2f}" for name, r in corr.get("results", {}).items()]
        return ("- **Why the devnet recipe itself**: no cheaper recipe reaches the issue's Spearman ρ ≥ 0.8 against "
                f"devnet on 200 random cells (same seed: {', '.join(parts)}), and devnet retrained with another seed "
                f"ranks them at only ρ = {ceiling:.2f}: most cells score within a few validation images of each other. "
                "Details in `bench/paper/README.md`.")
    r = next(iter(corr.get("results", {}).values()), {})
    return ("- **How far a score is the cell's** (`bench/paper/correlate.py`, 200 random cells): two training seeds "
            f"rank them at Spearman ρ = {r.get('rho_seeds', math.nan):.2f} (within the top quarter "
            f"{r.get('rho_seeds_top_quarter', math.nan):.2f}); the top tenth beats the median cell by "
            f"{r.get('top_tenth_points', math.nan):.1f} points; two test sets of other keys rank the top 20 at ρ = "
            f"{r.get('rho_test_keys_top', math.nan):.2f}. Details in `docs/task.md`.")


def load(results: Path) -> dict[str, Any]:
    """``simulate.json`` of a results folder; :class:`ReportError` when missing or broken."""
    sim_path = results / "simulate.json"
    try:
        report = json.loads(sim_path.read_text())
    except FileNotFoundError:
        raise ReportError("no-results", f"{sim_path} is missing: run bench/paper/simulate.py first") from None
    except (OSError, ValueError) as e:
        raise ReportError("bad-results", f"{sim_path}: {e}") from None
    if not isinstance(report, dict) or not isinstance(report.get("results"), dict) or "table" not in report:
        raise ReportError("bad-results", f"{sim_path}: not a simulate.py report")
    report["results"] = _nan_for_none(report["results"])
    return report


def _setup_lines(report: dict[str, Any]) -> list[str]:
    setup = report["setup"]
    plan = report["plan"]
    meta = _meta(report)
    out = [_table_section(meta, report)]
    corr_line = _correlation_section(_task_of(report, meta))
    if corr_line:
        out.append(corr_line)
    out += [
        "- **Simulation** (`bench/paper/simulate.py`, its docstring has the whole model): the project's own "
        "`get_space(\"nb201\").partition`, `pool.schedule.Scheduler` (join, heartbeat, check, plan_round, record, "
        "end_round: high reward, standard deviations, backups), `pool.search.SharedSearch` (experiments 5 and 7), "
        "`make_window` and `split_reward`, driven in the pool manager's call order. An evaluation is a table lookup: "
        "the miner sees the validation count, and the test count stands for the score on the round's secret test set.",
        f"- Constants from the devnet preset and `ManagerConfig`: {setup['commit_window']:g} s commit window, "
        f"{setup['round_seconds']:g} s rounds, {setup['commit_k']} commitments per key, fee "
        f"{setup['fee_ppm'] / 1e4:g}%, finder bonus {setup['finder_bonus_ppm'] / 1e4:g}%, PPLNS window "
        f"{_window_text(setup)}, std_threshold {setup['std_threshold']}, top_k {setup['top_k']}, history "
        f"{setup['history']}. Compute: {setup['compute']} evaluations per member (and per solo miner) per round, "
        "20 trainings per round scaled by the table's coverage of the space.",
        f"- Runs: N = {', '.join(map(str, plan['ns']))}; {plan['rounds']:,} rounds per race in experiments 1 and 2; "
        f"search sweep with N = {plan['search_n']} at c = {', '.join(map(str, plan['search_computes']))}; churn with "
        f"N = {plan['churn_n']}, p = {', '.join(f'{p:g}' for p in plan['churn_ps'])}, {plan['churn_rounds']:,} "
        f"rounds; search strategies with N = {', '.join(map(str, plan.get('strategy_ns', ())))}; collaboration with N = "
        f"{', '.join(map(str, plan.get('collab_ns', ())))}, {plan.get('collab_rounds', '?')} rounds in tasks of "
        f"{plan.get('collab_task_rounds', '?')}; seed {report['seed']}; test noise {setup['test_noise']:g} unless a "
        f"table says otherwise. The run took {report['timings_s']['total']:.0f} s.",
        ""]
    return out


def _sections(report: dict[str, Any], results: Path, page_dir: Path, level: str = "##") -> list[str]:
    rel = Path(os.path.relpath(results.resolve(), page_dir.resolve())).as_posix()
    out: list[str] = []
    for name, title in SECTIONS:
        md = results / f"{name}.md"
        if name not in report["results"] or not md.exists():
            continue
        out += [f"{level} {title}", "", _strip_title(md.read_text()), ""]
        if (results / f"{name}.png").exists():
            out += [f"![{title}]({rel}/{name}.png)", ""]
    return out


def _by_n(report: dict[str, Any], exp: str, key: str) -> dict[int, float]:
    return {r["n"]: r[key] for r in _rows(report["results"], exp) if key in r}


def changes(new: dict[str, Any], base: dict[str, Any]) -> str:
    """What changed from the baseline (the digits task) to the default task, side by side."""
    new_task, base_task = _task_of(new, _meta(new)), _task_of(base, _meta(base))
    lines = [f"| measure | {base_task} | {new_task} |", "| --- | ---: | ---: |"]

    def row(name: str, a: Any, b: Any) -> None:
        lines.append(f"| {name} | {a} | {b} |")

    def num(x: float | None, fmt: str = "{:.2f}") -> str:
        return "–" if x is None or x != x else fmt.format(x)

    row("score table (rows of the space)", f"{base['table']['rows']:,}", f"{new['table']['rows']:,}")
    row("test set per round", f"{base['table']['test_total']} (fixed)", f"{new['table']['test_total']} in the table "
        "(a fresh set from each round's key on the chain: 20,000 on devnet)" if new_task != "digits" else "")
    row("Spearman ρ, two training seeds, 200 cells", num(_seed_rho(base_task)), num(_seed_rho(new_task)))
    row("parties' own training seeds modelled", "yes" if base["setup"].get("seed_noise") else "no",
        "yes" if new["setup"].get("seed_noise") else "no")
    ns = sorted(set(_by_n(new, "competitiveness", "pool_share_vs_n")) | set(_by_n(new, "collaboration", "shared_distinct"))
                | set(_by_n(base, "competitiveness", "pool_share_vs_n")))
    cols = (("the paper's pool (random search, 1 key)", "competitiveness", "pool_share_vs_n", "{:.1%}"),
            ("the paper's pool, N keys", "competitiveness", "pool_share_vs_n_keys", "{:.1%}"),
            ("the pool as built (shared search, N keys)", "collaboration", "shared_distinct", "{:.1%}"),
            ("member CV, as built", "collaboration", "member_cv", "{:.2f}"),
            ("solo miner CV", "collaboration", "solo_cv", "{:.2f}"))
    header = ["N"] + [f"{name}: {t}" for name, _e, _k, _f in cols for t in (base_task, new_task)]
    lines += ["", "Against N solo miners of the same total compute (share of rounds won; fair share 50%) and the "
              "income's coefficient of variation per round:", "", "| " + " | ".join(header) + " |",
              "|" + "|".join(" ---: " for _ in header) + "|"]
    for n in ns:
        cells = [str(n)]
        for _name, exp, key, fmt in cols:
            cells += [num(_by_n(base, exp, key).get(n), fmt), num(_by_n(new, exp, key).get(n), fmt)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build(results: Path, page_dir: Path, baseline: Path | None = None) -> str:
    """The page's markdown, its image links relative to ``page_dir``; raises :class:`ReportError`
    on a missing or broken results folder. ``baseline``: a second run (the digits task) shown
    beside the first and in its own section."""
    report = load(results)
    base = load(baseline) if baseline is not None else None
    task = _task_of(report, _meta(report))
    out = ["# Results: the paper's claims, measured",
           "",
           "Generated by `make bench-paper` (`bench/paper/simulate.py` on each task's score table, then "
           "`bench/paper/report.py`); do not edit by hand. The verdicts below are computed from the numbers in the "
           "tables further down.",
           "",
           f"## What holds and what does not ({task})",
           ""]
    for claim, verdict, text in verdicts(report):
        out += [f"- **{claim}** *{verdict.capitalize()}.* {text}", ""]
    if base is not None:
        base_task = _task_of(base, _meta(base))
        out += [f"## What changed from the {base_task} baseline, and why", "", changes(report, base), "",
                *WHY, ""]
    out += ["## Setup", "", *_setup_lines(report)]
    out += _sections(report, results, page_dir)
    if base is not None and baseline is not None:
        out += [f"## Baseline: the {base_task} task", "",
                f"The same experiments on the {base_task} score table (`make bench-paper` reruns them).", "",
                "### What holds and what does not", ""]
        for claim, verdict, text in verdicts(base):
            out += [f"- **{claim}** *{verdict.capitalize()}.* {text}", ""]
        out += ["### Setup", "", *_setup_lines(base)]
        out += _sections(base, baseline, page_dir, "###")
    out += ["## Limits of this study", "", *LIMITS, ""]
    return "\n".join(out)


#: Why the numbers moved (typed by hand: the reasons; the numbers are in the table above it).
WHY = [
    "- **The landscape.** On digits most cells score within a few validation images of each other and two seeds "
    "rank 200 cells at ρ ≈ 0.36, so a round was close to a lottery over parties. On MNIST-1D cells differ by tens of "
    "points and seeds agree (ρ ≈ 0.9): a party that finds better cells wins more rounds.",
    "- **One search for the pool.** The manager's `pool.search.SharedSearch` fits one model of the space to every "
    "member's results and hands out the untrained cells it ranks best; the paper's pool searched at random inside "
    "each member's subspaces. N members feed one model N times the results a solo miner's evolution gets.",
    "- **New seeds of the best cells.** As the pool covers the space, more of its proposals are new trainings of "
    "its best cells (with probability the share of the space covered). N solo miners who found the same good cells "
    "hold N lucky-seed chances; a pool that never trained a cell twice held one, and lost at large N (47% of "
    "rounds at N = 64 without the retrains, 87% with, in a 100-round check).",
    "- **Commitments.** The chain bounds commitments per key; the pool commits under N keys (`--commit-keys`), as "
    "many as its N members would alone, its best distinct results by validation.",
    "- **Seeds.** The table has one training per cell; every party trains with its own seed. The MNIST-1D run "
    "models that from a two-seed measurement (Setup), which also removes the ties of identical table rows (the "
    "digits run, like the earlier MNIST-1D runs, gives every party the table's row).",
]

LIMITS = [
    "- The MNIST-1D run uses the rows of the 3,000-cell table committed when it ran (Setup: a uniform sample of "
    "the space), so compute per member is a single evaluation or a few per round, and experiment 7's 10 tasks per "
    "race leave standard errors of several points at small N.",
    "- One training per cell in each table. The MNIST-1D run adds each party's own seed as a normal deviation "
    "measured on 200 cells (by validation range); real seeds are not normal in the tails.",
    "- The simulated test score is the table's fixed held-out score (plus the party's seed deviation); a real round "
    "draws a fresh key-chosen test set, which moves every score a little and in a correlated way.",
    "- The MNIST-1D table is one task epoch; the chain draws new generator parameters every 20 rounds. The "
    "simulation's tasks of 20 rounds reuse epoch 0's landscape, and nobody (pool or solo miner) carries results "
    "from one task to the next.",
    "- Experiments 1 to 4 and two of experiment 5's models draw at random (members inside their subspaces); the "
    "project's miners run regularised evolution and the manager one shared search: experiments 5 (its last two "
    "models), 6 and 7 run those.",
    "- Ties: the chain gives a tie to the lower hash of the round's test key and the commitment, one ticket per "
    "commitment; the simulation draws one uniform ticket per commitment.",
    "- The real-network runs are short (tens of rounds on two busy cores), so only large effects can show in them.",
]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=str(DEFAULT_RESULTS),
                    help="simulate.py's output folder of the default task (docs/results/mnist1d/)")
    ap.add_argument("--baseline", default=None,
                    help="simulate.py's output folder of the baseline task (default docs/results/digits/ when it "
                         "exists; 'none': no baseline)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="the page to write (docs/results.md)")
    args = ap.parse_args(argv)
    try:
        baseline = (None if args.baseline == "none" else Path(args.baseline) if args.baseline
                    else DEFAULT_BASELINE if (DEFAULT_BASELINE / "simulate.json").exists() else None)
        text = build(Path(args.results), Path(args.out).parent, baseline)
    except ReportError as e:
        print(f"report: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    print(f"report: wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
