"""The pow engine: compact targets round-trip, retargeting scales with the measured interval
within a factor of four and never past the limit, and work grows as the target shrinks."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.chain import genesis_block
from consensus.engines.pow import PowEngine, bits_to_target, target_to_bits, work_of
from consensus.params import DEVNET_POW
from consensus.types import Header
from tests.builders import make_params
from tests.framework.chainview import MemoryView


@given(st.integers(min_value=1, max_value=2**255))
def test_compact_round_trip_is_a_truncation(target: int) -> None:
    bits = target_to_bits(target)
    back = bits_to_target(bits)
    assert back <= target
    assert target_to_bits(back) == bits
    assert target - back < max(1, target >> 15)  # keeps the top 23 bits


@pytest.mark.parametrize("bits", [0x1D00FFFF, 0x207FFFFF, 0x1F0FFFFF, 0x03123456])
def test_known_bits(bits: int) -> None:
    assert target_to_bits(bits_to_target(bits)) == bits


def test_negative_compact_target_is_unmeetable() -> None:
    assert bits_to_target(0x04923456) == 0 and work_of(0x04923456) == 0


def test_work_grows_as_target_shrinks() -> None:
    assert work_of(0x1D00FFFF) > work_of(0x1F0FFFFF) > work_of(0x207FFFFF) > 0


def line(start: Header, n: int, spacing: int) -> tuple[list[Header], MemoryView]:
    """A straight chain of ``n`` headers after ``start``, ``spacing`` seconds apart, and its view."""
    headers = [start]
    for _ in range(n):
        p = headers[-1]
        headers.append(replace(p, height=p.height + 1, parent=p.hash(), timestamp=p.timestamp + spacing))
    return headers, MemoryView(*headers)


@pytest.mark.parametrize(
    ("spacing", "factor_num", "factor_den"),
    [(60, 1, 1), (30, 1, 2), (120, 2, 1), (1, 1, 4), (10_000, 4, 1)],
)
def test_retarget(spacing: int, factor_num: int, factor_den: int) -> None:
    params = replace(make_params(), pow=replace(DEVNET_POW, initial_bits=0x1D00FFFF, limit_bits=0x207FFFFF))
    engine = PowEngine(params)
    g = replace(genesis_block(params).header, bits=0x1D00FFFF)
    interval = params.pow.retarget_interval
    headers, view = line(g, interval - 1, spacing)
    parent = headers[-1]
    # Before the boundary the bits stay; at the boundary they scale with the measured time.
    assert engine.expected_bits(headers[-2], view) == 0x1D00FFFF
    new = bits_to_target(engine.expected_bits(parent, view))
    old = bits_to_target(0x1D00FFFF)
    # The interval measured is (interval - 1) spacings, from block 0 to block interval - 1.
    measured = min(max(spacing * (interval - 1), 60 * interval // 4), 60 * interval * 4)
    assert new == bits_to_target(target_to_bits(old * measured // (60 * interval)))
    if (factor_num, factor_den) == (4, 1):
        assert new <= old * 4
    if (factor_num, factor_den) == (1, 4):
        assert new >= old // 4 - (old >> 20)


def test_retarget_never_easier_than_limit() -> None:
    params = replace(make_params(), pow=replace(DEVNET_POW, initial_bits=0x207FFFFF, limit_bits=0x207FFFFF))
    engine = PowEngine(params)
    g = replace(genesis_block(params).header, bits=0x207FFFFF)
    headers, view = line(g, params.pow.retarget_interval - 1, 100_000)
    assert engine.expected_bits(headers[-1], view) == 0x207FFFFF
