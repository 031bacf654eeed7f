"""The MNIST-1D task generator in integer arithmetic, and the per-epoch task family.

MNIST-1D (Greydanus, "Scaling down deep learning", 2020; the ``mnist1d`` package) turns ten
hand-made 12-point templates into 40-point sequences by random padding, dilation, scaling,
translation, correlated and i.i.d. noise and shear. Simple models score poorly on it and the
architectures differ a lot (the paper: logistic regression ~32%, MLP ~68%, CNN ~94%, GRU ~91%),
which is what a NAS task needs. This module re-implements that procedure so that every node
derives **bit-identical** data from a key on every machine and library version:

- randomness comes only from :class:`~consensus.engines.ponas.data.HashStream` (sha256 in
  counter mode), consumed in the fixed order documented in :func:`generate`;
- every value that determines data is an integer: the templates and parameters are fixed-point
  constants (``Q16``: the integer ``v`` means ``v / 2**16``), and all arithmetic is integer
  numpy (``int64``: addition, multiplication, floor division, indexing, sums; no floats, no
  BLAS), which is exact in any evaluation order and therefore the same everywhere;
- divisions round half up: ``_rdiv(a, b) = floor((2a + b) / 2b)``.

Output: ``x`` is an ``int16`` array ``(n, final_length)`` in ``Q12`` (``X_ONE = 4096`` is 1.0 in
the reference's units *before* its per-dataset standardisation; the reference data has mean
~-0.006 and standard deviation ~0.155 there, so ``x`` has a standard deviation of ~630), and
``y`` a ``uint8`` array of labels 0..9, balanced (each label ``n // 10`` or ``n // 10 + 1``
times, the extra ones going to the lowest labels) and shuffled.

Deviations from the reference, each keeping the task's character:

1. Per-sample draws are integers: padding ``p`` and translation ``k`` as in the reference;
   scale factor and shear coefficient uniform on a Q16 grid of the same interval.
2. Gaussian noise is Irwin-Hall: the sum ``S`` of three uniform bytes gives
   ``z = (2S - 765) * 256`` in Q16, mean exactly 0, variance ``1 - 2**-16``, support
   ``[-3, 3]`` (a Gaussian has tails beyond 3 sigma with probability 0.27%; the smoothed noise is
   Gaussian-shaped anyway by the central limit theorem).
3. The correlated noise is smoothed by a binomial kernel ``C(m, i) / 2**m`` (``m + 1`` taps,
   variance ``m / 4``) instead of scipy's sampled Gaussian: ``m = 16`` is sigma 2, the
   reference's ``gaussian_filter(noise, 2)``, with the same 17-tap support and the same
   ``reflect`` boundary; the kernel is exact in integers for every ``m``.
4. The reference's mask (positions where the dilated template is non-zero get no correlated
   noise; it adds ``eps = 1e-8`` to the template so that its zero points count) is computed
   exactly: dilated position ``i`` is template iff ``floor(i (L - 1) / (D - 1)) < 12``.
5. No per-dataset standardisation (the reference divides by the set's own std, which would make
   a sample depend on the rest of its set); the output has the fixed Q12 scale instead.
6. Labels map to templates through ``TaskParams.template_order`` (identity by default).
7. The templates are the reference's ``get_templates()`` rounded once to Q16 (error below
   ``2**-17`` on values up to 0.47); the output is clipped to the int16 range, +-8 in Q12, which
   no accepted parameter set reaches (at most 3 of correlated noise or 0.71 of digit, plus 3 of
   i.i.d. noise, plus 1 of shear; in practice the data stays within +-1).

Given the same draws, this pipeline reproduces the reference's float64 ``transform`` to within
0.6 of an output unit (``1 / 4096``) when the reference's Gaussian filter is swapped for the
binomial kernel, and to ~1% of the data's standard deviation with scipy's filter.

Errors are :class:`~consensus.engines.ponas.data.DataError` with reasons ``bad-task-params``,
``bad-sample-count``, ``bad-key`` (a key that is not non-empty bytes, a domain that is not bytes),
``bad-dataset`` (arrays that :func:`dataset_digest` cannot read), ``bad-epoch`` and ``bad-task-data``
(:class:`ChainData`, the chain's data per epoch, at the end of the module).
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, fields

import numpy as np

from consensus.engines.ponas.data import DataError, HashStream

__all__ = [
    "ChainData",
    "DEFAULT_TASK",
    "FINAL_LENGTH",
    "MAX_SAMPLES",
    "NUM_CLASSES",
    "Q16_ONE",
    "TASK_RANGES",
    "TEMPLATES_Q16",
    "TEMPLATE_LEN",
    "TaskParams",
    "X_ONE",
    "dataset_digest",
    "draw_task_params",
    "epoch_key",
    "epoch_of",
    "generate",
]

NUM_CLASSES = 10
TEMPLATE_LEN = 12
FINAL_LENGTH = 40
Q16_ONE = 1 << 16
X_SHIFT = 12  # output fixed point: Q12
X_ONE = 1 << X_SHIFT
MAX_SAMPLES = 1_000_000
MAX_PADDING = 500
MAX_SMOOTHING = 32
_IRWIN_HALL_BYTES = 3  # bytes summed per Gaussian draw
_GEN_DOMAIN = b"ponas/mnist1d/v1/"
_TASK_DOMAIN = b"ponas/mnist1d-task/v1"
_DIGEST_TAG = b"ponas/mnist1d-dataset/v1"

# The reference's ``get_templates()`` (whitened, shifted to start at 0, divided by 6), each value
# rounded to Q16 once, offline, with float64: round(v * 2**16). Rows are digits 0..9.
TEMPLATES_Q16: tuple[tuple[int, ...], ...] = (
    (0, 15528, 23292, 27174, 31056, 31056, 31056, 31056, 27174, 23292, 15528, 0),
    (0, -24239, -24239, -19391, -14544, -9696, -4848, 0, 4848, 9696, 0, 0),
    (0, 10444, 15666, 15666, 10444, 2611, -2611, -10444, -15666, -15666, -10444, 0),
    (0, 17515, 26273, 26273, 17515, 0, 0, 17515, 26273, 26273, 17515, 0),
    (0, -6947, -13894, -20840, -27787, -27787, 0, 0, 0, 0, 0, 0),
    (0, -16234, -16234, -16234, -16234, 0, 8117, 12176, 12176, 8117, -4059, 0),
    (0, -15528, -23292, -27174, -31056, -31056, -31056, -31056, -27174, -23292, -15528, 0),
    (0, 24239, 24239, 19391, 14544, 9696, 4848, 0, -4848, -9696, 0, 0),
    (0, -17515, -26273, -26273, -17515, 0, 0, -17515, -26273, -26273, -17515, 0),
    (0, -18732, -28098, -28098, -18732, 0, 0, 0, 0, -5620, -13113, 0),
)


@dataclass(frozen=True, slots=True)
class TaskParams:
    """The generator's parameters; all integers, fractions in Q16 (``Q16_ONE`` is 1.0).

    ``template_order[label]`` is the template drawn for ``label`` (a permutation of 0..9).
    ``padding_min..padding_max`` (inclusive) zeros are appended to the 12-point template, and
    the result is dilated to ``D = 12 + padding_max`` points. The scale factor is uniform in
    ``1 +- scale_q16 / 2``, the translation (a cyclic shift right) uniform in
    ``0..max_translation - 1``, the shear coefficient uniform in ``+- shear_q16 / 2``.
    ``corr_noise_q16`` is the std of the white noise that ``corr_smoothing`` (the binomial
    order ``m``, even, sigma ``sqrt(m) / 2``; 0 means none) smooths before it fills the non-digit
    positions; ``iid_noise_q16`` is the std of the noise added everywhere. ``final_length`` is the
    output length. Reference names: ``padding``, ``scale_coeff``, ``max_translation``,
    ``shear_scale``, ``corr_noise_scale``, ``iid_noise_scale``, ``final_seq_length``.
    """

    template_order: tuple[int, ...] = tuple(range(NUM_CLASSES))
    padding_min: int = 36
    padding_max: int = 60
    max_translation: int = 48
    scale_q16: int = 26214  # 0.4
    shear_q16: int = 49152  # 0.75
    corr_noise_q16: int = 16384  # 0.25
    corr_smoothing: int = 16  # sigma 2
    iid_noise_q16: int = 1311  # 0.02
    final_length: int = FINAL_LENGTH

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            items = value if f.name == "template_order" else (value,)
            if not isinstance(items, tuple) or any(type(v) is not int for v in items):
                raise DataError("bad-task-params", f"{f.name} must be int(s), got {value!r}")
        if sorted(self.template_order) != list(range(NUM_CLASSES)):
            raise DataError("bad-task-params", f"template_order {self.template_order} is not a permutation")
        checks = (
            ("padding", 0 <= self.padding_min <= self.padding_max <= MAX_PADDING),
            ("max_translation", 1 <= self.max_translation <= self.dilated_length),
            ("scale_q16", 0 <= self.scale_q16 <= Q16_ONE),
            ("shear_q16", 0 <= self.shear_q16 <= 4 * Q16_ONE),
            ("corr_noise_q16", 0 <= self.corr_noise_q16 <= Q16_ONE),
            ("corr_smoothing", 0 <= self.corr_smoothing <= MAX_SMOOTHING and self.corr_smoothing % 2 == 0
             and self.corr_smoothing // 2 <= self.dilated_length),
            ("iid_noise_q16", 0 <= self.iid_noise_q16 <= Q16_ONE),
            ("final_length", 2 <= self.final_length <= 4096),
        )
        for name, ok in checks:
            if not ok:
                raise DataError("bad-task-params", f"{name} out of range")

    @property
    def dilated_length(self) -> int:
        """``D``: the length the padded template is dilated to (72 by default)."""
        return TEMPLATE_LEN + self.padding_max


DEFAULT_TASK = TaskParams()

# The task family: inclusive ranges that draw_task_params draws each field from, centred on the
# reference defaults. Kept narrow enough that the task stays the reference's in character: the
# digit never wraps around the cyclic translation (its dilated width is at most
# ceil(12 (D - 1) / (padding_min + 11)) points: 19 for the worst case D = 69, padding 33, and
# 50 + 19 <= 69), noise stays below the signal, and the final length (the model's input) stays 40.
TASK_RANGES: dict[str, tuple[int, int]] = {
    "padding_min": (33, 39),  # reference 36
    "padding_max": (57, 63),  # reference 60
    "max_translation": (45, 51),  # reference 48
    "scale_q16": (19661, 32768),  # 0.30 .. 0.50, reference 0.40
    "shear_q16": (32768, 65536),  # 0.50 .. 1.00, reference 0.75
    "corr_noise_q16": (13107, 19661),  # 0.20 .. 0.30, reference 0.25
    "corr_smoothing": (12, 20),  # even; sigma 1.73 .. 2.24, reference 2 (16)
    "iid_noise_q16": (983, 1638),  # 0.015 .. 0.025, reference 0.02
}


def draw_task_params(epoch_key: bytes) -> TaskParams:
    """The epoch's task: each field of :data:`TASK_RANGES` uniform in its range, then a template
    order by Fisher-Yates; ``final_length`` stays 40.

    Draws, from ``HashStream(epoch_key, b"ponas/mnist1d-task/v1")`` with ``randbelow``, in the
    order of :data:`TASK_RANGES` (``corr_smoothing`` as ``12 + 2 * randbelow(5)``), then the
    permutation: ``order = [0..9]``; for ``i`` in 0..8 swap ``i`` and ``i + randbelow(10 - i)``.
    """
    if not isinstance(epoch_key, bytes) or not epoch_key:
        raise DataError("bad-key", "epoch key must be non-empty bytes")
    stream = HashStream(epoch_key, _TASK_DOMAIN)
    values: dict[str, int] = {}
    for name, (lo, hi) in TASK_RANGES.items():
        if name == "corr_smoothing":
            values[name] = lo + 2 * stream.randbelow((hi - lo) // 2 + 1)
        else:
            values[name] = lo + stream.randbelow(hi - lo + 1)
    order = list(range(NUM_CLASSES))
    for i in range(NUM_CLASSES - 1):
        j = i + stream.randbelow(NUM_CLASSES - i)
        order[i], order[j] = order[j], order[i]
    return TaskParams(template_order=tuple(order), final_length=FINAL_LENGTH, **values)


# --------------------------------------------------------------------------------------------
# integer helpers (int64 numpy; every bound is checked in the comments of generate)


def _rdiv(a: np.ndarray, b: int) -> np.ndarray:
    """``a / b`` rounded half up, for ``b > 0``: exact integer floor division."""
    return (2 * a + b) // (2 * b)


def _uniform(stream: HashStream, count: int, n: int) -> np.ndarray:
    """``count`` ints in ``[0, n)``: ``floor(u * n / 2**32)`` of big-endian 32-bit words ``u``.

    Bias at most ``n / 2**32`` (negligible for the ``n <= 2**18 + 1`` that TaskParams allows;
    ``u * n < 2**63``); it is the integer form of the reference's ``int(rand() * n)``.
    """
    u = np.frombuffer(stream.read(4 * count), dtype=">u4").astype(np.int64)
    return (u * n) >> 32


def _normals(stream: HashStream, shape: tuple[int, int]) -> np.ndarray:
    """Irwin-Hall normals in Q16: ``(2 (b0 + b1 + b2) - 765) * 256`` over three stream bytes."""
    count = shape[0] * shape[1]
    raw = np.frombuffer(stream.read(_IRWIN_HALL_BYTES * count), dtype=np.uint8)
    s = raw.astype(np.int64).reshape(count, _IRWIN_HALL_BYTES).sum(axis=1)
    return ((2 * s - 255 * _IRWIN_HALL_BYTES) * 256).reshape(shape)


def _smooth(z: np.ndarray, order: int) -> np.ndarray:
    """Correlate rows with the binomial kernel of ``order`` (``reflect`` boundary, as scipy's
    ``gaussian_filter`` default: ``d c b a | a b c d | d c b a``); rounds back to z's scale."""
    if order == 0:
        return z
    radius = order // 2
    length = z.shape[1]
    padded = np.pad(z, ((0, 0), (radius, radius)), mode="symmetric")
    acc = np.zeros_like(z)
    for i in range(order + 1):
        acc += math.comb(order, i) * padded[:, i : i + length]
    return _rdiv(acc, 1 << order)


def _resample(x: np.ndarray, lengths: np.ndarray, out_len: int, scale: int) -> np.ndarray:
    """Linear interpolation of each row's first ``lengths[r]`` points onto ``out_len`` points
    spanning the same interval (``np.linspace(0, 1, ...)`` grids, as scipy's ``interp1d``):
    output ``i`` sits at source position ``i (L - 1) / (out_len - 1)``. ``x`` needs one spare
    column past the longest row (read with weight 0 at the last point)."""
    i = np.arange(out_len, dtype=np.int64)[None, :]
    num = i * (lengths[:, None] - 1)
    den = out_len - 1
    j = num // den
    frac = num - j * den
    a = np.take_along_axis(x, j, axis=1)
    b = np.take_along_axis(x, j + 1, axis=1)
    return _rdiv(a * (den - frac) + b * frac, den * scale)


def generate(
    key: bytes, n: int, params: TaskParams = DEFAULT_TASK, domain: bytes = b""
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of the task: ``x`` ``int16`` ``(n, final_length)`` in Q12, ``y`` ``uint8``.

    ``domain`` separates uses of one key (e.g. ``b"train"``, ``b"round-test"``). The stream is
    ``HashStream(key, b"ponas/mnist1d/v1/" + domain)``; it is read in exactly this order:

    1. labels: ``y = [i % 10 for i in range(n)]`` shuffled by forward Fisher-Yates
       (``swap(i, i + randbelow(n - i))`` for ``i`` in ``0..n-1``);
    2. per sample, each as one block of ``n`` draws of :func:`_uniform`: padding
       ``p = padding_min + U(padding_max - padding_min + 1)``; scale factor
       ``f = 1 - h + U(2h + 1)`` with ``h = scale_q16 // 2``; translation ``k = U(max_translation)``;
       shear ``c = -g + U(2g + 1)`` with ``g = shear_q16 // 2`` (all Q16 where fractional);
    3. ``n * D`` Irwin-Hall normals for the correlated noise, then ``n * D`` for the i.i.d. noise
       (row-major: sample, then position).

    Then per sample (``D = 12 + padding_max``, values Q16, ``t`` its template):

    a. pad and dilate: ``t`` followed by ``p`` zeros (length ``L = 12 + p``) is linearly
       resampled to ``D`` points; the digit mask is ``floor(i (L - 1) / (D - 1)) < 12``;
    b. scale: multiply by ``f``;
    c. translate: shift cyclically right by ``k`` (``np.roll``; the mask moves with it);
    d. correlated noise: off the mask, the value (0) is replaced by the smoothed normals times
       ``corr_noise_q16``;
    e. i.i.d. noise: add normals times ``iid_noise_q16`` everywhere;
    f. shear: subtract ``c * (2i - (D - 1)) / (2 (D - 1))`` (``c * linspace(-0.5, 0.5, D)``);
    g. resample linearly from ``D`` to ``final_length`` points, rounding to Q12 in the same
       division, clipped to the int16 range (never reached with sane parameters).

    This is the reference's ``transform`` order (pad, dilate, scale, translate, noise, shear,
    subsample). Magnitudes stay far inside int64: values below ``2**20`` in Q16 before the final
    weights (``< 2**12``), the smoothing sum below ``2**17.6 * 2**32``.
    """
    if not isinstance(key, bytes) or not key:
        raise DataError("bad-key", "key must be non-empty bytes")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SAMPLES:
        raise DataError("bad-sample-count", f"n {n!r} not in 1..{MAX_SAMPLES}")
    if not isinstance(params, TaskParams):
        raise DataError("bad-task-params", "params must be a TaskParams")
    if not isinstance(domain, bytes):
        raise DataError("bad-key", "domain must be bytes")
    stream = HashStream(key, _GEN_DOMAIN + domain)
    d = params.dilated_length

    # 1. balanced labels, shuffled
    labels = [i % NUM_CLASSES for i in range(n)]
    for i in range(n):
        j = i + stream.randbelow(n - i)
        labels[i], labels[j] = labels[j], labels[i]
    y = np.array(labels, dtype=np.uint8)

    # 2. per-sample draws
    pad = params.padding_min + _uniform(stream, n, params.padding_max - params.padding_min + 1)
    h = params.scale_q16 // 2
    factor = Q16_ONE - h + _uniform(stream, n, 2 * h + 1)
    shift = _uniform(stream, n, params.max_translation)
    g = params.shear_q16 // 2
    shear = -g + _uniform(stream, n, 2 * g + 1)

    # 3. noise
    corr = _normals(stream, (n, d))
    iid = _normals(stream, (n, d))

    # a. pad and dilate (src has D + 1 columns: the padded template, zeros, one spare)
    table = np.array(TEMPLATES_Q16, dtype=np.int64)[np.array(params.template_order, dtype=np.int64)]
    src = np.zeros((n, d + 1), dtype=np.int64)
    src[:, :TEMPLATE_LEN] = table[y.astype(np.int64)]
    lengths = TEMPLATE_LEN + pad
    pos = np.arange(d, dtype=np.int64)
    x = _resample(src, lengths, d, 1)
    mask = (pos[None, :] * (lengths[:, None] - 1)) // (d - 1) < TEMPLATE_LEN

    # b. scale
    x = _rdiv(x * factor[:, None], Q16_ONE)

    # c. translate: out[i] = in[(i - k) mod D]
    idx = (pos[None, :] - shift[:, None]) % d
    x = np.take_along_axis(x, idx, axis=1)
    mask = np.take_along_axis(mask, idx, axis=1)

    # d. correlated noise off the digit
    noise = _rdiv(_smooth(corr, params.corr_smoothing) * params.corr_noise_q16, Q16_ONE)
    x = np.where(mask, x, noise)

    # e. i.i.d. noise
    x = x + _rdiv(iid * params.iid_noise_q16, Q16_ONE)

    # f. shear
    ramp = 2 * pos - (d - 1)
    x = x - _rdiv(shear[:, None] * ramp[None, :], 2 * (d - 1))

    # g. subsample to the final length, Q16 -> Q12
    spare = np.concatenate([x, np.zeros((n, 1), dtype=np.int64)], axis=1)
    out = _resample(spare, np.full(n, d, dtype=np.int64), params.final_length, 1 << (16 - X_SHIFT))
    x16 = np.clip(out, -(1 << 15), (1 << 15) - 1).astype(np.int16)
    x16.flags.writeable = False
    y.flags.writeable = False
    return x16, y


def dataset_digest(x: np.ndarray, y: np.ndarray) -> bytes:
    """sha256 over ``b"ponas/mnist1d-dataset/v1"``, ``n`` and the sequence length (uint32
    big-endian), ``x`` as big-endian int16 (row-major) and ``y`` as bytes."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or x.dtype != np.int16 or y.dtype != np.uint8:
        raise DataError("bad-dataset", f"need int16 (n, L) and uint8 (n,), got {x.dtype}{x.shape} {y.dtype}{y.shape}")
    h = hashlib.sha256(_DIGEST_TAG)
    h.update(int(x.shape[0]).to_bytes(4, "big"))
    h.update(int(x.shape[1]).to_bytes(4, "big"))
    h.update(np.ascontiguousarray(x, dtype=">i2").tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return h.digest()


# --------------------------------------------------------------------------------------------
# The chain's data: what a ``mnist1d`` chain trains, validates and tests on

_EPOCH_DOMAIN = b"ponas/mnist1d-epoch/v1"
TRAIN_DOMAIN = b"train"
VALIDATION_DOMAIN = b"validation"
TEST_DOMAIN = b"round-test"


def epoch_of(height: int, epoch_rounds: int) -> int:
    """The task epoch of round (block) ``height``: rounds ``1..E`` are epoch 0, ``E+1..2E``
    epoch 1, and so on (the genesis, height 0, counts as epoch 0)."""
    if epoch_rounds < 1 or height < 0:
        raise DataError("bad-epoch", f"height {height}, epoch_rounds {epoch_rounds}")
    return max(0, height - 1) // epoch_rounds


def epoch_key(genesis_hash: bytes, epoch: int) -> bytes:
    """``sha256(b"ponas/mnist1d-epoch/v1" || genesis_hash || uint64_be(epoch))``: the key of one
    epoch's task parameters, training set and validation split."""
    if not isinstance(genesis_hash, bytes) or len(genesis_hash) != 32 or not 0 <= epoch < 1 << 64:
        raise DataError("bad-key", "genesis hash of 32 bytes and an epoch in 0..2**64-1")
    return hashlib.sha256(_EPOCH_DOMAIN + genesis_hash + epoch.to_bytes(8, "big")).digest()


@dataclass(frozen=True, slots=True)
class ChainData:
    """The data of a chain whose built-in task is ``mnist1d``; every node and miner derives it
    from the genesis hash and the genesis parameters alone, bit-identically.

    Per epoch ``e`` (:func:`epoch_of`, ``epoch_rounds`` rounds each) with ``k = epoch_key(genesis,
    e)``: the task parameters are ``draw_task_params(k)``; the training set is
    ``generate(k, train_size, params, b"train")``, the validation split for miners
    ``generate(k, validation_size, params, b"validation")``. A round's test set is
    ``generate(test_key, test_set_size, params, b"round-test")`` with the close's test key and
    the epoch of the round's height. The epoch's template order permutes the labels, so the
    training set is generated with the epoch's parameters: one training set per epoch, and
    weights trained for one epoch verify only in rounds of that epoch.
    """

    genesis: bytes
    train_size: int
    validation_size: int
    test_set_size: int
    epoch_rounds: int

    def epoch(self, height: int) -> int:
        return epoch_of(height, self.epoch_rounds)

    def task(self, epoch: int) -> TaskParams:
        return _epoch_task(self.genesis, epoch)

    def train(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        return _epoch_set(self.genesis, epoch, self.train_size, TRAIN_DOMAIN)

    def validation(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        return _epoch_set(self.genesis, epoch, self.validation_size, VALIDATION_DOMAIN)

    def test(self, test_key: bytes, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        return _round_test_set(test_key, self.test_set_size, self.task(epoch))

    def to_json(self) -> dict[str, object]:
        """For the pool protocol's job: the genesis as hex, the sizes as ints."""
        return {"genesis": self.genesis.hex(), "train_size": self.train_size,
                "validation_size": self.validation_size, "test_set_size": self.test_set_size,
                "epoch_rounds": self.epoch_rounds}

    @classmethod
    def from_json(cls, data: object) -> ChainData:
        """Inverse of :meth:`to_json`; ``bad-task-data`` on anything else."""
        bad = DataError("bad-task-data", "need genesis (32 bytes hex) and four sizes in 1..1,000,000")
        if not isinstance(data, dict) or not isinstance(data.get("genesis"), str):
            raise bad
        try:
            genesis = bytes.fromhex(data["genesis"])
        except ValueError:
            raise bad from None
        sizes = [data.get(k) for k in ("train_size", "validation_size", "test_set_size", "epoch_rounds")]
        if len(genesis) != 32 or not all(type(v) is int and 1 <= v <= MAX_SAMPLES for v in sizes):
            raise bad
        train, validation, test, epoch_rounds = (int(v) for v in sizes)  # type: ignore[arg-type]
        return cls(genesis, train, validation, test, epoch_rounds)


@functools.lru_cache(maxsize=8)
def _epoch_task(genesis: bytes, epoch: int) -> TaskParams:
    return draw_task_params(epoch_key(genesis, epoch))


@functools.lru_cache(maxsize=4)
def _round_test_set(test_key: bytes, n: int, task: TaskParams) -> tuple[np.ndarray, np.ndarray]:
    """A round's test set, generated once per process while it is in use (a miner scores each
    of its commitments on it, one at a time)."""
    return generate(test_key, n, task, TEST_DOMAIN)


@functools.lru_cache(maxsize=8)
def _epoch_set(genesis: bytes, epoch: int, n: int, domain: bytes) -> tuple[np.ndarray, np.ndarray]:
    return generate(epoch_key(genesis, epoch), n, _epoch_task(genesis, epoch), domain)
