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
from typing import Protocol, runtime_checkable

from consensus.engines.ponas.space import GenotypeError, SearchSpace, Subspace

__all__ = [
    "SearchError",
    "SearchStrategy",
    "RandomSearch",
    "RegularizedEvolution",
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
        members = self._population
        # Tournament: draw with replacement; max() keeps the first of equal scores, and scanning
        # youngest-first gives ties to the younger member.
        drawn = sorted((self._rng.randrange(len(members)) for _ in range(self.sample_size)), reverse=True)
        parent = max(drawn, key=lambda i: members[i][1])
        return self._region.space.mutate(members[parent][0], self._rng, within=self._region)

    def observe(self, genotype: str, score: int) -> None:
        _check_observed(self._region, genotype, score)
        self._population.append((genotype, score))
        if len(self._population) > self.population_size:
            self._population.popleft()  # the oldest dies, whatever its score
        self.observed += 1


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
