"""Pool simulation on the score table: is a pool that partitions the space more competitive than
solo miners, and do backup members keep its high-reward subspaces searched under churn?

Usage (from the repo root)::

    python bench/paper/simulate.py                       # full run on the MNIST-1D table: about 20 minutes
                                                         # on 2 cores
    python bench/paper/simulate.py --quick --out /tmp/q  # a small run, under 30 s
    python bench/paper/simulate.py --table PATH --out DIR --seed N --rounds N

Outputs in ``--out`` (default ``docs/results/mnist1d/``; ``make bench-paper`` also runs the
digits table into ``docs/results/digits/``, the baseline): ``simulate.json`` (every number and the setup),
one markdown table per experiment (``competitiveness.md``, ``income.md``, ``search.md``,
``churn.md``, ``network.md``, ``strategy.md``, ``collaboration.md``) and a PNG plot each. ``bench/paper/report.py`` turns them into
``docs/results.md`` (``make bench-paper`` runs both). Progress lines go to stderr. Same table,
same arguments, same seed: same numbers.

**The project's own pool logic** does the pool's work: ``get_space("nb201")`` (15,625 cells:
indices, ``partition``), :class:`pool.schedule.Scheduler` (join, heartbeat, check, plan_round,
record, end_round; high reward, standard deviations and backups), :func:`pool.shares.make_window`,
:class:`pool.shares.Share` and :func:`pool.shares.split_reward`. The constants come from the
project too: the devnet preset of the table's task (``preset_params("devnet", task=...)``: a
45 s commit window and a 30 s reveal window on MNIST-1D, 15 s on digits, 8 commitments per key,
a 50-coin subsidy), the task's devnet recipe's epochs (the weight of one share: 3 on MNIST-1D,
20 on digits) and :class:`pool.manager.ManagerConfig`'s defaults (fee 1 %, finder bonus
0.5 %, PPLNS over the last 3 rounds' shares, heartbeat 2 s, heartbeat timeout 10 s, ``std_threshold`` 0.25,
``top_k`` 3, ``history`` 8, a quarter of the shares verified by sample).

**The table** is ``bench/paper/v1/nb201_mnist1d_devnet_e0.csv.gz`` (``--table``; the table of the
recipe before ``shared_init``, until the current recipe's is built; the digits
baseline: ``nb201_digits_devnet.csv.gz``) read with ``build_table.read_table``; its task comes
from its ``.meta.json``, and with it the devnet preset's windows and recipe.
It may be partial (a uniform random sample of the space): the searchable space is the set of
indices in the table, and a miner searching a subspace (an index range of the Scheduler's plan)
draws among the known indices inside it. The number of rows is printed and recorded.

**The model of a round.**

- Discrete rounds of ``round_seconds`` (commit window 45 s, then the reveal window: 75 s on
  MNIST-1D, 60 s on digits). Round ``r`` starts at ``t0 = round_seconds * r``. Rounds are grouped in *tasks* of ``task_rounds`` T rounds
  (:func:`run_race`): within a task every party keeps what it evaluated, its best results and
  its search state, as the project's manager and miners do on an unchanging task; a new task
  starts every party afresh (as if a new task with this table's landscape were posted). T = 1
  (the default) is a fresh search every round; the devnet's single built-in task is the limit
  of long tasks. Experiment 1 runs both, experiment 5 uses the real runs' length.
- A party is a pool or a solo miner. Every member and every solo miner has the same compute
  ``c``: ``c`` evaluations per round, at times ``t0 + (k + 1/2) * 45 / c`` inside the commit
  window. An evaluation is the lookup of one table row: the miner sees the validation count;
  the test count stands for the score on the round's secret test set. ``--compute auto`` (the
  default) is ``round(20 * rows / 15625)`` (at least 1): a devnet member trains about 20
  architectures a round on one core (digits: 2.2 s each in a 45 s commit window; MNIST-1D:
  3.9 s each, training through the 75 s round, since results carry over the rounds of an
  epoch), and scaling by the table's coverage keeps the ratio of compute to space of the whole
  space (3 evaluations on 2,561 rows).
- A solo miner searches the whole table: uniform draws without replacement (the law of
  :class:`pool.search.RandomSearch`, restricted to the known rows; a new cycle only after all
  rows were drawn).
- A pool member searches only its assigned subspaces, round robin between them (as
  ``pool/member.py`` does, its turn counter kept across rounds), in each uniformly without
  replacement among the known rows of the subspace (a fresh search state per round; a
  subspace exhausted within a round starts a new cycle, which makes duplicates). A subspace
  without any known row is skipped (its architectures have no score yet); a member whose
  subspaces all lack rows idles (counted as ``idle``). Members and solo miners use random
  search, not the miners' default regularised evolution: with ``c`` at most a few evaluations
  per subspace per round, :class:`pool.search.RegularizedEvolution` (population 10) hardly
  leaves its random phase within a round. Over tasks of several rounds it does, so experiment 6
  (:func:`exp_strategy`) runs the tasks of experiment 1 with the project's evolution too.
- Strategy ``"shared"`` (:func:`run_race`, experiment 7): the pool runs ONE search over the
  whole space fed by every member's results (:class:`Shared`: by default an additive model of
  the space, refitted before every evaluation slot, whose best-ranked cells the slot's members
  evaluate; or one regularised evolution), instead of one per member and subspace. Until the
  pool has ``Shared.explore`` results in the task, each member draws at random in its own
  assigned subspaces, as above (the partition: no duplicates); then each member evaluates the
  search's proposal in its slot. A slot's proposals come from what the pool knew before the
  slot (its members train at the same time), and never repeat a cell the pool evaluated in the
  task or gave another member in the slot (the manager deduplicates) while the table has one
  left. The solo miners run the project's regularised evolution over the whole space (the
  miners' default) in a ``"shared"`` race, as in an ``"evolution"`` one.
- The pool follows the manager's call order (``pool/manager.py``): members ``join`` with their
  throughput ``c / 45`` trainings per second; at every round start ``end_round(t0, pool_best)``
  (the pool's ``top_k`` best of the round just ended) and then ``plan_round(t0, rng)``; every
  ``heartbeat`` seconds (2 s) each live member heartbeats and the watchdog runs ``check``; a
  share is recorded (``record``) when the manager would verify it: always when it may enter the
  pool's best 8, else with probability ``verify_rate``. Every share goes into the PPLNS window
  with the devnet recipe's weight (20 units). Shares of one evaluation slot reach the manager
  in a random order.
- At the deadline a party commits its best 8 distinct results by validation (ties: the earlier
  result) and reveals the one with the best test score. A pool that commits under ``pool_keys``
  keys (a what-if of experiment 1; the manager's ``commit_keys``) commits its best
  ``8 * pool_keys``; with ``pool_distinct`` d it spreads its ``8 * pool_keys`` commitments
  round robin over its best d results by validation (several keys commit the same result).
  The round's winner is the best revealed score over the parties, ties broken at random: the
  chain gives a tie to the lower hash of the round's test key and the commitment, a ticket per
  commitment, so a party's priority is the best of one uniform draw per commitment of the
  result it reveals (a pool result committed under m keys: the maximum of m draws).
- Spent work (``won_once``; by default on when the table's task, read from its ``.meta.json``,
  has epochs, or is unknown; off for ``digits``): on a task with epochs (``mnist1d``, the
  default task) a (genotype, seed) pair that already won a block in the epoch earns nothing
  again, and the table has one seed per cell, so a cell that won a round cannot win again in
  its task (a task of the simulation stands for an epoch: 20 rounds on the devnet).
  Every party drops it from its kept results (the manager's ``spent``: the place goes to a
  later result) and never keeps it again in the task, so it reveals its best remaining
  commitment; the "unbounded" diagnostic leaves it out too. With tasks of one round the rule
  never acts.
- Test noise (``--test-noise SIGMA``, default 0 = off): each round, every row's test score gets
  an independent normal perturbation of standard deviation SIGMA test images (of 500), the same
  for every party (one test set per round). The real round test set (300 key-chosen, key-perturbed
  held-out digits) moves scores by a few images; its errors are correlated across
  architectures, which independent noise overstates.
- Rewards: the devnet subsidy (50 coins) goes to the winner. A pool's coinbase is
  ``split_reward(subsidy, window.weights_by_member(), fee 1 %, finder = the member whose result
  was revealed, bonus 0.5 %)`` computed at the deadline, as the manager does at commit time.
- Churn (experiment 4): at each round start every online member (and, separately, every online
  solo miner) drops out with probability ``p``, at a uniform time of the round, *silently*: it
  stops evaluating and heartbeating, and the manager learns of it only through the heartbeat
  timeout (``check``). Its shares sent before the drop count. A solo miner that drops during a
  round has no candidate that round. An offline member or miner comes back at the start of a
  round with probability ``q`` = 0.5 (so it is away two rounds on average), under the same id:
  ``join`` at ``t0``, after ``end_round`` and before the round's plan (the manager replans on
  every join; a join at the round's start makes that replan the round's plan). The drop and comeback draws do not depend
  on the pool's decisions, so every threshold of one ``p`` sees the same churn.

**Experiments** (each a function writing its table and plot): :func:`exp_competitiveness`,
:func:`exp_income`, :func:`exp_search`, :func:`exp_churn`, :func:`exp_network` (the
real-network runs of ``bench/paper/network/`` against the simulation of their setup),
:func:`exp_strategy` (random search against regularised evolution) and
:func:`exp_collaboration` (a pool with one shared search against N solo miners running
evolution, on tasks of 20 rounds); their docstrings define their numbers.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
for _p in (str(REPO), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import build_table as bt  # noqa: E402

from consensus.engines.ponas.recipe import PRESETS as RECIPES  # noqa: E402
from consensus.engines.ponas.space import get_space  # noqa: E402
from consensus.params import preset_params  # noqa: E402
from consensus.types import COIN  # noqa: E402
from pool.manager import ManagerConfig  # noqa: E402
from pool.schedule import Scheduler  # noqa: E402
from pool.search import RegularizedEvolution, SearchStrategy, SharedSearch, make_strategy  # noqa: E402
from pool.shares import Share, make_window, split_reward  # noqa: E402

__all__ = [
    "Table",
    "Setup",
    "load_table",
    "make_setup",
    "run_race",
    "exp_competitiveness",
    "exp_income",
    "exp_search",
    "exp_churn",
    "exp_strategy",
    "exp_collaboration",
    "Shared",
    "run_all",
    "main",
]

SPACE = get_space("nb201")


class _MemoSpace(type(SPACE)):  # type: ignore[misc]
    """``SPACE`` with its pure conversions memoised (``encode``, ``decode``, ``neighbours``):
    the same answers, so the same searches draw for draw, several times faster (the project's
    evolution spends most of its time re-encoding the 24 neighbours of a mutated cell).
    Strategies of the simulation search regions of :data:`FAST` (equal to ``SPACE`` in all but
    speed); the Scheduler's plan keeps ``SPACE``."""

    __slots__ = ()

    def encode(self, index: int) -> str:
        g = _ENCODED.get(index)
        if g is None:
            g = _ENCODED[index] = super().encode(index)
        return g

    def decode(self, genotype: str) -> int:
        i = _DECODED.get(genotype)
        if i is None:
            i = super().decode(genotype)  # raises on a bad genotype: nothing cached
            _DECODED[genotype] = i
        return i

    def neighbours(self, genotype: str) -> tuple[str, ...]:
        out = _NEIGHBOURS.get(genotype)
        if out is None:
            out = _NEIGHBOURS[genotype] = super().neighbours(genotype)
        return out


_ENCODED: dict[int, str] = {}
_DECODED: dict[str, int] = {}
_NEIGHBOURS: dict[str, tuple[str, ...]] = {}
FAST = _MemoSpace()
DEFAULT_TABLE = HERE / "v1" / "nb201_mnist1d_devnet_e0.csv.gz"
DEFAULT_OUT = REPO / "docs" / "results" / "mnist1d"
DEFAULT_NETWORK = HERE / "network"


def default_network(table: Table) -> Path:
    """The real-network runs of the table's task: ``network/`` (digits, or an unknown task),
    ``network_TASK/`` for another."""
    return DEFAULT_NETWORK if table.task in (None, "digits") else HERE / f"network_{table.task}"
EXPERIMENTS = ("competitiveness", "income", "search", "churn", "network", "strategy", "collaboration")
#: Search strategies of :func:`run_race`.
STRATEGIES = ("random", "evolution", "shared")
FEE_ADDRESS = b"\xff" * 20
NO_BACKUP = 1.0  # std_threshold that no metric can exceed: every metric is in 0..1, so pstdev <= 0.5


# ---------------------------------------------------------------------------------------------
# The table and the setup.


@dataclasses.dataclass(frozen=True)
class Table:
    """The known rows, sorted by index: position ``i`` is row ``index[i]``."""

    path: str
    index: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    val_total: int
    test_total: int
    task: str | None = None  # the task it was trained on (its .meta.json), None when unknown

    @property
    def rows(self) -> int:
        return len(self.index)

    def span(self, start: int, stop: int) -> tuple[int, int]:
        """Positions ``[lo, hi)`` of the known indices in ``[start, stop)``."""
        return bisect.bisect_left(self.index, start), bisect.bisect_left(self.index, stop)


def load_table(path: str | Path) -> Table:
    """The table's rows (``build_table.read_table``); raises ``ValueError`` when it has none."""
    rows = bt.read_table(Path(path))
    if not rows:
        raise ValueError(f"{path}: no rows")
    order = sorted(rows)
    totals = {(rows[i].val_total, rows[i].test_total) for i in order}
    if len(totals) != 1:
        raise ValueError(f"{path}: rows with different split sizes {sorted(totals)}")
    (val_total, test_total), = totals
    task = None
    meta = Path(f"{path}.meta.json")
    if meta.exists():
        try:
            task = json.loads(meta.read_text()).get("task")
        except (OSError, ValueError, AttributeError):
            task = None
    return Table(str(path), tuple(order), tuple(rows[i].val_correct for i in order),
                 tuple(rows[i].test_correct for i in order), val_total, test_total,
                 task if isinstance(task, str) else None)


def has_epochs(task: str | None) -> bool:
    """Whether the devnet preset's ``task`` has task epochs (``mnist1d``: the spent-work rule
    acts; ``digits``: it does not). True for an unknown task (the default task's rule)."""
    if task is None:
        return True
    try:
        ponas = preset_params("devnet", data_split_hash=bytes(32), genesis_time=0, task=task).ponas
    except (ValueError, KeyError, TypeError):
        return True
    return ponas is not None and ponas.task_epoch(1) is not None


@dataclasses.dataclass(frozen=True)
class Setup:
    """Every constant of the model (module docstring); :func:`make_setup` reads the project's."""

    compute: int  # evaluations per member (and per solo miner) per round
    commit_window: float
    round_seconds: float
    heartbeat: float
    heartbeat_timeout: float
    commit_k: int
    subspaces_per_member: int
    std_threshold: float
    top_k: int
    history: int
    verify_rate: float
    fee_ppm: int
    finder_bonus_ppm: int
    window: int | None  # PPLNS window in units, or None: by rounds
    window_rounds: int
    share_weight: int
    reward: int
    test_noise: float
    p_back: float = 0.5
    #: each party's own training seed (:class:`SeedNoise`), or None: every party gets the table's
    #: row (the table's one seed for all)
    seed_noise: SeedNoise | None = None


def auto_compute(rows: int) -> int:
    """About 20 trainings per devnet commit window, scaled by the table's share of the space."""
    return max(1, round(20 * rows / SPACE.size))


def make_setup(table: Table, compute: int | None = None, test_noise: float = 0.0,
               seed_noise: SeedNoise | None = None) -> Setup:
    """The model's constants, from the devnet preset, the devnet recipe and ``ManagerConfig``."""
    params = preset_params("devnet", data_split_hash=bytes(32), genesis_time=0, task=table.task or "digits")
    ponas = params.ponas
    assert ponas is not None
    manager = ManagerConfig(node_url="", fee_address=FEE_ADDRESS, datadir="")
    defaults = Scheduler(SPACE)
    return Setup(
        compute=auto_compute(table.rows) if compute is None else int(compute),
        commit_window=float(ponas.commit_window),
        round_seconds=float(ponas.commit_window + ponas.reveal_window),
        heartbeat=manager.heartbeat,
        heartbeat_timeout=manager.heartbeat_timeout,
        commit_k=ponas.max_commitments_per_key,
        subspaces_per_member=defaults.subspaces_per_member,
        std_threshold=manager.std_threshold,
        top_k=manager.top_k,
        history=manager.history,
        verify_rate=manager.verify_rate,
        fee_ppm=manager.fee_ppm,
        finder_bonus_ppm=manager.finder_bonus_ppm,
        window=manager.window,
        window_rounds=manager.window_rounds,
        share_weight=RECIPES[ponas.recipe].epochs,
        reward=params.subsidy(1),
        test_noise=float(test_noise),
        seed_noise=seed_noise,
    )


@dataclasses.dataclass(frozen=True)
class SeedNoise:
    """What a party's own training seed does to a cell's scores, measured: the table holds one
    training (seed 0) per cell, but every party trains a cell with its own seed, and two seeds
    of one cell differ by much more than nothing (on mnist1d, about as much as the top
    quarter's cells differ from each other). A party's result for a cell is the table's row plus
    ``(dv, dt)``: a normal pair with the standard deviations and correlation of ``bins`` (one
    per range of the row's validation count: ``(upper, sd_val, sd_test, corr)``, the first
    whose ``upper`` is at least the row's count), rounded to counts and clipped to the split.
    :func:`seed_noise_from` measures the bins from two tables of the same cells trained with
    two seeds: each seed's deviation is the seeds' difference over sqrt(2), so two parties'
    results differ as two seeds do."""

    bins: tuple[tuple[float, float, float, float], ...]
    source: str = ""

    def params(self, val: int) -> tuple[float, float, float]:
        for upper, sd_v, sd_t, corr in self.bins:
            if val <= upper:
                return sd_v, sd_t, corr
        return self.bins[-1][1:]


def seed_noise_from(path_a: str | Path, path_b: str | Path, bins: int = 4) -> SeedNoise:
    """:class:`SeedNoise` from two tables of the same cells trained with two seeds: ``bins``
    ranges of equal count by seed A's validation count. ``ValueError`` when they share fewer
    than 8 rows per bin or have other split sizes."""
    a, b = bt.read_table(Path(path_a)), bt.read_table(Path(path_b))
    keys = sorted(set(a) & set(b))
    if len(keys) < 8 * bins:
        raise ValueError(f"{path_a}, {path_b}: {len(keys)} common rows, fewer than {8 * bins}")
    if {(a[i].val_total, a[i].test_total) for i in keys} != {(b[i].val_total, b[i].test_total) for i in keys}:
        raise ValueError(f"{path_a}, {path_b}: different split sizes")
    va = np.array([a[i].val_correct for i in keys], dtype=float)
    dv = (np.array([b[i].val_correct for i in keys]) - va) / math.sqrt(2)
    dt = (np.array([b[i].test_correct for i in keys]) - np.array([a[i].test_correct for i in keys])) / math.sqrt(2)
    order = np.argsort(va, kind="stable")
    out = []
    for j, part in enumerate(np.array_split(order, bins)):
        upper = math.inf if j == bins - 1 else float(va[part].max())
        corr = float(np.corrcoef(dv[part], dt[part])[0, 1]) if dv[part].std() > 0 and dt[part].std() > 0 else 0.0
        out.append((upper, round(float(dv[part].std()), 3), round(float(dt[part].std()), 3), round(corr, 3)))
    return SeedNoise(tuple(out), f"{Path(path_a).name} vs {Path(path_b).name}, {len(keys)} cells")


#: The seed pairs :func:`default_seed_noise` measures the model from, by task: the correlation
#: samples of ``bench/paper/correlate.py`` (seed 0 and seed 1 of the same cells), in the folder
#: beside the table (so a table of an older recipe, ``bench/paper/v1/``, gets its own recipe's).
SEED_PAIRS = {
    "mnist1d": ("correlation_mnist1d/nb201_mnist1d_devnet_e0.csv.gz", "correlation_mnist1d/nb201_mnist1d_devnet_e0_seed1.csv.gz"),
}


def default_seed_noise(table: Table) -> SeedNoise | None:
    """The seed model of the table's task (:data:`SEED_PAIRS`, beside the table) when its
    split sizes and recipe match the table's, else None."""
    names = SEED_PAIRS.get(table.task or "")
    if names is None:
        return None
    pair = tuple(Path(table.path).parent / n for n in names)
    if not all(p.exists() for p in pair):
        return None
    recipes = [bt.meta_path(Path(p)) for p in (table.path, pair[0])]
    if all(m.exists() for m in recipes) and len({json.dumps(json.loads(m.read_text()).get("recipe")) for m in recipes}) != 1:
        return None
    rows = bt.read_table(pair[0])
    if {(r.val_total, r.test_total) for r in rows.values()} != {(table.val_total, table.test_total)}:
        return None
    return seed_noise_from(*pair)


class _Seeds:
    """One party's trainings in one task (:class:`SeedNoise`). Each training of a cell is a
    new seed: a result (an *item*: ``pos`` for the party's first training of the cell at table
    position ``pos``, ``pos + rows * k`` for its k-th next) with its own deviation, kept for the
    task (a party keeps its trained weights). Without a model, every training of a cell is the
    table's row: one item, ``pos``."""

    __slots__ = ("table", "model", "rng", "dev", "trained", "last")

    def __init__(self, table: Table, model: SeedNoise | None, rng: np.random.Generator) -> None:
        self.table, self.model, self.rng = table, model, rng
        self.dev: dict[int, tuple[float, float]] = {}
        self.trained: dict[int, int] = {}  # pos -> trainings so far
        self.last = -1  # the item of the last :meth:`evaluate`

    def train(self, pos: int) -> int:
        """A new training of the cell at ``pos``: its item."""
        if self.model is None:
            return pos
        k = self.trained.get(pos, 0)
        self.trained[pos] = k + 1
        return pos + self.table.rows * k

    def evaluate(self, pos: int) -> int:
        """Train the cell at ``pos`` (:meth:`train`, the item in :attr:`last`): its validation count."""
        self.last = self.train(pos)
        return self.val(self.last)

    def _dev(self, item: int) -> tuple[float, float]:
        d = self.dev.get(item)
        if d is None:
            assert self.model is not None
            sd_v, sd_t, corr = self.model.params(self.table.val[item % self.table.rows])
            z1, z2 = self.rng.standard_normal(2).tolist()
            d = self.dev[item] = (sd_v * z1, sd_t * (corr * z1 + math.sqrt(max(0.0, 1 - corr * corr)) * z2))
        return d

    def val(self, item: int) -> int:
        if self.model is None:
            return self.table.val[item]
        pos = item % self.table.rows
        return min(self.table.val_total, max(0, round(self.table.val[pos] + self._dev(item)[0])))

    def test(self, test: Sequence[float]) -> Sequence[float]:
        """The party's test scores this round (``test``: the table's, this round's noise included)."""
        return test if self.model is None else _TestView(self, test)


class _TestView:
    """``seeds``'s test scores over the round's ``test``: indexable like it."""

    __slots__ = ("seeds", "test")

    def __init__(self, seeds: _Seeds, test: Sequence[float]) -> None:
        self.seeds, self.test = seeds, test

    def __getitem__(self, item: int) -> float:
        t = self.seeds.table
        return min(t.test_total, max(0, round(self.test[item % t.rows] + self.seeds._dev(item)[1])))


def _seed(*parts: object) -> int:
    """A 64-bit seed from a label (stable across runs and Python processes)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


def _address(i: int) -> bytes:
    return hashlib.sha256(f"member{i}".encode()).digest()[:20]


# ---------------------------------------------------------------------------------------------
# The race: one pool against n solo miners, round after round.


class _Top:
    """The ``k`` best distinct results by validation (ties: the earlier), as the manager's
    ``_add_top``: entries ``(-val, seq, pos, who)`` sorted, best first. ``banned``: positions
    that may not enter (cells that already won a round of the task: the manager's ``spent``),
    shared with the caller; :meth:`drop` removes one that is kept (the manager makes room for
    others: a later result fills the place)."""

    __slots__ = ("k", "entries", "held", "banned")

    def __init__(self, k: int, banned: set[int] | None = None) -> None:
        self.k = k
        self.entries: list[tuple[int, int, int, int]] = []
        self.held: set[int] = set()
        self.banned: set[int] = set() if banned is None else banned

    def __bool__(self) -> bool:
        return bool(self.entries)

    def at_least(self, val: int) -> int:
        """How many kept results have a validation count of at least ``val``."""
        return bisect.bisect_right(self.entries, (-val, math.inf))

    def add(self, val: int, seq: int, pos: int, who: int) -> None:
        entries = self.entries
        if len(entries) >= self.k and -val >= entries[-1][0]:
            return
        if pos in self.held or pos in self.banned:
            return  # the same architecture, same score: nothing new (or spent work)
        bisect.insort(entries, (-val, seq, pos, who))
        self.held.add(pos)
        if len(entries) > self.k:
            self.held.discard(entries.pop()[2])

    def drop(self, pos: int) -> None:
        """Forget ``pos`` if it is kept."""
        if pos in self.held:
            self.held.discard(pos)
            self.entries = [e for e in self.entries if e[2] != pos]


def _reveal(top: _Top, test: Sequence[float] | Callable[[int], Sequence[float]], by_validation: bool = False,
            limit: int | None = None) -> tuple[float, int, int]:
    """The committed result with the best test score (ties: the first): (score, pos, who). With
    ``by_validation``, the best by validation instead (the first entry), whatever its test score.
    ``limit``: only the best ``limit`` by validation are committed. ``(-inf, -1, -1)`` when
    nothing is committed. ``test``: the scores, or a function of the result's party (``who``)
    giving that party's scores (the solo miners' results taken together, each its own seed)."""
    best = None
    for _neg, _seq, pos, who in top.entries[:1] if by_validation else top.entries[:limit]:
        score = test(who)[pos] if callable(test) else test[pos]
        if best is None or score > best[0]:
            best = (score, pos, who)
    return best if best is not None else (-math.inf, -1, -1)


def _draw(rng: random.Random, n: int, drawn: set[int]) -> int:
    """An offset in ``range(n)`` not in ``drawn`` (a new cycle once all were drawn)."""
    if len(drawn) >= n:
        drawn.clear()
    if 4 * (n - len(drawn)) < n:
        return rng.choice([o for o in range(n) if o not in drawn])
    while True:
        o = rng.randrange(n)
        if o not in drawn:
            return o


#: Proposals :func:`_evolve` tries before it falls back to a random known row.
EVOLVE_TRIES = 20


def _evolve(strategy: SearchStrategy, table: Table, pos_of: dict[int, int], rng: random.Random, lo: int,
            size: int, val_of: Callable[[int], int] | None = None) -> int:
    """One evaluation by a search strategy: its proposal's table position, observed with the
    row's validation count (``val_of(pos)``: the party's own, :class:`_Seeds`). A proposal the
    table lacks (a partial table) is proposed again, up to ``EVOLVE_TRIES`` times, then a
    random known row of the region ``[lo, lo + size)`` stands in."""
    for _ in range(EVOLVE_TRIES):
        genotype = strategy.propose()
        pos = pos_of.get(FAST.decode(genotype))
        if pos is not None:
            break
    else:
        pos = lo + rng.randrange(size)
        genotype = FAST.encode(table.index[pos])
    strategy.observe(genotype, table.val[pos] if val_of is None else val_of(pos))
    return pos


#: The models :class:`Shared` knows.
SHARED_MODELS = ("project", "additive", "evolution")


@dataclasses.dataclass(frozen=True)
class Shared:
    """The pool's one search over the whole space (strategy ``"shared"`` of :func:`run_race`).

    ``explore``: evaluations of the exploration phase; until the pool has that many results in
    the task, each member draws at random in its own assigned subspaces (the plan's partition:
    no duplicates). Then every proposal comes from one search fed by every member's results:

    - ``"project"`` (the default): the manager's own search, :class:`pool.search.SharedSearch`
      (Bayesian linear regression on the cell's operations, Thompson draws; ``explore`` is its
      ``warmup``), limited to the table's rows, fed every member's result as the manager feeds
      it every accepted share; its proposals never repeat a cell;
    - ``"additive"`` (the default): a model of the space. Validation is fitted as a sum of one
      effect per (edge, operation) (30 one-hot features and a constant; ridge regression with
      penalty ``ridge`` on the counts clipped from below at their median, so the many broken
      cells do not drown the differences among good ones), refitted on everything the pool
      evaluated in the task before each evaluation slot; the slot's members evaluate the cells
      the model ranks best among those the pool has not evaluated, best first; ``greedy`` of
      them (a fraction) come from the ranking, the rest are mutations of the pool's best
      results (a one-edit neighbour of one of its ``elite`` best cells, uniformly).
    - ``"evolution"``: :class:`pool.search.RegularizedEvolution` (``population``, ``sample``)
      over the whole space, fed every member's results; ``elite``: when not 0, tournaments
      draw from the pool's ``elite`` best results in the task instead of the aged population
      (members mutate from the pool's best).

    Proposals never repeat a cell the pool evaluated in the task or handed to another member in
    the same slot (the manager deduplicates). A proposal the table lacks is proposed again, up
    to ``EVOLVE_TRIES`` times, then a random known row the pool has not evaluated stands in (as
    :func:`_evolve`). The search ranks and proposes among the table's rows: the table is a
    uniform sample of the space, and the known rows are the simulation's space (as for random
    search).
    """

    model: str = "project"
    explore: int = 10
    population: int = 10
    sample: int = 3
    ridge: float = 1.0
    greedy: float = 1.0
    elite: int = 0
    retrain_power: float = 1.0

    def __post_init__(self) -> None:
        if self.model not in SHARED_MODELS:
            raise ValueError(f"unknown shared model {self.model!r}")
        if self.explore < 1 or self.population < 1 or self.sample < 1 or self.elite < 0:
            raise ValueError("explore, population and sample must be at least 1, elite at least 0")
        if not 0.0 <= self.greedy <= 1.0 or self.ridge <= 0:
            raise ValueError("greedy is a fraction, ridge positive")


def _features(table: Table) -> np.ndarray:
    """One-hot (edge, operation) features of every row and a constant: rows x 31."""
    radix, edges = 5, 6
    x = np.zeros((table.rows, radix * edges + 1))
    idx = np.asarray(table.index)
    for e in range(edges):
        digit = (idx // radix ** (edges - 1 - e)) % radix
        x[np.arange(table.rows), e * radix + digit] = 1.0
    x[:, -1] = 1.0
    return x


class _SharedSearch:
    """The state of a :class:`Shared` search for one task (one per pool and task)."""

    def __init__(self, cfg: Shared, table: Table, pos_of: dict[int, int], feats: np.ndarray,
                 rng: random.Random) -> None:
        self.cfg, self.table, self.pos_of, self.feats, self.rng = cfg, table, pos_of, feats, rng
        self.seen: list[int] = []  # positions observed, in order
        self.unique: dict[int, None] = {}  # the distinct ones, in order
        self.exhausted = False  # every row was evaluated (a finite table: repeats from now on)
        self.best: list[tuple[int, int]] = []  # (-val, pos) of the pool's best, sorted
        self.evo = RegularizedEvolution(FAST.full(), rng, cfg.population, cfg.sample) \
            if cfg.model == "evolution" else None
        self.project = SharedSearch(FAST, rng, warmup=cfg.explore, cells=table.index,
                                    retrain_power=cfg.retrain_power) \
            if cfg.model == "project" else None
        self.vals: dict[int, int] = {}  # position -> the validation count the pool observed
        self.ranking: list[int] = []
        self.cursor = 0
        self.stale = True

    @property
    def exploring(self) -> bool:
        return len(self.seen) < self.cfg.explore

    def begin_slot(self) -> None:
        """A new slot: its first proposal refits the model on everything observed so far."""
        self.stale = True

    def _fit(self) -> None:
        self.stale = False
        self.ranking, self.cursor = [], 0
        if not self.seen:
            return
        seen = list(self.unique)
        x = self.feats[seen]
        y = np.asarray([self.vals[p] for p in seen], dtype=float)
        y = np.maximum(y, np.median(y))
        y -= y.mean()
        # einsum, not BLAS: these small products are slower threaded on a busy machine
        a = np.einsum("ij,ik->jk", x, x) + self.cfg.ridge * np.eye(x.shape[1])
        w = np.linalg.solve(a, np.einsum("ij,i->j", x, y))
        pred = np.einsum("ij,j->i", self.feats, w)
        jitter = np.asarray([self.rng.random() for _ in range(self.table.rows)]) * 1e-9
        self.ranking = np.lexsort((jitter, -pred)).tolist()
        self.cursor = 0

    def _random_new(self, taken: Callable[[int], bool]) -> int:
        rows = self.table.rows
        if self.exhausted:
            return self.rng.randrange(rows)
        for _ in range(64):
            pos = self.rng.randrange(rows)
            if not taken(pos):
                return pos
        free = [p for p in range(rows) if not taken(p)]
        if free:
            return self.rng.choice(free)
        self.exhausted = len(self.unique) >= rows
        return self.rng.randrange(rows)

    def _mutant(self, parent: int, taken: Callable[[int], bool]) -> int | None:
        genotype = FAST.encode(self.table.index[parent])
        cands = [pos for g in FAST.neighbours(genotype) if (pos := self.pos_of.get(FAST.decode(g))) is not None
                 and not taken(pos)]
        return self.rng.choice(cands) if cands else None

    def propose(self, taken: Callable[[int], bool]) -> int:
        """A position to evaluate that ``taken`` does not hold (unless every row is taken)."""
        cfg = self.cfg
        if self.project is not None:
            retrains = self.project.retrains
            while (genotype := self.project.propose()) is not None:
                pos = self.pos_of[FAST.decode(genotype)]
                if self.project.retrains > retrains:
                    return pos  # every row seen: a new training (seed) of one of the pool's best
                if not taken(pos):
                    return pos
            return self._random_new(taken)
        if cfg.model == "additive":
            if self.stale:
                self._fit()
            if cfg.greedy < 1.0 and self.best and self.rng.random() >= cfg.greedy:
                elite = self.best[: cfg.elite or len(self.best)]
                for _ in range(EVOLVE_TRIES):
                    pos = self._mutant(elite[self.rng.randrange(len(elite))][1], taken)
                    if pos is not None:
                        return pos
            while self.cursor < len(self.ranking):
                pos = self.ranking[self.cursor]
                self.cursor += 1
                if not taken(pos):
                    return pos
            return self._random_new(taken)
        assert self.evo is not None
        for _ in range(EVOLVE_TRIES):
            if cfg.elite and len(self.best) >= 1 and not self.exploring:
                elite = self.best[: cfg.elite]
                drawn = [elite[self.rng.randrange(len(elite))] for _ in range(cfg.sample)]
                parent = min(drawn)[1]
                genotype = FAST.mutate(FAST.encode(self.table.index[parent]), self.rng)
            else:
                genotype = self.evo.propose()
            pos = self.pos_of.get(FAST.decode(genotype))
            if pos is not None and not taken(pos):
                return pos
        return self._random_new(taken)

    def observe(self, pos: int, v: int, member: int) -> None:
        """``member`` evaluated ``pos`` and saw validation count ``v``."""
        self.vals[pos] = v
        if self.project is not None:
            self.project.observe(FAST.encode(self.table.index[pos]), v, str(member))
        self.seen.append(pos)
        if pos not in self.unique:
            self.unique[pos] = None
            bisect.insort(self.best, (-v, pos))
        if self.evo is not None:
            self.evo.observe(FAST.encode(self.table.index[pos]), v)


def _draw_new(rng: random.Random, lo: int, size: int, taken: Callable[[int], bool]) -> int | None:
    """A uniformly random position of ``[lo, lo + size)`` that ``taken`` does not hold, or None."""
    for _ in range(8):
        pos = lo + rng.randrange(size)
        if not taken(pos):
            return pos
    free = [p for p in range(lo, lo + size) if not taken(p)]
    return rng.choice(free) if free else None


def _shared_slot(search: _SharedSearch, working: Sequence[int], assign: Sequence[Sequence[int]],
                 sub_span: Sequence[tuple[int, int]], turn: list[int], evaluated: set[int],
                 rng: random.Random) -> dict[int, int]:
    """One evaluation slot of a pool with a shared search: member -> the position it evaluates.
    While the search explores, a member draws at random among the known rows of its assigned
    subspaces (round robin, as ``pool/member.py``) that the pool has not evaluated; a member
    whose subspaces are all done, and every member after the exploration, evaluates the shared
    search's proposal. No two members of a slot get the same row, and no row the pool evaluated
    in the task comes again while another is left."""
    pending: set[int] = set()

    def taken(pos: int) -> bool:
        return pos in evaluated or pos in pending

    exploring = search.exploring
    search.begin_slot()
    picks: dict[int, int] = {}
    for i in working:
        pos = None
        if exploring:
            mine = assign[i]
            for _ in range(len(mine)):
                s = mine[turn[i] % len(mine)]
                turn[i] += 1
                lo, size = sub_span[s]
                if size and (pos := _draw_new(rng, lo, size, taken)) is not None:
                    break
        if pos is None:
            pos = search.propose(taken)
        pending.add(pos)
        picks[i] = pos
    return picks


def _assignments(sched: Scheduler, member_of: dict[str, int], sub_at: dict[tuple[int, int], int]) -> list[list[int]]:
    """Each member's subspaces (positions in the plan), in plan order, moves included."""
    lists: list[list[int]] = [[] for _ in member_of]
    for m, items in sched.plan.by_member().items():
        lists[member_of[m]] = [sub_at[a.subspace.as_range()] for a in items]
    return lists


def _winner(pool_score: float, solo_scores: np.ndarray, priority: Sequence[float]) -> int:
    """-1 the pool, ``i`` solo miner ``i``, -2 nobody: the best score, ties to the highest priority."""
    best = (pool_score, priority[0], -1)
    for i, score in enumerate(solo_scores.tolist()):
        if (score, priority[i + 1]) > best[:2]:
            best = (score, priority[i + 1], i)
    return -2 if best[0] == -math.inf else best[2]


def run_race(
    table: Table,
    setup: Setup,
    n: int,
    rounds: int,
    seed: int,
    *,
    p_drop: float = 0.0,
    std_threshold: float | None = None,
    windows: Sequence[tuple[int | None, int]] = (),
    solos: int | None = None,
    task_rounds: int = 1,
    pool_keys: int = 1,
    reveal_by_validation: bool = False,
    strategy: str = "random",
    shared: Shared = Shared(),
    won_once: bool | None = None,
    pool_distinct: int | None = None,
) -> dict[str, Any]:
    """A pool of ``n`` members against ``solos`` (default ``n``) solo miners, for ``rounds``
    rounds (model in the module docstring). Returns per-round numpy arrays (keys below) and,
    per PPLNS window in ``windows`` (``make_window``'s ``(units, rounds)``), the members' income
    per round in base units.

    ``task_rounds`` T: a task lasts T rounds, and every party keeps its results, its best
    results and its search state (what it drew) across the rounds of one task, as the project's
    manager and miners do on an unchanging task; T = 1 is a fresh search every round.
    ``pool_keys``: the pool commits under that many keys, so it commits up to
    ``pool_keys * commit_k`` results (a what-if: the project's manager commits under one key).
    ``reveal_by_validation``: every party reveals its best result by validation, not the best
    of its commitments on the test set (a what-if of a protocol rule that would leave no choice
    on the test set). ``strategy``: ``"random"`` (draws without replacement, the model above),
    ``"evolution"``: every solo miner runs :class:`pool.search.RegularizedEvolution` over the
    space and every member one per assigned subspace (as ``pool/member.py``), proposals and
    observations through the project's class, its state kept for the task (:func:`_evolve`), or
    ``"shared"``: the solo miners as in ``"evolution"``, the pool one search fed by every
    member (``shared``, a :class:`Shared`; module docstring). ``won_once``: a cell that won a
    round cannot be kept, committed or revealed again by anyone in the task (module docstring);
    None (the default): when the table's task has epochs (:func:`has_epochs`).
    ``pool_distinct``: the pool spreads its commitments over its best that many results (None:
    all distinct).

    Per round: ``pool_score``, ``pool_val``, ``pool_evals``, ``pool_distinct`` (evaluations of
    rows the pool had not evaluated before in the task), ``pool_idle``;
    ``solo_scores`` (rounds x solos, ``-inf`` without a candidate), ``solo_val`` (their best
    validation counts, likewise), ``solo_evals``,
    ``union_evals``, ``union_distinct`` (new rows, as for the pool), ``union_val``, ``union_score`` (the solo miners' work
    taken together, committed as one party: independent search); ``win_all`` (-1 the pool, else
    the winning solo: pool against every solo) and ``win_one`` (-1 the pool, 0 solo 0: the
    pool against solo 0 alone), both with ties to a random priority drawn per party and round;
    ``win_pos``: the table position of the winning result (-1 nobody), ``win_item`` the result
    itself (``win_pos`` plus ``rows`` times the winner's earlier trainings of it: its seed);
    ``pool_oracle``, ``solo_oracle`` and ``win_oracle``: the same contest if every party could
    reveal the best test score among *everything* it evaluated in the task (no bound of ``commit_k``
    commitments per key; a diagnostic, not the protocol); ``backups``, ``takeovers``, ``moves``, ``online``,
    ``hr_subs``, ``hr_done``, ``hr_cover``, ``all_subs``, ``all_done``, ``all_cover``
    (completion, :func:`exp_churn`); ``split_ok`` (every split summed to the reward).
    """
    c = setup.compute
    n_solo = n if solos is None else solos
    threshold = setup.std_threshold if std_threshold is None else std_threshold
    rows = table.rows
    test_exact = table.test
    noise = setup.seed_noise
    k = setup.commit_k
    if task_rounds < 1 or pool_keys < 1 or (pool_distinct is not None and pool_distinct < 1):
        raise ValueError("task_rounds, pool_keys and pool_distinct must be at least 1")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    if won_once is None:
        won_once = has_epochs(table.task)
    evolve = strategy == "evolution"  # members: one evolution per assigned subspace
    pooled = strategy == "shared"  # members: the pool's one search (Shared)
    solo_evolve = strategy in ("evolution", "shared")
    pos_of = {index: pos for pos, index in enumerate(table.index)}
    feats = _features(table) if pooled and shared.model == "additive" else np.zeros((0, 0))
    hb = setup.heartbeat
    ticks = int(round(setup.round_seconds / hb))
    slot_time = [(j + 0.5) * setup.commit_window / c for j in range(c)]
    slots_in_tick: list[list[int]] = [[] for _ in range(ticks + 1)]
    for j, t in enumerate(slot_time):
        slots_in_tick[max(1, math.ceil(t / hb - 1e-9))].append(j)
    throughput = c / setup.commit_window

    rng_pool = random.Random(_seed(seed, "pool", n, c, p_drop, threshold, task_rounds, pool_keys))
    rng_plan = random.Random(_seed(seed, "plan", n, c, p_drop, threshold, task_rounds, pool_keys))
    rng_solo = random.Random(_seed(seed, "solo", n_solo, c, p_drop, task_rounds))
    rng_churn = random.Random(_seed(seed, "churn", n, p_drop))
    rng_solo_churn = random.Random(_seed(seed, "solo-churn", n_solo, p_drop))
    rng_ties = random.Random(_seed(seed, "ties", n, n_solo, c, p_drop, threshold))
    rng_shared = random.Random(_seed(seed, "shared", n, c, p_drop, threshold, task_rounds, pool_keys, shared))
    np_noise = np.random.default_rng(_seed(seed, "noise"))

    sched = Scheduler(SPACE, subspaces_per_member=setup.subspaces_per_member, std_threshold=threshold,
                      heartbeat_timeout=setup.heartbeat_timeout, history=setup.history, top_k=setup.top_k)
    ids = [f"m{i:03d}" for i in range(n)]
    member_of = {m: i for i, m in enumerate(ids)}
    addrs = [_address(i) for i in range(n)]
    addr_index = {a: i for i, a in enumerate(addrs)}
    pplns = [make_window(u, k) for u, k in windows]
    seq = useq = 0
    for m in ids:
        sched.join(m, 0.0, throughput)
    online = [True] * n
    solo_online = [True] * n_solo
    turn = [0] * n
    spans: dict[tuple[int, int], tuple[int, int]] = {}
    pool_best: list[tuple[str, int]] | None = None

    out: dict[str, Any] = {key: np.zeros(rounds) for key in (
        "pool_score", "pool_val", "pool_evals", "pool_distinct", "pool_idle", "solo_evals", "union_evals",
        "union_distinct", "union_val", "union_score", "backups", "takeovers", "moves", "online", "hr_subs",
        "hr_done", "hr_cover", "all_subs", "all_done", "all_cover")}
    out["solo_scores"] = np.full((rounds, n_solo), -np.inf)
    out["solo_val"] = np.full((rounds, n_solo), -np.inf)
    out["win_all"] = np.zeros(rounds, dtype=np.int64)
    out["win_one"] = np.zeros(rounds, dtype=np.int64)
    out["win_oracle"] = np.zeros(rounds, dtype=np.int64)
    out["solo_oracle"] = np.full((rounds, n_solo), -np.inf)
    out["pool_oracle"] = np.full(rounds, -np.inf)
    out["win_pos"] = np.full(rounds, -1, dtype=np.int64)  # the winning row's table position
    out["win_item"] = np.full(rounds, -1, dtype=np.int64)  # the winning result (the row's training: _Seeds)
    income = [np.zeros((rounds, n), dtype=np.int64) for _ in windows]
    split_ok = True

    for r in range(rounds):
        t0 = r * setup.round_seconds
        for w in pplns:
            w.advance(r)  # the round opens (the manager's round_opened)
        if r % task_rounds == 0:  # a new task: every party starts afresh
            won: set[int] = set()  # cells that won a round of the task (spent work)
            # each party's own trainings (seeds) in the task; with them a win spends only the
            # winner's (genotype, seed): every party has its own set of spent cells
            task_no = r // task_rounds
            pool_seeds = _Seeds(table, noise, np.random.default_rng(_seed(seed, "seeds", task_no, "pool", n)))
            solo_seeds = [_Seeds(table, noise, np.random.default_rng(_seed(seed, "seeds", task_no, "solo", i)))
                          for i in range(n_solo)]
            top = _Top(k * pool_keys, set() if noise else won)
            drawn: dict[tuple[int, tuple[int, int]], set[int]] = {}
            member_evo: dict[tuple[int, tuple[int, int]], SearchStrategy] = {}
            solo_evo = [make_strategy("evolution", FAST, rng_solo) for _ in range(n_solo)] if solo_evolve else []
            evaluated: set[int] = set()
            pool_items: set[int] = set()  # the pool's results (items) in the task
            search = _SharedSearch(shared, table, pos_of, feats, rng_shared) if pooled else None
            solo_top = [_Top(k, set() if noise else won) for _ in range(n_solo)]
            solo_seen: list[set[int]] = [set() for _ in range(n_solo)]  # its search state (cycles)
            solo_all: list[set[int]] = [set() for _ in range(n_solo)]  # everything it evaluated
            union_top = _Top(k, won)
            union: set[int] = set()
        # --- churn draws (independent of the pool's decisions) and comebacks
        drop_at = [math.inf] * n
        solo_drop = [False] * n_solo
        back: list[int] = []
        if p_drop > 0:
            for i in range(n):
                u, frac = rng_churn.random(), rng_churn.random()
                if online[i]:
                    if u < p_drop:
                        drop_at[i] = t0 + frac * setup.round_seconds
                elif u < setup.p_back:
                    back.append(i)
            for i in range(n_solo):
                u = rng_solo_churn.random()
                if solo_online[i]:
                    solo_drop[i] = u < p_drop
                elif u < setup.p_back:
                    solo_online[i] = True
        # --- the manager: close the last round, plan this one
        if pool_best is not None:
            sched.end_round(t0, pool_best)
        for i in back:  # after the last round's stats (it was away), before this round's plan
            online[i] = True
            sched.join(ids[i], t0, throughput)
        plan = sched.plan_round(t0, rng_plan)
        high = {m for m in sched.live() if sched.high_reward(m)}
        sub_at = {sub.as_range(): i for i, sub in enumerate(plan.subspaces)}
        sub_key = [sub.as_range() for sub in plan.subspaces]
        sub_starts = [key[0] for key in sub_key]
        sub_span = []
        for sub in plan.subspaces:
            rng_ = sub.as_range()
            if rng_ not in spans:
                spans[rng_] = table.span(*rng_)
            lo, hi = spans[rng_]
            sub_span.append((lo, hi - lo))

        assign = _assignments(sched, member_of, sub_at)
        # quota: what the plan intends for each subspace: the primary's own round robin (below)
        # over its primary subspaces only (no backup roles), without churn
        quota = [0] * len(sub_span)
        for i in range(n):
            prim = [s for s in assign[i] if plan.primaries[s] == ids[i]]
            if not any(sub_span[s][1] for s in prim):
                continue
            t_ = turn[i]
            for _ in range(c):
                while sub_span[prim[t_ % len(prim)]][1] == 0:
                    t_ += 1
                quota[prim[t_ % len(prim)]] += 1
                t_ += 1
        out["backups"][r] = sum(1 for b in plan.backups if b is not None)
        out["online"][r] = sum(online)

        # --- the round: evaluation slots, heartbeats and the watchdog, tick by tick
        done: list[set[int]] = [set() for _ in sub_span]
        evals = idle = new = 0
        takeovers = moves_n = 0
        for tick in range(1, ticks + 1):
            now = t0 + tick * hb
            for j in slots_in_tick[tick]:
                ts = t0 + slot_time[j]
                order = list(range(n))
                rng_pool.shuffle(order)
                picks: dict[int, int] = {}
                slot_items: dict[int, int] = {}  # member -> the result (item) of its training
                if search is not None:  # the slot's proposals, from what the pool knew before it
                    picks = _shared_slot(search, [i for i in order if online[i] and drop_at[i] > ts], assign,
                                         sub_span, turn, evaluated, rng_pool)
                for i in order:
                    if not online[i] or drop_at[i] <= ts:
                        continue
                    if search is not None:
                        pos = picks[i]
                        s = bisect.bisect_right(sub_starts, table.index[pos]) - 1
                    else:
                        mine = assign[i]
                        for _ in range(len(mine)):
                            s = mine[turn[i] % len(mine)]
                            turn[i] += 1
                            if sub_span[s][1] > 0:
                                break
                        else:
                            idle += 1
                            continue
                        lo, size = sub_span[s]
                        if evolve:
                            evo = member_evo.get((i, sub_key[s]))
                            if evo is None:
                                region = FAST.subspace(*sub_key[s])
                                evo = member_evo[i, sub_key[s]] = make_strategy("evolution", region, rng_pool)
                            pos = _evolve(evo, table, pos_of, rng_pool, lo, size, pool_seeds.evaluate)
                        else:
                            seen = drawn.setdefault((i, sub_key[s]), set())
                            off = _draw(rng_pool, size, seen)
                            seen.add(off)
                            pos = lo + off
                    if not evolve:
                        pool_seeds.evaluate(pos)
                    item = pool_seeds.last
                    slot_items[i] = item
                    pool_items.add(item)
                    v = pool_seeds.val(item)
                    evals += 1
                    if pos not in evaluated:
                        new += 1
                        evaluated.add(pos)
                    if 0 <= s < len(done) and sub_key[s][0] <= table.index[pos] < sub_key[s][1]:
                        done[s].add(pos)
                    seq += 1
                    for w in pplns:
                        w.add(Share(addrs[i], setup.share_weight, r, seq))
                    better = top.at_least(v)
                    if better < top.k or rng_pool.random() < setup.verify_rate:
                        sched.record(ids[i], table.index[pos], v, ts)
                        if better < top.k:
                            top.add(v, seq, item, i)
                if search is not None:
                    for i in order:
                        if i in picks:
                            search.observe(picks[i], pool_seeds.val(slot_items[i]), i)
            for i in range(n):
                if online[i] and drop_at[i] > now:
                    sched.heartbeat(ids[i], now, throughput)
            for i in range(n):
                if online[i] and drop_at[i] <= now:
                    online[i] = False
            moved = sched.check(now)
            if moved:
                moves_n += len(moved)
                takeovers += sum(1 for mv in moved if mv.reason == "backup-takeover")
                assign = _assignments(sched, member_of, sub_at)
        # every evaluation slot lies inside the commit window: the state now is the deadline's
        done_n = [len(d) for d in done]
        pool_best = [(ids[e[3]], -e[0]) for e in top.entries[: setup.top_k]]

        # --- this round's test scores and the parties' reveals
        if setup.test_noise > 0:
            test: Sequence[float] = (np.asarray(test_exact, dtype=float)
                                     + np_noise.normal(0.0, setup.test_noise, rows)).tolist()
        else:
            test = test_exact
        pool_score = -math.inf
        finder = pool_pos = -1
        copies = 1  # commitments of the revealed result (one tiebreak ticket each)
        pool_test = pool_seeds.test(test)
        if top:
            pool_score, pool_pos, finder = _reveal(top, pool_test, reveal_by_validation, pool_distinct)
            out["pool_val"][r] = -top.entries[0][0]
            if pool_distinct is not None:  # the 8 K places go round robin over the best d results
                d = min(pool_distinct, len(top.entries))
                rank = next(j for j, e in enumerate(top.entries) if e[2] == pool_pos)
                copies = top.k // d + (1 if rank < top.k % d else 0)
        out["pool_score"][r] = pool_score
        pool_oracle = max((pool_test[it] for it in pool_items if it not in top.banned), default=-math.inf)
        out["pool_oracle"][r] = pool_oracle
        out["pool_evals"][r] = evals
        out["pool_distinct"][r] = new
        out["pool_idle"][r] = idle
        out["takeovers"][r] = takeovers
        out["moves"][r] = moves_n

        # completion of the plan's subspaces (done by anyone before the deadline)
        hr = cov_hr = hr_n = 0
        al = cov_al = al_n = 0
        for s, q in enumerate(quota):
            if q <= 0:
                continue
            target = min(q, sub_span[s][1])
            ok = done_n[s] >= target
            al_n += 1
            al += ok
            cov_al += min(1.0, done_n[s] / target)
            if plan.primaries[s] in high:
                hr_n += 1
                hr += ok
                cov_hr += min(1.0, done_n[s] / target)
        out["hr_subs"][r], out["hr_done"][r], out["hr_cover"][r] = hr_n, hr, cov_hr
        out["all_subs"][r], out["all_done"][r], out["all_cover"][r] = al_n, al, cov_al

        # solo miners: each its own search; together, the independent search of exp_search
        solo_evals = union_new = 0
        solo_pos = [-1] * n_solo
        for i in range(n_solo):
            if not solo_online[i]:
                continue
            seen_i, top_i = solo_seen[i], solo_top[i]
            for _ in range(c):
                if solo_evolve:
                    pos = _evolve(solo_evo[i], table, pos_of, rng_solo, 0, rows, solo_seeds[i].evaluate)
                else:
                    pos = _draw(rng_solo, rows, seen_i)
                    seen_i.add(pos)
                    solo_seeds[i].evaluate(pos)
                item = solo_seeds[i].last
                solo_all[i].add(item)
                useq += 1
                v = solo_seeds[i].val(item)
                top_i.add(v, useq, item, i)
                if pos not in union:
                    union_new += 1
                    union.add(pos)
                union_top.add(v, useq, item, i)
            solo_evals += c
            if solo_drop[i]:
                solo_online[i] = False  # dropped during the round: no candidate
                continue
            if not top_i:
                continue  # everything it kept won already
            solo_test = solo_seeds[i].test(test)
            out["solo_scores"][r, i], solo_pos[i], _who = _reveal(top_i, solo_test, reveal_by_validation)
            out["solo_val"][r, i] = -top_i.entries[0][0]
            out["solo_oracle"][r, i] = max((solo_test[it] for it in solo_all[i] if it not in top_i.banned),
                                           default=-math.inf)
        out["solo_evals"][r] = solo_evals
        out["union_evals"][r] = solo_evals
        out["union_distinct"][r] = union_new
        if union_top:
            out["union_val"][r] = -union_top.entries[0][0]
            views = [sd.test(test) for sd in solo_seeds]  # each solo miner's own trainings
            out["union_score"][r] = _reveal(union_top, views.__getitem__, reveal_by_validation)[0]
        else:
            out["union_score"][r] = -math.inf

        # --- the winners: best score, ties by a random priority per party and round (the same
        # in every contest of the round, so the contests agree)
        priority = [rng_ties.random() for _ in range(n_solo + 1)]  # [0] the pool, [i + 1] solo i
        priority[0] **= 1.0 / copies  # the best of its copies' tickets: the max of ``copies`` uniforms
        out["win_all"][r] = _winner(pool_score, out["solo_scores"][r], priority)
        out["win_one"][r] = _winner(pool_score, out["solo_scores"][r, :1], priority)
        out["win_oracle"][r] = _winner(pool_oracle, out["solo_oracle"][r], priority)
        w_ = int(out["win_all"][r])
        if w_ != -2:
            wp = pool_pos if w_ == -1 else solo_pos[w_]  # the winning result (item)
            out["win_pos"][r] = wp % rows
            out["win_item"][r] = wp
            if won_once and task_rounds > 1:  # spent work: nobody commits the cell again in the task
                won.add(wp)
                if noise:  # ... trained with the winner's seed: the others' trainings of it still count
                    winner_top = top if w_ == -1 else solo_top[w_]
                    winner_top.banned.add(wp)
                    winner_top.drop(wp)
                    union_top.drop(wp)
                else:
                    for kept in (top, union_top, *solo_top):
                        kept.drop(wp)

        # --- the pool's coinbase when it wins against every solo miner
        if out["win_all"][r] == -1:
            for w, inc in zip(pplns, income):
                payouts = split_reward(setup.reward, w.weights_by_member(), fee_address=FEE_ADDRESS,
                                       fee_ppm=setup.fee_ppm, finder=addrs[finder],
                                       finder_bonus_ppm=setup.finder_bonus_ppm)
                split_ok &= sum(p.amount for p in payouts) == setup.reward
                for p in payouts:
                    i = addr_index.get(p.address)
                    if i is not None:
                        inc[r, i] += p.amount
    out["income"] = {tuple(w): inc for w, inc in zip(windows, income)}  # equal windows: equal incomes
    out["split_ok"] = bool(split_ok)
    return out


# ---------------------------------------------------------------------------------------------
# Experiments.


class Cache:
    """Races already run, by their arguments (a race is a pure function of them)."""

    def __init__(self) -> None:
        self.races: dict[tuple[Any, ...], dict[str, Any]] = {}

    def race(self, table: Table, setup: Setup, n: int, rounds: int, seed: int, **kw: Any) -> dict[str, Any]:
        key = (table.path, table.rows, dataclasses.astuple(setup), n, rounds, seed,
               tuple(sorted((a, tuple(b) if isinstance(b, list | tuple) else b) for a, b in kw.items())))
        if key not in self.races:
            self.races[key] = run_race(table, setup, n, rounds, seed, **kw)
        return self.races[key]


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


#: The fixed PPLNS window the income experiment compares with the default: 600 units, the
#: pool's default before the window counted rounds (30 devnet shares).
FIXED_WINDOW = 600


def _windows(setup: Setup) -> tuple[tuple[int | None, int], ...]:
    """``(units, rounds)`` of the pool's default PPLNS window and of the fixed one."""
    return ((setup.window, setup.window_rounds), (FIXED_WINDOW, setup.window_rounds))


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def _finite_mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.mean(x)) if len(x) else float("nan")


def _se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else float("nan")


def exp_competitiveness(table: Table, setup: Setup, ns: Sequence[int], rounds: int, seed: int, out: Path,
                        cache: Cache | None = None, carry_rounds: int = 12) -> dict[str, Any]:
    """Experiment 1. For each N: a pool of N members against N solo miners (equal total
    compute) and, in the same rounds, against solo miner 0 alone (the compute of one member).
    Three more races per N go further: ``keys`` (the pool commits under N keys, so it may commit
    as many results as the N solo miners together), ``by_val`` (every party reveals its best
    result by validation: no choice among commitments on the test set) and ``carry`` (tasks of ``carry_rounds``
    rounds: every party keeps its results across the rounds of a task, as on the devnet; the
    rounds of a task are correlated, so its standard error counts tasks, not rounds).

    Numbers: ``pool_share_vs_n`` (share of rounds the pool wins against the N solo miners;
    ``solo_share_each`` = the mean share of one of them), ``pool_share_vs_1`` (against one; a
    share proportional to compute would be N/(N+1)), and the mean revealed test score per round
    of the pool, of the best of the N solo miners and of solo 0 (test images of ``test_total``).
    """
    cache = cache or Cache()
    rows_out = []
    for n in ns:
        t = time.perf_counter()
        race = cache.race(table, setup, n, rounds, seed, windows=_windows(setup))
        win_all, win_one = race["win_all"], race["win_one"]
        share_n = float(np.mean(win_all == -1))
        share_1 = float(np.mean(win_one == -1))
        solo_best = race["solo_scores"].max(axis=1)
        keys = cache.race(table, setup, n, rounds, seed, pool_keys=n)
        carry = cache.race(table, setup, n, rounds, seed, task_rounds=carry_rounds)
        by_val = cache.race(table, setup, n, rounds, seed, reveal_by_validation=True)
        share_val = float(np.mean(by_val["win_all"] == -1))
        share_keys = float(np.mean(keys["win_all"] == -1))
        share_carry = float(np.mean(carry["win_all"] == -1))
        share_carry_1 = float(np.mean(carry["win_one"] == -1))
        rows_out.append({
            "n": n,
            "pool_share_vs_n": share_n,
            "pool_share_vs_n_se": _se(share_n, rounds),
            "solo_share_each": (1 - share_n) / n,
            "pool_share_vs_n_unbounded": float(np.mean(race["win_oracle"] == -1)),
            "pool_share_vs_n_keys": share_keys,
            "pool_share_vs_n_keys_se": _se(share_keys, rounds),
            "pool_share_vs_n_carry": share_carry,
            "pool_share_vs_n_carry_se": _se(share_carry, max(1, rounds // carry_rounds)),
            "solo_share_each_carry": (1 - share_carry) / n,
            "pool_share_vs_n_by_val": share_val,
            "pool_share_vs_n_by_val_se": _se(share_val, rounds),
            "pool_share_vs_1_by_val": float(np.mean(by_val["win_one"] == -1)),
            "pool_share_vs_1_carry": share_carry_1,
            "pool_share_vs_1_carry_se": _se(share_carry_1, max(1, rounds // carry_rounds)),
            "backups_per_round": _mean(race["backups"]),
            "pool_share_vs_1": share_1,
            "pool_share_vs_1_se": _se(share_1, rounds),
            "proportional_vs_1": n / (n + 1),
            "pool_score": _finite_mean(race["pool_score"]),
            "best_solo_score": _finite_mean(solo_best),
            "solo0_score": _finite_mean(race["solo_scores"][:, 0]),
            "pool_val": _mean(race["pool_val"]),
            "union_val": _mean(race["union_val"]),
        })
        _log(f"  competitiveness N={n}: pool wins {share_n:.3f} vs {n} solo ({share_keys:.3f} with {n} keys, "
             f"{share_carry:.3f} with tasks of {carry_rounds} rounds), {share_1:.3f} vs 1 solo "
             f"[{time.perf_counter() - t:.1f} s]")
    md = _md_table(
        ["N", "pool wins vs N solo", "one solo's share", "pool wins vs 1 solo", "N/(N+1)",
         "pool test", "best solo test", "solo 0 test", "pool val", "N solo val", "vs N solo, unbounded commits",
         "backups / round", "vs N solo, N keys", f"vs N solo, tasks of {carry_rounds}", "one solo's share (tasks)",
         f"vs 1 solo, tasks of {carry_rounds}", "vs N solo, reveal by validation", "vs 1 solo, reveal by validation"],
        [[r["n"], _pct(r["pool_share_vs_n"], r["pool_share_vs_n_se"]), _pct(r["solo_share_each"]),
          _pct(r["pool_share_vs_1"], r["pool_share_vs_1_se"]), _pct(r["proportional_vs_1"]),
          f"{r['pool_score']:.2f}", f"{r['best_solo_score']:.2f}", f"{r['solo0_score']:.2f}",
          f"{r['pool_val']:.2f}", f"{r['union_val']:.2f}", _pct(r["pool_share_vs_n_unbounded"]),
          f"{r['backups_per_round']:.1f}", _pct(r["pool_share_vs_n_keys"], r["pool_share_vs_n_keys_se"]),
          _pct(r["pool_share_vs_n_carry"], r["pool_share_vs_n_carry_se"]), _pct(r["solo_share_each_carry"]),
          _pct(r["pool_share_vs_1_carry"], r["pool_share_vs_1_carry_se"]),
          _pct(r["pool_share_vs_n_by_val"], r["pool_share_vs_n_by_val_se"]), _pct(r["pool_share_vs_1_by_val"])]
         for r in rows_out])
    _write(out / "competitiveness.md", "Competitiveness: a pool of N members against N solo miners and against one",
           _setup_line(table, setup, rounds, seed), md,
           f"Scores are mean revealed test counts of {table.test_total} per round; ± is one standard error. "
           "'val' = mean best validation count found (the N solo miners' together). 'unbounded commits' = the "
           "pool's share against the N solo miners if every party revealed the best test score of everything it "
           "evaluated (a diagnostic: the chain bounds a key to "
           f"{setup.commit_k} commitments). 'backups' = subspaces with a backup member in the round's plan. "
           f"'N keys' = the pool commits under N keys (up to {setup.commit_k} N results, as many as the N solo "
           f"miners together). 'tasks of {carry_rounds}' = every party keeps its results and search state across "
           f"the {carry_rounds} rounds of a task (the devnet's one task is the limit of long tasks); the other "
           "columns search afresh every round. 'reveal by validation' = every party reveals its best result by "
           "validation, not its commitment that scores best on the test set (a what-if of a protocol rule).")

    def plot(ax: Any, ax2: Any) -> None:
        x = [r["n"] for r in rows_out]
        ax.plot(x, [r["pool_share_vs_n"] for r in rows_out], "o-", label="pool vs N solo miners")
        ax.plot(x, [r["pool_share_vs_n_unbounded"] for r in rows_out], "x--", label="pool vs N solo, unbounded commits")
        ax.plot(x, [r["pool_share_vs_n_keys"] for r in rows_out], "v-", label="pool vs N solo, pool commits under N keys")
        ax.plot(x, [r["pool_share_vs_n_carry"] for r in rows_out], "^-",
                label=f"pool vs N solo, tasks of {carry_rounds} rounds")
        ax.plot(x, [r["pool_share_vs_n_by_val"] for r in rows_out], "P-", label="pool vs N solo, reveal by validation")
        ax.plot(x, [r["pool_share_vs_1"] for r in rows_out], "s-", label="pool vs 1 solo miner")
        ax.plot(x, [r["proportional_vs_1"] for r in rows_out], "k:", label="N/(N+1)")
        ax.plot(x, [1 / (r["n"] + 1) for r in rows_out], "k--", lw=0.8, label="1/(N+1)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("members N")
        ax.set_ylabel("share of rounds won by the pool")
        ax.set_ylim(0, 1.45)  # room for the legend above the lines
        ax.legend(fontsize=7, loc="upper left", ncol=2)
        ax2.plot(x, [r["pool_score"] for r in rows_out], "o-", label="pool")
        ax2.plot(x, [r["best_solo_score"] for r in rows_out], "^-", label="best of N solo miners")
        ax2.plot(x, [r["solo0_score"] for r in rows_out], "s-", label="one solo miner")
        ax2.set_xscale("log", base=2)
        ax2.set_xlabel("members N")
        ax2.set_ylabel(f"mean revealed test score (of {table.test_total})")
        ax2.legend(fontsize=8)

    _plot(out / "competitiveness.png", plot, "Competitiveness")
    return {"rounds": rounds, "compute": setup.compute, "carry_rounds": carry_rounds, "rows": rows_out}


def exp_income(table: Table, setup: Setup, ns: Sequence[int], rounds: int, seed: int, out: Path,
               cache: Cache | None = None) -> dict[str, Any]:
    """Experiment 2. Income per round of a pool member and of a solo miner of equal compute, in
    the races of experiment 1 (the pool against N solo miners). A member's income in a round the
    pool wins is its output of ``split_reward`` (PPLNS window at the deadline, the finder's
    bonus to the member whose result was revealed); a solo miner gets the whole subsidy when it
    wins. Numbers (coins per round, pooled over members, resp. solo miners, and rounds): the
    mean, the coefficient of variation (std / mean) and the share of rounds with a payment; for
    the pool's default window (the shares of the last 3 rounds) and for a fixed window of
    ``FIXED_WINDOW`` units (600 = 30 devnet shares, the default before).
    """
    cache = cache or Cache()
    coin = float(COIN)
    rows_out = []
    split_ok = True
    for n in ns:
        race = cache.race(table, setup, n, rounds, seed, windows=_windows(setup))
        split_ok &= race["split_ok"]
        win = race["win_all"]
        solo_inc = np.zeros((rounds, n))
        for r in np.flatnonzero(win >= 0):
            solo_inc[r, win[r]] = setup.reward / coin
        row: dict[str, Any] = {"n": n, "pool_share": float(np.mean(win == -1))}
        row["solo_mean"], row["solo_cv"], row["solo_paid"] = _income_stats(solo_inc)
        for tag, w in zip(("default", "fixed"), _windows(setup)):
            inc = race["income"][w]
            row[f"member_mean_{tag}"], row[f"member_cv_{tag}"], row[f"member_paid_{tag}"] = _income_stats(inc / coin)
            row[f"window_{tag}"] = _window_name(*w)
        row["fair_member_mean"] = row["pool_share"] * setup.reward / coin * (1 - (setup.fee_ppm / 1e6)) / n
        rows_out.append(row)
        _log(f"  income N={n}: member {row['member_mean_default']:.3f} coins/round (CV {row['member_cv_default']:.2f}), "
             f"solo {row['solo_mean']:.3f} (CV {row['solo_cv']:.2f})")
    default, fixed = (_window_name(*w) for w in _windows(setup))
    md = _md_table(
        ["N", "pool wins", "member mean", "member CV", "member paid", f"member mean ({fixed})", f"member CV ({fixed})",
         f"member paid ({fixed})", "solo mean", "solo CV", "solo paid"],
        [[r["n"], _pct(r["pool_share"]), f"{r['member_mean_default']:.4f}", f"{r['member_cv_default']:.2f}",
          _pct(r["member_paid_default"]), f"{r['member_mean_fixed']:.4f}", f"{r['member_cv_fixed']:.2f}",
          _pct(r["member_paid_fixed"]), f"{r['solo_mean']:.4f}", f"{r['solo_cv']:.2f}", _pct(r["solo_paid"])]
         for r in rows_out])
    _write(out / "income.md", "Income per round: a pool member against a solo miner of equal compute",
           _setup_line(table, setup, rounds, seed), md,
           f"Coins per round (subsidy {setup.reward / coin:g}); CV = standard deviation / mean over all "
           f"member-rounds (resp. solo-rounds); 'paid' = share of rounds with a payment. Member columns: the "
           f"pool's default PPLNS window ({default}), then a fixed one ({fixed}, {FIXED_WINDOW // setup.share_weight} "
           f"shares of {setup.share_weight} units, the default before). Every split summed to the reward: "
           f"{'yes' if split_ok else 'NO'}.")

    def plot(ax: Any, ax2: Any) -> None:
        x = [r["n"] for r in rows_out]
        for a, what in ((ax, "mean"), (ax2, "cv")):
            a.plot(x, [r[f"member_{what}_default"] for r in rows_out], "o-", label=f"member ({default})")
            a.plot(x, [r[f"member_{what}_fixed"] for r in rows_out], "d-", label=f"member ({fixed})")
            a.plot(x, [r[f"solo_{what}"] for r in rows_out], "s-", label="solo miner")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("members N (and solo miners)")
        ax.set_ylabel("mean income (coins per round)")
        ax.legend(fontsize=8)
        ax2.set_xscale("log", base=2)
        ax2.set_yscale("log")
        ax2.set_xlabel("members N (and solo miners)")
        ax2.set_ylabel("coefficient of variation of income per round")
        ax2.legend(fontsize=8)

    _plot(out / "income.png", plot, "Income per round")
    return {"rounds": rounds, "split_sums_ok": bool(split_ok), "rows": rows_out}


def _window_name(units: int | None, rounds: int) -> str:
    return f"{units} units" if units is not None else f"{rounds} rounds"


def _income_stats(inc: np.ndarray) -> tuple[float, float, float]:
    flat = np.asarray(inc, dtype=float).ravel()
    mean = float(flat.mean()) if flat.size else float("nan")
    cv = float(flat.std() / mean) if mean > 0 else float("nan")
    return mean, cv, float(np.mean(flat > 0)) if flat.size else float("nan")


def exp_search(table: Table, setup: Setup, n: int, computes: Sequence[int], ns: Sequence[int], rounds: int,
               rounds_n: int, seed: int, out: Path, cache: Cache | None = None) -> dict[str, Any]:
    """Experiment 3. Partitioned search (the pool's N members on the Scheduler's plan) against
    independent search (N solo miners' work taken together) with the same total compute N c.
    The pool runs twice: as the project configures it (``std_threshold`` 0.25: backup members
    search their primaries' subspaces again) and with the backup rule off. Per round: the
    duplicate-evaluation rate (1 - distinct rows / evaluations), the best validation count
    found by the deadline, whether it is the table's best, and the test score the party reveals
    when it commits its best 8 by validation. Two sweeps: compute ``c`` at ``n`` members
    (``rounds`` rounds each), and N at the run's compute (the pool with backups: the races of
    experiment 1, ``rounds_n`` rounds; without backups: ``rounds`` rounds).
    """
    cache = cache or Cache()
    table_best = max(table.val)

    def summary(race: dict[str, Any], bare: dict[str, Any], n_: int, c: int, sweep: str) -> dict[str, Any]:
        row: dict[str, Any] = {"sweep": sweep, "n": n_, "compute": c, "total_over_rows": n_ * c / table.rows}
        for tag, r_, ev, dist, val_, score in (
                ("pool", race, "pool_evals", "pool_distinct", "pool_val", "pool_score"),
                ("bare", bare, "pool_evals", "pool_distinct", "pool_val", "pool_score"),
                ("indep", race, "union_evals", "union_distinct", "union_val", "union_score")):
            row[f"{tag}_dup"] = float(np.sum(r_[ev] - r_[dist]) / max(1.0, np.sum(r_[ev])))
            row[f"{tag}_distinct"] = _mean(r_[dist])
            row[f"{tag}_val"] = _mean(r_[val_])
            row[f"{tag}_found_best"] = float(np.mean(r_[val_] == table_best))
            row[f"{tag}_score"] = _finite_mean(r_[score])
        row["pool_idle"] = float(np.sum(race["pool_idle"]) / max(1.0, np.sum(race["pool_evals"] + race["pool_idle"])))
        row["pool_backups"] = _mean(race["backups"])
        return row

    rows_c = []
    for c in computes:
        t = time.perf_counter()
        s = dataclasses.replace(setup, compute=c)
        race = cache.race(table, s, n, rounds, seed)
        bare = cache.race(table, s, n, rounds, seed, std_threshold=NO_BACKUP)
        rows_c.append(summary(race, bare, n, c, "compute"))
        _log(f"  search N={n} c={c}: duplicates {rows_c[-1]['pool_dup']:.3f} partitioned "
             f"({rows_c[-1]['bare_dup']:.3f} without backups), {rows_c[-1]['indep_dup']:.3f} independent "
             f"[{time.perf_counter() - t:.1f} s]")
    rows_n = []
    for n_ in ns:
        t = time.perf_counter()
        race = cache.race(table, setup, n_, rounds_n, seed, windows=_windows(setup))
        bare = cache.race(table, setup, n_, rounds, seed, std_threshold=NO_BACKUP)
        rows_n.append(summary(race, bare, n_, setup.compute, "members"))
        _log(f"  search N={n_} c={setup.compute}: duplicates {rows_n[-1]['pool_dup']:.3f} partitioned "
             f"({rows_n[-1]['bare_dup']:.3f} without backups), {rows_n[-1]['indep_dup']:.3f} independent "
             f"[{time.perf_counter() - t:.1f} s]")
    header = ["N", "c", "N c / rows", "backups / round", "dup part.", "dup part. no backups", "dup indep.",
              "distinct part.", "… no backups", "… indep.", "best val part.", "… no backups", "… indep.",
              "found table best part.", "… no backups", "… indep.", "test part.", "… no backups", "… indep.",
              "idle slots part."]

    def line(r: dict[str, Any]) -> list[Any]:
        cells: list[Any] = [r["n"], r["compute"], f"{r['total_over_rows']:.3f}", f"{r['pool_backups']:.1f}"]
        cells += [_pct(r[f"{t}_dup"]) for t in ("pool", "bare", "indep")]
        cells += [f"{r[f'{t}_distinct']:.1f}" for t in ("pool", "bare", "indep")]
        cells += [f"{r[f'{t}_val']:.2f}" for t in ("pool", "bare", "indep")]
        cells += [_pct(r[f"{t}_found_best"]) for t in ("pool", "bare", "indep")]
        cells += [f"{r[f'{t}_score']:.2f}" for t in ("pool", "bare", "indep")]
        return cells + [_pct(r["pool_idle"])]

    _write(out / "search.md", "Search efficiency: partitioned (the pool) against independent search",
           _setup_line(table, setup, rounds, seed),
           f"Compute sweep, N = {n}, {rounds} rounds each:\n\n" + _md_table(header, [line(r) for r in rows_c])
           + f"\n\nMembers sweep, c = {setup.compute}; the pool with backups {rounds_n} rounds each (experiment 1's "
           f"races), without backups {rounds} rounds:\n\n" + _md_table(header, [line(r) for r in rows_n]),
           f"Best validation count in the table: {table_best} of {table.val_total}. 'part.' = the pool as configured "
           f"(std_threshold {setup.std_threshold}), 'no backups' = the same pool with the backup rule off, 'indep.' = "
           f"the N solo miners' work together. 'test' = the revealed test count (of {table.test_total}) of the best "
           f"{setup.commit_k} by validation. 'idle slots' = evaluations lost because all of a member's subspaces "
           "lacked known rows (a partial table's artefact).")

    def plot(ax: Any, ax2: Any) -> None:
        x = [r["total_over_rows"] for r in rows_c]
        ax.plot(x, [r["pool_dup"] for r in rows_c], "o-", label="partitioned (pool, with backups)")
        ax.plot(x, [r["bare_dup"] for r in rows_c], "d--", label="partitioned, backup rule off")
        ax.plot(x, [r["indep_dup"] for r in rows_c], "s-", label="independent")
        ax.set_xscale("log")
        ax.set_xlabel(f"total compute N c / table rows (N = {n})")
        ax.set_ylabel("duplicate-evaluation rate")
        ax.legend(fontsize=8)
        ax2.plot(x, [r["pool_val"] for r in rows_c], "o-", label="partitioned (pool, with backups)")
        ax2.plot(x, [r["bare_val"] for r in rows_c], "d--", label="partitioned, backup rule off")
        ax2.plot(x, [r["indep_val"] for r in rows_c], "s-", label="independent")
        ax2.axhline(table_best, color="k", ls=":", lw=0.8, label="table's best")
        ax2.set_xscale("log")
        ax2.set_xlabel(f"total compute N c / table rows (N = {n})")
        ax2.set_ylabel(f"mean best validation count at the deadline (of {table.val_total})")
        ax2.legend(fontsize=8)

    _plot(out / "search.png", plot, "Search efficiency")
    return {"rounds": rounds, "rounds_members_sweep": rounds_n, "table_best_val": table_best,
            "compute_sweep": rows_c, "members_sweep": rows_n}


def exp_strategy(table: Table, setup: Setup, ns: Sequence[int], rounds: int, seed: int, out: Path,
                 cache: Cache | None = None, carry_rounds: int = 12) -> dict[str, Any]:
    """Experiment 6. The search strategy: the races of experiment 1 with tasks of ``carry_rounds``
    rounds (search state kept across a task's rounds, as on the devnet), once with random search
    and once with the miners' default, :class:`pool.search.RegularizedEvolution` (population 10,
    sample 3): every solo miner evolves one population over the whole space, every member one per
    assigned subspace, as ``pool/member.py`` does. Does partitioning the space help or hinder an
    evolutionary search? Numbers per N and strategy: the pool's share of rounds against the N
    solo miners and against one, and the mean best validation count at the deadline of the pool
    and of the best solo miner (standard errors count tasks).
    """
    cache = cache or Cache()
    rows_out = []
    tasks = max(1, rounds // carry_rounds)
    for n in ns:
        t = time.perf_counter()
        row: dict[str, Any] = {"n": n}
        for name in ("random", "evolution"):
            kw: dict[str, Any] = {"task_rounds": carry_rounds}
            if name != "random":
                kw["strategy"] = name  # the random race is experiment 1's carry race (cached)
            race = cache.race(table, setup, n, rounds, seed, **kw)
            share_n, share_1 = float(np.mean(race["win_all"] == -1)), float(np.mean(race["win_one"] == -1))
            row[f"{name}_vs_n"], row[f"{name}_vs_n_se"] = share_n, _se(share_n, tasks)
            row[f"{name}_vs_1"], row[f"{name}_vs_1_se"] = share_1, _se(share_1, tasks)
            row[f"{name}_pool_val"] = _mean(race["pool_val"])
            row[f"{name}_solo_val"] = _finite_mean(race["solo_val"].max(axis=1))
        rows_out.append(row)
        _log(f"  strategy N={n}: pool vs {n} solo random {row['random_vs_n']:.3f}, evolution "
             f"{row['evolution_vs_n']:.3f}; vs 1 solo {row['random_vs_1']:.3f}, {row['evolution_vs_1']:.3f} "
             f"[{time.perf_counter() - t:.1f} s]")
    md = _md_table(
        ["N", "vs N solo, random", "vs N solo, evolution", "vs 1 solo, random", "vs 1 solo, evolution",
         "pool val, random", "pool val, evolution", "best solo val, random", "best solo val, evolution"],
        [[r["n"], _pct(r["random_vs_n"], r["random_vs_n_se"]), _pct(r["evolution_vs_n"], r["evolution_vs_n_se"]),
          _pct(r["random_vs_1"], r["random_vs_1_se"]), _pct(r["evolution_vs_1"], r["evolution_vs_1_se"]),
          f"{r['random_pool_val']:.2f}", f"{r['evolution_pool_val']:.2f}", f"{r['random_solo_val']:.2f}",
          f"{r['evolution_solo_val']:.2f}"] for r in rows_out])
    _write(out / "strategy.md", "Search strategy: random search against regularised evolution",
           _setup_line(table, setup, rounds, seed), md,
           f"Tasks of {carry_rounds} rounds ({tasks} tasks; ± one standard error over tasks). 'val': the mean "
           f"best validation count at the deadline (of {table.val_total}). Evolution: pool.search.RegularizedEvolution "
           "(population 10, sample 3), one per solo miner over the space, one per member and assigned subspace.")

    def plot(ax: Any, ax2: Any) -> None:
        x = [r["n"] for r in rows_out]
        for name, mark in (("random", "o-"), ("evolution", "d-")):
            ax.plot(x, [r[f"{name}_vs_n"] for r in rows_out], mark, label=f"vs N solo, {name}")
            ax.plot(x, [r[f"{name}_vs_1"] for r in rows_out], mark.replace("-", "--"), label=f"vs 1 solo, {name}")
            ax2.plot(x, [r[f"{name}_pool_val"] for r in rows_out], mark, label=f"pool, {name}")
            ax2.plot(x, [r[f"{name}_solo_val"] for r in rows_out], mark.replace("-", "--"), label=f"best solo, {name}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("members N (and solo miners)")
        ax.set_ylabel("pool's share of rounds won")
        ax.legend(fontsize=8)
        ax2.set_xscale("log", base=2)
        ax2.set_xlabel("members N (and solo miners)")
        ax2.set_ylabel(f"best validation count at the deadline (of {table.val_total})")
        ax2.legend(fontsize=8)

    _plot(out / "strategy.png", plot, "Search strategy")
    return {"rounds": rounds, "carry_rounds": carry_rounds, "rows": rows_out}


#: How many distinct results a pool that commits under several keys spreads its commitments
#: over in :func:`exp_collaboration` (``pool_distinct`` of :func:`run_race`): its best 32 by
#: validation, each under ``8 K / 32`` keys (all distinct while ``8 K`` <= 32).
POOL_DISTINCT = 32

#: The races of :func:`exp_collaboration` per N: label -> keyword arguments of :func:`run_race`
#: (``pool_keys`` is N unless given; ``None`` in ``pool_distinct`` = :data:`POOL_DISTINCT`).
COLLAB_RACES: dict[str, dict[str, Any]] = {
    "shared": {"strategy": "shared", "pool_distinct": None},
    "shared_distinct": {"strategy": "shared"},
    "evolution": {"strategy": "evolution", "pool_distinct": None},
    "evolution_distinct": {"strategy": "evolution"},
    "shared_1key": {"strategy": "shared", "pool_keys": 1},
    "shared_evo": {"strategy": "shared", "pool_distinct": None, "shared": Shared(model="evolution")},
}


def _task_se(won: np.ndarray, task_rounds: int) -> float:
    """Standard error of a share of rounds whose tasks are independent but whose rounds are not:
    the standard deviation of the per-task shares over the square root of the number of tasks."""
    per_task = np.asarray(won, dtype=float)[: len(won) // task_rounds * task_rounds].reshape(-1, task_rounds)
    tasks = per_task.shape[0]
    return float(per_task.mean(axis=1).std(ddof=1) / math.sqrt(tasks)) if tasks > 1 else float("nan")


def exp_collaboration(table: Table, setup: Setup, ns: Sequence[int], rounds: int, seed: int, out: Path,
                      cache: Cache | None = None, task_rounds: int = 20) -> dict[str, Any]:
    """Experiment 7. Collaboration that pays: a pool of N members against N solo miners of the
    same total compute on tasks of ``task_rounds`` rounds (a devnet task epoch: every party keeps
    its results across the task, and a cell that won a round cannot win again in the task).
    The solo miners run the project's regularised evolution over the whole space (the miners'
    default) in every race; the pool (:data:`COLLAB_RACES`):

    - ``shared``: the pool's one search (:class:`Shared`, the manager's SharedSearch) fed by every
      member's results, committing under N keys (as many commitments as the N solo miners)
      spread over its best :data:`POOL_DISTINCT` results; ``shared_distinct``: the same search,
      its best 8 N distinct results committed (the manager's rule: the pool as built);
    - ``evolution`` / ``evolution_distinct``: the old way, one evolution per member and assigned
      subspace, with the same two commitment rules;
    - ``shared_1key``: the shared search under one key (8 commitments);
    - ``shared_evo``: the shared search with the solo miners' own algorithm
      (:class:`pool.search.RegularizedEvolution` over the space, fed by every member), N keys
      spread as ``shared``: what pooling alone does, with no better model.

    Numbers per N: each race's share of rounds won by the pool (± one standard error over
    tasks: :func:`_task_se`), the share of rounds ``shared`` tied the best solo miner's score,
    and, in ``shared``, the income per round of a member (``split_reward`` over the pool's
    default PPLNS window) and of a solo miner: mean and coefficient of variation.
    """
    cache = cache or Cache()
    coin = float(COIN)
    rows_out = []
    for n in ns:
        t = time.perf_counter()
        row: dict[str, Any] = {"n": n}
        for label, spec in COLLAB_RACES.items():
            kw = dict(spec)
            kw.setdefault("pool_keys", n)
            if "pool_distinct" in kw:
                kw["pool_distinct"] = POOL_DISTINCT
            if label == "shared":
                kw["windows"] = _windows(setup)
            race = cache.race(table, setup, n, rounds, seed, task_rounds=task_rounds, **kw)
            won = race["win_all"] == -1
            row[label] = float(np.mean(won))
            row[f"{label}_se"] = _task_se(won, task_rounds)
            row[f"{label}_val"] = _mean(race["pool_val"])
            if label == "shared":
                best_solo = race["solo_scores"].max(axis=1)
                row["shared_tied"] = float(np.mean(race["pool_score"] == best_solo))
                row["shared_solo_val"] = _finite_mean(race["solo_val"].max(axis=1))
                row["shared_dup"] = float(1 - np.sum(race["pool_distinct"]) / max(1.0, np.sum(race["pool_evals"])))
                win = race["win_all"]
                solo_inc = np.zeros((rounds, n))
                for r in np.flatnonzero(win >= 0):
                    solo_inc[r, win[r]] = setup.reward / coin
                row["solo_mean"], row["solo_cv"], row["solo_paid"] = _income_stats(solo_inc)
                inc = race["income"][_windows(setup)[0]] / coin
                row["member_mean"], row["member_cv"], row["member_paid"] = _income_stats(inc)
        rows_out.append(row)
        _log(f"  collaboration N={n}: shared {row['shared']:.3f} (distinct {row['shared_distinct']:.3f}, 1 key "
             f"{row['shared_1key']:.3f}, shared evolution {row['shared_evo']:.3f}), member evolution "
             f"{row['evolution']:.3f} ({row['evolution_distinct']:.3f}); member CV {row['member_cv']:.2f} vs solo "
             f"{row['solo_cv']:.2f} [{time.perf_counter() - t:.1f} s]")
    tasks = rounds // task_rounds
    md = _md_table(
        ["N", "shared, N keys", "shared, N keys distinct", "member evolution, N keys",
         "member evolution, N keys distinct", "shared, 1 key", "shared evolution, N keys", "ties (shared)",
         "member mean", "member CV", "solo mean", "solo CV", "pool val (shared)", "best solo val"],
        [[r["n"], _pct(r["shared"], r["shared_se"]), _pct(r["shared_distinct"], r["shared_distinct_se"]),
          _pct(r["evolution"], r["evolution_se"]), _pct(r["evolution_distinct"], r["evolution_distinct_se"]),
          _pct(r["shared_1key"], r["shared_1key_se"]), _pct(r["shared_evo"], r["shared_evo_se"]),
          _pct(r["shared_tied"]), f"{r['member_mean']:.4f}", f"{r['member_cv']:.2f}", f"{r['solo_mean']:.4f}",
          f"{r['solo_cv']:.2f}", f"{r['shared_val']:.2f}", f"{r['shared_solo_val']:.2f}"] for r in rows_out])
    _write(out / "collaboration.md", "Collaboration: a pool with one shared search against N solo miners",
           _setup_line(table, setup, rounds, seed), md,
           f"Tasks of {task_rounds} rounds ({tasks} tasks per race; ± one standard error over tasks); a cell that "
           "won a round cannot win again in its task. Every column is the pool's share of rounds against N solo "
           "miners of the same total compute, who run regularised evolution over the whole space (the miners' "
           "default). 'shared' = the pool's one search fed by every member's results (the manager's "
           "pool.search.SharedSearch: a model of the space, Thompson-sampled, new seeds of its best cells as it covers "
           "the space; 'shared evolution': one regularised evolution instead, the solo miners' algorithm, pooled); "
           "'member evolution' = one evolution per member and assigned subspace (the pool before its shared search). 'N keys' = "
           f"the pool commits under N keys ({setup.commit_k} N commitments, as many as the N solo miners), spread "
           f"over its best {POOL_DISTINCT} results by validation; 'distinct' = its best {setup.commit_k} N distinct "
           f"results instead (the manager's rule: the pool as built). 'ties' = rounds where the pool's revealed score equalled "
           "the best solo miner's (the chain's tiebreak: one ticket per commitment). Income: coins per round of a "
           f"member (the pool's default PPLNS window, {_window_name(*_windows(setup)[0])}) and of a solo miner in "
           "the 'shared' races; CV = standard deviation / mean over member-rounds (solo-rounds). 'val' = mean best "
           f"validation count kept at the deadline (of {table.val_total}).")

    def plot(ax: Any, ax2: Any) -> None:
        x = [r["n"] for r in rows_out]
        for label, mark, name in (("shared", "o-", "shared, N keys"), ("shared_distinct", "o--", "shared, distinct"),
                                  ("evolution", "d-", "member evolution, N keys"),
                                  ("evolution_distinct", "d--", "member evolution, distinct"),
                                  ("shared_1key", "s:", "shared, 1 key"), ("shared_evo", "^-", "shared evolution")):
            ax.errorbar(x, [r[label] for r in rows_out], yerr=[r[f"{label}_se"] for r in rows_out], fmt=mark,
                        capsize=2, label=name)
        ax.axhline(0.5, color="k", ls=":", lw=0.8, label="fair share (50%)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("members N (and solo miners)")
        ax.set_ylabel("pool's share of rounds won")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=7)
        ax2.plot(x, [r["member_cv"] for r in rows_out], "o-", label="member")
        ax2.plot(x, [r["solo_cv"] for r in rows_out], "s-", label="solo miner")
        ax2.set_xscale("log", base=2)
        ax2.set_yscale("log")
        ax2.set_xlabel("members N (and solo miners)")
        ax2.set_ylabel("coefficient of variation of income per round")
        ax2.legend(fontsize=8)

    _plot(out / "collaboration.png", plot, "Collaboration that pays")
    return {"rounds": rounds, "task_rounds": task_rounds, "tasks": tasks, "pool_distinct": POOL_DISTINCT,
            "shared": dataclasses.asdict(Shared()), "rows": rows_out}


def exp_churn(table: Table, setup: Setup, n: int, ps: Sequence[float], thresholds: Sequence[float], rounds: int,
              seed: int, out: Path, cache: Cache | None = None) -> dict[str, Any]:
    """Experiment 4. A pool of ``n`` members against ``n`` solo miners, both under churn
    (module docstring) with drop probability ``p`` per round, for each ``std_threshold`` of the
    Scheduler (``1.0`` = no backups: no metric's standard deviation can exceed 0.5).

    Completion: the plan intends ``quota`` evaluations for each subspace (its primary's round
    robin over its primary subspaces with known rows, at plan time). A subspace is complete when
    the pool evaluated at least ``min(quota, known rows)`` distinct rows of it by the deadline
    (its primary, its backup, or a member that took it over); ``cover`` is that fraction, capped
    at 1. High-reward subspaces: those whose primary was high-reward (``Scheduler.high_reward``)
    when the round was planned. Also: rounds won, mean revealed test score, backups per round,
    take-overs by a backup, and members online.
    """
    cache = cache or Cache()
    rows_out = []
    for p in ps:
        for th in thresholds:
            t = time.perf_counter()
            race = cache.race(table, setup, n, rounds, seed, p_drop=p, std_threshold=th)
            hr_n, all_n = float(np.sum(race["hr_subs"])), float(np.sum(race["all_subs"]))
            row = {
                "p": p, "threshold": th, "backups": "off" if th >= NO_BACKUP else "on",
                "hr_complete": float(np.sum(race["hr_done"]) / hr_n) if hr_n else float("nan"),
                "hr_cover": float(np.sum(race["hr_cover"]) / hr_n) if hr_n else float("nan"),
                "all_complete": float(np.sum(race["all_done"]) / all_n) if all_n else float("nan"),
                "all_cover": float(np.sum(race["all_cover"]) / all_n) if all_n else float("nan"),
                "hr_subspaces_per_round": hr_n / rounds,
                "pool_share": float(np.mean(race["win_all"] == -1)),
                "pool_share_se": _se(float(np.mean(race["win_all"] == -1)), rounds),
                "pool_score": _finite_mean(race["pool_score"]),
                "best_solo_score": _finite_mean(race["solo_scores"].max(axis=1)),
                "backups_per_round": _mean(race["backups"]),
                "takeovers_per_round": _mean(race["takeovers"]),
                "moves_per_round": _mean(race["moves"]),
                "online": _mean(race["online"]),
                "pool_dup": float(np.sum(race["pool_evals"] - race["pool_distinct"])
                                  / max(1.0, np.sum(race["pool_evals"]))),
            }
            rows_out.append(row)
            _log(f"  churn p={p} threshold={th}: high-reward complete {row['hr_complete']:.3f}, "
                 f"pool wins {row['pool_share']:.3f}, {row['backups_per_round']:.1f} backups/round "
                 f"[{time.perf_counter() - t:.1f} s]")
    md = _md_table(
        ["p", "std_threshold", "HR complete", "HR cover", "all complete", "all cover", "HR subspaces / round",
         "backups / round", "take-overs / round", "members online", "dup rate", "pool wins vs N solo", "pool test",
         "best solo test"],
        [[r["p"], "off (1.0)" if r["threshold"] >= NO_BACKUP else r["threshold"], _pct(r["hr_complete"]),
          _pct(r["hr_cover"]), _pct(r["all_complete"]), _pct(r["all_cover"]), f"{r['hr_subspaces_per_round']:.1f}",
          f"{r['backups_per_round']:.1f}", f"{r['takeovers_per_round']:.2f}", f"{r['online']:.1f}",
          _pct(r["pool_dup"]), _pct(r["pool_share"], r["pool_share_se"]), f"{r['pool_score']:.2f}",
          f"{r['best_solo_score']:.2f}"] for r in rows_out])
    _write(out / "churn.md", f"Churn: a pool of {n} members with and without backups, against {n} solo miners",
           _setup_line(table, setup, rounds, seed), md,
           f"HR = subspaces of high-reward members; a dropped member or miner comes back with probability "
           f"{setup.p_back} per round. 'members online' = mean at the round's start.")

    def plot(ax: Any, ax2: Any) -> None:
        for th in thresholds:
            sel = [r for r in rows_out if r["threshold"] == th]
            label = "no backups" if th >= NO_BACKUP else f"std_threshold {th}"
            ax.plot([r["p"] for r in sel], [r["hr_complete"] for r in sel], "o-", label=label)
            ax2.plot([r["p"] for r in sel], [r["pool_share"] for r in sel], "o-", label=label)
        ax.set_xlabel("drop probability per round p")
        ax.set_ylabel("completion rate of high-reward subspaces")
        ax.legend(fontsize=8)
        ax2.set_xlabel("drop probability per round p")
        ax2.set_ylabel(f"share of rounds won vs {n} solo miners")
        ax2.legend(fontsize=8)

    _plot(out / "churn.png", plot, "Churn and backups")
    return {"rounds": rounds, "n": n, "p_back": setup.p_back, "default_threshold": setup.std_threshold, "rows": rows_out}


def load_network_runs(folder: Path) -> list[dict[str, Any]]:
    """The real-network runs (``bench/paper/network/*.json``): for each, its file name, rounds,
    pool members, solo miners, the keys the pool committed under, wins by party and mean
    trainings per miner process. ``ValueError`` naming the file for one that is not such a run
    (a pool and solo miners, at least one round, one winner per round)."""
    runs = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            d = json.loads(path.read_text())
            summary = d["summary"]
            trainings = d["trainings_per_process"]
            members = sorted(k for k in trainings if k.startswith("member"))
            solos = sorted(k for k in trainings if k.startswith("solo"))
            rounds = int(summary["rounds"])
            if not members or not solos or rounds < 1 or len(summary["blocks"]) != rounds:
                raise ValueError("needs pool members, solo miners and one block per round")
            wins = {name: 0 for name in ["pool", *solos]}
            for block in summary["blocks"]:
                # a block won under one of the pool's other commit keys pays its members (devnets
                # started before the manifest named those keys show their address as the winner)
                who = "pool" if block["winner"] not in solos and block.get("members_paid", 0) > 0 else block["winner"]
                wins[who] = wins.get(who, 0) + 1
            runs.append({"name": path.stem, "rounds": rounds, "members": len(members), "solos": len(solos),
                         "pool_keys": int(d.get("pool_keys", 1)), "wins": wins,
                         "trainings_per_process": float(np.mean([float(v) for v in trainings.values()]))})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a real-network run: {exc}") from None
    return runs


NETWORK_MODELS = ("tasks of R rounds", "fresh every round", "tasks of R rounds, evolution",
                  "tasks of R rounds, shared search")
#: Per model: rounds per task (None: the run's R), search strategy, and the share of ``reps``
#: simulated (the project's evolution costs about 0.15 ms an evaluation, so it runs fewer).
#: The last is the pool as the manager runs it today (``ManagerConfig.shared_search``: one
#: :class:`pool.search.SharedSearch` for the pool, the solo miners evolving).
_NETWORK_MODEL_RUNS = {NETWORK_MODELS[0]: (None, "random", 1), NETWORK_MODELS[1]: (1, "random", 1),
                       NETWORK_MODELS[2]: (None, "evolution", 5), NETWORK_MODELS[3]: (None, "shared", 5)}


def exp_network(table: Table, setup: Setup, runs: Sequence[dict[str, Any]], reps: int, seed: int, out: Path,
                noises: Sequence[float] = (0.0, 3.0), cache: Cache | None = None) -> dict[str, Any]:
    """Experiment 5. Each real-network run's setup in the simulation: a pool of its members
    (committing under its keys) against its solo miners, every process with the run's mean
    trainings per round (scaled by the table's coverage of the space, at least 1), one task for
    the run's R rounds with results kept across them (as on the devnet), ``reps`` times with
    fresh tasks, at each per-round test noise in ``noises``; and, for contrast, searching afresh
    every round. Runs of one setup (members, solo miners, pool keys) are also taken together:
    their rounds summed, simulated run j of each summed likewise.

    A third model keeps results across the run like the first, with the miners' regularised
    evolution (the devnet's default strategy) instead of random search, over a fifth as many
    simulated runs; a fourth has the pool run one shared search (the manager's
    ``shared_search``, on by default since 2026-12-06) against the solo miners' evolution.

    Numbers: the pool's share of rounds and one solo miner's mean share; the directions a real
    run is compared on (the pool against the solo miners together, the same total compute when
    there are as many as members; and against one solo miner) and whether the simulation's
    agree; how often simulated runs are at least as extreme as the real ones (the pool winning
    at most, resp. at least, as often; per run also the best solo miner winning at least as
    often).
    """
    cache = cache or Cache()
    rows_out: list[dict[str, Any]] = []
    groups: dict[tuple[int, int, int], list[dict[str, Any]]] = {}
    sims: dict[tuple[str, str, float], np.ndarray] = {}  # (run, model, noise) -> pool wins per simulated run
    for run in runs:
        R, n, n_solo, keys = run["rounds"], run["members"], run["solos"], run["pool_keys"]
        groups.setdefault((n, n_solo, keys), []).append(run)
        c = max(1, round(run["trainings_per_process"] / R * table.rows / SPACE.size))
        real_pool = run["wins"].get("pool", 0)
        real_solo = [v for k, v in run["wins"].items() if k != "pool"]
        real_max_solo = max(real_solo, default=0)
        real_row = {"run": run["name"], "model": "real network", "noise": None, "rounds": R, "compute": None,
                    "pool_keys": keys, "pool_share": real_pool / R,
                    "solo_share_each": sum(real_solo) / (R * max(1, n_solo)),
                    "pool_wins": real_pool, "max_solo_wins": real_max_solo}
        _directions(real_row)
        rows_out.append(real_row)
        for noise in noises:
            s = dataclasses.replace(setup, compute=c, test_noise=noise)
            for model in NETWORK_MODELS:
                task, strategy, fewer = _NETWORK_MODEL_RUNS[model]
                reps_m = max(1, reps // fewer)
                kw: dict[str, Any] = {"strategy": strategy} if strategy != "random" else {}
                race = cache.race(table, s, n, R * reps_m, seed, solos=n_solo, task_rounds=task or R, pool_keys=keys,
                                  **kw)
                win = race["win_all"].reshape(reps_m, R)
                pool_wins = (win == -1).sum(axis=1)
                sims[(run["name"], model, noise)] = pool_wins
                solo_wins = np.stack([(win == i).sum(axis=1) for i in range(n_solo)], axis=1)
                row = {"run": run["name"], "model": model, "noise": noise, "rounds": R, "compute": c,
                       "pool_keys": keys, "pool_share": float(np.mean(win == -1)),
                       "solo_share_each": float(np.mean(win >= 0)) / n_solo,
                       "p_pool_at_most_real": float(np.mean(pool_wins <= real_pool)),
                       "p_pool_at_least_real": float(np.mean(pool_wins >= real_pool)),
                       "p_max_solo_at_least_real": float(np.mean(solo_wins.max(axis=1) >= real_max_solo)),
                       "pool_wins_hist": np.bincount(pool_wins, minlength=R + 1).tolist()}
                _directions(row)
                row["agrees"] = row["direction"] == real_row["direction"]
                row["agrees_one"] = row["direction_one"] == real_row["direction_one"]
                rows_out.append(row)
                _log(f"  network {run['name']} {model}, noise {noise:g}: pool {row['pool_share']:.3f}, "
                     f"each solo {row['solo_share_each']:.3f} (real {real_row['pool_share']:.3f} / "
                     f"{real_row['solo_share_each']:.3f})")
    aggregates: list[dict[str, Any]] = []
    for (n, n_solo, keys), members in groups.items():
        name = f"{len(members)} run{'s' if len(members) > 1 else ''}: pool of {n}" + (
            f" ({keys} keys)" if keys > 1 else "") + f", {n_solo} solo"
        R = sum(r["rounds"] for r in members)
        real_pool = sum(r["wins"].get("pool", 0) for r in members)
        real = {"setup": name, "model": "real network", "noise": None, "rounds": R, "pool_keys": keys,
                "pool_share": real_pool / R, "solo_share_each": (R - real_pool) / (R * max(1, n_solo)),
                "pool_wins": real_pool}
        _directions(real)
        aggregates.append(real)
        for noise in noises:
            for model in NETWORK_MODELS:
                total = sum(sims[(r["name"], model, noise)] for r in members)
                row = {"setup": name, "model": model, "noise": noise, "rounds": R, "pool_keys": keys,
                       "pool_share": float(np.mean(total)) / R,
                       "solo_share_each": (1 - float(np.mean(total)) / R) / max(1, n_solo),
                       "p_pool_at_most_real": float(np.mean(total <= real_pool)),
                       "p_pool_at_least_real": float(np.mean(total >= real_pool))}
                _directions(row)
                row["agrees"] = row["direction"] == real["direction"]
                row["agrees_one"] = row["direction_one"] == real["direction_one"]
                aggregates.append(row)

    def yes(r: dict[str, Any], key: str) -> str:
        return "–" if key not in r else ("yes" if r[key] else "no")

    md = ("Each run:\n\n" + _md_table(
        ["run", "pool keys", "model", "test noise", "c", "pool share", "one solo's share", "vs the solos together",
         "agrees", "vs one solo", "agrees", "P(pool wins ≤ real)", "P(pool wins ≥ real)", "P(best solo wins ≥ real)"],
        [[r["run"], r["pool_keys"], r["model"], "–" if r["noise"] is None else f"{r['noise']:g}", r["compute"] or "–",
          _pct(r["pool_share"]), _pct(r["solo_share_each"]), r["direction"], yes(r, "agrees"), r["direction_one"],
          yes(r, "agrees_one"), _pct(r.get("p_pool_at_most_real", float("nan"))),
          _pct(r.get("p_pool_at_least_real", float("nan"))), _pct(r.get("p_max_solo_at_least_real", float("nan")))]
         for r in rows_out])
        + "\n\nRuns of one setup taken together:\n\n" + _md_table(
        ["setup", "rounds", "model", "test noise", "pool share", "one solo's share", "vs the solos together", "agrees",
         "vs one solo", "agrees", "P(pool wins ≤ real)", "P(pool wins ≥ real)"],
        [[r["setup"], r["rounds"], r["model"], "–" if r["noise"] is None else f"{r['noise']:g}", _pct(r["pool_share"]),
          _pct(r["solo_share_each"]), r["direction"], yes(r, "agrees"), r["direction_one"], yes(r, "agrees_one"),
          _pct(r.get("p_pool_at_most_real", float("nan"))), _pct(r.get("p_pool_at_least_real", float("nan")))]
         for r in aggregates]))
    _write(out / "network.md", "The real-network runs against the simulation of their setup",
           _setup_line(table, setup, reps, seed).replace(f"compute c = {setup.compute} evaluations per member per "
                                                         f"round; {reps} rounds", f"{reps} simulated runs per row ({max(1, reps // 5)} with evolution)"), md,
           "'vs the solos together': the pool's share of rounds against the solo miners' together (the same total "
           "compute when there are as many solo miners as members); 'vs one solo': against one solo miner's mean "
           "share. 'agrees': the simulation's direction is the real run's. 'c' = evaluations per process and round "
           "in the simulation: the real run's trainings per process and round, scaled by the table's coverage of the "
           "space. 'test noise' = standard deviation of the per-round test noise in test images of "
           f"{table.test_total} (a round's real test set is a fresh key-chosen sample). The P columns: how often "
           "simulated runs (of the same lengths, summed for a setup) are at least as extreme as the real ones.")

    def plot(ax: Any, ax2: Any) -> None:
        shown = [r for r in aggregates if r["model"] != "real network" and r["noise"] == noises[0]]
        labels = [f"{r['setup']}\n{r['model']}" for r in shown]
        y = np.arange(len(shown))
        ax.barh(y, [r["pool_share"] for r in shown], 0.6, label=f"simulated (noise {noises[0]:g})", color="C0")
        reals = {r["setup"]: r for r in aggregates if r["model"] == "real network"}
        ax.scatter([reals[r["setup"]]["pool_share"] for r in shown], y, color="k", marker="D", zorder=3,
                   label="real network")
        ax.set_yticks(y, labels, fontsize=6)
        ax.set_xlabel("pool's share of rounds")
        ax.set_xlim(0, 1)
        ax.legend(fontsize=7)
        for r in rows_out:
            if r["model"] == NETWORK_MODELS[0] and r["noise"] == noises[0]:
                ax2.plot(range(len(r["pool_wins_hist"])), np.asarray(r["pool_wins_hist"]) / reps, "o-", ms=3,
                         label=f"{r['run']} (real: {next(x['pool_wins'] for x in rows_out if x['run'] == r['run'] and x['model'] == 'real network')})")
        ax2.set_xlabel(f"rounds the pool wins in one run ({NETWORK_MODELS[0]}, noise {noises[0]:g})")
        ax2.set_ylabel("share of simulated runs")
        ax2.legend(fontsize=6)

    if runs:
        _plot(out / "network.png", plot, "Real network against the simulation")
    return {"reps": reps, "rows": rows_out, "aggregates": aggregates}


def _directions(row: dict[str, Any]) -> None:
    """The directions a real run is compared on: the pool against the solo miners together (the
    same total compute when each has a member's compute) and against one solo miner."""
    pool, each = row["pool_share"], row["solo_share_each"]
    together = 1.0 - pool
    row["direction"] = "pool > solos" if pool > together else "pool < solos" if pool < together else "equal"
    row["direction_one"] = "pool > one solo" if pool > each else "pool < one solo" if pool < each else "equal"


# ---------------------------------------------------------------------------------------------
# Output helpers.


def _pct(x: float, se: float | None = None) -> str:
    if x != x:  # NaN
        return "–"
    return f"{100 * x:.1f}%" + (f" ± {100 * se:.1f}" if se is not None and se == se else "")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" ---: " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _setup_line(table: Table, setup: Setup, rounds: int, seed: int) -> str:
    return (f"Table `{Path(table.path).name}`: {table.rows} rows of {SPACE.size}; compute c = {setup.compute} "
            f"evaluations per member per round; {rounds} rounds; seed {seed}; test noise {setup.test_noise:g} images; "
            + (f"each party's own training seed ({setup.seed_noise.source}); " if setup.seed_noise else
               "one training seed (the table's) for every party; ") +
            f"commit {setup.commit_k} per key; fee {setup.fee_ppm / 1e4:g}%, finder bonus "
            f"{setup.finder_bonus_ppm / 1e4:g}%; Scheduler: {setup.subspaces_per_member} subspaces per member, "
            f"top_k {setup.top_k}, history {setup.history}, heartbeat {setup.heartbeat:g} s, timeout "
            f"{setup.heartbeat_timeout:g} s. Model: bench/paper/simulate.py's docstring.")


def _write(path: Path, title: str, setup_line: str, body: str, note: str) -> None:
    path.write_text(f"# {title}\n\n{setup_line}\n\n{body}\n\n{note}\n")


def _plot(path: Path, draw: Callable[[Any, Any], None], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    draw(ax, ax2)
    ax.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.floating | np.integer):
        return _json_safe(obj.item())
    return obj


# ---------------------------------------------------------------------------------------------
# The run.


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What a run does: experiment sizes."""

    ns: tuple[int, ...]
    rounds: int
    search_n: int
    search_computes: tuple[int, ...]
    search_rounds: int
    churn_n: int
    churn_ps: tuple[float, ...]
    churn_thresholds: tuple[float, ...]
    churn_rounds: int
    carry_rounds: int = 12
    network_reps: int = 500
    strategy_ns: tuple[int, ...] = (2, 4, 8, 16)
    collab_ns: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128, 256)
    collab_rounds: int = 200
    collab_task_rounds: int = 20


def make_plan(quick: bool, rounds: int | None) -> RunPlan:
    """Full: N = 2..256, 1,000 rounds (``--rounds``); search sweeps 1/4 of that, churn 1/2; the
    collaboration experiment 200 rounds (10 tasks of 20), or ``--rounds`` cut to whole tasks.
    Quick: N = 1..16, 60 rounds (collaboration: N = 2, one task)."""
    task = RunPlan.collab_task_rounds

    def whole_tasks(r: int) -> int:
        return max(task, r // task * task)

    if quick:
        r = rounds or 60
        return RunPlan(ns=(1, 2, 4, 8, 16), rounds=r, search_n=8, search_computes=(1, 4, 16, 64), search_rounds=max(1, r // 2),
                    churn_n=8, churn_ps=(0.0, 0.2), churn_thresholds=(NO_BACKUP, 0.25, 0.0), churn_rounds=r,
                    network_reps=20, strategy_ns=(2, 4), collab_ns=(2,), collab_rounds=whole_tasks(rounds or task))
    r = rounds or 1000
    return RunPlan(ns=(2, 4, 8, 16, 32, 64, 128, 256), rounds=r, search_n=32,
                search_computes=(1, 2, 4, 8, 16, 32, 64, 128), search_rounds=max(1, r // 4),
                churn_n=32, churn_ps=(0.0, 0.05, 0.1, 0.2, 0.3), churn_thresholds=(NO_BACKUP, 0.25, 0.1, 0.05, 0.0),
                churn_rounds=max(1, r // 2), collab_rounds=whole_tasks(rounds or 200))


def run_all(table: Table, setup: Setup, plan: RunPlan, seed: int, out: Path,
            experiments: Sequence[str] = EXPERIMENTS, network: Path = DEFAULT_NETWORK) -> dict[str, Any]:
    """Run the experiments, write ``simulate.json`` and return what it holds."""
    runs = load_network_runs(network) if "network" in experiments else []  # a bad file fails first, not last
    out.mkdir(parents=True, exist_ok=True)
    cache = Cache()
    started = time.perf_counter()
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    _log(f"table {table.path}: {table.rows} rows of {SPACE.size}; compute c = {setup.compute}; seed {seed}")
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "competitiveness": lambda: exp_competitiveness(table, setup, plan.ns, plan.rounds, seed, out, cache,
                                                       plan.carry_rounds),
        "income": lambda: exp_income(table, setup, plan.ns, plan.rounds, seed, out, cache),
        "search": lambda: exp_search(table, setup, plan.search_n, plan.search_computes, plan.ns, plan.search_rounds,
                                     plan.rounds, seed, out, cache),
        "churn": lambda: exp_churn(table, setup, plan.churn_n, plan.churn_ps, plan.churn_thresholds,
                                   plan.churn_rounds, seed, out, cache),
        "network": lambda: exp_network(table, setup, runs, plan.network_reps, seed, out, cache=cache),
        "strategy": lambda: exp_strategy(table, setup, plan.strategy_ns, plan.rounds, seed, out, cache,
                                         plan.carry_rounds),
        "collaboration": lambda: exp_collaboration(table, setup, plan.collab_ns, plan.collab_rounds, seed, out, cache,
                                                   plan.collab_task_rounds),
    }
    for name in experiments:
        t = time.perf_counter()
        _log(f"{name} ...")
        results[name] = steps[name]()
        timings[name] = round(time.perf_counter() - t, 2)
        _log(f"{name}: {timings[name]:.1f} s")
    timings["total"] = round(time.perf_counter() - started, 2)
    report = {
        "table": {"path": table.path, "task": table.task, "rows": table.rows, "space_size": SPACE.size,
                  "val_total": table.val_total,
                  "test_total": table.test_total, "best_val": max(table.val), "best_test": max(table.test)},
        "seed": seed,
        "setup": dataclasses.asdict(setup),
        "plan": dataclasses.asdict(plan),
        "results": results,
        "timings_s": timings,
    }
    (out / "simulate.json").write_text(json.dumps(_json_safe(report), indent=1) + "\n")
    _log(f"done in {timings['total']:.1f} s; results in {out}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default=str(DEFAULT_TABLE), help="the score table (gzip CSV)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output directory (default docs/results/mnist1d/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, help="rounds of experiments 1 and 2 (default 1000, quick 60); "
                    "experiment 3 runs a quarter of that, experiment 4 half, experiment 7 that many cut to whole "
                    "tasks of 20 (default 200)")
    ap.add_argument("--quick", action="store_true", help="a small run (under 30 s)")
    ap.add_argument("--compute", default="auto", help="evaluations per member per round (default auto: 20 x rows/15625)")
    ap.add_argument("--test-noise", type=float, default=0.0, help="std of the per-round test noise, in test images")
    ap.add_argument("--seed-noise", choices=("auto", "off"), default="auto",
                    help="auto (default): every party trains with its own seed, modelled from the task's two-seed "
                         "correlation sample (SEED_PAIRS) where there is one; off: every party gets the table's row")
    ap.add_argument("--only", nargs="+", choices=EXPERIMENTS, help="run only these experiments")
    ap.add_argument("--network", help="folder of the real-network runs (JSON) that experiment 5 simulates "
                    "(default bench/paper/network/ for the digits task, bench/paper/network_TASK/ for another)")
    args = ap.parse_args(argv)
    try:
        table = load_table(args.table)
        compute = None if args.compute == "auto" else int(args.compute)
        noise = default_seed_noise(table) if args.seed_noise == "auto" else None
        setup = make_setup(table, compute, args.test_noise, noise)
        plan = make_plan(args.quick, args.rounds)
        network = Path(args.network) if args.network else default_network(table)
        run_all(table, setup, plan, args.seed, Path(args.out), args.only or EXPERIMENTS, network)
    except (OSError, ValueError, bt.TableError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
