"""The MNIST-1D generator and task family (consensus.engines.ponas.mnist1d).

Proves: the set generated for a fixed key and the default task is pinned by its digest (a
change to the generator, on any machine, fails here), and a fresh process with another
``PYTHONHASHSEED`` and 1 or 2 numpy threads derives the same digests without importing torch;
labels are balanced, in 0..9, shuffled; a set is a function of (key, n, params, domain) and
changes with each; with noise, scale, shear and translation off, every sample of a class is the
same dilated template; the Irwin-Hall normals have unit variance in Q16 and the binomial
smoothing keeps constants; ``draw_task_params`` stays in ``TASK_RANGES`` over 200 keys, varies
with the key, and no parameter set in the family lets a digit wrap around the translation;
bad parameters, keys, counts and arrays are refused with stable reasons.
"""

from __future__ import annotations

import hashlib
import math
import os
import pathlib
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from consensus.engines.ponas.data import DataError, HashStream
from consensus.engines.ponas.mnist1d import (
    DEFAULT_TASK,
    TASK_RANGES,
    TEMPLATE_LEN,
    TaskParams,
    _normals,
    _smooth,
    dataset_digest,
    draw_task_params,
    generate,
)

ROOT = str(pathlib.Path(__file__).resolve().parents[2])

VECTOR_KEY = bytes(range(32))
VECTOR_DOMAIN = b"test-vector"
# Pinned: generate(VECTOR_KEY, 1000, DEFAULT_TASK, VECTOR_DOMAIN). Changing the generator changes
# every chain's data; update only together with a new generator version.
VECTOR_DIGEST = "e91e5d921f56884cb5dc5892dfc34b60c686893f74a35258257f9cf7cfcf5b91"
VECTOR_Y_HEAD = [0, 7, 9, 4, 1, 2, 1, 2, 9, 3, 4, 5]
VECTOR_X0_HEAD = [-580, -599, -645, -763, -512, -331, -163, -261, -391, -388]
# draw_task_params(VECTOR_KEY), and 500 samples generated with it.
DRAWN_PARAMS = TaskParams(
    template_order=(5, 6, 2, 1, 0, 8, 7, 3, 9, 4), padding_min=34, padding_max=58, max_translation=45,
    scale_q16=32271, shear_q16=65511, corr_noise_q16=15781, corr_smoothing=18, iid_noise_q16=1256,
)
DRAWN_DIGEST = "8d86ea25361d006b9c3c8f9d58c1f9403b74b98072db4f12b1b0ecb34d274907"

_CHILD = """
import sys
from consensus.engines.ponas.mnist1d import DEFAULT_TASK, dataset_digest, draw_task_params, generate
key = bytes(range(32))
print(dataset_digest(*generate(key, 1000, DEFAULT_TASK, b"test-vector")).hex())
print(dataset_digest(*generate(key, 500, draw_task_params(key), b"test-vector")).hex())
print("torch" in sys.modules)
"""


def test_vector_is_pinned() -> None:
    x, y = generate(VECTOR_KEY, 1000, DEFAULT_TASK, VECTOR_DOMAIN)
    assert y[:12].tolist() == VECTOR_Y_HEAD
    assert x[0, :10].tolist() == VECTOR_X0_HEAD
    assert dataset_digest(x, y).hex() == VECTOR_DIGEST
    assert draw_task_params(VECTOR_KEY) == DRAWN_PARAMS
    assert dataset_digest(*generate(VECTOR_KEY, 500, DRAWN_PARAMS, VECTOR_DOMAIN)).hex() == DRAWN_DIGEST


@pytest.mark.parametrize(("hashseed", "threads"), [("1", "1"), ("98765", "2")])
def test_fresh_process_derives_the_same_data(hashseed: str, threads: str) -> None:
    env = dict(os.environ, PYTHONHASHSEED=hashseed, PYTHONPATH=ROOT)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = threads
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    assert out == [VECTOR_DIGEST, DRAWN_DIGEST, "False"]


def test_shapes_dtypes_and_read_only() -> None:
    x, y = generate(b"k", 30, DEFAULT_TASK)
    assert x.shape == (30, 40) and x.dtype == np.int16
    assert y.shape == (30,) and y.dtype == np.uint8
    assert not x.flags.writeable and not y.flags.writeable


def test_labels_are_balanced_in_range_and_shuffled() -> None:
    _, y = generate(b"labels", 1000, DEFAULT_TASK)
    assert np.bincount(y, minlength=10).tolist() == [100] * 10
    assert int(y.max()) <= 9
    assert y.tolist() != sorted(y.tolist()) and y[:10].tolist() != list(range(10))
    _, y = generate(b"labels", 1003, DEFAULT_TASK)
    assert np.bincount(y, minlength=10).tolist() == [101] * 3 + [100] * 7


def test_deterministic_per_key_and_different_across_keys_domains_params() -> None:
    base = dataset_digest(*generate(b"key-a", 200, DEFAULT_TASK, b"train"))
    assert dataset_digest(*generate(b"key-a", 200, DEFAULT_TASK, b"train")) == base
    others = [
        generate(b"key-b", 200, DEFAULT_TASK, b"train"),
        generate(b"key-a", 200, DEFAULT_TASK, b"test"),
        generate(b"key-a", 200, replace(DEFAULT_TASK, iid_noise_q16=1300), b"train"),
        generate(b"key-a", 200, replace(DEFAULT_TASK, template_order=(1, 0, 2, 3, 4, 5, 6, 7, 8, 9)), b"train"),
    ]
    digests = {base} | {dataset_digest(*o) for o in others}
    assert len(digests) == 5
    xa, _ = generate(b"key-a", 200, DEFAULT_TASK, b"train")
    xb, _ = others[0]
    assert np.mean(xa != xb) > 0.9  # not merely a shifted copy


def test_without_randomness_a_class_is_its_dilated_template() -> None:
    still = TaskParams(
        padding_min=36, padding_max=36, max_translation=1, scale_q16=0, shear_q16=0, corr_noise_q16=0,
        iid_noise_q16=0,
    )
    x, y = generate(b"still", 100, still)
    rows = {}
    for label in range(10):
        members = x[y == label]
        assert (members == members[0]).all()
        rows[label] = members[0]
    assert len({r.tobytes() for r in rows.values()}) == 10
    # D = L = 48: the template fills the first 12/47 of the span, then exact zeros.
    zero_from = -(-11 * 39 // 47)  # the first output point at source position >= 11 (template[11] = 0)
    assert all((r[zero_from:] == 0).all() for r in rows.values())
    assert int(np.abs(rows[0]).max()) == round(31056 / 16)  # digit 0's plateau, Q16 -> Q12


def test_irwin_hall_normals_and_binomial_smoothing() -> None:
    z = _normals(HashStream(b"normals", b"t"), (400, 250)) / 65536.0
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01 and np.abs(z).max() <= 3.0
    const = np.full((2, 72), 12345, dtype=np.int64)
    assert (_smooth(const, 16) == 12345).all()
    spike = np.zeros((1, 72), dtype=np.int64)
    spike[0, 36] = 1 << 16
    assert _smooth(spike, 16)[0, 28:45].tolist() == [math.comb(16, i) for i in range(17)]


def test_draw_task_params_stays_in_ranges_and_varies() -> None:
    drawn = [draw_task_params(hashlib.sha256(i.to_bytes(4, "big")).digest()) for i in range(200)]
    for p in drawn:
        for name, (lo, hi) in TASK_RANGES.items():
            assert lo <= getattr(p, name) <= hi, name
        assert p.corr_smoothing % 2 == 0 and p.final_length == 40
        assert sorted(p.template_order) == list(range(10))
    assert len(set(drawn)) == 200
    for name in TASK_RANGES:
        assert len({getattr(p, name) for p in drawn}) > 1, name
    assert len({p.template_order for p in drawn}) > 150
    lo_d, hi_d = TASK_RANGES["scale_q16"]
    assert lo_d < DEFAULT_TASK.scale_q16 < hi_d


def test_no_parameter_set_of_the_family_wraps_a_digit() -> None:
    pmin_lo, pmin_hi = TASK_RANGES["padding_min"]
    pmax_lo, pmax_hi = TASK_RANGES["padding_max"]
    _, t_hi = TASK_RANGES["max_translation"]
    for pmin in range(pmin_lo, pmin_hi + 1):
        for pmax in range(pmax_lo, pmax_hi + 1):
            d = TEMPLATE_LEN + pmax
            width = -(-TEMPLATE_LEN * (d - 1) // (pmin + TEMPLATE_LEN - 1))  # dilated digit points
            assert (t_hi - 1) + width <= d, (pmin, pmax)


def test_generate_with_drawn_params() -> None:
    x, y = generate(b"k", 50, draw_task_params(b"epoch"), b"round")
    assert x.shape == (50, 40) and np.bincount(y).tolist() == [5] * 10


@pytest.mark.parametrize(
    "change",
    [
        {"template_order": (0, 0, 2, 3, 4, 5, 6, 7, 8, 9)},
        {"template_order": (0, 1, 2)},
        {"padding_min": 61},
        {"padding_min": -1},
        {"max_translation": 0},
        {"max_translation": 73},
        {"scale_q16": 70000},
        {"corr_smoothing": 15},
        {"corr_smoothing": 34},
        {"iid_noise_q16": -1},
        {"final_length": 1},
        {"shear_q16": 1.5},
        {"padding_max": True},
    ],
)
def test_bad_task_params_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(DataError) as err:
        replace(DEFAULT_TASK, **change)  # type: ignore[arg-type]
    assert err.value.reason == "bad-task-params"


def test_bad_inputs_are_refused() -> None:
    for bad_n in (0, -1, True, 1.0, 1_000_001):
        with pytest.raises(DataError) as err:
            generate(b"k", bad_n, DEFAULT_TASK)  # type: ignore[arg-type]
        assert err.value.reason == "bad-sample-count"
    with pytest.raises(DataError) as err:
        generate(b"", 1, DEFAULT_TASK)
    assert err.value.reason == "bad-key"
    with pytest.raises(DataError) as err:
        draw_task_params("key")  # type: ignore[arg-type]
    assert err.value.reason == "bad-key"
    x, y = generate(b"k", 4, DEFAULT_TASK)
    for bx, by in ((x.astype(np.int32), y), (x, y.astype(np.int64)), (x[:3], y), (x.reshape(-1), y)):
        with pytest.raises(DataError) as err:
            dataset_digest(bx, by)
        assert err.value.reason == "bad-dataset"
