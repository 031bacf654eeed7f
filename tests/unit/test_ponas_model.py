"""Models and weights (consensus.engines.ponas.model, .weights).

Proves: the NB201 cell computes NAS-Bench-201's semantics (node sums, 'none' as zeros, skip,
pool) checked against hand computations; networks for NB201 and MLP genotypes give (N, 10)
logits for digits and CIFAR shapes; building a model never touches torch's global RNG and is a
function of the generator; eval mode is batch-independent (running BatchNorm statistics);
weights serialise to the same bytes regardless of state-dict order and hash with sha256;
``load_weights`` round-trips and rejects, with the documented reason and never another
exception type, oversize data, garbage, truncations and bit flips (hypothesis), non-canonical
encodings, wrong names, shapes and dtypes, NaN/inf and negative variances, and bad genotypes.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from consensus.engines.ponas.model import (
    NB201Cell,
    build_model,
    initialize,
    parameter_count,
)
from consensus.engines.ponas.space import GenotypeError, NB201Space
from consensus.engines.ponas.weights import (
    WeightsError,
    load_weights,
    serialize_weights,
    weights_hash,
)

NB = NB201Space()
CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
MIXED = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
NONE = NB.encode(0)


def _cell(ops: tuple[str, ...], channels: int = 4) -> NB201Cell:
    return NB201Cell(ops, channels).eval()


def test_cell_semantics_by_hand() -> None:
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    n, s, p = "none", "skip_connect", "avg_pool_3x3"
    # edges: (0,1) (0,2) (1,2) (0,3) (1,3) (2,3)
    assert torch.equal(_cell((n,) * 6)(x), torch.zeros_like(x))
    assert torch.equal(_cell((n, n, n, s, n, n))(x), x)
    assert torch.equal(_cell((s, n, n, n, s, n))(x), x)  # 0 -> 1 -> 3
    assert torch.equal(_cell((s, s, s, s, n, s))(x), 3 * x)  # node2 = 2x, node3 = x + 2x
    assert torch.equal(_cell((s, n, n, n, n, s))(x), torch.zeros_like(x))  # node 2 is empty
    pooled = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    assert torch.allclose(_cell((n, n, n, p, n, n))(x), pooled)
    assert torch.allclose(_cell((p, n, n, n, s, n))(x), pooled)
    conv = _cell((n, n, n, "nor_conv_3x3", n, n))
    rcb = conv.edges[3]
    assert torch.allclose(conv(x), rcb(x))
    relu, conv2d, bn = list(rcb.modules())[2:5]
    assert isinstance(relu, torch.nn.ReLU) and isinstance(conv2d, torch.nn.Conv2d)
    assert conv2d.kernel_size == (3, 3) and conv2d.padding == (1, 1)
    assert isinstance(bn, torch.nn.BatchNorm2d) and bn.track_running_stats


@pytest.mark.parametrize("genotype", [CONV, MIXED, NONE])
def test_nb201_network_shapes(genotype: str) -> None:
    model = build_model("nb201", genotype).eval()
    assert model(torch.zeros(5, 1, 8, 8)).shape == (5, 10)
    cifar = build_model("nb201", genotype, 10, (3, 32, 32)).eval()
    assert cifar(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_none_cell_network_ignores_input() -> None:
    model = build_model("nb201", NONE).eval()
    out = model(torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(out, out[:1].expand_as(out))


def test_parameter_counts() -> None:
    counts = [parameter_count(build_model("nb201", NB.encode(i))) for i in range(0, NB.size, 97)]
    assert min(counts) > 1_000 and max(counts) < 30_000
    # all-conv3x3 has the most parameters, all-none the fewest (stem, reduction, head only)
    assert parameter_count(build_model("nb201", CONV)) >= max(counts)
    assert parameter_count(build_model("nb201", NONE)) <= min(counts)
    mlp = build_model("mlp", "mlp:64-32")
    assert parameter_count(mlp) == 64 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10
    assert mlp(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_build_does_not_touch_global_rng_and_follows_generator() -> None:
    before = torch.get_rng_state()
    a = build_model("nb201", CONV, generator=torch.Generator().manual_seed(5))
    b = build_model("nb201", CONV, generator=torch.Generator().manual_seed(5))
    c = build_model("nb201", CONV, generator=torch.Generator().manual_seed(6))
    assert torch.equal(before, torch.get_rng_state())
    assert serialize_weights(a) == serialize_weights(b) != serialize_weights(c)


def test_initialize_refuses_unknown_parameters() -> None:
    class Odd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(3))

    with pytest.raises(TypeError):
        initialize(Odd(), torch.Generator())


def test_bad_genotype_and_space() -> None:
    with pytest.raises(GenotypeError) as e:
        build_model("nb201", "|nope~0|")
    assert e.value.reason == "bad-genotype"
    with pytest.raises(GenotypeError) as e:
        build_model("resnet", CONV)
    assert e.value.reason == "unknown-space"


def test_eval_is_batch_independent() -> None:
    model = build_model("nb201", MIXED, generator=torch.Generator().manual_seed(2))
    model.train()
    with torch.no_grad():  # move BN running statistics away from their initial values
        for _ in range(3):
            model(torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2)
    model.eval()
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(8)])
        shuffled = model(x.flip(0)).flip(0)
    assert torch.allclose(full, single, atol=1e-5) and torch.allclose(full, shuffled, atol=1e-5)


# ---------------------------------------------------------------------------- weights


def _trained_like(genotype: str = MIXED, seed: int = 7) -> torch.nn.Module:
    model = build_model("nb201", genotype, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        model.train()(torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(seed)))
    return model.eval()


MODEL = _trained_like()
DATA = serialize_weights(MODEL)


def _header(data: bytes) -> tuple[dict[str, dict[str, object]], bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def test_serialisation_is_canonical_and_hashed() -> None:
    state = MODEL.state_dict()
    reordered = dict(reversed(list(state.items())))
    assert st_save({k: v.contiguous() for k, v in reordered.items()}) == DATA
    assert serialize_weights(_trained_like()) == DATA
    assert weights_hash(DATA) == hashlib.sha256(DATA).digest() and len(weights_hash(DATA)) == 32
    header, _ = _header(DATA)
    assert "__metadata__" not in header


def test_load_roundtrip() -> None:
    loaded = load_weights(DATA, "nb201", MIXED)
    assert not loaded.training
    assert serialize_weights(loaded) == DATA
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert torch.equal(loaded(x), MODEL(x))
    mlp = build_model("mlp", "mlp:32-16")
    assert serialize_weights(load_weights(serialize_weights(mlp), "mlp", "mlp:32-16")) == serialize_weights(mlp)


def _reason(data: bytes, genotype: str = MIXED, max_bytes: int = 4_000_000) -> str | None:
    try:
        load_weights(data, "nb201", genotype, max_bytes)
    except WeightsError as e:
        return e.reason
    return None


def test_size_limit_checked_first() -> None:
    assert _reason(DATA, max_bytes=len(DATA) - 1) == "weights-too-large"
    assert _reason(b"\xff" * 100, max_bytes=99) == "weights-too-large"
    assert _reason(DATA, max_bytes=len(DATA)) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_garbage_is_a_format_error(data: bytes) -> None:
    assert _reason(data) == "bad-weights-format"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(DATA) - 1))
def test_truncations_are_format_errors(cut: int) -> None:
    assert _reason(DATA[:cut]) == "bad-weights-format"


def test_every_truncation_of_the_header_is_rejected() -> None:
    n = struct.unpack("<Q", DATA[:8])[0]
    for cut in range(0, 8 + n + 8):
        assert _reason(DATA[:cut]) == "bad-weights-format"


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_bit_flips_never_crash(data: st.DataObject) -> None:
    n = struct.unpack("<Q", DATA[:8])[0]
    # half the flips land in the 8-byte length or JSON header, half anywhere
    limit = 8 + n if data.draw(st.booleans()) else len(DATA)
    pos = data.draw(st.integers(0, limit - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(DATA)
    flipped[pos] ^= 1 << bit
    reason = _reason(bytes(flipped))
    if pos >= 8 + n:  # a flip in tensor data is a different (possibly invalid) set of values
        assert reason in (None, "bad-weights-value")
    else:
        assert reason in ("bad-weights-format", "bad-weights-shape")


def test_non_canonical_encodings_rejected() -> None:
    tensors = st_load(DATA)
    assert _reason(st_save(tensors, metadata={"k": "v"})) == "bad-weights-format"
    n = struct.unpack("<Q", DATA[:8])[0]
    header = DATA[8 : 8 + n]
    padded = header.rstrip(b" ") + b" " * (len(header) - len(header.rstrip(b" ")) + 8)
    spaced = struct.pack("<Q", len(padded)) + padded + DATA[8 + n :]
    st_load(spaced)  # the parser itself accepts the extra padding...
    assert _reason(spaced) == "bad-weights-format"  # ...the canonical check does not
    assert _reason(DATA + b"\x00") == "bad-weights-format"


def test_wrong_tensors_are_shape_errors() -> None:
    tensors = st_load(DATA)
    # conv1x1 (edge 1) declared as conv3x3: same names, other shapes
    as_3x3 = MIXED.replace("nor_conv_1x1~0", "nor_conv_3x3~0")
    assert _reason(DATA, genotype=as_3x3) == "bad-weights-shape"
    assert _reason(DATA, genotype=CONV) == "bad-weights-shape"
    missing = dict(tensors)
    missing.pop("classifier.bias")
    assert _reason(st_save(missing)) == "bad-weights-shape"
    extra = dict(tensors, **{"extra": torch.zeros(1)})
    assert _reason(st_save(extra)) == "bad-weights-shape"
    as_double = dict(tensors, **{"classifier.weight": tensors["classifier.weight"].double()})
    assert _reason(st_save(as_double)) == "bad-weights-shape"
    reshaped = dict(tensors, **{"classifier.weight": tensors["classifier.weight"].reshape(-1)})
    assert _reason(st_save(reshaped)) == "bad-weights-shape"


@pytest.mark.parametrize(
    "name, value",
    [
        ("classifier.weight", float("nan")),
        ("stem.0.weight", float("inf")),
        ("stem.1.running_mean", float("-inf")),
        ("stem.1.running_var", -1.0),
    ],
)
def test_bad_values_rejected(name: str, value: float) -> None:
    tensors = st_load(DATA)
    t = tensors[name].clone()
    t.view(-1)[0] = value
    assert _reason(st_save(dict(tensors, **{name: t}))) == "bad-weights-value"


def test_bad_genotype_reported() -> None:
    assert _reason(DATA, genotype="|nor_conv_3x3~0|") == "bad-genotype"
    with pytest.raises(WeightsError):
        load_weights("not bytes", "nb201", MIXED)  # type: ignore[arg-type]


def test_weights_of_random_genotypes_roundtrip() -> None:
    rng = random.Random(11)
    for _ in range(5):
        g = NB.sample(rng)
        data = serialize_weights(build_model("nb201", g, generator=torch.Generator().manual_seed(1)))
        assert serialize_weights(load_weights(data, "nb201", g)) == data
