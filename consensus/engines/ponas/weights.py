"""Model weights as canonical, untrusted-safe bytes (safetensors; never pickle).

Encoding: ``safetensors.torch.save(state_dict)`` with no metadata. The safetensors writer
orders tensors canonically (by dtype alignment, then name) and pads the JSON header to a
multiple of 8 bytes, so identical weights always give identical bytes, whatever the order of
the state dict. :func:`weights_hash` (sha256) of those bytes is what a header commits to.

Decoding (:func:`load_weights`) is strict, with a fixed check order, cheap checks first:

1. size: ``len(data) > max_bytes`` -> ``weights-too-large`` (before any parsing);
2. format: the safetensors parser (Rust, no code execution) must accept the bytes, and
   re-encoding the parsed tensors must give back exactly ``data`` (rejects metadata, extra
   header whitespace, reordered or overlapping data and any other alternative spelling, so one
   set of weights has one hash) -> ``bad-weights-format``;
3. genotype: the declared genotype must parse -> ``bad-genotype``;
4. shape: the tensor names, shapes and dtypes must equal those of a freshly built model of the
   declared genotype -> ``bad-weights-shape``;
5. value: every floating tensor finite, BatchNorm running variances >= 0, batch counters >= 0
   -> ``bad-weights-value``.

Any exception the parser raises on garbage is turned into ``bad-weights-format``: a caller only
ever sees :class:`WeightsError` (or a :class:`~.space.GenotypeError` for an unknown space).
"""

from __future__ import annotations

import hashlib

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import nn

from .model import build_model
from .space import GenotypeError

__all__ = [
    "WeightsError",
    "serialize_weights",
    "weights_hash",
    "load_weights",
    "DEFAULT_MAX_WEIGHTS_BYTES",
]

DEFAULT_MAX_WEIGHTS_BYTES = 4_000_000


class WeightsError(ValueError):
    """Weights that cannot be accepted. ``reason``: ``weights-too-large``,
    ``bad-weights-format``, ``bad-weights-shape``, ``bad-weights-value``, ``bad-genotype``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def _canonical_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in sorted(state.items())
    }


def serialize_weights(model: nn.Module) -> bytes:
    """The canonical bytes of ``model.state_dict()`` (parameters and BatchNorm statistics)."""
    return bytes(_st_save(_canonical_tensors(model.state_dict()), metadata=None))


def weights_hash(data: bytes) -> bytes:
    """sha256 digest (32 bytes) of serialised weights."""
    return hashlib.sha256(data).digest()


def load_weights(
    data: bytes,
    space_name: str,
    genotype: str,
    max_bytes: int = DEFAULT_MAX_WEIGHTS_BYTES,
    *,
    num_classes: int = 10,
    in_shape: tuple[int, int, int] = (1, 8, 8),
) -> nn.Module:
    """Check ``data`` as weights of ``genotype`` and return the loaded model in eval mode.

    See the module docstring for the check order and reasons.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WeightsError("bad-weights-format", "weights must be bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise WeightsError("weights-too-large", f"{len(data)} > {max_bytes} bytes")
    try:
        tensors = _st_load(data)
    except Exception as exc:  # noqa: BLE001 - any parser failure is a format error
        raise WeightsError("bad-weights-format", f"{type(exc).__name__}: {exc}"[:200]) from None
    try:
        canonical = bytes(_st_save(_canonical_tensors(tensors), metadata=None))
    except Exception as exc:  # noqa: BLE001
        raise WeightsError("bad-weights-format", f"cannot re-encode: {exc}"[:200]) from None
    if canonical != data:
        raise WeightsError("bad-weights-format", "not the canonical encoding")
    try:
        model = build_model(space_name, genotype, num_classes, in_shape)
    except GenotypeError as exc:
        if exc.reason == "bad-genotype":
            raise WeightsError("bad-genotype", exc.detail) from None
        raise
    expected = model.state_dict()
    if set(tensors) != set(expected):
        missing = sorted(set(expected) - set(tensors))[:3]
        extra = sorted(set(tensors) - set(expected))[:3]
        raise WeightsError("bad-weights-shape", f"missing {missing}, unexpected {extra}")
    for name, ref in expected.items():
        got = tensors[name]
        if got.dtype != ref.dtype or tuple(got.shape) != tuple(ref.shape):
            raise WeightsError(
                "bad-weights-shape",
                f"{name}: {got.dtype}{tuple(got.shape)} != {ref.dtype}{tuple(ref.shape)}",
            )
    for name, got in tensors.items():
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise WeightsError("bad-weights-value", f"{name} has NaN or infinity")
        if (name.endswith("running_var") or name.endswith("num_batches_tracked")) and bool(
            (got < 0).any()
        ):
            raise WeightsError("bad-weights-value", f"{name} is negative")
    model.load_state_dict(tensors, strict=True)
    return model.eval()
