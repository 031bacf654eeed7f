"""Benchmark of ``ponas`` verification against mining: is checking a round cheap next to winning it?

Run ``python bench/bench_verify.py`` (about two and a half minutes on one core; digits: about a
minute and a half) or ``--quick`` (under a minute: regtest in full, devnet with fewer samples).
``--task`` picks the chain's built-in task: ``mnist1d`` (the default,
:data:`consensus.params.DEFAULT_TASK`: the 1-D network on procedurally generated MNIST-1D
sequences) or ``digits`` (the 2-D network on scikit-learn's digits). Exit status 1 when the
target fails. Everything runs on CPU, one thread, as verification does: for
``mnist1d`` with the exact kernels (:func:`consensus.engines.ponas.exact.pin_kernels`, called
first thing, and :func:`~consensus.engines.ponas.exact.exact_cpu`), for digits under
:func:`consensus.engines.ponas.train.deterministic_cpu`.

For the ``regtest`` and ``devnet`` presets of the task, in one run (``mnist1d``: the preset's
reference chain, genesis time :data:`consensus.params.REFERENCE_GENESIS_TIME`, at height 1, i.e.
task epoch 0):

* **test set**: milliseconds for :meth:`Verifier.test_set` to derive a round's test set of the
  preset's ``test_set_size`` from its key on a fresh verifier (no cache), paid once per round:
  ``mnist1d``: the round's sequences generated with the epoch's task parameters
  (:meth:`.mnist1d.ChainData.test`); digits: :func:`~consensus.engines.ponas.data.round_test_set`.
  For ``mnist1d`` the epoch's training set (generated once per epoch of ``epoch_rounds`` rounds,
  by miners and verifiers alike) is derived before the timings and its cost printed apart;
* **evaluate**: milliseconds for :meth:`Verifier.evaluate` of one candidate (weights hash,
  strict safetensors load as the declared architecture, score on the round's test set), with
  the test set already derived; median over several random architectures (each the median of
  a few repeats), mean and max alongside. Evaluation time does not depend on the weight values,
  so candidates beyond the retrained ones use freshly initialised weights (of the task's
  network: 1-D for sequences of ``mnist1d``, 2-D for 8x8 digits);
* **retrain**: seconds for :meth:`Verifier.retrain` (the pinned recipe from scratch) on a fresh
  verifier, mean over a few random architectures (min and max alongside; ``cpu/wall`` near 1
  means the core was not shared). The one-time first-training warm-up of a process (torch's lazy
  initialisation) is measured apart and left out;
* **per round**: a verifier derives the test set, scores candidates and retrains the best one;
  a miner trains continuously (pool members train all the time: their results carry over the
  rounds of a task epoch, and a solo miner is a pool of one), so its cost per round is the
  round's seconds of one core, at least its commit and reveal windows (``trainings/round`` =
  how many trainings of mean length fit in them; the ratio to the commit window alone is shown
  beside it). A node verifies
  lazily (protocol v2): once the reveal set has come it scores the listed claims best first and
  stops at the first that holds, so an honest round costs one scoring (row ``lazy``); row
  ``all`` is every candidate scored (each claim above the winner false: each costs its miner's
  key 20 rounds of commitments, and keys without a coin share 16 places a round). The ratio is printed for C = 4 and C = ``max_commitments_per_key`` x
  4 miners, with the mean costs (and with the worst measured eval and retrain). Target
  (PASS/FAIL): on devnet the lazy verifier of an honest round stays under 10% of one miner's
  cost per round, with the mean costs; the ``all`` rows are shown beside it.

For ``mnist1d`` this verification is exact: the score is recomputed exactly (it must equal the
claim, tolerance 0) and the retrain compares the retrained weights' hash with the committed one
(bit-exact training; no score comparison). For digits the score and the retrained model's score
are compared within the preset's ``score_tolerance``; the costs measured are the same steps.

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

import torch  # noqa: E402  (importing torch is fine before pin_kernels; running an op is not)

from consensus.chain import genesis_block  # noqa: E402
from consensus.engines.ponas.data import digits_splits  # noqa: E402
from consensus.engines.ponas.exact import exact_cpu, pin_kernels  # noqa: E402
from consensus.engines.ponas.mnist1d import ChainData  # noqa: E402
from consensus.engines.ponas.model import build_model  # noqa: E402
from consensus.engines.ponas.recipe import PRESETS as RECIPES  # noqa: E402
from consensus.engines.ponas.space import get_space  # noqa: E402
from consensus.engines.ponas.train import train, train_sequences  # noqa: E402
from consensus.engines.ponas.verify import Verifier  # noqa: E402
from consensus.engines.ponas.weights import serialize_weights, weights_hash  # noqa: E402
from consensus.params import DEFAULT_TASK, REFERENCE_GENESIS_TIME, TASKS, PonasParams, preset_params  # noqa: E402

TARGET = 0.10  # devnet: verifier cost per round < 10% of one miner's
MINERS = 4
DEFAULT_SEED = 20_240_601
HEIGHT = 1  # the round measured (mnist1d: task epoch 0); digits has no epochs


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
    epoch_data_s: float | None = None  # mnist1d: deriving the epoch's training set (once per epoch)

    def verifier_s(self, scored: float, worst: bool = False) -> float:
        """Seconds of one core to verify a round in which ``scored`` candidates are scored."""
        ev = max(self.eval_ms) if worst else statistics.fmean(self.eval_ms)
        rt = max(self.retrain_s) if worst else statistics.fmean(self.retrain_s)
        return self.test_set_ms / 1000 + scored * ev / 1000 + rt

    def round_s(self) -> int:
        """One miner's round: the least a round lasts, its commit and reveal windows. Miners
        train through both (``pool/manager.py``: members train all the time, results carry over
        the rounds of a task epoch; a solo miner is a pool of one)."""
        return self.params.commit_window + self.params.reveal_window

    def ratio(self, scored: float, worst: bool = False) -> float:
        return self.verifier_s(scored, worst) / self.round_s()

    def commit_ratio(self, scored: float) -> float:
        """The same against the commit window alone (what earlier runs of this benchmark took as
        a miner's round; shown beside it)."""
        return self.verifier_s(scored) / self.params.commit_window


def lazy_scored(candidates: int) -> float:
    """How many of ``candidates`` honest candidates a node scores under lazy verification
    (``node/rounds.py``, :meth:`RoundService.next_evaluation`): none during the window; once the
    reveal set has come, the best listed claim, and the next only if that one fails. Claims are
    exact, so an honest round costs one scoring, whatever C."""
    return 1.0 if candidates else 0.0


def _key(label: str) -> bytes:
    return hashlib.sha256(b"ponas/bench-verify/" + label.encode()).digest()


def _chain(preset: str, task: str) -> tuple[PonasParams, bytes | None]:
    """The preset's parameters for ``task`` and, for mnist1d, its reference chain's genesis hash
    (what the chain's data derive from)."""
    params = preset_params(preset, task=task, genesis_time=REFERENCE_GENESIS_TIME)
    genesis = genesis_block(params).header.hash() if params.ponas.task == "mnist1d" else None
    return params.ponas, genesis


def _fresh_weights(verifier: Verifier, genotype: str, in_shape: tuple[int, int, int], seed: int) -> bytes:
    """Freshly initialised weights of the task's network for ``genotype`` (built as training
    builds it: for mnist1d inside the exact kernels)."""
    generator = torch.Generator().manual_seed(seed)
    if verifier.exact:
        with exact_cpu():
            return serialize_weights(build_model(verifier.space.name, genotype, 10, in_shape, generator=generator))
    return serialize_weights(build_model(verifier.space.name, genotype, 10, in_shape, generator=generator))


def measure(preset: str, task: str, plan: Plan, rng: random.Random, log: bool = True) -> Result:
    params, genesis = _chain(preset, task)
    height = HEIGHT if params.task == "mnist1d" else None
    space = get_space(params.space)
    genotypes = [space.sample(rng) for _ in range(max(plan.retrains, plan.candidates))]

    # mnist1d: the epoch's training set, derived once per epoch (and cached by the module):
    # derive it here, timed apart, so that no retrain below pays it.
    epoch_data_s = None
    in_shape = (1, 8, 8)  # digits: 8x8 images, one channel
    probe = Verifier(params, genesis=genesis)  # builds the fresh-weight candidates below
    data = probe.data
    if data is not None:
        t = time.perf_counter()
        x, _ = data.train(data.epoch(HEIGHT))
        epoch_data_s = time.perf_counter() - t
        in_shape = (1, 1, int(x.shape[1]))  # sequences: one channel, the sequence length

    # A round's test set: derived once per round by every verifier (a fresh one: no cache).
    derive = []
    for k in range(plan.keys):
        verifier = Verifier(params, genesis=genesis)
        t = time.perf_counter()
        verifier.test_set(_key(f"{task}/{preset}/derive/{k}"), height)
        derive.append((time.perf_counter() - t) * 1000)

    # Retrain: the pinned recipe from scratch, on a fresh verifier each time (no cache).
    retrain_s: list[float] = []
    retrain_cpu: list[float] = []
    candidates: list[tuple[str, bytes]] = []
    for i, g in enumerate(genotypes[: plan.retrains]):
        verifier = Verifier(params, genesis=genesis)
        t, c = time.perf_counter(), time.process_time()
        retrained_hash, model = verifier.retrain(g, seed=i, height=height)
        retrain_s.append(time.perf_counter() - t)
        retrain_cpu.append(time.process_time() - c)
        weights = serialize_weights(model)  # type: ignore[arg-type]
        if weights_hash(weights) != retrained_hash:  # what a verifier compares with the commitment
            raise SystemExit(f"{preset} {g}: the retrained model serialises to other weights than retrain hashed")
        candidates.append((g, weights))
        if log:
            print(f"  {task} {preset} retrain {i + 1}/{plan.retrains}: {retrain_s[-1]:6.2f} s  {g}",
                  file=sys.stderr, flush=True)
    for j, g in enumerate(genotypes[plan.retrains : plan.candidates]):
        candidates.append((g, _fresh_weights(probe, g, in_shape, j)))

    # Evaluate: hash, strict load, score on the (already derived) round test set.
    verifier = Verifier(params, genesis=genesis)
    key = _key(f"{task}/{preset}/round")
    verifier.test_set(key, height)
    per_candidate: list[list[float]] = [[] for _ in candidates[: plan.candidates]]
    for _ in range(plan.repeats):  # interleaved, so every candidate sees the same machine
        for j, (g, w) in enumerate(candidates[: plan.candidates]):
            h = weights_hash(w)
            t = time.perf_counter()
            verifier.evaluate(w, g, h, key, height)
            per_candidate[j].append((time.perf_counter() - t) * 1000)
    eval_ms = [statistics.median(xs) for xs in per_candidate]
    return Result(preset, params, statistics.median(derive), eval_ms, retrain_s, retrain_cpu, epoch_data_s)


def warm_up(task: str) -> float:
    """The first training of a process pays torch's lazy initialisation; pay it here, timed."""
    if task == "mnist1d":
        # regtest-sized data of a chain of its own, so that no measured chain's data is cached by it
        params, _ = _chain("regtest", task)
        data = ChainData(_key("warm-up"), params.train_size, params.validation_size, params.test_set_size,
                         params.epoch_rounds)
        x, y = data.train(0)  # the data outside the timing
        genotype = get_space(params.space).encode(10_273)
        runs = []
        for seed in (0, 1):
            t = time.perf_counter()
            train_sequences(genotype, RECIPES[params.recipe], seed, x, y, space_name=params.space)
            runs.append(time.perf_counter() - t)
        return runs[0] - runs[1]
    t = time.perf_counter()
    train("nb201", get_space("nb201").encode(10_273), RECIPES["regtest"], 0)
    first = time.perf_counter() - t
    t = time.perf_counter()
    train("nb201", get_space("nb201").encode(10_273), RECIPES["regtest"], 1)
    return first - (time.perf_counter() - t)


def print_report(results: list[Result], seed: int, warmup_s: float, quick: bool, task: str = "digits") -> bool:
    threads = "one thread, pinned kernels (exact_cpu)" if task == "mnist1d" else "one thread (deterministic_cpu)"
    print(f"bench_verify --task {task}{' --quick' if quick else ''}: seed {seed}  torch {torch.__version__}  "
          f"python {platform.python_version()}  {platform.machine()} {os.cpu_count()} cpus  {threads}")
    print(f"first training in a process costs {warmup_s:.2f} s more (one-time warm-up, left out below)")
    for r in results:
        if r.epoch_data_s is not None:
            print(f"{r.preset}: the epoch's training set ({r.params.train_size} sequences) derives in "
                  f"{r.epoch_data_s:.2f} s, once per {r.params.epoch_rounds} rounds (left out below)")
    if task == "mnist1d":
        print("verification is exact: the score recomputed exactly (tolerance 0), the retrain compares weights hashes")
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
    print(f"{'preset':7}  {'round s':>7}  {'trainings/round':>15}  {'C':>3}  {'scoring':>7}  {'scored':>6}  "
          f"{'verifier s/round':>16}  {'ratio':>6}  {'worst':>6}  {'commit-window ratio':>19}")
    passed = True
    for r in results:
        fits = r.round_s() / statistics.fmean(r.retrain_s)
        for c in sorted({4, r.params.max_commitments_per_key * MINERS}):
            for mode, scored in (("lazy", lazy_scored(c)), ("all", float(c))):
                ratio = r.ratio(scored)
                mark = ""
                if r.preset == "devnet" and mode == "lazy":
                    ok = ratio < TARGET
                    passed = passed and ok
                    mark = "  PASS" if ok else "  FAIL"
                print(
                    f"{r.preset:7}  {r.round_s():>7}  {fits:>15.1f}  {c:>3}  {mode:>7}  {scored:>6.1f}  "
                    f"{r.verifier_s(scored):>16.2f}  {ratio:>6.1%}  {r.ratio(scored, worst=True):>6.1%}  "
                    f"{r.commit_ratio(scored):>19.1%}{mark}"
                )
    print()
    print(f"target: devnet lazy verifier cost per honest round < {TARGET:.0%} of one miner's (a round's commit and "
          f"reveal windows on one core: miners train through both), C up to {MINERS} miners x "
          f"max_commitments_per_key, mean costs: {'PASS' if passed else 'FAIL'}")
    print("(ratio: mean eval and retrain; worst: the slowest measured of each; commit-window ratio: against the "
          "commit window alone, as measured before)")
    return passed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=TASKS, default=DEFAULT_TASK,
                    help=f"the chain's built-in task (default {DEFAULT_TASK})")
    ap.add_argument("--quick", action="store_true", help="regtest in full, devnet with fewer samples (under a minute)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"architecture sampling seed (default {DEFAULT_SEED})")
    args = ap.parse_args(argv)
    if args.task == "mnist1d":
        pin_kernels()  # exact training and scoring: before the process's first torch operation
    plans = {
        "regtest": Plan(retrains=10, candidates=24, repeats=5, keys=5),
        "devnet": Plan(retrains=4, candidates=12, repeats=3, keys=3) if args.quick
        else Plan(retrains=16, candidates=24, repeats=5, keys=5),
    }
    rng = random.Random(args.seed)
    digits_splits()  # load the data outside every timing (preset_params hashes the digits split for either task)
    warmup_s = warm_up(args.task)
    started = time.perf_counter()
    results = [measure(preset, args.task, plans[preset], rng) for preset in ("regtest", "devnet")]
    print(f"measured in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    passed = print_report(results, args.seed, warmup_s, args.quick, args.task)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
