"""Pool scheduling: subspaces, throughput-proportional assignment, backups, take-over, audits.

Pure decision logic for the pool manager (ARCHITECTURE section 6): the manager calls one method
per event (a member joins, leaves or heartbeats, a share is verified, a round starts or ends,
a watchdog tick) and acts on what it returns. Nothing here sleeps, reads a clock or draws
randomness of its own: time is always the ``now`` argument and a round's shuffle uses the
``random.Random`` given to :meth:`Scheduler.plan_round`. Same calls, same seed, same plan.

**Planning** (:meth:`Scheduler.plan_round`). Members whose last heartbeat is older than
``heartbeat_timeout`` are first marked dead. With ``n`` live members the whole space is cut by
``space.partition(K)`` into ``K = min(space.size, max(1, subspaces_per_member * n))``
contiguous subspaces (sizes within one of each other), whose order is shuffled with ``rng``.
Counts follow throughput: member ``i`` has quota ``K * t_i / sum t`` (exact fractions), gets
its floor, and the leftover subspaces go to the largest fractional remainders (ties: member id).
A member left with none then takes one from the member furthest above its quota (ties: id), so
every live member primaries at least one subspace (if ``K < n``, only possible in a space
smaller than the pool, the ``K`` fastest members get one each). ``t_i`` is the member's
throughput EWMA (trainings per second); a member with no measurement yet counts as the median
of the measured live members (1.0 when nobody is measured; all equal when all are zero).
Members are walked in id order, each taking its count of subspaces from the shuffled list.

**Rounds** (:meth:`Scheduler.record`, :meth:`Scheduler.end_round`). Every verified result is
recorded with its score; it is *reported* by the member that sent it and *owned* by the
primary of the current plan's subspace that contains it (the reporter when it cannot be
located). At the end of a round each member that took part gets a :class:`RoundStats` with
three metrics, each already in ``0..1``, so that one threshold fits all:

- ``throughput``: its throughput divided by the largest among the round's members;
- ``quality``: its best reported score divided by the pool's best score of the round (clipped
  to ``0..1``; ``None`` without a recorded result: the manager records the shares it verifies,
  a sample, so a round without one says nothing of quality, and the standard deviation is taken
  over the rounds that have one);
- ``timeliness``: ``on_time / (on_time + late)`` over the round's heartbeats (1.0 with none):
  a heartbeat is on time when it comes within ``heartbeat_timeout`` of the previous one; being
  declared dead, leaving, and a silence longer than the timeout at the round's end each count
  one late.

The last ``history`` :class:`RoundStats` of each member are kept.

**High reward and backups.** The pool's top results of a round are its ``top_k`` best scores
(every result tied with the ``top_k``-th is included) among the recorded results and the
``pool_best`` entries given to :meth:`end_round` (an entry equal to a recorded result of the
same member is not counted twice). A member is *high-reward* while one of its kept rounds has
a top result *owned* by it (found in its subspaces). For a high-reward member the population
standard deviation of each metric over its kept rounds is computed (0 with fewer than two
rounds); if the largest exceeds ``std_threshold`` the next plan gives all of its subspaces one
backup member, role ``"backup"``, which searches the same region. The backup is the live
member, other than the primary, minimising ``(is high-reward, load, id)``, where ``load`` is the
number of subspaces it already holds (primary or backup) divided by its throughput.

**Take-over** (:meth:`Scheduler.check`, :meth:`Scheduler.leave`). A member silent for more
than ``heartbeat_timeout`` (or leaving) is gone at once: each of its primary subspaces moves to
its backup when that backup is alive (the backup's role becomes primary, reason
``"backup-takeover"``), else to the least-loaded live member (same load as above, recomputed
after each move; reason ``"heartbeat"`` or ``"left"``). Backup roles the gone member held are
dropped without a move (their primaries keep searching). With no live member left, the
subspaces wait, without owner, for the next plan. :attr:`Scheduler.plan` always shows the
current assignment, moves included. A dead member that heartbeats again is alive again and
gets subspaces from the next plan.

**Block withholding** (:meth:`Scheduler.withholding`). Only statistics can reveal a member
that hides its best results (ANCHORS, mining pools). Over the pool's last ``history`` rounds,
let ``N`` be all recorded results, ``n`` the member's, ``T`` the pool's top results and ``x``
those the member reported. If every result were equally likely to be a top one, ``x`` would
follow ``Binomial(T, n / N)`` (the exact law, hypergeometric, is close when ``T << N``); the
statistic is the one-sided p-value ``P(X <= x)``, small when the member reports too few top
results for its share of the work. :meth:`Scheduler.flagged` compares it with ``alpha``.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections import Counter, deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from consensus.engines.ponas.space import GenotypeError, SearchSpace, Subspace
from pool.errors import PoolError

__all__ = [
    "PoolError",
    "Scheduler",
    "Plan",
    "Assignment",
    "Move",
    "RoundStats",
    "METRICS",
    "binomial_cdf",
]

Role = Literal["primary", "backup"]
MoveReason = Literal["heartbeat", "left", "backup-takeover"]
#: Where a result lies: a genotype, an architecture index, a ``(start, stop)`` range, a
#: subspace, or ``None`` (unknown: the reporter owns it).
Where = str | int | tuple[int, int] | Subspace | None

#: The per-round performance metrics, each normalised to ``0..1``.
METRICS: tuple[str, ...] = ("throughput", "quality", "timeliness")


@dataclass(frozen=True, slots=True)
class Assignment:
    """``subspace`` given to a member as ``role``; ``primary`` is the member that owns it."""

    subspace: Subspace
    role: Role
    primary: str


@dataclass(frozen=True, slots=True)
class Move:
    """``subspace`` passed from ``from_member`` (gone) to ``to_member``, now its primary."""

    subspace: Subspace
    from_member: str
    to_member: str
    reason: MoveReason


@dataclass(frozen=True, slots=True)
class RoundStats:
    """One member's round (see the module docstring); metrics are in ``0..1``."""

    round: int
    throughput: float
    quality: float | None  # None: no recorded result this round
    timeliness: float
    results: int  # results it reported
    top_results: int  # pool top results it reported
    top_owned: int  # pool top results found in its subspaces

    def metric(self, name: str) -> float | None:
        value = getattr(self, name)
        return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Plan:
    """An assignment of subspaces: ``subspaces[i]`` (in the round's shuffled order) has primary
    ``primaries[i]`` (``None`` only while no member is alive) and backup ``backups[i]``."""

    number: int
    subspaces: tuple[Subspace, ...]
    primaries: tuple[str | None, ...]
    backups: tuple[str | None, ...]

    def assignments_of(self, member_id: str) -> list[Assignment]:
        """What ``member_id`` searches, in plan order: primaries and backups."""
        out = []
        for sub, primary, backup in zip(self.subspaces, self.primaries, self.backups):
            if primary is None:
                continue
            if primary == member_id:
                out.append(Assignment(sub, "primary", primary))
            elif backup == member_id:
                out.append(Assignment(sub, "backup", primary))
        return out

    def by_member(self) -> dict[str, list[Assignment]]:
        """Every member's assignments in one pass (``assignments_of`` for all members at once)."""
        out: dict[str, list[Assignment]] = {}
        for sub, primary, backup in zip(self.subspaces, self.primaries, self.backups):
            if primary is None:
                continue
            out.setdefault(primary, []).append(Assignment(sub, "primary", primary))
            if backup is not None and backup != primary:
                out.setdefault(backup, []).append(Assignment(sub, "backup", primary))
        return out

    def _index(self, subspace: Subspace | tuple[int, int]) -> int | None:
        rng = subspace.as_range() if isinstance(subspace, Subspace) else tuple(subspace)
        for i, sub in enumerate(self.subspaces):
            if sub.as_range() == rng:
                return i
        return None

    def owner_of(self, subspace: Subspace | tuple[int, int]) -> str | None:
        """The primary of ``subspace`` (or its ``(start, stop)``), ``None`` if not planned."""
        i = self._index(subspace)
        return None if i is None else self.primaries[i]

    def backup_of(self, subspace: Subspace | tuple[int, int]) -> str | None:
        """The backup of ``subspace``, if any."""
        i = self._index(subspace)
        return None if i is None else self.backups[i]

    def members(self) -> list[str]:
        """Members with at least one assignment, sorted."""
        return sorted({m for m in self.primaries + self.backups if m is not None})


@dataclass(slots=True)
class _Member:
    id: str
    last_heartbeat: float
    throughput: float | None
    alive: bool = True
    left: bool = False
    on_time: int = 0
    late: int = 0
    history: deque[RoundStats] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class _Audit:
    results: dict[str, int]
    top: dict[str, int]


def _check_time(now: object) -> float:
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise PoolError("bad-schedule", f"time must be a finite number, got {now!r}")
    return float(now)


def _check_throughput(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise PoolError("bad-throughput", f"throughput must be a finite number >= 0, got {value!r}")
    return float(value)


def binomial_cdf(x: int, n: int, p: float) -> float:
    """``P(X <= x)`` for ``X ~ Binomial(n, p)``, summed in log space (no scipy)."""
    if x < 0:
        return 0.0
    if x >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    total = 0.0
    for i in range(x + 1):
        total += math.exp(base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
    return min(1.0, total)


class Scheduler:
    """Assigns a space's subspaces to the pool's members (rules in the module docstring)."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        subspaces_per_member: int = 4,
        std_threshold: float = 0.25,
        heartbeat_timeout: float = 15.0,
        history: int = 8,
        top_k: int = 3,
        ewma: float = 0.3,
    ) -> None:
        for name, value in (("subspaces_per_member", subspaces_per_member), ("history", history), ("top_k", top_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PoolError("bad-schedule", f"{name} must be a positive int, got {value!r}")
        if not math.isfinite(std_threshold) or std_threshold < 0:
            raise PoolError("bad-schedule", f"std_threshold must be >= 0, got {std_threshold!r}")
        if not math.isfinite(heartbeat_timeout) or heartbeat_timeout <= 0:
            raise PoolError("bad-schedule", f"heartbeat_timeout must be > 0, got {heartbeat_timeout!r}")
        if not 0 < ewma <= 1:
            raise PoolError("bad-schedule", f"ewma must be in (0, 1], got {ewma!r}")
        self.space = space
        self.subspaces_per_member = subspaces_per_member
        self.std_threshold = float(std_threshold)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.history = history
        self.top_k = top_k
        self.ewma = float(ewma)
        self.rounds = 0  # end_round calls so far
        self._members: dict[str, _Member] = {}
        self._plan_number = 0
        self._subspaces: list[Subspace] = []
        self._primary: list[str | None] = []
        self._backup: list[str | None] = []
        self._starts: list[tuple[int, int]] = []  # (start, position in _subspaces), sorted
        self._results: list[tuple[int, str, str]] = []  # (score, reporter, owner) this round
        self._round_members: set[str] = set()
        self._audits: deque[_Audit] = deque(maxlen=history)
        #: each member's std_devs, computed once per round (histories change only at its end)
        self._std_memo: dict[str, dict[str, float]] = {}

    # --- members -----------------------------------------------------------------------------

    def _get(self, member_id: str) -> _Member:
        member = self._members.get(member_id)
        if member is None:
            raise PoolError("unknown-member", repr(member_id))
        return member

    def _observe(self, member: _Member, throughput: float) -> None:
        if member.throughput is None:
            member.throughput = throughput
        else:
            member.throughput = self.ewma * throughput + (1 - self.ewma) * member.throughput

    def join(self, member_id: str, now: float, throughput: float | None = None) -> None:
        """A member joins (or comes back); it gets subspaces from the next :meth:`plan_round`."""
        if not isinstance(member_id, str) or not member_id:
            raise PoolError("bad-member", f"member ids are non-empty strings, got {member_id!r}")
        now = _check_time(now)
        rate = None if throughput is None else _check_throughput(throughput)
        member = self._members.get(member_id)
        if member is None:
            member = self._members[member_id] = _Member(member_id, now, None, history=deque(maxlen=self.history))
        member.alive, member.left, member.last_heartbeat = True, False, now
        if rate is not None:
            self._observe(member, rate)
        self._round_members.add(member_id)

    def heartbeat(self, member_id: str, now: float, throughput: float) -> None:
        """A heartbeat with the member's measured throughput (trainings per second)."""
        now = _check_time(now)
        rate = _check_throughput(throughput)
        member = self._get(member_id)
        if member.left:
            raise PoolError("unknown-member", f"{member_id!r} has left")
        if member.alive:
            if now - member.last_heartbeat > self.heartbeat_timeout:
                member.late += 1
            else:
                member.on_time += 1
        else:  # declared dead (already counted late): alive again, subspaces at the next plan
            member.alive = True
        member.last_heartbeat = now
        self._observe(member, rate)
        self._round_members.add(member_id)

    def leave(self, member_id: str, now: float) -> list[Move]:
        """A member leaves: its subspaces move at once. An unknown or gone member: no moves."""
        _check_time(now)
        member = self._members.get(member_id)
        if member is None or member.left:
            return []
        was_alive = member.alive
        member.alive, member.left = False, True
        if was_alive:
            member.late += 1
        return self._reassign({member_id}, "left")

    def check(self, now: float) -> list[Move]:
        """Watchdog: members silent for more than ``heartbeat_timeout`` are dead; their
        subspaces move at once (to their backup when alive)."""
        dying = self._expire(_check_time(now))
        return self._reassign(dying, "heartbeat") if dying else []

    def _expire(self, now: float) -> set[str]:
        dying = {m.id for m in self._members.values() if m.alive and now - m.last_heartbeat > self.heartbeat_timeout}
        for member_id in dying:
            member = self._members[member_id]
            member.alive = False
            member.late += 1
        return dying

    def live(self) -> list[str]:
        """Live member ids, sorted."""
        return sorted(m.id for m in self._members.values() if m.alive)

    def _effective(self) -> dict[str, float]:
        """Throughput used for shares of work: the EWMA, or the median of measured live members."""
        measured = [m.throughput for m in self._members.values() if m.alive and m.throughput is not None]
        default = statistics.median(measured) if measured else 1.0
        return {m.id: m.throughput if m.throughput is not None else default for m in self._members.values()}

    # --- planning ----------------------------------------------------------------------------

    def _allocate(self, k: int, live: list[str], rate: dict[str, float]) -> dict[str, int]:
        weights = {m: Fraction(rate[m]) for m in live}
        total = sum(weights.values(), Fraction(0))
        if total == 0:
            weights, total = {m: Fraction(1) for m in live}, Fraction(len(live))
        if k < len(live):
            fastest = sorted(live, key=lambda m: (-weights[m], m))[:k]
            return {m: 1 if m in fastest else 0 for m in live}
        quota = {m: k * weights[m] / total for m in live}
        counts = {m: math.floor(quota[m]) for m in live}
        leftover = k - sum(counts.values())
        for m in sorted(live, key=lambda m: (-(quota[m] - counts[m]), m))[:leftover]:
            counts[m] += 1
        for m in sorted((m for m in live if counts[m] == 0), key=lambda m: (-quota[m], m)):
            donor = min((d for d in live if counts[d] >= 2), key=lambda d: (-(counts[d] - quota[d]), d))
            counts[donor] -= 1
            counts[m] += 1
        return counts

    def _load(self, member_id: str, held: Counter[str], rate: dict[str, float]) -> float:
        r = rate[member_id]
        return held[member_id] / r if r > 0 else math.inf

    def plan_round(self, now: float, rng: random.Random) -> Plan:
        """A fresh plan for the live members (see the module docstring); becomes :attr:`plan`."""
        self._expire(_check_time(now))
        live = self.live()
        self._plan_number += 1
        self._subspaces, self._primary, self._backup = [], [], []
        if live:
            k = min(self.space.size, max(1, self.subspaces_per_member * len(live)))
            parts = self.space.partition(k)
            rng.shuffle(parts)
            rate = self._effective()
            counts = self._allocate(k, live, rate)
            self._subspaces = parts
            for member_id in live:
                self._primary.extend([member_id] * counts[member_id])
            self._backup = [None] * len(parts)
            held = Counter(m for m in self._primary if m is not None)
            for primary in live:
                if len(live) < 2 or not self.needs_backup(primary):
                    continue
                others = [b for b in live if b != primary]
                backup = min(others, key=lambda b: (self.high_reward(b), self._load(b, held, rate), b))
                for i, owner in enumerate(self._primary):
                    if owner == primary:
                        self._backup[i] = backup
                        held[backup] += 1
        self._starts = sorted((sub.start, i) for i, sub in enumerate(self._subspaces))
        return self.plan

    @property
    def plan(self) -> Plan:
        """The current assignment (the last plan with every move since applied)."""
        return Plan(self._plan_number, tuple(self._subspaces), tuple(self._primary), tuple(self._backup))

    def _reassign(self, gone: set[str], reason: MoveReason) -> list[Move]:
        self._backup = [None if b in gone else b for b in self._backup]
        live = [m for m in self.live() if m not in gone]
        rate = self._effective()
        held = Counter(m for m in self._primary + self._backup if m is not None)
        moves = []
        for i, primary in enumerate(self._primary):
            if primary is None or primary not in gone:
                continue
            backup = self._backup[i]
            if backup is not None:
                self._primary[i], self._backup[i] = backup, None
                moves.append(Move(self._subspaces[i], primary, backup, "backup-takeover"))
            elif live:
                target = min(live, key=lambda m: (self._load(m, held, rate), m))
                held[target] += 1
                self._primary[i] = target
                moves.append(Move(self._subspaces[i], primary, target, reason))
            else:
                self._primary[i] = None  # nobody alive: waits for the next plan
        return moves

    # --- results and rounds --------------------------------------------------------------------

    def _locate(self, where: Where) -> int | None:
        if where is None:
            return None
        if isinstance(where, Subspace):
            index = where.start
        elif isinstance(where, tuple):
            if len(where) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in where):
                raise PoolError("bad-schedule", f"a range is (start, stop), got {where!r}")
            index = where[0]
        elif isinstance(where, str):
            try:
                index = self.space.decode(where)
            except GenotypeError as exc:
                raise PoolError("bad-schedule", f"not a genotype of {self.space.name}: {where[:140]!r}") from exc
        elif isinstance(where, int) and not isinstance(where, bool):
            index = where
        else:
            raise PoolError("bad-schedule", f"cannot locate a result at {where!r}")
        if not 0 <= index < self.space.size:
            raise PoolError("bad-schedule", f"index {index} outside the space")
        pos = bisect.bisect_right(self._starts, (index, len(self._starts))) - 1
        if pos < 0:
            return None
        i = self._starts[pos][1]
        return i if self._subspaces[i].contains_index(index) else None

    def record(self, member_id: str, where: Where, score: int, now: float) -> None:
        """A verified result of ``member_id`` scoring ``score``, found at ``where``."""
        _check_time(now)
        if isinstance(score, bool) or not isinstance(score, int):
            raise PoolError("bad-schedule", f"scores are ints, got {score!r}")
        self._get(member_id)
        i = self._locate(where)
        owner = self._primary[i] if i is not None else None
        self._results.append((score, member_id, owner if owner is not None else member_id))
        self._round_members.add(member_id)

    def end_round(self, now: float, pool_best: list[tuple[str, int]]) -> None:
        """Close the round: per-member :class:`RoundStats`, top results, the audit window.

        ``pool_best`` lists ``(member_id, score)`` of the pool's best results; entries of
        unknown members are ignored."""
        now = _check_time(now)
        candidates = list(self._results)
        recorded = Counter((reporter, score) for score, reporter, _ in candidates)
        for member_id, score in pool_best:
            if isinstance(score, bool) or not isinstance(score, int):
                raise PoolError("bad-schedule", f"scores are ints, got {score!r}")
            if member_id not in self._members:
                continue
            if recorded[(member_id, score)] > 0:
                recorded[(member_id, score)] -= 1
                continue
            candidates.append((score, member_id, member_id))
        scores = sorted((c[0] for c in candidates), reverse=True)
        best = scores[0] if scores else None
        cutoff = scores[min(self.top_k, len(scores)) - 1] if scores else None
        top = [c for c in candidates if cutoff is not None and c[0] >= cutoff]
        results = Counter(reporter for _, reporter, _ in self._results)
        top_reported = Counter(reporter for _, reporter, _ in top)
        top_owned = Counter(owner for _, _, owner in top)
        own_best: dict[str, int] = {}
        for score, reporter, _ in candidates:
            own_best[reporter] = max(score, own_best.get(reporter, score))

        participants = sorted(self._round_members | set(results))
        rate = self._effective()
        fastest = max((rate[m] for m in participants), default=0.0)
        for member_id in participants:
            member = self._members[member_id]
            if member.alive and now - member.last_heartbeat > self.heartbeat_timeout:
                member.late += 1
            beats = member.on_time + member.late
            mine = own_best.get(member_id)
            quality: float | None
            if mine is None or best is None:
                quality = None
            elif best > 0:
                quality = min(1.0, max(0.0, mine / best))
            else:
                quality = 1.0 if mine == best else 0.0
            member.history.append(RoundStats(
                round=self.rounds,
                throughput=rate[member_id] / fastest if fastest > 0 else 1.0,
                quality=quality,
                timeliness=member.on_time / beats if beats else 1.0,
                results=results[member_id],
                top_results=top_reported[member_id],
                top_owned=top_owned[member_id],
            ))
            member.on_time = member.late = 0
        self._audits.append(_Audit(dict(results), dict(top_reported)))
        self._results = []
        self._round_members = {m.id for m in self._members.values() if m.alive}
        self._std_memo.clear()
        self.rounds += 1

    # --- high reward, backups, audits ------------------------------------------------------------

    def history_of(self, member_id: str) -> list[RoundStats]:
        """The member's kept rounds, oldest first."""
        return list(self._get(member_id).history)

    def high_reward(self, member_id: str) -> bool:
        """Whether one of the member's kept rounds has a pool top result in its subspaces."""
        return any(r.top_owned > 0 for r in self._get(member_id).history)

    def std_devs(self, member_id: str) -> dict[str, float]:
        """Population standard deviation of each metric over the kept rounds that have it (0 with
        fewer than 2)."""
        history = self._get(member_id).history
        out = self._std_memo.get(member_id)
        if out is None:
            out = {}
            for name in METRICS:
                values = [v for v in (r.metric(name) for r in history) if v is not None]
                out[name] = statistics.pstdev(values) if len(values) >= 2 else 0.0
            self._std_memo[member_id] = out
        return dict(out)

    def needs_backup(self, member_id: str) -> bool:
        """High-reward and its largest metric standard deviation above ``std_threshold``."""
        return self.high_reward(member_id) and max(self.std_devs(member_id).values()) > self.std_threshold

    def withholding(self, member_id: str) -> float | None:
        """One-sided binomial p-value that the member reports this few top results given its
        share of the results (module docstring); ``None`` without results or top results."""
        self._get(member_id)
        return self._withholding(member_id, *self._audit_totals())

    def _audit_totals(self) -> tuple[int, int]:
        """All recorded results and all top results over the audit window."""
        total = sum(sum(a.results.values()) for a in self._audits)
        tops = sum(sum(a.top.values()) for a in self._audits)
        return total, tops

    def _withholding(self, member_id: str, total: int, tops: int) -> float | None:
        mine = sum(a.results.get(member_id, 0) for a in self._audits)
        hits = sum(a.top.get(member_id, 0) for a in self._audits)
        if mine == 0 or total == 0 or tops == 0:
            return None
        return binomial_cdf(hits, tops, mine / total)

    def flagged(self, member_id: str, alpha: float = 0.01, min_rounds: int = 4) -> bool:
        """Suspected of withholding: results in at least ``min_rounds`` of the audit window's
        rounds and a :meth:`withholding` p-value below ``alpha``."""
        return self._flagged(member_id, self.withholding(member_id), alpha, min_rounds)

    def _flagged(self, member_id: str, p: float | None, alpha: float = 0.01, min_rounds: int = 4) -> bool:
        rounds = sum(1 for a in self._audits if a.results.get(member_id, 0) > 0)
        return p is not None and rounds >= min_rounds and p < alpha

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per member (by id), JSON-ready: for the manager's dashboard. One pass over the plan
        and one over the audit window's totals (a big pool's dashboard asks every few seconds)."""
        rate = self._effective()
        primary: dict[str, list[list[int]]] = {}
        backup: dict[str, list[list[int]]] = {}
        backs: dict[str, set[str]] = {}
        backed: dict[str, set[str]] = {}
        for sub, p, b in zip(self._subspaces, self._primary, self._backup):
            if p is not None:
                primary.setdefault(p, []).append(list(sub.as_range()))
            if b is not None:
                backup.setdefault(b, []).append(list(sub.as_range()))
                if p is not None:
                    backs.setdefault(b, set()).add(p)
                    backed.setdefault(p, set()).add(b)
        totals = self._audit_totals()
        out: dict[str, dict[str, Any]] = {}
        for member_id in sorted(self._members):
            member = self._members[member_id]
            history = member.history
            p_value = self._withholding(member_id, *totals)
            high, std = self.high_reward(member_id), self.std_devs(member_id)
            out[member_id] = {
                "alive": member.alive,
                "last_heartbeat": member.last_heartbeat,
                "throughput": member.throughput,
                "effective_throughput": rate[member_id],
                "subspaces": primary.get(member_id, []),
                "backup_subspaces": backup.get(member_id, []),
                "high_reward": high,
                "std": std,
                "needs_backup": high and max(std.values()) > self.std_threshold,  # needs_backup's rule
                "backup_of": sorted(backs[member_id]) if member_id in backs else None,
                "backed_up_by": min(backed[member_id]) if member_id in backed else None,
                "rounds": len(history),
                "results": sum(r.results for r in history),
                "top_results": sum(r.top_results for r in history),
                "withholding_p": p_value,
                "flagged": self._flagged(member_id, p_value),
            }
        return out
