"""Bit-exact 1-D training and scoring (consensus.engines.ponas.exact, train_sequences).

Proves: training the 1-D NB201 network on MNIST-1D sequences with a tiny recipe, then scoring
it, gives the same weights hash and the same score in fresh processes whatever
``ATEN_CPU_CAPABILITY`` (default, avx2, avx512 where the CPU has it) the environment asks for and
with 1 or 2 torch threads, because :func:`pin_kernels` pins ATen's baseline kernels, MKL's
COMPATIBLE branch, no oneDNN and one thread (without the pinning these hashes differ: BatchNorm,
the SGD update and initialisation change with the capability); that pinning is refused once a
process has already run torch on other kernels; and the 1-D network's plumbing: the ``nb201-1d``
space builds it with the input scale of :func:`sequence_input`, its logits are ``(N, 10)``, and
its weights round-trip through the strict loader.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from consensus.engines.ponas import mnist1d
from consensus.engines.ponas.model import (
    SEQUENCE_INPUT_DIVISOR,
    NB201Network1D,
    build_model,
    sequence_input,
)
from consensus.engines.ponas.space import SPACES, NB201Space1D
from consensus.engines.ponas.weights import load_weights, serialize_weights

REPO = Path(__file__).resolve().parents[2]
MIXED = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"

# Runs in a fresh process: asks for `threads` torch threads, pins, trains, scores, prints JSON.
_CHILD = """
import hashlib, json, os, sys
import torch
threads = int(sys.argv[1])
torch.set_num_threads(threads)
asked = os.environ.get("ATEN_CPU_CAPABILITY", "")
from consensus.engines.ponas import mnist1d
from consensus.engines.ponas.exact import pin_kernels
from consensus.engines.ponas.recipe import Recipe
from consensus.engines.ponas.train import score_sequences, train_sequences
pin_kernels()
recipe = Recipe(epochs=2, batch_size=32, optimiser="sgd", lr_ppm=100_000, momentum_ppm=900_000,
                weight_decay_ppm=500, seed=7, schedule="linear")
x, y = mnist1d.generate(b"exact-test", 320, domain=b"train")
xt, yt = mnist1d.generate(b"exact-test", 500, domain=b"test")
model, weights = train_sequences(sys.argv[2], recipe, 1, x, y)
print(json.dumps({
    "asked": asked, "threads": torch.get_num_threads(),
    "capability": torch.backends.cpu.get_cpu_capability(),
    "weights": hashlib.sha256(weights).hexdigest(), "score": score_sequences(model, xt, yt),
}))
"""

_CHILD_LATE_PIN = """
import torch
torch.ones(8, 8) @ torch.ones(8, 8)  # torch and MKL choose their kernels here
from consensus.engines.ponas.exact import ExactnessError, pin_kernels
import os
from consensus.engines.ponas.exact import EXACT_ENV
try:
    pin_kernels()
except ExactnessError as exc:
    # a refused pin takes its environment back: children started later are not half pinned
    print(exc.reason if not any(name in os.environ for name in EXACT_ENV) else "environment-left-pinned")
else:
    print("pinned")
"""


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _capabilities() -> list[str]:
    flags = _cpu_flags()
    caps = ["default"]
    if "avx2" in flags:
        caps.append("avx2")
    if "avx512f" in flags:  # ATen's AVX512 kernels also need avx512bw/vl/dq, which come together
        caps.append("avx512")
    return caps


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATEN_", "MKL_", "ONEDNN_"))}
    env.update(extra)
    return env


def _finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out.strip().splitlines()[-1]


def _start(code: str, args: list[str], env_extra: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=REPO, env=_env(env_extra),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


X86_LINUX = sys.platform == "linux" and platform.machine().lower() in ("x86_64", "amd64")


@pytest.mark.skipif(not X86_LINUX, reason="exactness is defined on x86-64 (reads /proc/cpuinfo)")
def test_training_and_scoring_are_identical_across_kernels_and_threads() -> None:
    # the children run concurrently (each is mostly torch's start-up and first-call costs)
    runs = [(cap, threads) for cap in _capabilities() for threads in (1, 2)]
    procs = [
        _start(_CHILD, [str(t), MIXED], {"ATEN_CPU_CAPABILITY": cap, "OMP_NUM_THREADS": str(t)})
        for cap, t in runs
    ]
    results = [json.loads(_finish(p)) for p in procs]
    for (cap, threads), out in zip(runs, results):
        assert out["asked"] == cap and out["threads"] == threads
        assert out["capability"] == "DEFAULT"
    first = results[0]
    assert 50 < first["score"] <= 500  # it learned something (chance is ~50 of 500)
    for out in results[1:]:
        assert (out["weights"], out["score"]) == (first["weights"], first["score"]), (first, out)


@pytest.mark.skipif(not X86_LINUX, reason="exactness is defined on x86-64")
def test_pinning_is_refused_after_torch_chose_its_kernels() -> None:
    assert _finish(_start(_CHILD_LATE_PIN, [], {})) == "kernels-not-pinned"


def test_nb201_1d_space_builds_the_1d_network() -> None:
    space = SPACES["nb201-1d"]
    assert isinstance(space, NB201Space1D) and space.name == "nb201-1d"
    assert space.size == 15_625 and space.encode(1234) == SPACES["nb201"].encode(1234)
    model = build_model("nb201-1d", MIXED, generator=torch.Generator().manual_seed(3))
    assert isinstance(model, NB201Network1D)
    x, y = mnist1d.generate(b"k", 6)
    logits = model.eval()(sequence_input(x))
    assert logits.shape == (6, 10) and bool(torch.isfinite(logits).all())
    data = serialize_weights(model)
    again = load_weights(data, "nb201-1d", MIXED)
    assert serialize_weights(again) == data


def test_sequence_input_scale() -> None:
    x = np.array([[0, 635, -635, 4096, -32768, 32767]], dtype=np.int16)
    t = sequence_input(x)
    assert t.shape == (1, 1, 6) and t.dtype == torch.float32
    expected = np.array(x, dtype=np.float32) / np.float32(SEQUENCE_INPUT_DIVISOR)
    assert np.array_equal(t.numpy()[:, 0], expected)
    with pytest.raises(TypeError):
        sequence_input(x.astype(np.int32))
