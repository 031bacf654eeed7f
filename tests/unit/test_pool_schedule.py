"""Pool scheduling (pool/schedule.py), pure: the clock and the rng are arguments.

Proves: a plan cuts the whole space into more subspaces than members, each assigned exactly
once as primary, in proportion to throughput (3x throughput gets 3x subspaces; an unmeasured
member counts as the median; every member gets at least one); the same seed gives the same
plan and another seed another mapping; a leaving member's subspaces all move to live members
and a silent one's move at once on the watchdog's check; backups appear only for high-reward
members whose metric standard deviation is strictly above the threshold (both sides tested),
are chosen among non-high-reward members, and take over at once when the primary misses its
heartbeat; results found in a member's subspace make *that* member high-reward; a member that
never reports top results despite most of the work is flagged as a withholder while honest
members (several seeds) are not; the dashboard stats and the error reasons.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.engines.ponas.space import MLPSpace, NB201Space
from pool.schedule import PoolError, Scheduler, binomial_cdf

SPACE = NB201Space()


def primaries(s: Scheduler) -> dict[str, int]:
    plan = s.plan
    return {m: sum(1 for a in plan.assignments_of(m) if a.role == "primary") for m in s.live()}


def assert_partition(s: Scheduler) -> None:
    """Every subspace has exactly one live primary and together they tile the space."""
    plan = s.plan
    live = set(s.live())
    assert all(p in live for p in plan.primaries)
    ranges = sorted(sub.as_range() for sub in plan.subspaces)
    assert ranges[0][0] == 0 and ranges[-1][1] == s.space.size
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    sizes = {b - a for a, b in ranges}
    assert max(sizes) - min(sizes) <= 1
    owned = [a.subspace.as_range() for m in live for a in plan.assignments_of(m) if a.role == "primary"]
    assert sorted(owned) == ranges  # each exactly once as primary


# --- planning ---------------------------------------------------------------------------------


def test_throughput_proportional() -> None:
    s = Scheduler(SPACE)
    s.join("a", 0, 3.0)
    s.join("b", 0, 1.0)
    s.plan_round(0, random.Random(1))
    assert len(s.plan.subspaces) == 8
    assert primaries(s) == {"a": 6, "b": 2}
    assert_partition(s)

    s = Scheduler(SPACE, subspaces_per_member=10)
    for member, rate in (("fast", 3.0), ("x", 1.0), ("y", 1.0), ("z", 1.0)):
        s.join(member, 0, rate)
    s.plan_round(0, random.Random(2))
    counts = primaries(s)
    assert sum(counts.values()) == 40
    others = [counts[m] for m in ("x", "y", "z")]
    assert counts["fast"] == 20 and max(others) - min(others) <= 1
    assert_partition(s)


def test_unmeasured_member_counts_as_median_and_everyone_gets_one() -> None:
    s = Scheduler(SPACE, subspaces_per_member=4)
    s.join("a", 0, 1.0)
    s.join("b", 0, 3.0)
    s.join("c", 0)  # no measurement: the median 2.0
    s.plan_round(0, random.Random(0))
    assert primaries(s) == {"a": 2, "b": 6, "c": 4}

    s = Scheduler(SPACE)
    s.join("big", 0, 1000.0)
    s.join("tiny", 0, 0.001)
    s.join("zero", 0, 0.0)
    s.plan_round(0, random.Random(0))
    assert primaries(s) == {"big": 10, "tiny": 1, "zero": 1}
    assert_partition(s)


@settings(max_examples=60, deadline=None)
@given(
    rates=st.lists(st.one_of(st.none(), st.floats(0, 50)), min_size=1, max_size=12),
    per_member=st.integers(1, 6),
    seed=st.integers(0, 2**32),
)
def test_plan_always_tiles_the_space(rates: list[float | None], per_member: int, seed: int) -> None:
    space = MLPSpace() if seed % 2 else SPACE
    s = Scheduler(space, subspaces_per_member=per_member)
    for i, rate in enumerate(rates):
        s.join(f"m{i}", 0, rate)
    s.plan_round(0, random.Random(seed))
    assert len(s.plan.subspaces) == min(space.size, per_member * len(rates))
    assert_partition(s)
    assert all(count >= 1 for count in primaries(s).values())


def test_seeded_determinism_and_shuffle() -> None:
    def mapping(seed: int) -> list[tuple[tuple[int, int], str | None]]:
        s = Scheduler(SPACE)
        for member, rate in (("a", 1.0), ("b", 2.0), ("c", 1.5)):
            s.join(member, 0, rate)
        plan = s.plan_round(0, random.Random(seed))
        return sorted((sub.as_range(), p) for sub, p in zip(plan.subspaces, plan.primaries))

    assert mapping(7) == mapping(7)
    assert mapping(7) != mapping(8)


def test_more_members_than_architectures() -> None:
    s = Scheduler(MLPSpace(), subspaces_per_member=1)
    for i in range(345):
        s.join(f"m{i:03}", 0, 1.0 + i)
    s.plan_round(0, random.Random(0))
    assert len(s.plan.subspaces) == 340
    assert len(set(s.plan.primaries)) == 340
    assert "m000" not in s.plan.primaries  # the slowest go without


# --- leaving and heartbeats -------------------------------------------------------------------


def test_leave_moves_everything_to_live_members() -> None:
    s = Scheduler(SPACE)
    for member in ("a", "b", "c"):
        s.join(member, 0, 1.0)
    s.plan_round(0, random.Random(3))
    owned = {a.subspace.as_range() for a in s.plan.assignments_of("b")}
    moves = s.leave("b", 5)
    assert {m.subspace.as_range() for m in moves} == owned
    assert all(m.reason == "left" and m.from_member == "b" and m.to_member in ("a", "c") for m in moves)
    assert "b" not in s.plan.primaries
    assert_partition(s)
    assert primaries(s) == {"a": 6, "c": 6}  # least-loaded spreads the orphans
    assert s.leave("b", 6) == [] and s.leave("nobody", 6) == []


def test_missed_heartbeat_moves_at_once() -> None:
    s = Scheduler(SPACE, heartbeat_timeout=15)
    for member in ("a", "b", "c"):
        s.join(member, 0, 1.0)
    s.plan_round(0, random.Random(4))
    s.heartbeat("b", 10, 1.0)
    s.heartbeat("c", 10, 1.0)
    assert s.check(15) == []  # exactly at the timeout: still alive
    moves = s.check(15.5)
    assert moves and {m.from_member for m in moves} == {"a"}
    assert all(m.reason == "heartbeat" for m in moves)
    assert s.live() == ["b", "c"]
    assert_partition(s)
    assert s.check(16) == []
    s.heartbeat("a", 17, 1.0)  # back: alive again, work from the next plan
    assert s.live() == ["a", "b", "c"] and s.plan.assignments_of("a") == []
    s.plan_round(18, random.Random(0))
    assert primaries(s)["a"] == 4


def test_plan_round_skips_silent_members() -> None:
    s = Scheduler(SPACE, heartbeat_timeout=15)
    s.join("a", 0, 1.0)
    s.join("b", 0, 1.0)
    s.heartbeat("b", 10, 1.0)
    s.plan_round(20, random.Random(0))
    assert s.live() == ["b"] and set(s.plan.primaries) == {"b"}


# --- high reward, backups, take-over ------------------------------------------------------------


def play_round(s: Scheduler, t: float, rng: random.Random, scores: dict[str, int]) -> None:
    """One round from time ``t``: plan, everybody heartbeats, each member reports ``scores[m]``
    found in its own first subspace, then the round ends (``pool_best`` as the manager sends)."""
    plan = s.plan_round(t, rng)
    for member in s.live():
        s.heartbeat(member, t + 5, 1.0)
    for member, score in scores.items():
        first = plan.assignments_of(member)[0].subspace
        s.record(member, first.as_range(), score, t + 6)
    best = max(scores.items(), key=lambda kv: kv[1])
    s.end_round(t + 8, [best])


def scenario(threshold: float) -> Scheduler:
    """A, B and C equally fast. Round 1: A 100, B 100, C 10 (top-1 ties: A and B); round 2:
    A 50, B 100, C 90. Quality: A 1, .5 (std .25); B 1, 1 (std 0); C .1, .9 (std .4, but C
    never had a top result). Throughput and timeliness are constant."""
    s = Scheduler(SPACE, std_threshold=threshold, top_k=1, heartbeat_timeout=15)
    for member in ("A", "B", "C"):
        s.join(member, 0, 1.0)
    rng = random.Random(11)
    play_round(s, 0, rng, {"A": 100, "B": 100, "C": 10})
    play_round(s, 10, rng, {"A": 50, "B": 100, "C": 90})
    return s


def test_high_reward_and_std_devs() -> None:
    s = scenario(0.25)
    assert [s.high_reward(m) for m in ("A", "B", "C")] == [True, True, False]
    std = {m: s.std_devs(m) for m in ("A", "B", "C")}
    assert std["A"]["quality"] == pytest.approx(0.25)
    assert std["B"] == {"throughput": 0.0, "quality": 0.0, "timeliness": 0.0}
    assert std["C"]["quality"] == pytest.approx(0.4)
    assert [r.quality for r in s.history_of("C")] == pytest.approx([0.1, 0.9])


def test_a_round_without_a_recorded_result_says_nothing_of_quality() -> None:
    """The manager records the shares it verifies, a sample: a member whose shares were not
    sampled in a round has no quality that round (None), not quality 0, and its quality spread
    is taken over the rounds that have one; otherwise sampling alone would call for backups."""
    s = Scheduler(SPACE, std_threshold=0.25, top_k=1, heartbeat_timeout=15)
    for member in ("A", "B"):
        s.join(member, 0, 1.0)
    rng = random.Random(5)
    play_round(s, 0, rng, {"A": 100, "B": 90})
    play_round(s, 10, rng, {"B": 90})  # none of A's shares sampled this round
    play_round(s, 20, rng, {"A": 100, "B": 90})
    assert [r.quality for r in s.history_of("A")] == [1.0, None, 1.0]
    assert s.high_reward("A")
    assert s.std_devs("A")["quality"] == 0.0
    assert not s.needs_backup("A")  # with quality 0 for the unsampled round its spread would be 0.47


@pytest.mark.parametrize("threshold, backed", [(0.3, False), (0.25, False), (0.24, True), (0.1, True)])
def test_backup_only_above_threshold(threshold: float, backed: bool) -> None:
    s = scenario(threshold)
    plan = s.plan_round(20, random.Random(5))
    a_subspaces = [a.subspace for a in plan.assignments_of("A") if a.role == "primary"]
    # C varies most but is not high-reward: it never gets a backup; B is steady.
    for member in ("B", "C"):
        assert all(plan.backup_of(a.subspace) is None for a in plan.assignments_of(member) if a.role == "primary")
    if backed:
        # the backup is C: the only member that is not itself high-reward
        assert all(plan.backup_of(sub) == "C" for sub in a_subspaces)
        shadow = [a for a in plan.assignments_of("C") if a.role == "backup"]
        assert {a.subspace for a in shadow} == set(a_subspaces) and all(a.primary == "A" for a in shadow)
        assert s.stats()["C"]["backup_of"] == ["A"] and s.stats()["A"]["backed_up_by"] == "C"
    else:
        assert set(plan.backups) == {None}
        assert s.stats()["A"]["backed_up_by"] is None
    # the one-pass map the manager sends jobs from says what assignments_of says, member by member
    assert plan.by_member() == {m: plan.assignments_of(m) for m in plan.members()}


def test_backup_takes_over_on_missed_heartbeat() -> None:
    s = scenario(0.2)
    plan = s.plan_round(20, random.Random(5))
    a_subspaces = {a.subspace for a in plan.assignments_of("A") if a.role == "primary"}
    s.heartbeat("B", 29, 1.0)
    s.heartbeat("C", 29, 1.0)
    assert s.check(30) == []  # A last heard at 15: not yet more than 15 s
    moves = s.check(30.5)
    assert {m.subspace for m in moves} == a_subspaces
    assert all(m.reason == "backup-takeover" and m.to_member == "C" and m.from_member == "A" for m in moves)
    after = s.plan
    assert all(after.owner_of(sub) == "C" and after.backup_of(sub) is None for sub in a_subspaces)
    assert_partition(s)
    # A's silence shows in its timeliness at the round's end
    s.end_round(41, [])
    assert s.history_of("A")[-1].timeliness < 1


def test_leave_with_backup_is_a_takeover() -> None:
    s = scenario(0.2)
    s.plan_round(20, random.Random(5))
    moves = s.leave("A", 21)
    assert moves and all(m.reason == "backup-takeover" and m.to_member == "C" for m in moves)
    moves = s.leave("C", 22)  # C now owns A's old subspaces too; B takes everything
    assert moves and all(m.reason == "left" and m.to_member == "B" for m in moves)
    assert set(s.plan.primaries) == {"B"}


def test_top_result_credits_the_subspace_owner() -> None:
    s = Scheduler(SPACE, top_k=1)
    s.join("owner", 0, 1.0)
    s.join("finder", 0, 1.0)
    plan = s.plan_round(0, random.Random(0))
    sub = plan.assignments_of("owner")[0].subspace
    genotype = SPACE.encode(sub.start + 1)
    s.record("finder", genotype, 99, 1)
    s.record("owner", sub.start, 50, 1)
    s.end_round(2, [("finder", 99)])  # the same result: not counted twice
    assert s.high_reward("owner") and not s.high_reward("finder")
    assert s.history_of("finder")[-1].top_results == 1 and s.history_of("owner")[-1].top_owned == 1
    assert s.history_of("owner")[-1].quality == pytest.approx(50 / 99)


# --- block withholding ------------------------------------------------------------------------


def simulate(seed: int, withholder: bool, rounds: int = 8) -> Scheduler:
    """Three members; W trains twice as much as each of H1, H2. Scores are i.i.d. uniform. A
    withholding W never reports a score above 800 (it keeps its best fifth for itself)."""
    rng = random.Random(seed)
    s = Scheduler(SPACE, top_k=3)
    work = {"H1": 10, "H2": 10, "W": 20}
    for member in work:
        s.join(member, 0, float(work[member]))
    for r in range(rounds):
        t = 10.0 * r
        s.plan_round(t, rng)
        for member, n in work.items():
            s.heartbeat(member, t + 1, float(n))
            for _ in range(n):
                score = rng.randint(0, 1000)
                if withholder and member == "W" and score > 800:
                    continue
                s.record(member, None, score, t + 2)
        s.end_round(t + 3, [])
    return s


def test_withholder_is_flagged() -> None:
    s = simulate(seed=1, withholder=True)
    p = s.withholding("W")
    assert p is not None and p < 1e-3
    assert s.flagged("W")
    assert not s.flagged("W", min_rounds=9)  # not enough rounds of evidence
    assert not s.flagged("H1") and not s.flagged("H2")
    assert s.stats()["W"]["flagged"] is True


@pytest.mark.parametrize("seed", range(5))
def test_honest_members_are_not_flagged(seed: int) -> None:
    s = simulate(seed=seed, withholder=False)
    for member in ("H1", "H2", "W"):
        p = s.withholding(member)
        assert p is not None and p > 0.01
        assert not s.flagged(member)


def test_withholding_needs_evidence() -> None:
    s = Scheduler(SPACE)
    s.join("a", 0, 1.0)
    assert s.withholding("a") is None and not s.flagged("a")


def test_binomial_cdf() -> None:
    for n, p in ((10, 0.3), (24, 0.5), (7, 0.9)):
        for x in range(n + 1):
            exact = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(x + 1))
            assert binomial_cdf(x, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-15)
    assert binomial_cdf(0, 24, 0.5) == pytest.approx(0.5**24)
    assert binomial_cdf(-1, 5, 0.5) == 0.0 and binomial_cdf(3, 5, 0.0) == 1.0


# --- stats and errors -------------------------------------------------------------------------


def test_stats() -> None:
    s = scenario(0.2)
    s.plan_round(20, random.Random(5))
    stats = s.stats()
    assert sorted(stats) == ["A", "B", "C"]
    a = stats["A"]
    assert a["high_reward"] and a["needs_backup"] and a["rounds"] == 2 and a["results"] == 2
    assert len(a["subspaces"]) == 4 and stats["C"]["backup_subspaces"] == a["subspaces"]
    assert stats["B"]["backup_of"] is None and not stats["C"]["high_reward"]


def test_errors() -> None:
    s = Scheduler(SPACE)
    s.join("a", 0, 1.0)
    cases = [
        (lambda: s.heartbeat("ghost", 1, 1.0), "unknown-member"),
        (lambda: s.heartbeat("a", 1, -1.0), "bad-throughput"),
        (lambda: s.heartbeat("a", 1, math.nan), "bad-throughput"),
        (lambda: s.join("", 1), "bad-member"),
        (lambda: s.join("b", math.inf), "bad-schedule"),
        (lambda: s.record("a", "not-a-genotype", 1, 1), "bad-schedule"),
        (lambda: s.record("a", SPACE.size, 1, 1), "bad-schedule"),
        (lambda: s.record("a", None, 1.5, 1), "bad-schedule"),  # type: ignore[arg-type]
        (lambda: Scheduler(SPACE, top_k=0), "bad-schedule"),
        (lambda: Scheduler(SPACE, heartbeat_timeout=0), "bad-schedule"),
    ]
    for call, reason in cases:
        with pytest.raises(PoolError) as err:
            call()
        assert err.value.reason == reason
    s.leave("a", 2)
    with pytest.raises(PoolError) as err:
        s.heartbeat("a", 3, 1.0)
    assert err.value.reason == "unknown-member"
