"""Search strategies: which architecture to train next (pure: no I/O, no torch, no clock).

A strategy searches one *region*: a whole space or a :class:`~consensus.engines.ponas.space.Subspace`
of it (a pool hands each member a subspace; a solo miner searches the whole space, which is
``space.full()``). Every strategy offers two calls:

- :meth:`SearchStrategy.propose` returns the canonical genotype to evaluate next; it is always
  inside the region;
- :meth:`SearchStrategy.observe` reports the integer score (a validation count: higher is
  better) that a genotype of the region obtained. Observing a genotype outside the region raises
  :class:`~consensus.engines.ponas.space.GenotypeError` (``outside-subspace``), so a caller's
  mix-up cannot make a strategy wander out of its region later.

All randomness comes from the ``random.Random`` given at construction, so a run is reproduced
by its seed.

Strategies:

- :class:`RandomSearch`: uniform sampling *without replacement*: every genotype of the region
  is proposed once before any is proposed again (a lazy Fisher-Yates shuffle: memory grows with
  the number of proposals, not the region's size); then a fresh shuffle starts.
- :class:`RegularizedEvolution`: Real et al., "Regularized Evolution for Image Classifier
  Architecture Search" (AAAI 2019), the strategy NAS-Bench-201 reports close to the best with
  population 10 and sample 3. Until ``population`` genotypes have been observed, proposals are
  random (without replacement). Then each proposal runs a tournament: ``sample`` members are
  drawn uniformly *with replacement* from the population (Algorithm 1 of the paper), the best
  score wins (ties: the younger member), and the proposal is a one-edit mutation of the winner
  inside the region (:meth:`SearchSpace.mutate` with ``within``). Every observation joins the
  population as its youngest member and, once the population is full, the *oldest* member
  leaves, whatever its score (ageing: the "regularisation").
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any, Protocol, runtime_checkable

from consensus.engines.ponas.space import GenotypeError, SearchSpace, Subspace

__all__ = [
    "SearchError",
    "SearchStrategy",
    "RandomSearch",
    "RegularizedEvolution",
    "SharedSearch",
    "STRATEGIES",
    "make_strategy",
    "as_subspace",
]

#: The strategy names :func:`make_strategy` knows.
STRATEGIES: tuple[str, ...] = ("evolution", "random")


class SearchError(ValueError):
    """A bad strategy request. ``reason``: ``bad-strategy`` (unknown name or parameter)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@runtime_checkable
class SearchStrategy(Protocol):
    """What a miner or pool member asks of a search strategy."""

    @property
    def region(self) -> Subspace:
        """The subspace the strategy searches; every proposal lies in it."""
        ...

    def propose(self) -> str:
        """The canonical genotype to evaluate next (inside :attr:`region`)."""
        ...

    def observe(self, genotype: str, score: int) -> None:
        """Record that ``genotype`` scored ``score`` (higher is better)."""
        ...


def as_subspace(space_or_subspace: SearchSpace | Subspace) -> Subspace:
    """The region to search: a subspace as given, a whole space as ``space.full()``."""
    if isinstance(space_or_subspace, Subspace):
        return space_or_subspace
    if isinstance(space_or_subspace, SearchSpace):
        return space_or_subspace.full()
    raise SearchError("bad-strategy", f"not a search space or subspace: {space_or_subspace!r}")


def _check_observed(region: Subspace, genotype: str, score: int) -> None:
    if isinstance(score, bool) or not isinstance(score, int):
        raise SearchError("bad-strategy", f"scores are ints, got {score!r}")
    if not region.space.contains(genotype):
        raise GenotypeError("bad-genotype", f"not a canonical {region.space.name} genotype: {str(genotype)[:140]!r}")
    if not region.contains(genotype):
        raise GenotypeError("outside-subspace", f"{genotype} not in {region.describe()}")


class RandomSearch:
    """Uniform random search without repeats until the region is exhausted.

    Proposal ``k`` (0-based) of a cycle is step ``k`` of a Fisher-Yates shuffle of the region's
    indices, drawn with ``rng.randrange(k, size)``; swapped positions live in a dict, so a cycle
    of ``m`` proposals costs O(m) memory however large the region is. :meth:`observe` only
    checks its argument: random search does not learn.
    """

    def __init__(self, space_or_subspace: SearchSpace | Subspace, rng: random.Random) -> None:
        self._region = as_subspace(space_or_subspace)
        self._rng = rng
        self._moved: dict[int, int] = {}  # position -> offset now at that position (if moved)
        self._drawn = 0  # proposals made in the current cycle
        self.observed = 0

    @property
    def region(self) -> Subspace:
        return self._region

    @property
    def remaining(self) -> int:
        """Proposals left before the current cycle exhausts the region."""
        return self._region.size - self._drawn

    def propose(self) -> str:
        size = self._region.size
        if self._drawn == size:  # exhausted: start a new shuffle
            self._moved.clear()
            self._drawn = 0
        k = self._drawn
        j = self._rng.randrange(k, size)
        picked = self._moved.get(j, j)
        if j != k:
            self._moved[j] = self._moved.get(k, k)
        self._moved.pop(k, None)  # position k is never read again in this cycle
        self._drawn += 1
        return self._region.space.encode(self._region.start + picked)

    def observe(self, genotype: str, score: int) -> None:
        _check_observed(self._region, genotype, score)
        self.observed += 1


class RegularizedEvolution:
    """Ageing evolution (Real et al. 2019) inside a region; see the module docstring.

    ``population`` (>= 1) bounds the population; ``sample`` (>= 1) is the tournament size.
    :attr:`population` lists ``(genotype, score)`` oldest first. A genotype may be proposed
    again (the paper re-evaluates too; here a retraining uses a fresh seed).
    """

    def __init__(
        self,
        space_or_subspace: SearchSpace | Subspace,
        rng: random.Random,
        population: int = 10,
        sample: int = 3,
    ) -> None:
        for name, value in (("population", population), ("sample", sample)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SearchError("bad-strategy", f"{name} must be a positive int, got {value!r}")
        self._region = as_subspace(space_or_subspace)
        self._rng = rng
        self.population_size = population
        self.sample_size = sample
        self._population: deque[tuple[str, int]] = deque()
        self._initial = RandomSearch(self._region, rng)
        self.observed = 0

    @property
    def region(self) -> Subspace:
        return self._region

    @property
    def population(self) -> tuple[tuple[str, int], ...]:
        """The living members ``(genotype, score)``, oldest first."""
        return tuple(self._population)

    def propose(self) -> str:
        if len(self._population) < self.population_size:
            return self._initial.propose()
        parent = _tournament([score for _g, score in self._population], self.sample_size, self._rng)
        return self._region.space.mutate(self._population[parent][0], self._rng, within=self._region)

    def observe(self, genotype: str, score: int) -> None:
        _check_observed(self._region, genotype, score)
        self._population.append((genotype, score))
        if len(self._population) > self.population_size:
            self._population.popleft()  # the oldest dies, whatever its score
        self.observed += 1


def _tournament(scores: list[int], sample: int, rng: random.Random) -> int:
    """The winner's position of a tournament among ``scores`` (oldest first): ``sample`` draws
    with replacement, the best score wins; max() keeps the first of equal scores, and scanning
    youngest-first gives ties to the younger member."""
    drawn = sorted((rng.randrange(len(scores)) for _ in range(sample)), reverse=True)
    return max(drawn, key=lambda i: scores[i])


class SharedSearch:
    """One search for a whole pool, learned from every member's results (the manager's side;
    docs/pool-protocol.md, ``propose``).

    A model of the space, not N isolated searches: Bayesian linear regression of the score on
    the cell's operations (one indicator per edge and operation: 6 x 5 = 30, and a constant;
    ridge prior ``prior``), fed by every result of every member in the task. Proposals are
    Thompson sampling: a draw of the weights from the posterior ranks the cells nobody in the
    pool has evaluated or been handed in the task (so no cell is proposed twice while one is
    left), and the next proposals take them best first until the model has grown enough for a
    new draw. A proposal may instead be a new training of one of the pool's ``retrain_top``
    best cells by mean score (in turn), with probability ``coverage ** retrain_power``, where
    coverage is the share of the cells evaluated or handed out in the task (0: never; every
    proposal once all are, as a big pool covers the 15,625 cells within a task epoch). A
    member trains with its own random seed, so each is a new (genotype, seed) and a new chance
    at the round's test set: on MNIST-1D two seeds of one cell differ about as much as the
    top quarter's cells do, so N solo miners who found the same good cells hold N chances
    where a pool that never trains a cell twice holds one (``bench/paper/simulate.py``,
    experiment 7: at N = 64, 47% of rounds without, 87% with). The more results the model has, the surer its draws: a pool of N members
    feeds it N times the results a solo miner's model gets, which is the collaboration that
    pays (the same class runs a solo miner: a pool of one). Until ``warmup`` results are in,
    :meth:`propose` gives None and members explore their assigned subspaces, which the
    partition keeps disjoint.

    A result costs O(1) (per-cell counts and sums); a draw builds the model's 31 x 31 sums from
    them by bincounts, solves the system and scores all 15,625 cells by table lookups (a few
    milliseconds), and serves the proposals until the model has grown by ``max(8, 5%)``
    results (a tenth of a millisecond a proposal). Results carry their member's id,
    so a member found lying (banned) is taken out of the model (:meth:`forget`). All randomness
    comes from ``rng``. Works on the NAS-Bench-201 spaces (``nb201``, ``nb201-1d``). ``cells``
    (indices; default all) limits the proposals to those cells: the paper's simulation runs it
    on a partial score table, whose rows are the cells it can evaluate.
    """

    def __init__(self, space: SearchSpace, rng: random.Random, warmup: int = 10, prior: float = 1.0,
                 cells: Any = None, retrain_top: int = 16, retrain_power: float = 1.0) -> None:
        import numpy as np

        from consensus.engines.ponas.space import NB201_EDGES, NB201_OPS

        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise SearchError("bad-strategy", f"warmup must be a positive int, got {warmup!r}")
        if not prior > 0:
            raise SearchError("bad-strategy", f"prior must be positive, got {prior!r}")
        if isinstance(retrain_top, bool) or not isinstance(retrain_top, int) or retrain_top < 1:
            raise SearchError("bad-strategy", f"retrain_top must be a positive int, got {retrain_top!r}")
        if isinstance(retrain_power, bool) or not isinstance(retrain_power, int | float) or not retrain_power >= 0:
            raise SearchError("bad-strategy", f"retrain_power must be a number >= 0, got {retrain_power!r}")
        n_ops, n_edges = len(NB201_OPS), len(NB201_EDGES)
        if not self.supports(space):
            raise SearchError("bad-strategy", f"the shared search models NAS-Bench-201 cells, not {space.name}")
        self.space = space
        self._rng = rng
        self.warmup = warmup
        self.prior = prior
        self.retrain_top = retrain_top
        self.retrain_power = retrain_power
        self.retrains = 0  # proposals of cells trained before (every cell seen)
        self._retrain_queue: list[int] = []  # the current turn over the best cells, worst first
        index = np.arange(space.size)
        # each cell's feature positions: edge e's operation d is feature e * n_ops + d (edge 0
        # is the index's most significant digit); the last feature is the constant
        self._cols = np.stack([e * n_ops + (index // n_ops ** (n_edges - 1 - e)) % n_ops for e in range(n_edges)])
        self._n_ops, self._n_edges = n_ops, n_edges
        # per cell: results and their score sums (a result costs O(1); the model's sums are
        # built from these when a proposal is asked for)
        self._count = np.zeros(space.size)
        self._sum = np.zeros(space.size)
        self._yy = 0.0
        self._n = 0
        self._seen = np.zeros(space.size, dtype=bool)  # evaluated or proposed in this task
        self._evaluated = np.zeros(space.size, dtype=bool)
        if cells is not None:  # only these cells may be proposed (a partial score table's rows)
            allowed = np.zeros(space.size, dtype=bool)
            allowed[np.asarray(list(cells), dtype=np.int64)] = True
            self._seen |= ~allowed
        self._hidden = int(self._seen.sum())  # cells that may not be proposed
        self._cells = space.size - self._hidden
        self._by_member: dict[str, list[tuple[int, float]]] = {}
        self.proposed = 0
        self.draws = 0
        self._ranking: list[int] = []  # the current draw's best unseen cells, worst first
        self._drawn_at = 0  # results the model had at the current draw
        self.best: tuple[int, str] | None = None  # the best score observed and its genotype

    @staticmethod
    def supports(space: SearchSpace) -> bool:
        """Whether the shared search models ``space`` (the NAS-Bench-201 cell spaces)."""
        from consensus.engines.ponas.space import NB201_EDGES, NB201_OPS

        return bool(space.size == len(NB201_OPS) ** len(NB201_EDGES) and space.name.startswith("nb201"))

    @property
    def ready(self) -> bool:
        return self._n >= self.warmup

    @property
    def results(self) -> int:
        return self._n

    def seen(self, genotype: str) -> bool:
        return bool(self._seen[self.space.decode(genotype)])

    def _add(self, i: int, score: float, sign: float) -> None:
        """Add (``sign`` 1) or take out (-1) one result of cell ``i``: O(1), for this runs for
        every accepted share."""
        self._count[i] += sign
        self._sum[i] += sign * score
        self._yy += sign * score * score
        self._n += int(sign)

    def _sums(self) -> tuple[Any, Any]:
        """X'X and X'y of every result so far, from the per-cell counts and sums (bincounts:
        no matrix product over the space)."""
        import numpy as np

        k, edges = self._n_ops, self._n_edges
        dim = k * edges + 1
        xtx, xty = np.zeros((dim, dim)), np.zeros(dim)
        cells = np.flatnonzero(self._count)  # the cells with results (few, against the space)
        count, total = self._count[cells], self._sum[cells]
        local = self._cols[:, cells] - (np.arange(edges) * k)[:, None]  # each edge's operation, 0..k-1
        for e in range(edges):
            xty[e * k:(e + 1) * k] = np.bincount(local[e], weights=total, minlength=k)
            xtx[-1, e * k:(e + 1) * k] = xtx[e * k:(e + 1) * k, -1] = np.bincount(local[e], weights=count, minlength=k)
            for f in range(edges):
                pair = np.bincount(local[e] * k + local[f], weights=count, minlength=k * k)
                xtx[e * k:(e + 1) * k, f * k:(f + 1) * k] = pair.reshape(k, k)
        xtx[-1, -1] = self._n
        xty[-1] = self._sum.sum()
        return xtx, xty

    def observe(self, genotype: str, score: int, member: str) -> None:
        if isinstance(score, bool) or not isinstance(score, int):
            raise SearchError("bad-strategy", f"scores are ints, got {score!r}")
        i = self.space.decode(genotype)  # GenotypeError ``bad-genotype``
        self._seen[i] = self._evaluated[i] = True
        self._add(i, float(score), 1.0)
        self._by_member.setdefault(member, []).append((i, float(score)))
        if self.best is None or score > self.best[0]:
            self.best = (score, genotype)

    def forget(self, member_ids: set[str]) -> int:
        """Take the results of ``member_ids`` out of the model; how many."""
        dropped = 0
        for m in member_ids:
            for i, score in self._by_member.pop(m, []):
                self._add(i, score, -1.0)
                dropped += 1
        return dropped

    def release(self, genotypes: list[str]) -> None:
        """Proposals that will not be trained (their member left): they may be proposed again."""
        for g in genotypes:
            i = self.space.decode(g)
            if not self._evaluated[i]:
                self._seen[i] = False

    def predict(self) -> tuple[Any, Any]:
        """The posterior mean of the weights and its covariance (numpy arrays)."""
        import numpy as np

        xtx, xty = self._sums()
        precision = xtx + self.prior * np.eye(len(xty))
        cov = np.linalg.inv(precision)
        mean = cov @ xty
        n = max(self._n, 1)
        resid = max(self._yy - float(mean @ xty), 0.0) / n + 1.0  # noise variance, at least one unit
        return mean, resid * cov

    def propose(self) -> str | None:
        """The best unseen cell under the current draw from the posterior; once every cell is
        seen, the next of the best cells to train again (:meth:`_retrain`); None with fewer
        than ``warmup`` results. A draw ranks the cells once and serves the
        next proposals in its order; a new draw is made when the model has grown by
        ``max(8, 5%)`` results since the last one (or the ranking is used up), so a big pool's
        stream of proposals costs a few draws a second, not one per share."""
        import numpy as np

        if not self.ready:
            return None
        if self._seen.all():
            return self._retrain()
        if self.retrain_power and self._n > self.warmup:
            coverage = (int(self._seen.sum()) - self._hidden) / self._cells
            if self._rng.random() < coverage ** self.retrain_power:
                return self._retrain()
        if not self._ranking or self._n - self._drawn_at >= max(8, self._n // 20):
            mean, cov = self.predict()
            chol = np.linalg.cholesky(cov + 1e-9 * np.eye(len(mean)))
            z = np.array([self._rng.gauss(0.0, 1.0) for _ in range(len(mean))])
            w = mean + chol @ z
            scores = w[-1] + w[self._cols].sum(axis=0)  # every cell's score under this draw (no BLAS: cheap)
            scores[self._seen] = -np.inf
            top = np.argpartition(-scores, min(RANKED, len(scores) - 1))[:RANKED]
            self._ranking = [int(i) for i in top[np.lexsort((top, -scores[top]))] if scores[i] > -np.inf][::-1]
            self._drawn_at = self._n
            self.draws += 1
        while self._ranking:
            i = self._ranking.pop()  # best first (the list is kept worst first)
            if not self._seen[i]:
                self._seen[i] = True
                self.proposed += 1
                return self.space.encode(i)
        return self.propose()

    def _retrain(self) -> str | None:
        """The next of the best cells by mean score to train again (a turn over the
        ``retrain_top`` best, refreshed at each turn's end); None before any result."""
        import numpy as np

        if not self._retrain_queue:
            trained = np.flatnonzero(self._count > 0)
            if not len(trained):
                return None
            mean = self._sum[trained] / self._count[trained]
            k = min(self.retrain_top, len(trained))
            best = trained[np.lexsort((trained, -mean))[:k]]  # best mean first, ties by index
            self._retrain_queue = [int(i) for i in best[::-1]]
        self.retrains += 1
        self.proposed += 1
        return self.space.encode(self._retrain_queue.pop())


#: Cells one posterior draw ranks for the proposals that follow it.
RANKED = 64


def make_strategy(
    name: str, space_or_subspace: SearchSpace | Subspace, rng: random.Random
) -> SearchStrategy:
    """The strategy called ``name`` (``"random"`` or ``"evolution"``, population 10, sample 3)
    over a space or subspace; raises :class:`SearchError` ``bad-strategy`` for another name."""
    if name == "random":
        return RandomSearch(space_or_subspace, rng)
    if name == "evolution":
        return RegularizedEvolution(space_or_subspace, rng)
    raise SearchError("bad-strategy", f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}")
