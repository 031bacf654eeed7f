"""Search strategies (pool/search.py), pure and seeded.

Proves: neither strategy ever proposes a genotype outside the (sub)space it was given
(hypothesis over random subspaces of both spaces, seeds and scores); random search proposes
every genotype of its region exactly once before any repeat, then starts a new cycle;
regularised evolution proposes random genotypes until its population fills, keeps at most
``population`` members, and ages out the oldest whatever its score; a strategy refuses to
observe a genotype outside its region; unknown strategy names are ``bad-strategy``; and on a
synthetic score with a known optimum (the number of ``nor_conv_3x3`` edges; the optimum is the
single all-conv3x3 cell) evolution reaches the optimum in far fewer evaluations than random
search, on average over fixed seeds.
"""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.engines.ponas.space import GenotypeError, NB201Space, get_space
from pool.search import (
    RandomSearch,
    RegularizedEvolution,
    SearchError,
    SearchStrategy,
    make_strategy,
)

NB201 = NB201Space()
assert get_space("nb201") == NB201
OPTIMUM = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def conv3x3_edges(genotype: str) -> int:
    """The synthetic score: how many edges are ``nor_conv_3x3`` (0..6)."""
    return NB201.ops(genotype).count("nor_conv_3x3")


@st.composite
def regions(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    space = get_space(draw(st.sampled_from(["nb201", "mlp"])))
    start = draw(st.integers(0, space.size - 1))
    stop = draw(st.integers(start + 1, min(space.size, start + draw(st.sampled_from([1, 2, 5, 30, 700, 20_000])))))
    return space.subspace(start, stop)


@settings(max_examples=60, deadline=None)
@given(region=regions(), seed=st.integers(0, 2**32 - 1), name=st.sampled_from(["random", "evolution"]))
def test_never_proposes_outside_the_subspace(region, seed: int, name: str) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    strategy = make_strategy(name, region, rng)
    assert isinstance(strategy, SearchStrategy)
    assert strategy.region == region
    score_rng = random.Random(seed ^ 0x5EED)
    for _ in range(40):
        genotype = strategy.propose()
        assert region.contains(genotype), f"{genotype} outside {region.describe()}"
        strategy.observe(genotype, score_rng.randrange(0, 300))


@settings(max_examples=30, deadline=None)
@given(region=regions(), seed=st.integers(0, 2**32 - 1))
def test_random_search_has_no_repeats_until_exhausted(region, seed: int) -> None:  # type: ignore[no-untyped-def]
    size = min(region.size, 400)
    if region.size > 400:  # a large region: the first 400 proposals are distinct
        search = RandomSearch(region, random.Random(seed))
        first = [search.propose() for _ in range(size)]
        assert len(set(first)) == size
        assert search.remaining == region.size - size
        return
    search = RandomSearch(region, random.Random(seed))
    cycle = [search.propose() for _ in range(size)]
    assert sorted(cycle) == sorted(region.iterate()), "one cycle is a permutation of the region"
    assert search.remaining == 0
    again = [search.propose() for _ in range(size)]
    assert sorted(again) == sorted(cycle), "after exhaustion a new permutation starts"


def test_random_search_is_reproducible_from_its_seed() -> None:
    a = RandomSearch(NB201, random.Random(7))
    b = RandomSearch(NB201, random.Random(7))
    assert [a.propose() for _ in range(50)] == [b.propose() for _ in range(50)]


def test_evolution_is_random_until_the_population_fills_then_mutates() -> None:
    region = NB201.partition(25)[13]  # edges 0 and 1 fixed: 625 cells
    evo = RegularizedEvolution(region, random.Random(3), population=10, sample=3)
    initial = []
    for _ in range(10):
        g = evo.propose()
        initial.append(g)
        evo.observe(g, conv3x3_edges(g))
    assert len(set(initial)) == 10, "the initial proposals are random without repeats"
    members = {g for g, _ in evo.population}
    for _ in range(30):
        g = evo.propose()
        # a child is one edit away from some living member (the tournament's winner)
        assert any(g in NB201.neighbours(m) for m in members), g
        evo.observe(g, conv3x3_edges(g))
        members = {m for m, _ in evo.population}


def test_evolution_population_is_bounded_and_ages_out_the_oldest() -> None:
    evo = RegularizedEvolution(NB201, random.Random(1), population=10, sample=3)
    evo.observe(OPTIMUM, 10_000)  # the best possible member, observed first
    feed = RandomSearch(NB201, random.Random(2))
    seen = [OPTIMUM]
    for i in range(25):
        g = feed.propose()
        evo.observe(g, i % 3)
        seen.append(g)
        assert len(evo.population) == min(len(seen), 10)
        assert [m for m, _ in evo.population] == seen[-10:], "members are the last observed, oldest first"
    assert all(g != OPTIMUM for g, _ in evo.population), "the best member aged out"


def test_observe_refuses_a_genotype_outside_the_region() -> None:
    region = NB201.partition(5)[0]  # edge 0 = none
    for strategy in (RandomSearch(region, random.Random(0)), RegularizedEvolution(region, random.Random(0))):
        with pytest.raises(GenotypeError) as err:
            strategy.observe(OPTIMUM, 5)
        assert err.value.reason == "outside-subspace"
        with pytest.raises(GenotypeError) as err:
            strategy.observe("|conv~0|", 5)
        assert err.value.reason == "bad-genotype"


def test_unknown_strategy_and_bad_parameters_are_bad_strategy() -> None:
    with pytest.raises(SearchError) as err:
        make_strategy("hill-climb", NB201, random.Random(0))
    assert err.value.reason == "bad-strategy"
    assert isinstance(err.value, ValueError)
    with pytest.raises(SearchError):
        RegularizedEvolution(NB201, random.Random(0), population=0)
    with pytest.raises(SearchError):
        make_strategy("random", "nb201", random.Random(0))  # type: ignore[arg-type]


def evaluations_to_optimum(strategy: SearchStrategy, cap: int) -> int:
    for n in range(1, cap + 1):
        g = strategy.propose()
        s = conv3x3_edges(g)
        strategy.observe(g, s)
        if s == 6:
            return n
    return cap


def test_evolution_beats_random_search_on_a_known_optimum() -> None:
    # Random search without repeats finds the one optimum of 15,625 within 15,625 proposals
    # (about 7,800 on average); evolution hill-climbs the count of conv3x3 edges. Runs that miss
    # within the cap count as the cap, so the loop is bounded.
    seeds = range(8)
    evo = [evaluations_to_optimum(RegularizedEvolution(NB201, random.Random(s)), cap=3_000) for s in seeds]
    rnd = [evaluations_to_optimum(RandomSearch(NB201, random.Random(s)), cap=NB201.size) for s in seeds]
    assert all(n <= NB201.size for n in rnd)
    assert statistics.mean(evo) * 5 < statistics.mean(rnd), (evo, rnd)
    # the same inside a subspace (edge 0 fixed to conv3x3: the optimum is in it)
    region = NB201.partition(5)[3]
    assert region.contains(OPTIMUM)
    evo_sub = [evaluations_to_optimum(RegularizedEvolution(region, random.Random(s)), cap=2_000) for s in seeds]
    rnd_sub = [evaluations_to_optimum(RandomSearch(region, random.Random(s)), cap=region.size) for s in seeds]
    assert statistics.mean(evo_sub) < statistics.mean(rnd_sub), (evo_sub, rnd_sub)
