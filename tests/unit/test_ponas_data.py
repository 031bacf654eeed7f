"""Task data (consensus.engines.ponas.data).

Proves: the digits split is fixed, disjoint and complete (every one of the 1,797 images in
exactly one split, sizes 1000/297/500) and its hash is pinned, so a change to the split rule is
caught; round test sets are a deterministic function of the 32-byte key (same key -> identical
arrays, also in a fresh process; different keys -> different images), use only held-out images
up to a one-pixel shift and +-2 noise, stay in 0..16, and reject bad keys and sizes; the hash
PRNG matches an independent sha256 computation and is unbiased in range; the CIFAR-10 binary
and python-format loaders read tiny files written here and reject malformed ones.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.engines.ponas.data import (
    CIFAR_SHAPE,
    DataError,
    Dataset,
    HashStream,
    digits_splits,
    load_cifar10_bin,
    load_cifar10_python,
    read_cifar10_bin_file,
    round_test_set,
    split_hash,
)

ROOT = str(pathlib.Path(__file__).resolve().parents[2])

# Pinned: changing the split (or sklearn's digits file) changes the genesis; update consciously.
SPLIT_HASH = "d6ec974f04c4e6282f310a9e4d480ae14391843978839b0d3290aef8d9e07c49"


def test_split_is_a_partition_of_the_digits() -> None:
    from sklearn.datasets import load_digits

    s = digits_splits()
    assert (len(s.train), len(s.validation), len(s.held_out)) == (1000, 297, 500)
    for part in (s.train, s.validation, s.held_out):
        assert part.x.dtype == np.uint8 and part.y.dtype == np.uint8
        assert part.x.shape[1:] == (1, 8, 8) and part.max_value == 16
        assert int(part.x.max()) <= 16 and int(part.y.max()) <= 9
        assert not part.x.flags.writeable
    # Every original image (with its label) appears exactly once across the three splits.
    bunch = load_digits()
    original = sorted(
        bytes(img.astype(np.uint8).tobytes()) + bytes([lab]) for img, lab in zip(bunch.images, bunch.target)
    )
    ours = sorted(
        bytes(x.tobytes()) + bytes([int(y)])
        for part in (s.train, s.validation, s.held_out)
        for x, y in zip(part.x, part.y)
    )
    assert ours == original
    assert set(np.unique(s.train.y)) == set(range(10))


def test_split_hash_is_pinned() -> None:
    assert split_hash().hex() == SPLIT_HASH
    assert len(split_hash()) == 32


def test_hash_stream_matches_independent_sha256() -> None:
    key = bytes(range(32))
    prefix = hashlib.sha256(b"ponas/hash-stream/v1" + b"dom").digest() + key
    expected = b"".join(hashlib.sha256(prefix + i.to_bytes(8, "big")).digest() for i in range(3))
    s = HashStream(key, b"dom")
    assert s.read(5) + s.read(60) + s.read(31) == expected
    assert HashStream(key, b"other").read(32) != expected[:32]


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(1, 10**12))
def test_randbelow_in_range(key: bytes, n: int) -> None:
    s = HashStream(key, b"t")
    assert all(0 <= s.randbelow(n) < n for _ in range(5))
    small = s.uniform_small(100, 5)
    assert small.min() >= 0 and small.max() <= 4


def test_uniform_small_is_roughly_uniform() -> None:
    counts = np.bincount(HashStream(b"k" * 32, b"u").uniform_small(50_000, 5), minlength=5)
    assert counts.min() > 9_500 and counts.max() < 10_500


def test_round_test_set_deterministic_and_key_dependent() -> None:
    k1, k2 = b"\x01" * 32, b"\x02" * 32
    a, b, c = round_test_set(k1, 300), round_test_set(k1, 300), round_test_set(k2, 300)
    assert a.x.shape == (300, 1, 8, 8) and a.y.shape == (300,)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)
    assert a.x.dtype == np.uint8 and int(a.x.max()) <= 16
    # A prefix of the chosen images is stable in the requested size (Fisher-Yates prefix),
    # but the perturbation stream depends on the size.
    assert np.array_equal(round_test_set(k1, 10).y, a.y[:10])


def test_round_test_set_same_in_fresh_process() -> None:
    key = bytes(range(32))
    code = (
        "import hashlib, sys\n"
        "from consensus.engines.ponas.data import round_test_set\n"
        f"d = round_test_set({key!r}, 250)\n"
        "sys.stdout.write(hashlib.sha256(d.x.tobytes() + d.y.tobytes()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env,
                         capture_output=True, text=True).stdout
    d = round_test_set(key, 250)
    assert out == hashlib.sha256(d.x.tobytes() + d.y.tobytes()).hexdigest()


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(img)
    h, w = img.shape
    out[max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] = img[
        max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)
    ]
    return out


def test_round_test_images_are_perturbed_held_out_images() -> None:
    held = digits_splits().held_out
    d = round_test_set(b"\x07" * 32, 120)
    origins = []
    shifted = 0
    for img, label in zip(d.x[:, 0].astype(int), d.y):
        matches = []
        for k in range(len(held)):
            if held.y[k] != label:
                continue
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    base = _shift(held.x[k, 0].astype(int), dy, dx)
                    if np.all(np.abs(img - base) <= 2):
                        matches.append((k, dy, dx))
        assert matches, "test image is not a held-out image within one pixel and +-2"
        origins.append(matches[0][0])
        shifted += all(m[1:] != (0, 0) for m in matches)
    assert len(set(origins)) >= 110  # distinct images, up to near-duplicates in the data
    assert 10 <= shifted <= 60  # about one image in four is shifted
    assert not np.array_equal(d.x, held.x[origins])  # noise was applied


@pytest.mark.parametrize("key", [b"", b"\x00" * 31, b"\x00" * 33, "0" * 32, bytearray(32)])
def test_round_test_set_rejects_bad_keys(key: object) -> None:
    with pytest.raises(DataError) as e:
        round_test_set(key, 10)  # type: ignore[arg-type]
    assert e.value.reason == "bad-round-key"


@pytest.mark.parametrize("size", [0, -1, 501, True, 3.0])
def test_round_test_set_rejects_bad_sizes(size: object) -> None:
    with pytest.raises(DataError) as e:
        round_test_set(b"\x00" * 32, size)  # type: ignore[arg-type]
    assert e.value.reason == "bad-test-size"


def test_dataset_validation() -> None:
    with pytest.raises(TypeError):
        Dataset(np.zeros((2, 1, 8, 8), np.float32), np.zeros(2, np.uint8), 16)
    with pytest.raises(ValueError):
        Dataset(np.zeros((2, 1, 8, 8), np.uint8), np.zeros(3, np.uint8), 16)


def _cifar_records(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, bytes]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n, dtype=np.uint8)
    x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    raw = b"".join(bytes([int(y[i])]) + x[i].tobytes() for i in range(n))
    return x, y, raw


def test_cifar_binary_loader(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    expected_x, expected_y = [], []
    for i, name in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
        x, y, raw = _cifar_records(3 + i, i)
        (folder / name).write_bytes(raw)
        expected_x.append(x)
        expected_y.append(y)
    train, test = load_cifar10_bin(tmp_path)  # finds the sub-folder
    assert len(train) == 3 + 4 + 5 + 6 + 7 and len(test) == 8
    assert train.x.shape[1:] == CIFAR_SHAPE and train.max_value == 255
    assert np.array_equal(train.x.reshape(len(train), -1), np.concatenate(expected_x[:5]))
    assert np.array_equal(train.y, np.concatenate(expected_y[:5]))
    assert np.array_equal(test.x.reshape(8, -1), expected_x[5])
    # red plane first: pixel (c=0, row 0, col 1) is byte 1 of the image
    assert test.x[0, 0, 0, 1] == expected_x[5][0, 1] and test.x[0, 1, 0, 0] == expected_x[5][0, 1024]


def test_cifar_binary_loader_rejects_bad_files(tmp_path: pathlib.Path) -> None:
    _, _, raw = _cifar_records(2, 0)
    for bad in (b"", raw[:-1], raw + b"\x00", bytes([10]) + raw[1:]):
        path = tmp_path / "bad.bin"
        path.write_bytes(bad)
        with pytest.raises(DataError) as e:
            read_cifar10_bin_file(path)
        assert e.value.reason == "bad-cifar-file"
    with pytest.raises(DataError) as e:
        load_cifar10_bin(tmp_path / "missing")
    assert e.value.reason == "bad-cifar-file"


def test_cifar_python_loader(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x, y, _ = _cifar_records(2, i)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": x, b"labels": [int(v) for v in y]}, f)
    train, test = load_cifar10_python(folder)
    assert len(train) == 10 and len(test) == 2
    x, y, _ = _cifar_records(2, 5)
    assert np.array_equal(test.x.reshape(2, -1), x) and np.array_equal(test.y, y)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": x, b"labels": [11, 0]}, f)
    with pytest.raises(DataError):
        load_cifar10_python(folder)
