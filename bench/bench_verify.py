"""Benchmark of ``ponas`` verification against mining: is checking a round cheap next to winning it?

Run ``python bench/bench_verify.py`` (about a minute and a half on one core) or ``--quick``
(about 30 s: regtest in full, devnet with fewer samples). Exit status 1 when the target fails. Everything runs on CPU, one thread, as
verification does (:func:`consensus.engines.ponas.train.deterministic_cpu`).

For the ``regtest`` and ``devnet`` presets, in one run:

* **test set**: milliseconds to derive a round's test set from its key
  (:func:`~consensus.engines.ponas.data.round_test_set` of the preset's ``test_set_size``),
  paid once per round;
* **evaluate**: milliseconds for :meth:`Verifier.evaluate` of one candidate (weights hash,
  strict safetensors load as the declared architecture, score on the round's test set), with
  the test set already derived; median over several random architectures (each the median of
  a few repeats), mean and max alongside. Evaluation time does not depend on the weight values,
  so candidates beyond the retrained ones use freshly initialised weights;
* **retrain**: seconds for :meth:`Verifier.retrain` (the pinned recipe from scratch) on a fresh
  verifier, mean over a few random architectures (min and max alongside; ``cpu/wall`` near 1
  means the core was not shared). The one-time first-training warm-up of a process (torch's lazy
  initialisation) is measured apart and left out;
* **per round**: a verifier derives the test set, evaluates all C candidates and retrains the
  best one; a miner trains continuously, so its cost per round is the commit window's seconds
  of one core (``trainings/window`` = how many trainings of mean length fit in it). The ratio
  is printed for C = 4 and C = ``max_commitments_per_key`` x 4 miners, with the mean costs
  (and with the worst measured eval and retrain). Target (PASS/FAIL): on devnet the verifier
  stays under 10% of one miner's cost per round, with the mean costs.

Architectures are sampled uniformly from the preset's space with ``random.Random(--seed)``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root

import torch  # noqa: E402

from consensus.engines.ponas.data import digits_splits, round_test_set  # noqa: E402
from consensus.engines.ponas.model import build_model  # noqa: E402
from consensus.engines.ponas.recipe import PRESETS as RECIPES  # noqa: E402
from consensus.engines.ponas.space import get_space  # noqa: E402
from consensus.engines.ponas.train import train  # noqa: E402
from consensus.engines.ponas.verify import Verifier  # noqa: E402
from consensus.engines.ponas.weights import serialize_weights, weights_hash  # noqa: E402
from consensus.params import PonasParams, preset_params  # noqa: E402

TARGET = 0.10  # devnet: verifier cost per round < 10% of one miner's
MINERS = 4
DEFAULT_SEED = 20_240_601


@dataclass(frozen=True, slots=True)
class Plan:
    retrains: int  # architectures retrained (each also becomes an evaluated candidate)
    candidates: int  # architectures evaluated
    repeats: int  # evaluations per candidate
    keys: int  # test-set derivations


@dataclass(frozen=True, slots=True)
class Result:
    preset: str
    params: PonasParams
    test_set_ms: float
    eval_ms: list[float]  # one per candidate: the median of its repeats
    retrain_s: list[float]
    retrain_cpu_s: list[float]

    def verifier_s(self, candidates: int, worst: bool = False) -> float:
        """Seconds of one core to verify a round of ``candidates`` candidates."""
        ev = max(self.eval_ms) if worst else statistics.fmean(self.eval_ms)
        rt = max(self.retrain_s) if worst else statistics.fmean(self.retrain_s)
        return self.test_set_ms / 1000 + candidates * ev / 1000 + rt

    def ratio(self, candidates: int, worst: bool = False) -> float:
        return self.verifier_s(candidates, worst) / self.params.commit_window


def _key(label: str) -> bytes:
    return hashlib.sha256(b"ponas/bench-verify/" + label.encode()).digest()


def measure(preset: str, plan: Plan, rng: random.Random, log: bool = True) -> Result:
    params = preset_params(preset).ponas
    space = get_space(params.space)
    genotypes = [space.sample(rng) for _ in range(max(plan.retrains, plan.candidates))]

    # A round's test set: derived once per round by every verifier.
    derive = []
    for k in range(plan.keys):
        t = time.perf_counter()
        round_test_set(_key(f"{preset}/derive/{k}"), params.test_set_size)
        derive.append((time.perf_counter() - t) * 1000)

    # Retrain: the pinned recipe from scratch, on a fresh verifier each time (no cache).
    retrain_s: list[float] = []
    retrain_cpu: list[float] = []
    candidates: list[tuple[str, bytes]] = []
    for i, g in enumerate(genotypes[: plan.retrains]):
        verifier = Verifier(params)
        t, c = time.perf_counter(), time.process_time()
        _, model = verifier.retrain(g, seed=i)
        retrain_s.append(time.perf_counter() - t)
        retrain_cpu.append(time.process_time() - c)
        candidates.append((g, serialize_weights(model)))  # type: ignore[arg-type]
        if log:
            print(f"  {preset} retrain {i + 1}/{plan.retrains}: {retrain_s[-1]:6.2f} s  {g}", file=sys.stderr, flush=True)
    for g in genotypes[plan.retrains : plan.candidates]:
        candidates.append((g, serialize_weights(build_model(space.name, g))))

    # Evaluate: hash, strict load, score on the (already derived) round test set.
    verifier = Verifier(params)
    key = _key(f"{preset}/round")
    verifier.test_set(key)
    per_candidate: list[list[float]] = [[] for _ in candidates[: plan.candidates]]
    for _ in range(plan.repeats):  # interleaved, so every candidate sees the same machine
        for j, (g, w) in enumerate(candidates[: plan.candidates]):
            h = weights_hash(w)
            t = time.perf_counter()
            verifier.evaluate(w, g, h, key)
            per_candidate[j].append((time.perf_counter() - t) * 1000)
    eval_ms = [statistics.median(xs) for xs in per_candidate]
    return Result(preset, params, statistics.median(derive), eval_ms, retrain_s, retrain_cpu)


def warm_up() -> float:
    """The first training of a process pays torch's lazy initialisation; pay it here, timed."""
    t = time.perf_counter()
    train("nb201", get_space("nb201").encode(10_273), RECIPES["regtest"], 0)
    first = time.perf_counter() - t
    t = time.perf_counter()
    train("nb201", get_space("nb201").encode(10_273), RECIPES["regtest"], 1)
    return first - (time.perf_counter() - t)


def print_report(results: list[Result], seed: int, warmup_s: float, quick: bool) -> bool:
    print(f"bench_verify{' --quick' if quick else ''}: seed {seed}  torch {torch.__version__}  python {platform.python_version()}  "
          f"{platform.machine()} {os.cpu_count()} cpus  one thread (deterministic_cpu)")
    print(f"first training in a process costs {warmup_s:.2f} s more (one-time warm-up, left out below)")
    print()
    print(f"{'preset':7}  {'test n':>6}  {'derive ms':>9}  {'eval ms med':>11}  {'mean/max':>11}  "
          f"{'n':>2}  {'retrain s':>9}  {'min-max':>11}  {'n':>2}  {'cpu/wall':>8}")
    for r in results:
        cpu_wall = sum(r.retrain_cpu_s) / sum(r.retrain_s)
        print(
            f"{r.preset:7}  {r.params.test_set_size:>6}  {r.test_set_ms:>9.1f}  {statistics.median(r.eval_ms):>11.1f}  "
            f"{statistics.fmean(r.eval_ms):>5.1f}/{max(r.eval_ms):<5.1f}  {len(r.eval_ms):>2}  "
            f"{statistics.fmean(r.retrain_s):>9.2f}  {min(r.retrain_s):>5.2f}-{max(r.retrain_s):<5.2f}  "
            f"{len(r.retrain_s):>2}  {cpu_wall:>8.2f}"
        )
    print()
    print(f"{'preset':7}  {'window s':>8}  {'trainings/window':>16}  {'C':>3}  {'verifier s/round':>16}  "
          f"{'ratio':>6}  {'worst':>6}")
    passed = True
    for r in results:
        fits = r.params.commit_window / statistics.fmean(r.retrain_s)
        for c in sorted({4, r.params.max_commitments_per_key * MINERS}):
            ratio = r.ratio(c)
            mark = ""
            if r.preset == "devnet":
                ok = ratio < TARGET
                passed = passed and ok
                mark = "  PASS" if ok else "  FAIL"
            print(
                f"{r.preset:7}  {r.params.commit_window:>8}  {fits:>16.1f}  {c:>3}  {r.verifier_s(c):>16.2f}  "
                f"{ratio:>6.1%}  {r.ratio(c, worst=True):>6.1%}{mark}"
            )
    print()
    print(f"target: devnet verifier cost per round < {TARGET:.0%} of one miner's (the commit window on one core), "
          f"C up to {MINERS} miners x max_commitments_per_key, mean costs: {'PASS' if passed else 'FAIL'}")
    print("(ratio: mean eval and retrain; worst: the slowest measured of each; a miner that also trains through "
          "the reveal window spends commit + reveal seconds, which lowers every ratio)")
    return passed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="regtest in full, devnet with fewer samples (~30 s)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"architecture sampling seed (default {DEFAULT_SEED})")
    args = ap.parse_args(argv)
    plans = {
        "regtest": Plan(retrains=10, candidates=24, repeats=5, keys=5),
        "devnet": Plan(retrains=4, candidates=12, repeats=3, keys=3) if args.quick
        else Plan(retrains=16, candidates=24, repeats=5, keys=5),
    }
    rng = random.Random(args.seed)
    digits_splits()  # load the data outside every timing
    warmup_s = warm_up()
    started = time.perf_counter()
    results = [measure(preset, plans[preset], rng) for preset in ("regtest", "devnet")]
    print(f"measured in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    passed = print_report(results, args.seed, warmup_s, args.quick)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
