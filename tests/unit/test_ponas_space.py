"""Search spaces (consensus.engines.ponas.space) without torch.

Proves: the NB201 space has exactly 15,625 genotypes in NAS-Bench-201's string format, with
encode/decode a bijection over all of them and the documented mixed-radix order; decoding
rejects malformed strings (a hand list and hypothesis-generated corruptions of valid ones) with
reason ``bad-genotype``; ``partition(n)`` is disjoint, covering and balanced for every n in
1..200 (and the 5 / 25 NAS-Bench-201 prefix subspaces); subspaces round-trip through plain
ints, sample and mutate inside themselves; mutation changes exactly one edge; results depend
only on the Random passed in; the MLP space satisfies the same interface; and importing the
module does not import torch.
"""

from __future__ import annotations

import os
import pathlib
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.engines.ponas.space import (
    MLP_WIDTHS,
    NB201_OPS,
    SPACES,
    GenotypeError,
    MLPSpace,
    NB201Space,
    SearchSpace,
    get_space,
)

NB = NB201Space()
MLP = MLPSpace()
ALL_NB = [NB.encode(i) for i in range(NB.size)]
VALID = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def test_nb201_size_and_known_strings() -> None:
    assert NB.size == 15_625 == len(NB201_OPS) ** 6
    assert NB.encode(0) == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert NB.encode(1) == "|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"
    assert NB.encode(3125) == "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    # The ResNet-like cell from the NAS-Bench-201 paper parses, edge 0 most significant.
    assert NB.ops(VALID) == (
        "nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3", "skip_connect",
    )
    assert NB.decode(VALID) == ((((3 * 5 + 3) * 5 + 4) * 5 + 1) * 5 + 3) * 5 + 1


def test_nb201_bijection_over_all_indices() -> None:
    assert len(set(ALL_NB)) == NB.size
    for index, genotype in enumerate(ALL_NB):
        assert NB.decode(genotype) == index
    assert list(NB.iterate()) == ALL_NB


@pytest.mark.parametrize("bad", [-1, NB.size, 10**9, True, 1.0, "3"])
def test_encode_rejects_bad_index(bad: object) -> None:
    with pytest.raises(GenotypeError) as e:
        NB.encode(bad)  # type: ignore[arg-type]
    assert e.value.reason == "bad-genotype"


MALFORMED = [
    "",
    "|",
    VALID + " ",
    " " + VALID,
    VALID + "\n",
    VALID.replace("|+|", "| + |", 1),
    VALID[1:],  # missing leading bar
    VALID[:-1],  # missing trailing bar
    VALID.replace("~1", "~0", 1),  # wrong source index
    VALID.replace("~0", "~1", 1),
    VALID.replace("nor_conv_3x3", "conv_3x3", 1),  # wrong op name
    VALID.replace("nor_conv_3x3", "NOR_CONV_3X3", 1),
    VALID.replace("skip_connect", "skip", 1),
    VALID.replace("|+|", "||", 1),
    VALID.replace("|+|", "|", 1),
    "|none~0|+|none~0|none~1|",  # too few nodes
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|",  # too many
    "|none~0|+|none~1|none~0|+|none~0|none~1|none~2|",  # wrong order
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|none~3|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~２|",  # non-ASCII digit
    "mlp:64",
    VALID * 3,
]


@pytest.mark.parametrize("bad", MALFORMED)
def test_decode_rejects_malformed(bad: str) -> None:
    with pytest.raises(GenotypeError) as e:
        NB.decode(bad)
    assert e.value.reason == "bad-genotype"
    assert not NB.contains(bad)


@pytest.mark.parametrize("bad", [None, 5, b"|none~0|", ["x"]])
def test_decode_rejects_non_strings(bad: object) -> None:
    with pytest.raises(GenotypeError):
        NB.decode(bad)  # type: ignore[arg-type]
    assert not NB.contains(bad)


_VALID_SET = frozenset(ALL_NB)


@st.composite
def corrupted(draw: st.DrawFn) -> str:
    """A valid genotype with one random edit: insert, delete or replace a character."""
    base = draw(st.sampled_from(ALL_NB))
    pos = draw(st.integers(0, len(base)))
    kind = draw(st.sampled_from(["insert", "delete", "replace"]))
    ch = draw(st.characters(codec="utf-8") | st.sampled_from(list("|+~0123_ abc")))
    if kind == "insert":
        return base[:pos] + ch + base[pos:]
    if kind == "delete" and pos < len(base):
        return base[:pos] + base[pos + 1 :]
    if pos < len(base):
        return base[:pos] + ch + base[pos + 1 :]
    return base + ch


@settings(max_examples=400, deadline=None)
@given(corrupted())
def test_decode_rejects_every_corruption(text: str) -> None:
    # A one-character edit can only give another valid genotype by swapping within op names
    # in a way that lands on another op; those must decode to *that* genotype, not be rejected.
    if text in _VALID_SET:
        assert NB.encode(NB.decode(text)) == text
        return
    with pytest.raises(GenotypeError) as e:
        NB.decode(text)
    assert e.value.reason == "bad-genotype"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_decode_random_text_is_rejected_or_canonical(text: str) -> None:
    for space in SPACES.values():
        if space.contains(text):
            assert space.encode(space.decode(text)) == text
        else:
            with pytest.raises(GenotypeError):
                space.decode(text)


def test_partition_all_n_up_to_200() -> None:
    for space in (NB, MLP):
        for n in range(1, 201):
            parts = space.partition(n)
            assert len(parts) == n
            sizes = [p.size for p in parts]
            assert max(sizes) - min(sizes) <= 1
            assert min(sizes) >= 1
            # contiguous, disjoint and covering: each starts where the previous stopped
            assert parts[0].start == 0 and parts[-1].stop == space.size
            for a, b in zip(parts, parts[1:]):
                assert a.stop == b.start
            assert sum(sizes) == space.size


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 200), st.integers(0, NB.size - 1))
def test_every_genotype_in_exactly_one_part(n: int, index: int) -> None:
    genotype = NB.encode(index)
    owners = [k for k, p in enumerate(NB.partition(n)) if p.contains(genotype)]
    assert len(owners) == 1


def test_partition_full_space_and_bounds() -> None:
    assert NB.partition(NB.size)[123].as_range() == (123, 124)
    for bad in (0, -1, NB.size + 1, True, 2.0):
        with pytest.raises(GenotypeError) as e:
            NB.partition(bad)  # type: ignore[arg-type]
        assert e.value.reason == "bad-subspace"


def test_partition_5_and_25_fix_edge_prefixes() -> None:
    for k, part in enumerate(NB.partition(5)):
        assert part.size == 3125
        assert {NB.ops(g)[0] for g in part.iterate()} == {NB201_OPS[k]}
        assert NB201_OPS[k] + "~0" in part.describe() and "*~0" in part.describe()
    for k, part in enumerate(NB.partition(25)):
        assert part.size == 625
        prefixes = {NB.ops(g)[:2] for g in part.iterate()}
        assert prefixes == {(NB201_OPS[k // 5], NB201_OPS[k % 5])}
    assert NB.full().describe() == "nb201 |*~0|+|*~0|*~1|+|*~0|*~1|*~2|"
    assert NB.partition(7)[1].describe() == "nb201[2232:4464)"


def test_subspace_wire_roundtrip_and_validation() -> None:
    for part in NB.partition(37):
        start, stop = part.as_range()
        assert type(start) is int and type(stop) is int
        assert NB.subspace(start, stop) == part
    bad: list[tuple[object, object]] = [(0, 0), (5, 4), (-1, 3), (0, NB.size + 1), (True, 3), (0, 2.0)]
    for lo, hi in bad:
        with pytest.raises(GenotypeError) as e:
            NB.subspace(lo, hi)  # type: ignore[arg-type]
        assert e.value.reason == "bad-subspace"


def test_subspace_partition_further() -> None:
    part = NB.partition(5)[2]
    sub = part.partition(5)
    assert [s.size for s in sub] == [625] * 5
    assert sub[0].start == part.start and sub[-1].stop == part.stop


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 200), st.integers(0, 2**32), st.data())
def test_sample_stays_inside_subspace(n: int, seed: int, data: st.DataObject) -> None:
    parts = NB.partition(n)
    part = parts[data.draw(st.integers(0, n - 1))]
    rng = random.Random(seed)
    for _ in range(5):
        assert part.contains(part.sample(rng))


def test_sampling_depends_only_on_given_rng() -> None:
    random.seed(1)
    a = [NB.sample(random.Random(7)) for _ in range(3)]
    random.seed(2)
    b = [NB.sample(random.Random(7)) for _ in range(3)]
    assert a == b
    rng1, rng2 = random.Random(99), random.Random(99)
    assert [NB.sample(rng1) for _ in range(50)] == [NB.sample(rng2) for _ in range(50)]
    assert len({NB.sample(rng1) for _ in range(50)}) > 40


def _edges_changed(a: str, b: str) -> int:
    return sum(x != y for x, y in zip(NB.ops(a), NB.ops(b)))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, NB.size - 1), st.integers(0, 2**32))
def test_mutate_changes_one_edge(index: int, seed: int) -> None:
    g = NB.encode(index)
    child = NB.mutate(g, random.Random(seed))
    assert NB.contains(child) and _edges_changed(g, child) == 1
    assert len(NB.neighbours(g)) == 24 and len(set(NB.neighbours(g))) == 24


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 400), st.integers(0, 2**32), st.data())
def test_mutate_within_subspace_stays_inside(n: int, seed: int, data: st.DataObject) -> None:
    part = NB.partition(n)[data.draw(st.integers(0, n - 1))]
    rng = random.Random(seed)
    g = part.sample(rng)
    child = NB.mutate(g, rng, within=part)
    assert part.contains(child)
    if part.size > 1:
        assert child != g
    if any(part.contains(x) for x in NB.neighbours(g)):
        assert _edges_changed(g, child) == 1


def test_mutate_edge_cases() -> None:
    rng = random.Random(0)
    single = NB.subspace(10, 11)
    assert NB.mutate(NB.encode(10), rng, within=single) == NB.encode(10)
    # [4, 6): ...|avg_pool_3x3~2| and ...|skip_connect~1|none~2|: two edges apart, no neighbour
    pair = NB.subspace(4, 6)
    assert NB.mutate(NB.encode(4), rng, within=pair) == NB.encode(5)
    with pytest.raises(GenotypeError) as e:
        NB.mutate(NB.encode(0), rng, within=NB.partition(5)[1])
    assert e.value.reason == "outside-subspace"
    with pytest.raises(GenotypeError):
        NB.mutate(MLP.encode(0), rng, within=MLP.full())


def test_mlp_space_satisfies_interface() -> None:
    assert isinstance(NB, SearchSpace) and isinstance(MLP, SearchSpace)
    assert get_space("nb201") is SPACES["nb201"] and get_space("mlp") is SPACES["mlp"]
    assert MLP.size == 4 + 16 + 64 + 256
    genotypes = list(MLP.iterate())
    assert len(set(genotypes)) == MLP.size
    assert all(MLP.decode(g) == i for i, g in enumerate(genotypes))
    assert genotypes[0] == "mlp:16" and genotypes[-1] == "mlp:128-128-128-128"
    assert MLP.widths("mlp:64-32") == (64, 32)
    for bad in ["mlp:", "mlp:64-", "mlp:64-32-16-16-16", "mlp:63", "mlp:064", "MLP:64", "mlp:64 ", VALID]:
        with pytest.raises(GenotypeError):
            MLP.decode(bad)
    rng = random.Random(3)
    for _ in range(100):
        g = MLP.sample(rng)
        child = MLP.mutate(g, rng)
        assert child != g and MLP.contains(child)
        assert abs(len(MLP.widths(child)) - len(MLP.widths(g))) <= 1
    assert all(w in MLP_WIDTHS for g in genotypes for w in MLP.widths(g))
    with pytest.raises(GenotypeError) as e:
        get_space("nope")
    assert e.value.reason == "unknown-space"


def test_space_module_does_not_import_torch() -> None:
    code = (
        "import sys, consensus.engines.ponas.space as s, random\n"
        "s.NB201Space().partition(25); s.NB201Space().sample(random.Random(1))\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    root = str(pathlib.Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)
