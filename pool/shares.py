"""Share accounting (PPLNS) and the coinbase split (pure: no I/O, no clock, integers only).

A pool pays its members in the coinbase of the block it commits: the payouts are fixed at
commit time from the verified shares (ARCHITECTURE section 6). Two pieces live here:

**The PPLNS window** (Rosenfeld's "pay per last N shares", as P2Pool does over about three
blocks' worth of work). A :class:`Share` carries a positive ``weight`` in work units (the
manager uses training epochs; here it is an opaque positive int) and the ``height`` of the
round it was found for. Two windows, both keeping shares in ``seq`` order (which must strictly
increase):

- :class:`RoundsWindow` (the pool's default, 3 rounds): the shares of the last ``rounds``
  rounds, each counting whole. In this chain every round lasts the same time and yields one
  block, so three rounds are P2Pool's three blocks' worth of work, for a pool of any size.
- :class:`PPLNSWindow`: the shares covering the last ``size`` units: a share is evicted once
  the shares newer than it hold ``size`` units or more. The oldest kept share may *straddle*
  the window's start; it then counts only for its part inside (standard PPLNS), so the
  counted weights of :meth:`PPLNSWindow.weights_by_member` always sum to ``min(size, total
  weight added)``. A fixed size covers less of a round as a pool grows: at about 20 devnet
  trainings (of 20 units) per member and round, 600 units are half a round of a three-member
  pool and a fortieth of a 64-member one, so only the shares of the round's last moments are
  paid.

``void`` removes every share of a banned member: they are never paid. Voiding frees room that
later shares fill; shares already evicted do not come back.

**The split** (:func:`split_reward`), exact integer arithmetic, deterministic:

1. ``fee = reward * fee_ppm // 10**6`` goes to ``fee_address``; ``bonus = reward *
   finder_bonus_ppm // 10**6`` goes to ``finder`` (with ``finder=None`` no bonus is taken).
   The units these two floors drop stay in the members' part, ``part = reward - fee - bonus``.
2. Members (positive weight) are ranked by weight, largest first, ties by address bytes
   ascending. The cap: the longest prefix of that ranking is kept such that the kept members
   together with the fee and finder outputs (an address in several roles counts once) make at
   most ``max_outputs`` outputs. The members cut off (the smallest weights) are paid nothing:
   their weight simply leaves the split, so their part goes to the kept members pro rata.
3. ``part`` is split among the kept members by the largest-remainder method: member ``i``
   gets ``part * w_i // W``, and the ``part - sum`` leftover units (fewer than the number of
   members) go one each to the largest remainders ``part * w_i % W``, ties by address bytes
   ascending. A member with more weight therefore never gets less than one with less.
4. Dust: kept members whose amount is below ``min_payout`` are dropped (they are the smallest
   weights) and the split of step 3 is redone among the others, until none is below.
5. With no member left (no shares, every weight zero, or all dust) the whole ``part`` goes to
   ``fee_address``.
6. Amounts of the same address in several roles (fee, finder, member) are merged into one
   payout; zero amounts are dropped; payouts are sorted by address bytes ascending.

So the amounts always sum to exactly ``reward`` and every amount is positive.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from consensus.types import MAX_AMOUNT, Payout
from pool.errors import PoolError

__all__ = ["PoolError", "Share", "PPLNSWindow", "RoundsWindow", "split_reward", "PPM", "DEFAULT_MAX_OUTPUTS",
           "MAX_WINDOW_ROUNDS", "DEFAULT_WINDOW_ROUNDS", "make_window"]

#: Parts per million: the unit of fee and bonus rates (``10_000`` ppm = 1 %).
PPM = 1_000_000
#: P2Pool's bound on coinbase outputs (the chain's ``MAX_PAYOUTS``).
DEFAULT_MAX_OUTPUTS = 4_000
#: A pool's default PPLNS window: the shares of the last three rounds (P2Pool: about three
#: blocks' worth of work), and the most rounds a window may span.
DEFAULT_WINDOW_ROUNDS = 3
MAX_WINDOW_ROUNDS = 1_000
ADDRESS_LEN = 20


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_address(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == ADDRESS_LEN


@dataclass(frozen=True, slots=True)
class Share:
    """One verified share: ``weight`` work units (> 0) by the member paid at address ``member``
    (20 bytes), found for round ``height``; ``seq`` is the manager's global order."""

    member: bytes
    weight: int
    height: int
    seq: int

    def __post_init__(self) -> None:
        if not _is_address(self.member):
            raise PoolError("bad-share", f"member must be a {ADDRESS_LEN}-byte address, got {self.member!r}")
        if not _is_int(self.weight) or self.weight <= 0:
            raise PoolError("bad-share", f"weight must be a positive int, got {self.weight!r}")
        for name, value in (("height", self.height), ("seq", self.seq)):
            if not _is_int(value) or value < 0:
                raise PoolError("bad-share", f"{name} must be a non-negative int, got {value!r}")


class _Window:
    """The verified shares a PPLNS window keeps, oldest first; subclasses say which to keep.

    ``add`` requires ``seq`` to increase strictly (``bad-share`` otherwise), so the window is
    in ``seq`` order and a replay from storage rebuilds the same window.

    The kept shares are also summed per round height (shares, weight, weight per member), so
    :meth:`weights_by_member`, :attr:`total` and ``len`` cost a pass over the heights and the
    members, not over the shares: a busy pool's window holds hundreds of thousands of them, and
    the manager's dashboard asks for the weights every second (a pass over 100,000 shares held
    the event loop 60 ms).
    """

    def __init__(self) -> None:
        self._shares: deque[Share] = deque()
        self._total = 0  # sum of the weights of the kept shares
        self._last_seq: int | None = None
        #: round height -> [kept shares, their weight, {member: their weight}]
        self._heights: dict[int, list] = {}  # type: ignore[type-arg]

    def _count(self, share: Share, sign: int) -> None:
        """Add (``sign`` 1) or take out (-1) a kept share's part of the sums by height."""
        entry = self._heights.get(share.height)
        if entry is None:
            entry = self._heights[share.height] = [0, 0, {}]
        entry[0] += sign
        entry[1] += sign * share.weight
        members = entry[2]
        left = members.get(share.member, 0) + sign * share.weight
        if left:
            members[share.member] = left
        else:
            del members[share.member]
        if not entry[0]:
            del self._heights[share.height]

    def _recount(self) -> None:
        self._total = sum(s.weight for s in self._shares)
        self._heights = {}
        for share in self._shares:
            self._count(share, 1)

    def _pop_oldest(self) -> Share:
        share = self._shares.popleft()
        self._total -= share.weight
        self._count(share, -1)
        return share

    @property
    def last_seq(self) -> int:
        """The seq of the last share added (0 before any): a split over the window counts the
        shares up to it, however many more are stored but not yet credited."""
        return self._last_seq or 0

    def add(self, share: Share) -> None:
        """Append a verified share and evict the shares that fall out of the window."""
        if not isinstance(share, Share):
            raise PoolError("bad-share", f"not a Share: {share!r}")
        if self._last_seq is not None and share.seq <= self._last_seq:
            raise PoolError("bad-share", f"seq {share.seq} not after {self._last_seq}")
        self._last_seq = share.seq
        self._shares.append(share)
        self._total += share.weight
        self._count(share, 1)
        self._evict()

    def _evict(self) -> None:
        raise NotImplementedError

    def advance(self, height: int) -> None:
        """Round ``height`` has opened (a window of rounds forgets the rounds now out of it)."""

    def void(self, member: bytes) -> int:
        """Remove every share of ``member`` (a banned member is never paid); returns how many."""
        kept = [s for s in self._shares if s.member != member]
        removed = len(self._shares) - len(kept)
        if removed:
            self._shares = deque(kept)
            self._recount()
        return removed

    def void_seq(self, seq: int) -> bool:
        """Remove the share numbered ``seq`` (its credit is void); False if not in the window.
        The shares are in ``seq`` order: found by bisection, not a pass over the window."""
        shares = self._shares
        lo, hi = 0, len(shares)
        while lo < hi:
            mid = (lo + hi) // 2
            if shares[mid].seq < seq:
                lo = mid + 1
            else:
                hi = mid
        if lo == len(shares) or shares[lo].seq != seq:
            return False
        share = shares[lo]
        del shares[lo]
        self._total -= share.weight
        self._count(share, -1)
        return True

    def _counts(self, height: int) -> bool:
        """Whether the kept shares of round ``height`` count (all of them, but in a window of
        rounds)."""
        return True

    def _counted(self) -> list[Share]:
        """The shares in the window, oldest first."""
        return list(self._shares)

    def shares(self) -> list[Share]:
        """The shares in the window, oldest first (in a window of units the first may straddle
        its start)."""
        return self._counted()

    def __len__(self) -> int:
        return sum(entry[0] for height, entry in self._heights.items() if self._counts(height))

    def __iter__(self) -> Iterator[Share]:
        return iter(self._counted())

    @property
    def total(self) -> int:
        """Work units counted in the window."""
        return sum(entry[1] for height, entry in self._heights.items() if self._counts(height))

    @property
    def oldest_seq(self) -> int | None:
        """``seq`` of the oldest kept share (older shares can be pruned from storage)."""
        return self._shares[0].seq if self._shares else None

    def weights_by_member(self) -> dict[bytes, int]:
        """Counted weight per member address, sorted by address."""
        out: dict[bytes, int] = {}
        for height, entry in self._heights.items():
            if self._counts(height):
                for member, weight in entry[2].items():
                    out[member] = out.get(member, 0) + weight
        return {a: out[a] for a in sorted(out)}

    def to_list(self) -> list[tuple[bytes, int, int, int]]:
        """Plain ``(member, weight, height, seq)`` tuples, oldest first, for persistence."""
        return [(s.member, s.weight, s.height, s.seq) for s in self._counted()]

    def _load(self, items: Iterable[Sequence[object]]) -> None:
        for item in items:
            if len(item) != 4:
                raise PoolError("bad-window", f"a share is [member, weight, height, seq], got {item!r}")
            member, weight, height, seq = item
            self.add(Share(member, weight, height, seq))  # type: ignore[arg-type]


class PPLNSWindow(_Window):
    """The shares covering the last ``size`` work units (see the module docstring); the oldest
    kept share may straddle the window's start and then counts only for its part inside."""

    def __init__(self, size: int) -> None:
        if not _is_int(size) or size <= 0:
            raise PoolError("bad-window", f"window size must be a positive int, got {size!r}")
        super().__init__()
        self.size = size

    def _evict(self) -> None:
        while self._total - self._shares[0].weight >= self.size:
            self._pop_oldest()

    @property
    def total(self) -> int:
        """Work units counted in the window: ``min(size, weight of the kept shares)``."""
        return min(self.size, self._total)

    def weights_by_member(self) -> dict[bytes, int]:
        """Counted weight per member address, sorted by address; the straddling oldest share
        counts only for its part inside the window."""
        out = super().weights_by_member()
        excess = self._total - self.size
        if excess > 0:  # less than the oldest share's weight (else it would have been evicted)
            out[self._shares[0].member] -= excess
        return out

    @classmethod
    def from_list(cls, size: int, items: Iterable[Sequence[object]]) -> PPLNSWindow:
        """Rebuild a window of ``size`` units from :meth:`to_list`'s form (re-validated)."""
        window = cls(size)
        window._load(items)
        return window


class RoundsWindow(_Window):
    """The shares of the last ``rounds`` rounds: found for a round at most ``rounds - 1`` below
    the newest round seen (by :meth:`advance` or by a share's ``height``). Shares of a round
    count whole. This is P2Pool's window of about three blocks' worth of work, measured in
    this chain's fixed-length rounds: it holds three rounds of the pool's work whatever the
    pool's size, where a fixed number of units covers less of a round as the pool grows."""

    def __init__(self, rounds: int) -> None:
        if not _is_int(rounds) or not 1 <= rounds <= MAX_WINDOW_ROUNDS:
            raise PoolError("bad-window", f"window rounds must be an int in 1..{MAX_WINDOW_ROUNDS}, got {rounds!r}")
        super().__init__()
        self.rounds = rounds
        self.height: int | None = None  # the newest round seen

    def advance(self, height: int) -> None:
        if not _is_int(height) or height < 0:
            raise PoolError("bad-window", f"a round height is a non-negative int, got {height!r}")
        if self.height is None or height > self.height:
            self.height = height
            if self._shares:
                self._evict()

    def _evict(self) -> None:
        newest = self._shares[-1].height
        if self.height is None or newest > self.height:
            self.height = newest
        floor = self._floor()
        while self._shares and self._shares[0].height <= floor:
            self._pop_oldest()

    def _floor(self) -> int:
        """Shares found for this round or an older one are out of the window."""
        return -1 if self.height is None else self.height - self.rounds

    def _counts(self, height: int) -> bool:
        # heights follow seq but for a late share of an older round (or after a reorg): such a
        # share behind the oldest kept one is out of the window although not yet evicted
        return height > self._floor()

    def _counted(self) -> list[Share]:
        floor = self._floor()
        return [s for s in self._shares if s.height > floor]

    @classmethod
    def from_list(cls, rounds: int, items: Iterable[Sequence[object]]) -> RoundsWindow:
        """Rebuild a window of ``rounds`` rounds from :meth:`to_list`'s form (re-validated)."""
        window = cls(rounds)
        window._load(items)
        return window


def make_window(units: int | None = None, rounds: int = DEFAULT_WINDOW_ROUNDS) -> PPLNSWindow | RoundsWindow:
    """A pool's PPLNS window: the last ``units`` work units if given, else the last ``rounds``
    rounds (``bad-window`` if out of range)."""
    return PPLNSWindow(units) if units is not None else RoundsWindow(rounds)


def _largest_remainder(part: int, members: Sequence[tuple[bytes, int]]) -> dict[bytes, int]:
    """Split ``part`` over ``(address, weight)`` pro rata; leftovers to the largest remainders
    (ties: lower address). The amounts sum to ``part``."""
    total = sum(w for _, w in members)
    amounts = {a: part * w // total for a, w in members}
    leftover = part - sum(amounts.values())
    by_remainder = sorted(members, key=lambda aw: (-(part * aw[1] % total), aw[0]))
    for address, _ in by_remainder[:leftover]:
        amounts[address] += 1
    return amounts


def split_reward(
    reward: int,
    window_weights: Mapping[bytes, int],
    *,
    fee_address: bytes,
    fee_ppm: int,
    finder: bytes | None,
    finder_bonus_ppm: int,
    max_outputs: int = DEFAULT_MAX_OUTPUTS,
    min_payout: int = 1,
) -> list[Payout]:
    """The coinbase payouts for ``reward`` (rules in the module docstring).

    Raises :class:`PoolError` ``bad-split`` for a reward outside ``0..MAX_AMOUNT``, a ppm
    outside ``0..10**6``, ``fee_ppm + finder_bonus_ppm > 10**6``, a bad address, a negative
    weight, ``max_outputs < 2`` or ``min_payout < 1``.
    """
    if not _is_int(reward) or not 0 <= reward <= MAX_AMOUNT:
        raise PoolError("bad-split", f"reward must be an int in 0..{MAX_AMOUNT}, got {reward!r}")
    for name, ppm in (("fee_ppm", fee_ppm), ("finder_bonus_ppm", finder_bonus_ppm)):
        if not _is_int(ppm) or not 0 <= ppm <= PPM:
            raise PoolError("bad-split", f"{name} must be an int in 0..{PPM}, got {ppm!r}")
    if fee_ppm + finder_bonus_ppm > PPM:
        raise PoolError("bad-split", f"fee {fee_ppm} + finder bonus {finder_bonus_ppm} ppm exceed {PPM}")
    if not _is_address(fee_address):
        raise PoolError("bad-split", f"fee address must be {ADDRESS_LEN} bytes, got {fee_address!r}")
    if finder is not None and not _is_address(finder):
        raise PoolError("bad-split", f"finder must be {ADDRESS_LEN} bytes or None, got {finder!r}")
    if not _is_int(max_outputs) or max_outputs < 2:
        raise PoolError("bad-split", f"max_outputs must be an int >= 2, got {max_outputs!r}")
    if not _is_int(min_payout) or min_payout < 1:
        raise PoolError("bad-split", f"min_payout must be an int >= 1, got {min_payout!r}")
    for address, weight in window_weights.items():
        if not _is_address(address):
            raise PoolError("bad-split", f"member address must be {ADDRESS_LEN} bytes, got {address!r}")
        if not _is_int(weight) or weight < 0:
            raise PoolError("bad-split", f"weight must be a non-negative int, got {weight!r}")

    fee = reward * fee_ppm // PPM
    bonus = reward * finder_bonus_ppm // PPM if finder is not None else 0
    part = reward - fee - bonus
    roles: set[bytes] = set()
    if fee > 0:
        roles.add(fee_address)
    if bonus > 0:
        assert finder is not None
        roles.add(finder)

    # Step 2: the cap. Outputs = kept members plus the role addresses that are not members.
    ranked = sorted(((a, w) for a, w in window_weights.items() if w > 0), key=lambda aw: (-aw[1], aw[0]))
    kept: list[tuple[bytes, int]] = []
    outside_roles = len(roles)
    for address, weight in ranked:
        if len(kept) + 1 + outside_roles - (1 if address in roles else 0) > max_outputs:
            break
        kept.append((address, weight))
        if address in roles:
            outside_roles -= 1

    # Steps 3 and 4: largest remainder, dust dropped and the split redone.
    members: dict[bytes, int] = {}
    while kept and part > 0:
        members = _largest_remainder(part, kept)
        if all(members[a] >= min_payout for a, _ in kept):
            break
        kept = [(a, w) for a, w in kept if members[a] >= min_payout]
        members = {}

    amounts: dict[bytes, int] = {}

    def pay(address: bytes, amount: int) -> None:
        if amount > 0:
            amounts[address] = amounts.get(address, 0) + amount

    pay(fee_address, fee)
    if finder is not None:
        pay(finder, bonus)
    if members:
        for address, amount in members.items():
            pay(address, amount)
    else:
        pay(fee_address, part)  # step 5: nobody to pay pro rata
    assert sum(amounts.values()) == reward
    return [Payout(address, amounts[address]) for address in sorted(amounts)]
