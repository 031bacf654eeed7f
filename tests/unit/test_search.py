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


# --- the pool's shared search -------------------------------------------------------------------

from pool.search import SharedSearch  # noqa: E402


def _additive(i: int) -> int:
    """A landscape with a learnable part (conv 3x3 > conv 1x1 > skip > pool > none per edge) and
    a cell's own noise, fixed per cell: what a model of the space can and cannot learn."""
    ops = NB201.ops_of_index(i)
    noise = random.Random(i).gauss(0, 8)
    return round(10 * ops.count("nor_conv_3x3") + 5 * ops.count("nor_conv_1x1") + 3 * ops.count("skip_connect") + noise)


def test_shared_search_proposes_only_after_warmup_and_never_a_cell_twice() -> None:
    search = SharedSearch(NB201, random.Random(7), warmup=5)
    assert search.propose() is None and not search.ready
    rng = random.Random(8)
    trained = [NB201.encode(rng.randrange(NB201.size)) for _ in range(5)]
    for n, g in enumerate(trained):
        search.observe(g, _additive(NB201.decode(g)), f"m{n % 2}")
    assert search.ready and search.results == 5
    proposals = [search.propose() for _ in range(300)]
    assert None not in proposals and len(set(proposals)) == 300 and not set(proposals) & set(trained)
    assert all(search.seen(g) for g in proposals if g is not None)
    # a second run with the same seed hands out the same cells
    again = SharedSearch(NB201, random.Random(7), warmup=5)
    for n, g in enumerate(trained):
        again.observe(g, _additive(NB201.decode(g)), f"m{n % 2}")
    assert [again.propose() for _ in range(300)] == proposals


def test_shared_search_limited_to_cells_proposes_those_then_retrains_the_best() -> None:
    cells = random.Random(3).sample(range(NB201.size), 40)
    search = SharedSearch(NB201, random.Random(4), warmup=3, cells=cells, retrain_top=4, retrain_power=0)
    for g in (NB201.encode(i) for i in cells[:3]):
        search.observe(g, _additive(NB201.decode(g)), "m0")
    proposals = [NB201.decode(search.propose() or "") for _ in range(37)]
    assert sorted(proposals) == sorted(cells[3:]) and search.retrains == 0  # every other allowed cell once
    for i in proposals:
        search.observe(NB201.encode(i), _additive(i), "m1")
    # every cell trained: new trainings (new seeds) of the 4 best by mean score, in turn
    best = sorted(cells, key=lambda i: (-_additive(i), i))[:4]
    again = [NB201.decode(search.propose() or "") for _ in range(8)]
    assert again == best + best and search.retrains == 8
    # a cell's mean counts every training: a bad second seed of the best cell moves it down
    search.observe(NB201.encode(best[0]), _additive(best[0]) - 1000, "m1")
    assert NB201.decode(search.propose() or "") == best[1] and best[0] not in [
        NB201.decode(search.propose() or "") for _ in range(3)]
    for bad in ({"retrain_top": 0}, {"retrain_power": -1}, {"retrain_power": "1"}):
        with pytest.raises(SearchError):
            SharedSearch(NB201, random.Random(4), **bad)  # type: ignore[arg-type]


def test_shared_search_retrains_in_proportion_to_the_coverage() -> None:
    cells = random.Random(5).sample(range(NB201.size), 1000)
    search = SharedSearch(NB201, random.Random(6), warmup=3, cells=cells)  # retrain_power 1
    for i in cells[:500]:  # half of the cells trained: about half of the proposals are retrains
        search.observe(NB201.encode(i), _additive(i), "m0")
    proposals = [NB201.decode(search.propose() or "") for _ in range(200)]
    again = [i for i in proposals if i in set(cells[:500])]
    assert 70 <= search.retrains == len(again) <= 130
    assert len(set(proposals) - set(again)) == 200 - len(again)  # the others: new cells, once each


def test_shared_search_forgets_a_liars_results_and_takes_back_untrained_proposals() -> None:
    search = SharedSearch(NB201, random.Random(1), warmup=2)
    search.observe(NB201.encode(10), 50, "honest")
    search.observe(NB201.encode(20), 60, "honest")
    before = search.predict()[0].copy()
    search.observe(NB201.encode(30), 10_000, "liar")
    assert search.forget({"liar"}) == 1 and search.results == 2
    assert abs(search.predict()[0] - before).max() < 1e-6  # the model is as if the lie never came
    g = search.propose()
    assert g is not None and search.seen(g)
    search.release([g, NB201.encode(10)])  # a trained cell stays seen
    assert not search.seen(g) and search.seen(NB201.encode(10))
    with pytest.raises(SearchError):
        SharedSearch(NB201, random.Random(1), warmup=0)
    assert SharedSearch.supports(get_space("nb201-1d")) and not SharedSearch.supports(get_space("mlp"))
    with pytest.raises(SearchError):  # the pool's manager then runs without one
        SharedSearch(get_space("mlp"), random.Random(1))
    with pytest.raises(GenotypeError):
        search.observe("|nope~0|", 1, "x")


def test_a_pool_sharing_one_model_finds_better_cells_than_its_members_alone() -> None:
    """The collaboration that pays, on a landscape with a learnable part and cell noise: a pool
    of 8 members feeding one :class:`SharedSearch` (8 results a round) against 8 solo miners
    each with its own (1 result a round; a solo miner is a pool of one), same seeds' worth of
    work: after each of 12 rounds, the pool's best result beats the best of all 8 solo miners
    in most rounds over 3 trials (each party explores randomly until its model has 10 results)."""
    rounds, n = 12, 8

    def best_by_round(members: int, seed: int) -> list[int]:
        rng = random.Random(seed)
        search = SharedSearch(NB201, rng)
        explore = RandomSearch(NB201, rng)
        top, out = -10**9, []
        for _ in range(rounds):
            for m in range(members):
                g = search.propose()
                if g is None:
                    g = explore.propose()
                    while search.seen(g):
                        g = explore.propose()
                score = _additive(NB201.decode(g))
                search.observe(g, score, str(m))
                top = max(top, score)
            out.append(top)
        return out

    better = worse = 0
    for trial in range(3):
        pool = best_by_round(n, 100 + trial)
        solos = [best_by_round(1, 1000 + trial * n + j) for j in range(n)]
        for r in range(rounds):
            b = max(s[r] for s in solos)
            better += pool[r] > b
            worse += pool[r] < b
    print(f"pool better in {better}, worse in {worse} of {3 * rounds} rounds")
    assert better > 2 * worse, (better, worse)
