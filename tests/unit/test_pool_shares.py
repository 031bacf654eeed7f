"""Share accounting and the coinbase split (pool/shares.py), pure.

Proves: a PPLNS window counts at most its size, keeps the newest shares, counts a straddling
share only for its part inside the window, refuses out-of-order shares, forgets a voided
member entirely and survives a to_list/from_list round trip; a window of rounds (the pool's
default) counts exactly the shares of the last K rounds, whole, as rounds open with or without
new shares, also by hypothesis against a brute-force count; the split pays the fee and
finder's bonus by their floors, splits the rest by the largest-remainder method (ties to the
lower address), merges an address in several roles, sends everything to the fee address when
nobody has shares, respects the output cap and the minimum payout; and, by hypothesis over
random inputs: the amounts sum to exactly the reward, each is positive, addresses are unique
and sorted, members with more weight never get less, each uncapped member is within one unit
of its exact pro-rata share, and the result does not depend on the dict's order. Out-of-range
requests raise ``bad-split``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.types import MAX_AMOUNT, Payout
from pool.shares import PoolError, PPLNSWindow, RoundsWindow, Share, make_window, split_reward


def addr(i: int) -> bytes:
    return bytes([i]) * 20


A, B, C, D, FEE, FIND = addr(1), addr(2), addr(3), addr(4), addr(200), addr(201)


def amounts(payouts: list[Payout]) -> dict[bytes, int]:
    return {p.address: p.amount for p in payouts}


# --- shares and the window ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"member": b"x" * 19},
        {"weight": 0},
        {"weight": True},
        {"weight": -3},
        {"height": -1},
        {"seq": 1.0},
    ],
)
def test_bad_share(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"member": A, "weight": 1, "height": 0, "seq": 0, **kwargs}
    with pytest.raises(PoolError) as err:
        Share(**fields)  # type: ignore[arg-type]
    assert err.value.reason == "bad-share"


def test_window_straddle_and_eviction() -> None:
    w = PPLNSWindow(10)
    w.add(Share(A, 5, 1, 1))
    w.add(Share(B, 4, 1, 2))
    w.add(Share(C, 3, 1, 3))
    # 12 units kept; A straddles the start and counts for 5 - 2 = 3.
    assert w.weights_by_member() == {A: 3, B: 4, C: 3}
    assert w.total == 10 and w.oldest_seq == 1
    w.add(Share(D, 10, 2, 4))  # D alone fills the window: everything older is evicted
    assert w.weights_by_member() == {D: 10}
    assert [s.seq for s in w.shares()] == [4]


def test_window_refuses_out_of_order() -> None:
    w = PPLNSWindow(10)
    assert w.last_seq == 0
    w.add(Share(A, 1, 0, 5))
    assert w.last_seq == 5
    for seq in (5, 4):
        with pytest.raises(PoolError) as err:
            w.add(Share(A, 1, 0, seq))
        assert err.value.reason == "bad-share"


def test_window_void_and_round_trip() -> None:
    w = PPLNSWindow(100)
    for seq, member in enumerate([A, B, A, C, A]):
        w.add(Share(member, 7, 3, seq))
    assert w.void(A) == 3
    assert A not in w.weights_by_member()
    assert w.weights_by_member() == {B: 7, C: 7}
    again = PPLNSWindow.from_list(100, w.to_list())
    assert again.to_list() == w.to_list() == [(B, 7, 3, 1), (C, 7, 3, 3)]
    with pytest.raises(PoolError) as err:
        PPLNSWindow.from_list(100, [(A, 1, 0)])
    assert err.value.reason == "bad-window"
    with pytest.raises(PoolError):
        PPLNSWindow(0)


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(1, 60),
    items=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 25)), max_size=40),
    banned=st.integers(1, 6),
)
def test_window_properties(size: int, items: list[tuple[int, int]], banned: int) -> None:
    w = PPLNSWindow(size)
    for seq, (member, weight) in enumerate(items):
        w.add(Share(addr(member), weight, 0, seq))
        counted = w.weights_by_member()
        assert sum(counted.values()) <= size
        assert all(v > 0 for v in counted.values())
        kept = w.shares()
        assert sum(s.weight for s in kept[1:]) < size  # the oldest is needed to reach size
        everything = [Share(addr(m), wt, 0, q) for q, (m, wt) in enumerate(items[: seq + 1])]
        assert kept == everything[len(everything) - len(kept):]  # the newest shares, in order
    added = sum(weight for _, weight in items)
    assert w.total == min(size, added)
    before = w.weights_by_member()
    w.void(addr(banned))
    after = w.weights_by_member()
    assert addr(banned) not in after
    # other members never gain from a void (a straddler may regain its evicted part: at most its weight)
    for address, value in after.items():
        assert value >= before.get(address, 0)


def test_rounds_window_keeps_the_last_rounds_whole() -> None:
    w = RoundsWindow(3)
    for seq, (member, height) in enumerate([(A, 1), (B, 1), (A, 2), (C, 3)]):
        w.add(Share(member, 20, height, seq))
    assert w.weights_by_member() == {A: 40, B: 20, C: 20} and w.total == 80 and len(w) == 4
    w.add(Share(D, 20, 4, 4))  # round 4: round 1 is out
    assert w.weights_by_member() == {A: 20, C: 20, D: 20} and w.oldest_seq == 2
    w.advance(6)  # rounds 5 and 6 open without a share: only round 4's share is left
    assert w.weights_by_member() == {D: 20} and [s.seq for s in w.shares()] == [4]
    w.advance(5)  # an older round (a reorg) never brings shares back nor moves the window back
    assert w.height == 6 and w.weights_by_member() == {D: 20}
    w.add(Share(A, 20, 3, 5))  # a late share of a round out of the window is not counted
    assert w.weights_by_member() == {D: 20} and w.total == 20
    w.advance(7)
    assert w.weights_by_member() == {} and w.total == 0 and len(w) == 0


def test_rounds_window_void_round_trip_and_bad_input() -> None:
    w = RoundsWindow(2)
    for seq, member in enumerate([A, B, A]):
        w.add(Share(member, 5, 9, seq))
    assert w.void(A) == 2 and w.weights_by_member() == {B: 5}
    again = RoundsWindow.from_list(2, w.to_list())
    assert again.to_list() == w.to_list() == [(B, 5, 9, 1)]
    for bad in (0, 1001, True, 2.0):
        with pytest.raises(PoolError) as err:
            RoundsWindow(bad)  # type: ignore[arg-type]
        assert err.value.reason == "bad-window"
    with pytest.raises(PoolError) as err:
        w.advance(-1)
    assert err.value.reason == "bad-window"
    assert isinstance(make_window(), RoundsWindow) and make_window().rounds == 3
    assert isinstance(make_window(600), PPLNSWindow) and make_window(600).size == 600


@settings(max_examples=150, deadline=None)
@given(
    rounds=st.integers(1, 5),
    steps=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 4), st.integers(1, 30), st.booleans()), max_size=60),
)
def test_rounds_window_matches_a_brute_force_count(rounds: int, steps: list[tuple[int, int, int, bool]]) -> None:
    w = RoundsWindow(rounds)
    height, added, top = 0, [], 0
    for seq, (step, member, weight, just_open) in enumerate(steps):
        height += step
        top = max(top, height)
        if just_open:
            w.advance(height)
        else:
            share = Share(addr(member), weight, height, seq)
            w.add(share)
            added.append(share)
        expect: dict[bytes, int] = {}
        for s in added:
            if s.height > top - rounds:
                expect[s.member] = expect.get(s.member, 0) + s.weight
        assert w.weights_by_member() == dict(sorted(expect.items()))
        assert w.total == sum(expect.values())


# --- the split: examples ----------------------------------------------------------------------


def test_split_example() -> None:
    # fee 1 % = 10, bonus 0.5 % = 5, part 985: A 985/3 = 328.33, B 656.67; the leftover unit
    # goes to the larger remainder (B).
    payouts = split_reward(1000, {A: 1, B: 2}, fee_address=FEE, fee_ppm=10_000, finder=FIND, finder_bonus_ppm=5_000)
    assert amounts(payouts) == {A: 328, B: 657, FEE: 10, FIND: 5}
    assert [p.address for p in payouts] == sorted(amounts(payouts))


def test_split_floor_leftovers_go_to_members_and_ties_to_lower_address() -> None:
    # fee floor(10 * 0.15) = 1, part 9 over three equal weights: 3 each, no leftover;
    # reward 11: part 10 -> one leftover unit to the lowest address.
    assert amounts(split_reward(10, {C: 5, B: 5, A: 5}, fee_address=FEE, fee_ppm=150_000, finder=None,
                                finder_bonus_ppm=0)) == {A: 3, B: 3, C: 3, FEE: 1}
    assert amounts(split_reward(11, {C: 5, B: 5, A: 5}, fee_address=FEE, fee_ppm=150_000, finder=None,
                                finder_bonus_ppm=0)) == {A: 4, B: 3, C: 3, FEE: 1}


def test_split_merges_roles_and_finder_none_takes_no_bonus() -> None:
    payouts = split_reward(1000, {A: 1, B: 1}, fee_address=A, fee_ppm=100_000, finder=B, finder_bonus_ppm=100_000)
    # fee 100 and bonus 100, part 800 -> 400 each; merged: A 500, B 500.
    assert payouts == [Payout(A, 500), Payout(B, 500)]
    assert amounts(split_reward(1000, {A: 1, B: 1}, fee_address=FEE, fee_ppm=0, finder=None,
                                finder_bonus_ppm=100_000)) == {A: 500, B: 500}


def test_split_without_shares_pays_the_fee_address() -> None:
    got = split_reward(1000, {}, fee_address=FEE, fee_ppm=10_000, finder=FIND, finder_bonus_ppm=5_000)
    assert amounts(got) == {FEE: 995, FIND: 5}
    assert amounts(split_reward(7, {A: 0}, fee_address=FEE, fee_ppm=0, finder=None, finder_bonus_ppm=0)) == {FEE: 7}
    assert split_reward(0, {A: 3}, fee_address=FEE, fee_ppm=0, finder=None, finder_bonus_ppm=0) == []


def test_split_cap_folds_the_smallest_weights() -> None:
    weights = {addr(i): 100 - i for i in range(1, 11)}  # addr(1) heaviest
    got = amounts(split_reward(10_000, weights, fee_address=FEE, fee_ppm=10_000, finder=FIND, finder_bonus_ppm=10_000,
                               max_outputs=4))
    # fee and finder take two outputs; the two heaviest members share the whole part.
    assert set(got) == {FEE, FIND, addr(1), addr(2)}
    assert got[addr(1)] + got[addr(2)] == 9800
    # the fee address being a member costs no extra output
    got = amounts(split_reward(10_000, weights, fee_address=addr(1), fee_ppm=10_000, finder=None, finder_bonus_ppm=0,
                               max_outputs=3))
    assert set(got) == {addr(1), addr(2), addr(3)}


def test_split_min_payout_drops_dust() -> None:
    got = amounts(split_reward(1000, {A: 990, B: 9, C: 1}, fee_address=FEE, fee_ppm=0, finder=None, finder_bonus_ppm=0,
                               min_payout=20))
    assert got == {A: 1000}
    got = amounts(split_reward(10, {A: 1, B: 1}, fee_address=FEE, fee_ppm=0, finder=None, finder_bonus_ppm=0,
                               min_payout=20))
    assert got == {FEE: 10}  # everybody is dust


@pytest.mark.parametrize(
    "reward, weights, kwargs",
    [
        (-1, {}, {}),
        (MAX_AMOUNT + 1, {}, {}),
        (True, {}, {}),
        (10, {}, {"fee_ppm": 1_000_001}),
        (10, {}, {"fee_ppm": -1}),
        (10, {}, {"finder_bonus_ppm": 2_000_000}),
        (10, {}, {"fee_ppm": 600_000, "finder_bonus_ppm": 500_000}),
        (10, {}, {"max_outputs": 1}),
        (10, {}, {"min_payout": 0}),
        (10, {}, {"fee_address": b"short"}),
        (10, {}, {"finder": b"short"}),
        (10, {A: -1}, {}),
        (10, {b"short": 1}, {}),
    ],
)
def test_split_rejects(reward: int, weights: dict[bytes, int], kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"fee_address": FEE, "fee_ppm": 0, "finder": FIND, "finder_bonus_ppm": 0, **kwargs}
    with pytest.raises(PoolError) as err:
        split_reward(reward, weights, **args)  # type: ignore[arg-type]
    assert err.value.reason == "bad-split"


# --- the split: properties --------------------------------------------------------------------

ADDRESSES = st.sampled_from([addr(i) for i in range(1, 9)])


@settings(max_examples=300, deadline=None)
@given(
    reward=st.one_of(st.integers(0, 10**6), st.integers(0, MAX_AMOUNT)),
    weights=st.dictionaries(ADDRESSES, st.integers(0, 10**9), max_size=8),
    fee_address=ADDRESSES,
    finder=st.one_of(st.none(), ADDRESSES),
    fee_ppm=st.integers(0, 1_000_000),
    bonus_ppm=st.integers(0, 1_000_000),
    max_outputs=st.integers(2, 10),
    min_payout=st.sampled_from([1, 1, 10, 1000]),
)
def test_split_properties(
    reward: int,
    weights: dict[bytes, int],
    fee_address: bytes,
    finder: bytes | None,
    fee_ppm: int,
    bonus_ppm: int,
    max_outputs: int,
    min_payout: int,
) -> None:
    bonus_ppm = min(bonus_ppm, 1_000_000 - fee_ppm)
    kwargs = dict(fee_address=fee_address, fee_ppm=fee_ppm, finder=finder, finder_bonus_ppm=bonus_ppm,
                  max_outputs=max_outputs, min_payout=min_payout)
    payouts = split_reward(reward, weights, **kwargs)  # type: ignore[arg-type]
    got = amounts(payouts)
    assert sum(got.values()) == reward
    assert all(p.amount > 0 for p in payouts)
    assert [p.address for p in payouts] == sorted(got)  # unique and sorted
    assert len(payouts) <= max_outputs
    # deterministic, whatever the dict order
    assert split_reward(reward, dict(reversed(list(weights.items()))), **kwargs) == payouts  # type: ignore[arg-type]
    # monotone among plain members (the fee address and the finder are paid for other roles)
    plain = [a for a, w in weights.items() if w > 0 and a != fee_address and a != finder]
    for a in plain:
        for b in plain:
            if weights[a] > weights[b]:
                assert got.get(a, 0) >= got.get(b, 0)
    # without cap or dust, each plain member is within one unit of its exact pro-rata share
    # (dust: a share under one unit rounds to nothing and is split again among the others)
    positive = {a: w for a, w in weights.items() if w > 0}
    fee = reward * fee_ppm // 1_000_000
    bonus = reward * bonus_ppm // 1_000_000 if finder is not None else 0
    part, total = reward - fee - bonus, sum(positive.values())
    if positive and min_payout == 1 and len(positive) + 2 <= max_outputs and all(part * w >= total for w in positive.values()):
        for a in plain:
            assert abs(got.get(a, 0) * total - part * weights[a]) < total
