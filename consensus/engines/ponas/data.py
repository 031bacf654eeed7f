"""Task data: the built-in digits task, round test sets derived from a key, CIFAR-10 loaders.

Built-in task (scikit-learn's handwritten digits, 1,797 images of 8x8 pixels with values
0..16, read from a file inside the installed scikit-learn; nothing is downloaded):

- **Public split.** Image ``i`` (its position in ``load_digits()``) gets the sort key
  ``sha256(b"ponas/digits-split/v1" || uint32_be(i))``; sorting the indices by that key gives a
  fixed permutation. The first 1,000 permuted images are *train*, the next 297 *validation*,
  the last 500 *held-out*. No library RNG is involved, so the split is the same on every machine
  and version. :func:`split_hash` commits to it (recorded in the genesis).
- **Round test set.** :func:`round_test_set` draws ``size`` distinct held-out images chosen by
  the 32-byte round key and perturbs them: one image in four (on average) is shifted by one
  pixel in one of the 8 directions (zeros shifted in), then every pixel gets integer noise in
  [-2, 2], clipped to 0..16. (Shifting *every* image by up to a pixel, on 8x8 digits, drops
  well-trained models from ~98% to ~60%, which would make the round test a shift-robustness
  contest; the mild mix keeps scores near the clean accuracy while leaving room to rank.) All randomness
  comes from :class:`HashStream` (sha256 in counter mode over the key), so the set is identical
  across machines and library versions. Before the key is revealed, nobody can know which
  images, or which perturbations, will be scored.

Every array is numpy, read-only, ``uint8``; images are ``(N, C, H, W)``, labels ``(N,)``.
Conversion to float tensors (``x / max_value``) is :func:`to_tensors`, which imports torch lazily
so this module stays importable without it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "DataError",
    "Dataset",
    "DigitsSplits",
    "HashStream",
    "DIGITS_SHAPE",
    "DIGITS_MAX",
    "NUM_CLASSES",
    "TRAIN_SIZE",
    "VALIDATION_SIZE",
    "HELD_OUT_SIZE",
    "digits_splits",
    "split_hash",
    "round_test_set",
    "dataset_hash",
    "to_tensors",
    "read_cifar10_bin_file",
    "load_cifar10_bin",
    "load_cifar10_python",
    "CIFAR_SHAPE",
]

DIGITS_SHAPE = (1, 8, 8)
DIGITS_MAX = 16
NUM_CLASSES = 10
TRAIN_SIZE = 1000
VALIDATION_SIZE = 297
HELD_OUT_SIZE = 500  # 1000 + 297 + 500 = 1797, every digit is in exactly one split

ROUND_KEY_BYTES = 32
SHIFT_DRAW = 32  # per image a value v in [0, 32): v < 24 -> no shift, else _SHIFTS[v - 24]
_SHIFTS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
MAX_NOISE = 2  # grey levels, each pixel

CIFAR_SHAPE = (3, 32, 32)
_CIFAR_RECORD = 1 + 3 * 32 * 32


class DataError(ValueError):
    """Bad data input. Reasons: ``bad-round-key``, ``bad-test-size``, ``bad-cifar-file``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True, slots=True, eq=False)
class Dataset:
    """Images ``x`` (uint8, ``(N, C, H, W)``), labels ``y`` (uint8, ``(N,)``), pixel maximum.

    ``max_value`` is the value that maps to 1.0 when converting to floats (16 for digits,
    255 for CIFAR). Arrays are made read-only on construction.
    """

    x: np.ndarray
    y: np.ndarray
    max_value: int

    def __post_init__(self) -> None:
        if self.x.dtype != np.uint8 or self.y.dtype != np.uint8:
            raise TypeError("Dataset arrays must be uint8")
        if self.x.ndim != 4 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise ValueError(f"bad dataset shapes {self.x.shape} / {self.y.shape}")
        self.x.flags.writeable = False
        self.y.flags.writeable = False

    def __len__(self) -> int:
        return len(self.y)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The per-sample input shape ``(C, H, W)``."""
        c, h, w = self.x.shape[1:]
        return (int(c), int(h), int(w))

    def subset(self, n: int) -> Dataset:
        """The first ``n`` samples (all of them if ``n`` is 0 or too large)."""
        if n <= 0 or n >= len(self):
            return self
        return Dataset(self.x[:n].copy(), self.y[:n].copy(), self.max_value)


@dataclass(frozen=True, slots=True, eq=False)
class DigitsSplits:
    """The public split of the built-in task."""

    train: Dataset
    validation: Dataset
    held_out: Dataset


class HashStream:
    """A deterministic byte stream: ``sha256(domain || key || uint64_be(counter))`` blocks.

    This is the only PRNG used for consensus data. It depends on nothing but sha256, so every
    implementation on every machine derives the same bytes from the same key.
    """

    __slots__ = ("_prefix", "_counter", "_buffer")

    def __init__(self, key: bytes, domain: bytes) -> None:
        self._prefix = hashlib.sha256(b"ponas/hash-stream/v1" + domain).digest() + bytes(key)
        self._counter = 0
        self._buffer = b""

    def read(self, n: int) -> bytes:
        """The next ``n`` bytes."""
        chunks = [self._buffer]
        have = len(self._buffer)
        while have < n:
            block = hashlib.sha256(self._prefix + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
            chunks.append(block)
            have += len(block)
        data = b"".join(chunks)
        self._buffer = data[n:]
        return data[:n]

    def randbelow(self, n: int) -> int:
        """A uniform int in ``[0, n)`` by rejection sampling on 64-bit words (no modulo bias)."""
        if n <= 0:
            raise ValueError("n must be positive")
        limit = (1 << 64) - (1 << 64) % n
        while True:
            value = int.from_bytes(self.read(8), "big")
            if value < limit:
                return value % n

    def uniform_small(self, count: int, n: int) -> np.ndarray:
        """``count`` uniform ints in ``[0, n)`` for ``n <= 256``, one byte each, by rejection."""
        if not 1 <= n <= 256:
            raise ValueError("n must be in 1..256")
        limit = 256 - 256 % n
        out = np.empty(0, dtype=np.uint8)
        while len(out) < count:
            need = count - len(out)
            raw = np.frombuffer(self.read(need + need // 8 + 16), dtype=np.uint8)
            out = np.concatenate([out, raw[raw < limit][:need]])
        return (out % n).astype(np.int16)


@functools.lru_cache(maxsize=1)
def digits_splits() -> DigitsSplits:
    """The built-in task's public train / validation / held-out split (see module docstring)."""
    from sklearn.datasets import load_digits  # local: only the built-in task needs sklearn

    bunch = load_digits()
    images = np.asarray(bunch.images)
    target = np.asarray(bunch.target)
    if images.shape != (1797, 8, 8) or images.min() < 0 or images.max() > DIGITS_MAX:
        raise DataError("bad-digits", f"unexpected digits data {images.shape}")
    x = images.astype(np.uint8).reshape(-1, *DIGITS_SHAPE)
    if not np.array_equal(x.reshape(images.shape), images):
        raise DataError("bad-digits", "digits are not integers")
    y = target.astype(np.uint8)
    order = sorted(
        range(len(y)),
        key=lambda i: hashlib.sha256(b"ponas/digits-split/v1" + i.to_bytes(4, "big")).digest(),
    )
    idx = np.array(order, dtype=np.int64)
    a, b = TRAIN_SIZE, TRAIN_SIZE + VALIDATION_SIZE

    def part(sel: np.ndarray) -> Dataset:
        return Dataset(x[sel].copy(), y[sel].copy(), DIGITS_MAX)

    return DigitsSplits(part(idx[:a]), part(idx[a:b]), part(idx[b:]))


def dataset_hash(ds: Dataset, tag: bytes = b"") -> bytes:
    """sha256 over ``tag``, the shape of ``x`` (uint32 big-endian each), ``max_value``, x and y bytes."""
    h = hashlib.sha256(b"ponas/dataset/v1" + tag)
    for dim in ds.x.shape:
        h.update(int(dim).to_bytes(4, "big"))
    h.update(int(ds.max_value).to_bytes(4, "big"))
    h.update(np.ascontiguousarray(ds.x).tobytes())
    h.update(np.ascontiguousarray(ds.y).tobytes())
    return h.digest()


def split_hash() -> bytes:
    """sha256 committing to the built-in split: the three :func:`dataset_hash` es in order."""
    s = digits_splits()
    return hashlib.sha256(
        b"ponas/digits-splits/v1"
        + dataset_hash(s.train, b"train")
        + dataset_hash(s.validation, b"validation")
        + dataset_hash(s.held_out, b"held-out")
    ).digest()


def round_test_set(key: bytes, size: int, held_out: Dataset | None = None) -> Dataset:
    """The round's test set: ``size`` key-chosen held-out digits, key-perturbed.

    Steps, all drawn from ``HashStream(key, b"round-test")`` in this order:

    1. choose: a partial Fisher-Yates shuffle of ``range(len(held_out))`` for ``size`` steps
       (step ``i`` swaps position ``i`` with ``i + randbelow(n - i)``); the first ``size``
       positions, in that order, are the chosen images;
    2. shift: ``size`` values ``v`` in ``[0, 32)`` (``uniform_small``), one per image; if
       ``v >= 24`` the image moves by ``(dy, dx) = _SHIFTS[v - 24]`` (rows, columns) with zeros
       shifted in, otherwise it stays;
    3. noise: ``size * C * H * W`` values in ``[0, 5)``, minus 2, added per pixel; the result is
       clipped to ``0..max_value``.

    Labels are unchanged. ``held_out`` defaults to the built-in split's held-out part.
    """
    if not isinstance(key, bytes) or len(key) != ROUND_KEY_BYTES:
        raise DataError("bad-round-key", f"round key must be {ROUND_KEY_BYTES} bytes")
    pool = held_out if held_out is not None else digits_splits().held_out
    n = len(pool)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= n:
        raise DataError("bad-test-size", f"size {size!r} not in 1..{n}")
    stream = HashStream(key, b"round-test")
    perm = list(range(n))
    for i in range(size):
        j = i + stream.randbelow(n - i)
        perm[i], perm[j] = perm[j], perm[i]
    chosen = np.array(perm[:size], dtype=np.int64)
    x = pool.x[chosen].astype(np.int16)
    y = pool.y[chosen].copy()
    draws = stream.uniform_small(size, SHIFT_DRAW)
    unshifted = SHIFT_DRAW - len(_SHIFTS)
    shifted = np.zeros_like(x)
    h, w = x.shape[2], x.shape[3]
    for k in range(size):
        v = int(draws[k])
        dy, dx = _SHIFTS[v - unshifted] if v >= unshifted else (0, 0)
        src = x[k, :, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
        shifted[k, :, max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] = src
    noise = stream.uniform_small(shifted.size, 2 * MAX_NOISE + 1) - MAX_NOISE
    out = np.clip(shifted + noise.reshape(shifted.shape), 0, pool.max_value).astype(np.uint8)
    return Dataset(out, y, pool.max_value)


def to_tensors(ds: Dataset, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(x / max_value as float32, y as int64)`` tensors on ``device``; imports torch lazily."""
    import torch

    x = torch.from_numpy(np.array(ds.x, dtype=np.float32)) / float(ds.max_value)
    y = torch.from_numpy(np.array(ds.y, dtype=np.int64))
    return x.to(device), y.to(device)


# --------------------------------------------------------------------------------------------
# CIFAR-10 from a local directory


def read_cifar10_bin_file(path: str | os.PathLike[str]) -> Dataset:
    """Read one file of the binary format (``cifar-10-batches-bin``).

    Each record is 1 label byte (0..9) then 3,072 pixel bytes (1,024 red, 1,024 green,
    1,024 blue, rows first). No pickle: safe on untrusted files. A file whose length is not a
    positive multiple of 3,073 or that holds a label above 9 raises ``bad-cifar-file``.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
        raise DataError("bad-cifar-file", f"{os.fspath(path)}: length {len(raw)} not k*{_CIFAR_RECORD}")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    y = records[:, 0].copy()
    if y.max() >= NUM_CLASSES:
        raise DataError("bad-cifar-file", f"{os.fspath(path)}: label above 9")
    x = records[:, 1:].reshape(-1, *CIFAR_SHAPE).copy()
    return Dataset(x, y, 255)


def _concat(parts: list[Dataset]) -> Dataset:
    return Dataset(
        np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]), 255
    )


def load_cifar10_bin(directory: str | os.PathLike[str]) -> tuple[Dataset, Dataset]:
    """``(train, test)`` from ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin``.

    ``directory`` is the ``cifar-10-batches-bin`` folder (or one that contains it). Batches
    that are missing raise ``bad-cifar-file``.
    """
    base = os.fspath(directory)
    if os.path.isdir(os.path.join(base, "cifar-10-batches-bin")):
        base = os.path.join(base, "cifar-10-batches-bin")
    try:
        train = [read_cifar10_bin_file(os.path.join(base, f"data_batch_{i}.bin")) for i in range(1, 6)]
        test = read_cifar10_bin_file(os.path.join(base, "test_batch.bin"))
    except OSError as exc:
        raise DataError("bad-cifar-file", str(exc)) from None
    return _concat(train), test


def _read_cifar10_python_file(path: str) -> Dataset:
    with open(path, "rb") as f:
        batch: Any = pickle.load(f, encoding="bytes")  # noqa: S301 - trusted local files only
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError("bad-cifar-file", f"{path}: {exc}") from None
    if data.ndim != 2 or data.shape[1] != _CIFAR_RECORD - 1 or len(labels) != len(data):
        raise DataError("bad-cifar-file", f"{path}: bad shapes")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError("bad-cifar-file", f"{path}: label out of range")
    return Dataset(data.reshape(-1, *CIFAR_SHAPE).copy(), labels.astype(np.uint8), 255)


def load_cifar10_python(directory: str | os.PathLike[str]) -> tuple[Dataset, Dataset]:
    """``(train, test)`` from the python format (``cifar-10-batches-py``: pickled dicts).

    **Trusted files only.** This unpickles, and unpickling a hostile file runs arbitrary code.
    Point it only at a copy of CIFAR-10 you obtained yourself; never at data received from a
    peer. (Consensus code never calls it: prefer :func:`load_cifar10_bin`.)
    """
    base = os.fspath(directory)
    if os.path.isdir(os.path.join(base, "cifar-10-batches-py")):
        base = os.path.join(base, "cifar-10-batches-py")
    try:
        train = [_read_cifar10_python_file(os.path.join(base, f"data_batch_{i}")) for i in range(1, 6)]
        test = _read_cifar10_python_file(os.path.join(base, "test_batch"))
    except OSError as exc:
        raise DataError("bad-cifar-file", str(exc)) from None
    return _concat(train), test
