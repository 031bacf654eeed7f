"""Search spaces: enumeration, canonical genotypes, partitioning and sampling, without torch.

A search space is a finite, totally ordered set of architectures. Every architecture has

- an **index** in ``range(space.size)`` (the total order), and
- a **genotype**: a short canonical string that goes into a block header.

``encode(index) -> genotype`` and ``decode(genotype) -> index`` are mutually inverse
bijections. ``decode`` is strict: a string that is not *exactly* the canonical genotype of some
index (extra whitespace, a wrong operation name, a wrong node index, a missing bar, ...) raises
:class:`GenotypeError` with reason ``bad-genotype``. Hence two distinct valid strings always name
two distinct architectures, and a header's genotype has one spelling.

Partitioning (pool managers split a space among members): :meth:`SearchSpace.partition` cuts the
index order into ``n`` contiguous ranges ``[start, stop)`` with ``start_k = k * size // n``, so
the pieces are disjoint, cover the space and differ in size by at most one. Because the NB201
order is mixed radix with edge 0 most significant, ``n = 5`` fixes the operation of edge 0
(5 subspaces of 3,125) and ``n = 25`` fixes edges 0 and 1 (25 of 625), as in NAS-Bench-201
practice. A :class:`Subspace` is carried over the wire as the two plain ints ``(start, stop)``
and rebuilt with :meth:`SearchSpace.subspace`, which validates them.

Randomness is always an argument (a ``random.Random``); nothing here touches global state.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

__all__ = [
    "GenotypeError",
    "SearchSpace",
    "Subspace",
    "NB201Space",
    "NB201Space1D",
    "MLPSpace",
    "NB201_OPS",
    "NB201_EDGES",
    "MLP_WIDTHS",
    "MLP_MAX_DEPTH",
    "SPACES",
    "get_space",
]

# A genotype longer than this is rejected before any parsing (the longest valid NB201 genotype
# is 125 characters, the longest MLP genotype 19).
MAX_GENOTYPE_CHARS = 256


class GenotypeError(ValueError):
    """An invalid genotype, subspace or space name. ``reason`` is a short stable code.

    Reasons: ``bad-genotype`` (not the canonical string of an architecture of the space),
    ``bad-subspace`` (a range that is empty or outside the space, or a partition count out of
    bounds), ``outside-subspace`` (a genotype that is not in the subspace it was asked to stay
    in), ``unknown-space`` (no space of that name).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@runtime_checkable
class SearchSpace(Protocol):
    """What every search space offers. Implementations are immutable and hashable."""

    @property
    def name(self) -> str:
        """Short stable name recorded in task descriptions (``nb201``, ``mlp``)."""
        ...

    @property
    def size(self) -> int:
        """Number of architectures."""
        ...

    def encode(self, index: int) -> str:
        """Canonical genotype of ``index``; raises ``bad-genotype`` when out of range."""
        ...

    def decode(self, genotype: str) -> int:
        """Index of a canonical genotype; raises ``bad-genotype`` on anything else."""
        ...

    def contains(self, genotype: object) -> bool:
        """Whether ``genotype`` is a canonical genotype of this space (never raises)."""
        ...

    def iterate(self) -> Iterator[str]:
        """All genotypes in index order."""
        ...

    def sample(self, rng: random.Random) -> str:
        """A uniformly random genotype."""
        ...

    def neighbours(self, genotype: str) -> tuple[str, ...]:
        """The genotypes one mutation away, in a fixed order (never the genotype itself)."""
        ...

    def mutate(
        self, genotype: str, rng: random.Random, within: Subspace | None = None
    ) -> str:
        """A random neighbour, optionally constrained to ``within`` (see :func:`_mutate`)."""
        ...

    def full(self) -> Subspace:
        """The whole space as one subspace."""
        ...

    def subspace(self, start: int, stop: int) -> Subspace:
        """The subspace ``[start, stop)``; raises ``bad-subspace`` if empty or out of range."""
        ...

    def partition(self, n: int) -> list[Subspace]:
        """``n`` disjoint covering subspaces whose sizes differ by at most one."""
        ...

    def describe(self, start: int, stop: int) -> str:
        """Human description of the range ``[start, stop)``."""
        ...


@dataclass(frozen=True, slots=True)
class Subspace:
    """The contiguous index range ``[start, stop)`` of ``space``.

    On the wire it is ``(space.name, start, stop)``: use :meth:`as_range` and
    :meth:`SearchSpace.subspace` (which re-validates). Construct it through the space, never
    directly, so the bounds are checked.
    """

    space: SearchSpace
    start: int
    stop: int

    @property
    def size(self) -> int:
        """Number of architectures in the subspace."""
        return self.stop - self.start

    def as_range(self) -> tuple[int, int]:
        """The plain-int wire form ``(start, stop)``."""
        return (self.start, self.stop)

    def contains_index(self, index: int) -> bool:
        """Whether ``index`` lies in ``[start, stop)``."""
        return self.start <= index < self.stop

    def contains(self, genotype: object) -> bool:
        """Whether ``genotype`` is a canonical genotype of the space inside this range."""
        if not self.space.contains(genotype):
            return False
        assert isinstance(genotype, str)
        return self.contains_index(self.space.decode(genotype))

    def iterate(self) -> Iterator[str]:
        """The subspace's genotypes in index order."""
        for index in range(self.start, self.stop):
            yield self.space.encode(index)

    def sample(self, rng: random.Random) -> str:
        """A uniformly random genotype of the subspace."""
        return self.space.encode(rng.randrange(self.start, self.stop))

    def partition(self, n: int) -> list[Subspace]:
        """Split this range further into ``n`` near-equal contiguous pieces (1 <= n <= size)."""
        return [
            self.space.subspace(a, b) for a, b in _split_range(self.start, self.stop, n)
        ]

    def describe(self) -> str:
        """Human description, e.g. ``nb201 |nor_conv_3x3~0|+|*~0|*~1|+|*~0|*~1|*~2|``."""
        return self.space.describe(self.start, self.stop)


def _split_range(start: int, stop: int, n: int) -> list[tuple[int, int]]:
    """Cut ``[start, stop)`` into ``n`` pieces, piece k = ``[start + k*m//n, start + (k+1)*m//n)``.

    With ``m = stop - start``, consecutive boundaries differ by ``floor`` or ``ceil`` of
    ``m / n``, so sizes differ by at most one, and no piece is empty when ``n <= m``.
    """
    size = stop - start
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= size:
        raise GenotypeError("bad-subspace", f"cannot split {size} architectures into {n!r}")
    bounds = [start + k * size // n for k in range(n + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(n)]


def _check_index(index: object, size: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise GenotypeError("bad-genotype", f"index {index!r} not in [0, {size})")
    return index


def _make_subspace(space: SearchSpace, start: object, stop: object) -> Subspace:
    for value in (start, stop):
        if isinstance(value, bool) or not isinstance(value, int):
            raise GenotypeError("bad-subspace", f"bounds must be ints, got {value!r}")
    assert isinstance(start, int) and isinstance(stop, int)
    if not 0 <= start < stop <= space.size:
        raise GenotypeError("bad-subspace", f"[{start}, {stop}) not a non-empty range of {space.size}")
    return Subspace(space, start, stop)


def _mutate(space: SearchSpace, genotype: str, rng: random.Random, within: Subspace | None) -> str:
    """Regularised-evolution mutation: a uniformly random neighbour (one change).

    With ``within`` the genotype must lie in it (else ``outside-subspace``) and only neighbours
    inside it are candidates. A contiguous range can contain a genotype none of whose neighbours
    lie inside it (e.g. a range of size 1, or ``[4, 6)`` in NB201, whose two members differ in
    two edges); then the result is a uniformly random *other* member of ``within``, or the
    genotype itself when ``within`` has size 1. The procedure is deterministic given ``rng``.
    """
    index = space.decode(genotype)
    candidates = space.neighbours(genotype)
    if within is None:
        return rng.choice(candidates)
    if within.space != space:
        raise GenotypeError("bad-subspace", "subspace belongs to another space")
    if not within.contains_index(index):
        raise GenotypeError("outside-subspace", f"{genotype} not in {within.describe()}")
    inside = [g for g in candidates if within.contains_index(space.decode(g))]
    if inside:
        return rng.choice(inside)
    if within.size == 1:
        return genotype
    other = rng.randrange(within.start, within.stop - 1)
    return space.encode(other + 1 if other >= index else other)


# --------------------------------------------------------------------------------------------
# NAS-Bench-201

NB201_OPS: tuple[str, ...] = (
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
)
"""The five NAS-Bench-201 operations, in digit order (``none`` = 0)."""

NB201_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
"""Edges ``(from_node, to_node)`` in genotype order; edge 0 is the most significant digit."""

_NB201_OP_RE = "|".join(NB201_OPS)
_NB201_RE = re.compile(
    rf"\|({_NB201_OP_RE})~0\|\+\|({_NB201_OP_RE})~0\|({_NB201_OP_RE})~1\|\+\|({_NB201_OP_RE})~0\|({_NB201_OP_RE})~1\|({_NB201_OP_RE})~2\|"
)


class _IndexedSpace:
    """What every space built on an index <-> genotype bijection shares."""

    __slots__ = ()

    @property
    def size(self) -> int:
        raise NotImplementedError

    def encode(self, index: int) -> str:
        raise NotImplementedError

    def decode(self, genotype: str) -> int:
        raise NotImplementedError

    def contains(self, genotype: object) -> bool:
        try:
            self.decode(genotype)  # type: ignore[arg-type]
        except GenotypeError:
            return False
        return True

    def iterate(self) -> Iterator[str]:
        for index in range(self.size):
            yield self.encode(index)

    def sample(self, rng: random.Random) -> str:
        return self.encode(rng.randrange(self.size))

    def _space(self) -> SearchSpace:
        return cast(SearchSpace, self)  # every subclass completes the protocol

    def mutate(self, genotype: str, rng: random.Random, within: Subspace | None = None) -> str:
        return _mutate(self._space(), genotype, rng, within)

    def full(self) -> Subspace:
        return Subspace(self._space(), 0, self.size)

    def subspace(self, start: int, stop: int) -> Subspace:
        return _make_subspace(self._space(), start, stop)

    def partition(self, n: int) -> list[Subspace]:
        return [Subspace(self._space(), a, b) for a, b in _split_range(0, self.size, n)]


@dataclass(frozen=True, slots=True)
class NB201Space(_IndexedSpace):
    """The NAS-Bench-201 cell space: 4 nodes, 6 edges, 5 operations, 5**6 = 15,625 cells.

    Genotype: ``|a~0|+|b~0|c~1|+|d~0|e~1|f~2|``, where the group ``j`` (1-based) lists the
    operations on the edges into node ``j`` from nodes ``0..j-1`` (``op~i`` = edge from node i),
    exactly NAS-Bench-201's string. Index: the ops' positions in :data:`NB201_OPS` read as a
    base-5 number, edge 0 (``a``) most significant, so index 0 is the all-``none`` cell and
    index 15,624 is all ``avg_pool_3x3``.

    Isomorphic cells (NAS-Bench-201 has 6,466 unique ones) are *not* merged: every index is its
    own architecture. Neighbours differ in exactly one edge's operation (24 of them).
    """

    @property
    def name(self) -> str:
        return "nb201"

    @property
    def size(self) -> int:
        return int(len(NB201_OPS) ** len(NB201_EDGES))

    def ops_of_index(self, index: int) -> tuple[str, ...]:
        """The six edge operations of ``index``, edge 0 first."""
        _check_index(index, self.size)
        digits = []
        for _ in NB201_EDGES:
            index, digit = divmod(index, len(NB201_OPS))
            digits.append(digit)
        return tuple(NB201_OPS[d] for d in reversed(digits))

    def index_of_ops(self, ops: tuple[str, ...]) -> int:
        """Inverse of :meth:`ops_of_index`; raises ``bad-genotype`` on unknown ops."""
        if len(ops) != len(NB201_EDGES) or any(op not in NB201_OPS for op in ops):
            raise GenotypeError("bad-genotype", f"bad edge operations {ops!r}")
        index = 0
        for op in ops:
            index = index * len(NB201_OPS) + NB201_OPS.index(op)
        return index

    def ops(self, genotype: str) -> tuple[str, ...]:
        """The six edge operations of a canonical genotype (edge order of :data:`NB201_EDGES`)."""
        return self.ops_of_index(self.decode(genotype))

    def encode(self, index: int) -> str:
        a, b, c, d, e, f = self.ops_of_index(index)
        return f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"

    def decode(self, genotype: str) -> int:
        if not isinstance(genotype, str) or len(genotype) > MAX_GENOTYPE_CHARS:
            raise GenotypeError("bad-genotype", "not a short string")
        match = _NB201_RE.fullmatch(genotype)
        if match is None:
            raise GenotypeError("bad-genotype", f"not a canonical NB201 genotype: {genotype[:140]!r}")
        return self.index_of_ops(tuple(match.groups()))

    def neighbours(self, genotype: str) -> tuple[str, ...]:
        """The 24 cells that differ in one edge: edge 0 first, then ops in :data:`NB201_OPS` order."""
        ops = self.ops(genotype)
        out = []
        for edge in range(len(NB201_EDGES)):
            for op in NB201_OPS:
                if op != ops[edge]:
                    changed = ops[:edge] + (op,) + ops[edge + 1 :]
                    out.append(self.encode(self.index_of_ops(changed)))
        return tuple(out)

    def describe(self, start: int, stop: int) -> str:
        """A pattern with ``*`` for free edges when the range fixes a prefix of edges exactly.

        ``[0, 15625)`` -> all ``*``; ``[3125, 6250)`` -> edge 0 fixed to ``skip_connect``;
        otherwise ``nb201[start:stop)``.
        """
        sub = self.subspace(start, stop)
        radix = len(NB201_OPS)
        for fixed in range(len(NB201_EDGES) + 1):
            block = radix ** (len(NB201_EDGES) - fixed)
            if sub.size == block and start % block == 0:
                prefix = self.ops_of_index(start)[:fixed]
                ops = prefix + ("*",) * (len(NB201_EDGES) - fixed)
                a, b, c, d, e, f = ops
                return f"nb201 |{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"
        return f"nb201[{start}:{stop})"


@dataclass(frozen=True, slots=True)
class NB201Space1D(NB201Space):
    """The same 15,625 NAS-Bench-201 cells, same genotypes and order, built as the 1-D network
    for sequences (MNIST-1D): only the name differs, and :mod:`.model` builds by name."""

    @property
    def name(self) -> str:
        return "nb201-1d"

    def describe(self, start: int, stop: int) -> str:
        """As :meth:`NB201Space.describe`, with ``nb201-1d`` in place of ``nb201``."""
        return "nb201-1d" + NB201Space.describe(self, start, stop)[len("nb201"):]


# --------------------------------------------------------------------------------------------
# A small MLP space, to show the interface is not hard-wired to cells.

MLP_WIDTHS: tuple[int, ...] = (16, 32, 64, 128)
"""Hidden-layer width choices, in digit order."""

MLP_MAX_DEPTH = 4
"""Hidden layers: 1 to 4."""

_MLP_W_RE = "|".join(str(w) for w in MLP_WIDTHS)
_MLP_RE = re.compile(rf"mlp:(?:{_MLP_W_RE})(?:-(?:{_MLP_W_RE})){{0,{MLP_MAX_DEPTH - 1}}}")


@dataclass(frozen=True, slots=True)
class MLPSpace(_IndexedSpace):
    """Multi-layer perceptrons: 1..4 hidden layers, each 16, 32, 64 or 128 wide (340 nets).

    Genotype: ``mlp:`` then the hidden widths joined by ``-``, first layer first
    (``mlp:64-32``). Index: all depth-1 nets first, then depth 2, ...; within a depth the width
    digits read as a base-4 number, first layer most significant. Neighbours: change one
    layer's width, append a layer, or drop the last layer (depth stays in 1..4).
    """

    @property
    def name(self) -> str:
        return "mlp"

    @property
    def size(self) -> int:
        return sum(int(len(MLP_WIDTHS) ** d) for d in range(1, MLP_MAX_DEPTH + 1))

    def widths_of_index(self, index: int) -> tuple[int, ...]:
        """Hidden widths of ``index``, first layer first."""
        _check_index(index, self.size)
        radix = len(MLP_WIDTHS)
        depth = 1
        while index >= radix**depth:
            index -= radix**depth
            depth += 1
        digits = []
        for _ in range(depth):
            index, digit = divmod(index, radix)
            digits.append(digit)
        return tuple(MLP_WIDTHS[d] for d in reversed(digits))

    def index_of_widths(self, widths: tuple[int, ...]) -> int:
        """Inverse of :meth:`widths_of_index`; raises ``bad-genotype`` on bad widths."""
        if not 1 <= len(widths) <= MLP_MAX_DEPTH or any(w not in MLP_WIDTHS for w in widths):
            raise GenotypeError("bad-genotype", f"bad widths {widths!r}")
        radix = len(MLP_WIDTHS)
        index = sum(int(radix**d) for d in range(1, len(widths)))
        value = 0
        for w in widths:
            value = value * radix + MLP_WIDTHS.index(w)
        return index + value

    def widths(self, genotype: str) -> tuple[int, ...]:
        """Hidden widths of a canonical genotype."""
        return self.widths_of_index(self.decode(genotype))

    def encode(self, index: int) -> str:
        return "mlp:" + "-".join(str(w) for w in self.widths_of_index(index))

    def decode(self, genotype: str) -> int:
        if not isinstance(genotype, str) or len(genotype) > MAX_GENOTYPE_CHARS:
            raise GenotypeError("bad-genotype", "not a short string")
        if _MLP_RE.fullmatch(genotype) is None:
            raise GenotypeError("bad-genotype", f"not a canonical MLP genotype: {genotype[:140]!r}")
        return self.index_of_widths(tuple(int(w) for w in genotype[4:].split("-")))

    def neighbours(self, genotype: str) -> tuple[str, ...]:
        """Width changes (layer 0 first), then append 16..128, then drop the last layer."""
        ws = self.widths(genotype)
        out: list[tuple[int, ...]] = []
        for layer in range(len(ws)):
            for w in MLP_WIDTHS:
                if w != ws[layer]:
                    out.append(ws[:layer] + (w,) + ws[layer + 1 :])
        if len(ws) < MLP_MAX_DEPTH:
            out.extend(ws + (w,) for w in MLP_WIDTHS)
        if len(ws) > 1:
            out.append(ws[:-1])
        return tuple(self.encode(self.index_of_widths(x)) for x in out)

    def describe(self, start: int, stop: int) -> str:
        """``mlp[start:stop)`` with the first and last member, e.g. ``mlp[0:4) mlp:16..mlp:128``."""
        self.subspace(start, stop)
        return f"mlp[{start}:{stop}) {self.encode(start)}..{self.encode(stop - 1)}"


SPACES: dict[str, SearchSpace] = {
    "nb201": NB201Space(),
    "nb201-1d": NB201Space1D(),
    "mlp": MLPSpace(),
}
"""The known spaces by name."""


def get_space(name: str) -> SearchSpace:
    """The space called ``name``; raises ``unknown-space``."""
    try:
        return SPACES[name]
    except (KeyError, TypeError):
        raise GenotypeError("unknown-space", repr(name)) from None
