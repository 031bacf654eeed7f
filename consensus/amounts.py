"""Exact conversion between decimal coin amounts typed by people and integer base units."""

from __future__ import annotations

import re

from consensus.errors import ConsensusError
from consensus.types import COIN, MAX_AMOUNT

DECIMALS = 8
_AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]+))?")  # ASCII digits only: \d also matches "١"


class BadAmount(ConsensusError):
    """Text that is not an amount of coins."""


def parse_amount(text: str, *, allow_zero: bool = False) -> int:
    """``"1.5"`` -> 150000000. No floats: the text is split at the point and read as integers.

    Raises :class:`BadAmount`: ``bad-amount`` (not a plain decimal, negative, zero),
    ``too-precise`` (more than 8 decimals) or ``amount-too-large``.
    """
    if not isinstance(text, str):
        raise BadAmount("bad-amount", "an amount is text like 1.25")
    match = _AMOUNT.fullmatch(text.strip())
    if not match:
        raise BadAmount("bad-amount", f"{text!r} is not a plain decimal amount like 1.25")
    whole, frac = match.group(1), match.group(2) or ""
    if len(frac) > DECIMALS and frac[DECIMALS:].strip("0"):
        raise BadAmount("too-precise", f"{text!r} has more than {DECIMALS} decimals")
    frac = frac[:DECIMALS].ljust(DECIMALS, "0")
    if len(whole) > 20:
        raise BadAmount("amount-too-large", f"{text!r} is too large")
    units = int(whole) * COIN + int(frac)
    if units > MAX_AMOUNT:
        raise BadAmount("amount-too-large", f"{text!r} is too large")
    if units == 0 and not allow_zero:
        raise BadAmount("bad-amount", "the amount must be more than zero")
    return units


def format_amount(units: int) -> str:
    """150000000 -> ``"1.5"``; trailing zeros trimmed, at least one decimal kept off."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), COIN)
    text = f"{whole}.{frac:08d}".rstrip("0").rstrip(".")
    return sign + text
