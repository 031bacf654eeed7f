"""Bit-exact CPU training and scoring: pinned kernels, one thread, deterministic algorithms.

The chain compares weight hashes exactly: a retrain with the pinned recipe and the declared seed
must give the committed weights byte for byte, and a score must be a pure function of weights,
genotype and round key. ``torch`` on x86-64 does not give that by default, because it picks
kernels by CPU at run time. Measured on the pinned build (torch 2.13.0+cpu, MKL 2024.2,
oneDNN 3.12) for the 1-D network's ops, comparing SHA-256 of outputs and gradients:

============================  =====================================================================
source of variation           effect (same inputs, one thread unless stated)
============================  =====================================================================
ATen capability               ``default`` differs from ``avx2``/``avx512`` for BatchNorm (train and
(``ATEN_CPU_CAPABILITY``)     eval, forward and backward), the SGD update (``add_`` with alpha),
                              the cross-entropy backward and ``uniform_`` (so even the initial
                              weights): the per-ISA builds of ATen's kernels contract ``a * b + c``
                              into FMA and vectorise reductions differently (``avx2`` and
                              ``avx512`` agreed with each other on these ops). ReLU, average
                              pooling, the global mean, the cross-entropy forward, and the
                              convolutions and GEMMs (not ATen's kernels) were identical.
oneDNN ISA (what the CPU has; convolution forward and backward change between oneDNN's AVX-512,
``ONEDNN_MAX_CPU_ISA``)       AVX2 and SSE4.1 kernels (1x1 forward: AVX-512 = AVX2 != SSE4.1).
MKL branch (what the CPU has; ``sgemm`` (Linear; convolution's im2col GEMM without oneDNN) changes
``MKL_ENABLE_INSTRUCTIONS``)  between MKL's AVX-512, AVX2 and SSE4.2 code paths.
intra-op threads              convolution gradients change between 1 and 2 threads (oneDNN).
============================  =====================================================================

The pinning (:func:`pin_kernels`, process-wide and irreversible) removes each source:

1. ATen's kernels: ``ATEN_CPU_CAPABILITY=default`` (the baseline x86-64 build of every kernel: SSE2,
   no FMA). ATen reads the variable once, at the first operation that dispatches on the CPU
   capability, so it must be set before the process runs any torch operation (importing torch is
   fine); :func:`pin_kernels` sets it and then checks
   ``torch.backends.cpu.get_cpu_capability() == "DEFAULT"``.
2. oneDNN is switched off (``torch.backends.mkldnn.enabled = False``; NNPACK too): convolutions
   take ATen's im2col + GEMM path.
3. MKL's conditional numerical reproducibility, branch ``COMPATIBLE`` (SSE2 code, same results on
   Intel and compatible processors), set through MKL's ``mkl_serv_cbwr_set`` before MKL's first
   call and checked with ``mkl_serv_cbwr_get`` (MKL's internal names, which ``libtorch_cpu.so``
   exports; the public ``mkl_cbwr_set`` is not exported, and after MKL's first call the set
   fails, which is detected); ``MKL_CBWR=COMPATIBLE`` is also put into the environment for child
   processes.
4. One intra-op thread and deterministic algorithms (:func:`.train.deterministic_cpu`).

With all four, training and scoring hashes were identical under ``ATEN_CPU_CAPABILITY`` =
``default``/``avx2``/``avx512`` in the environment (overridden by the pinning),
``MKL_ENABLE_INSTRUCTIONS`` = ``SSE4_2``/``AVX2``/unset, ``ONEDNN_MAX_CPU_ISA`` = ``AVX2``/``SSE41``
and 1 or 2 process threads (tests/unit/test_ponas_exact.py repeats the first and last).

Covered: x86-64 CPUs (Intel or AMD; SSE2 is all the pinned code needs) running the pinned wheel
``torch==2.13.0+cpu`` with its bundled MKL. Not covered, and refused by :func:`pin_kernels` with
``unsupported-build`` when detectable: other torch versions or builds (another compiler or MKL
may round differently; a build without MKL, e.g. OpenBLAS on aarch64, has no CNR branch), non-x86
machines, GPUs. Such a machine can still mine (search) but must not be trusted to reproduce a
weight hash; it could verify by retraining only against the exact weights of an x86 verifier.

Cost: the baseline kernels, im2col and the SSE2 GEMM are slower than oneDNN's AVX-512 kernels:
1.2x to 1.6x per training step of the 1-D network on one core (measured).

Errors: :class:`ExactnessError` with ``kernels-not-pinned`` (torch already chose its kernels:
pin before the first torch operation of the process) or ``unsupported-build``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import threading
from collections.abc import Callable, Iterator

import torch

__all__ = [
    "ExactnessError",
    "PINNED_TORCH",
    "EXACT_ENV",
    "pin_kernels",
    "kernels_pinned",
    "exact_cpu",
]

PINNED_TORCH = "2.13.0+cpu"
"""The torch build whose results the chain's weight hashes are defined by."""

EXACT_ENV: dict[str, str] = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
"""Environment that :func:`pin_kernels` sets (child processes inherit it)."""

_MKL_CBWR_BRANCH = 1  # mkl_cbwr.h: query the branch
_MKL_CBWR_COMPATIBLE = 3  # mkl_cbwr.h: MKL_CBWR_COMPATIBLE
_MKL_CBWR_SUCCESS = 0

_lock = threading.Lock()
_pinned = False


class ExactnessError(RuntimeError):
    """This process cannot train or score bit-exactly. ``reason``: ``kernels-not-pinned``,
    ``unsupported-build``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def _mkl_cbwr() -> tuple[Callable[[int], int], Callable[[int], int]]:
    lib_path = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        lib = ctypes.CDLL(lib_path)
        get, set_ = lib.mkl_serv_cbwr_get, lib.mkl_serv_cbwr_set
    except (OSError, AttributeError) as exc:
        raise ExactnessError("unsupported-build", f"no MKL CNR control in {lib_path}: {exc}") from None
    for fn in (get, set_):
        fn.argtypes = [ctypes.c_int]
        fn.restype = ctypes.c_int
    return get, set_


def _check_build() -> None:
    if torch.__version__ != PINNED_TORCH:
        raise ExactnessError("unsupported-build", f"torch {torch.__version__}, need {PINNED_TORCH}")
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        raise ExactnessError("unsupported-build", f"machine {machine}, need x86-64")
    if not torch.backends.mkl.is_available():
        raise ExactnessError("unsupported-build", "torch without MKL")


def pin_kernels() -> None:
    """Pin this process to the exact kernels (see the module docstring); idempotent.

    Call it before the process runs its first torch operation (entry points do it right after
    parsing arguments); afterwards the whole process uses the baseline kernels. Raises
    ``kernels-not-pinned`` when torch or MKL had already chosen other kernels, and
    ``unsupported-build`` on a build or machine that is not covered.
    """
    global _pinned
    with _lock:
        if _pinned:
            return
        _check_build()
        # ATen reads the variable at the first capability check: set it before, and take it back
        # if pinning fails, so that a refused process leaves no half-pinned environment to the
        # children it starts later
        before = {name: os.environ.get(name) for name in EXACT_ENV}
        os.environ.update(EXACT_ENV)
        try:
            capability = torch.backends.cpu.get_cpu_capability()
            if capability != "DEFAULT":
                raise ExactnessError(
                    "kernels-not-pinned",
                    f"torch already runs {capability} kernels: pin before the first torch operation",
                )
            get, set_ = _mkl_cbwr()
            if get(_MKL_CBWR_BRANCH) != _MKL_CBWR_COMPATIBLE:
                status = set_(_MKL_CBWR_COMPATIBLE)
                if status != _MKL_CBWR_SUCCESS or get(_MKL_CBWR_BRANCH) != _MKL_CBWR_COMPATIBLE:
                    raise ExactnessError(
                        "kernels-not-pinned",
                        f"MKL already chose its code path (mkl_cbwr_set -> {status}): pin before "
                        "the first matrix product",
                    )
        except ExactnessError:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            raise
        torch._C._set_mkldnn_enabled(False)
        torch.backends.nnpack.set_flags(False)
        _pinned = True


def kernels_pinned() -> bool:
    """Whether :func:`pin_kernels` succeeded in this process and its settings still hold."""
    if not _pinned:
        return False
    get, _ = _mkl_cbwr()
    return (
        torch.backends.cpu.get_cpu_capability() == "DEFAULT"
        and get(_MKL_CBWR_BRANCH) == _MKL_CBWR_COMPATIBLE
        and not torch._C._get_mkldnn_enabled()
        and not torch._C._get_nnpack_enabled()
    )


@contextlib.contextmanager
def exact_cpu() -> Iterator[None]:
    """The body runs bit-exactly: pinned kernels (:func:`pin_kernels`, which must succeed),
    one intra-op thread and deterministic algorithms (:func:`.train.deterministic_cpu`)."""
    from .train import deterministic_cpu  # train imports this module

    pin_kernels()
    if not kernels_pinned():
        raise ExactnessError("kernels-not-pinned", "a pinned setting was changed after pinning")
    with deterministic_cpu(threads=1):
        yield
