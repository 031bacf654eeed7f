"""The canonical encoding: every value round-trips, and every non-canonical, truncated,
trailing, float, map or extension encoding is rejected with a reason code."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.encoding import decode, encode, hash_of
from consensus.errors import DecodeError

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
leaves = st.one_of(ints, st.binary(max_size=64), st.text(max_size=32), st.booleans(), st.none())
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=6), max_leaves=30)


@given(values)
def test_round_trip(value: object) -> None:
    data = encode(value)  # type: ignore[arg-type]
    assert decode(data) == value
    assert encode(decode(data)) == data


@given(values)
@settings(max_examples=200)
def test_every_truncation_is_rejected(value: object) -> None:
    data = encode(value)  # type: ignore[arg-type]
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:cut])


@given(values, st.binary(min_size=1, max_size=4))
def test_trailing_bytes_rejected(value: object, extra: bytes) -> None:
    with pytest.raises(DecodeError) as err:
        decode(encode(value) + extra)  # type: ignore[arg-type]
    assert err.value.reason in ("trailing-bytes",)


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_wide_integer_forms_rejected(n: int) -> None:
    # uint64 form of a value that fits a smaller form is a second encoding: not canonical.
    wide = b"\xcf" + struct.pack(">Q", n)
    with pytest.raises(DecodeError) as err:
        decode(wide)
    assert err.value.reason == "non-canonical"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xcc\x01", "non-canonical"),  # uint8 form of 1
        (b"\xd9\x01a", "non-canonical"),  # str8 form of a 1-byte string
        (b"\xc5\x00\x01x", "non-canonical"),  # bin16 form of a 1-byte blob
        (b"\xdc\x00\x01\x01", "non-canonical"),  # array16 of one item
        (b"\xcb?\xf8\x00\x00\x00\x00\x00\x00", "bad-type"),  # float64
        (b"\xca?\x80\x00\x00", "bad-type"),  # float32
        (b"\x91\xcb?\xf8\x00\x00\x00\x00\x00\x00", "bad-type"),  # float in an array
        (b"\x81\x01\x02", "bad-type"),  # map
        (b"\xd4\x01\x01", "bad-type"),  # ext
        (b"\xa1\xff", "bad-utf8"),
        (b"\xc1", "malformed"),  # never-used byte
        (b"", "truncated"),
        (b"\x93\x01", "truncated"),
        (b"\x01\x02", "trailing-bytes"),
    ],
)
def test_rejections_have_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode(data)
    assert err.value.reason == reason


def test_encode_refuses_floats_and_maps() -> None:
    for bad in (1.5, {"a": 1}, [1, 2.0], 2**64, -(2**63) - 1):
        with pytest.raises(DecodeError):
            encode(bad)  # type: ignore[arg-type]


def test_msgpack_agrees_and_hash_is_sha256_of_encoding() -> None:
    import hashlib

    value = [1, b"\x00" * 32, "genotype", [True, None]]
    assert encode(value) == msgpack.packb(value, use_bin_type=True)
    assert hash_of(value) == hashlib.sha256(encode(value)).digest()


def test_too_deep_rejected() -> None:
    data = b"\x91" * 40 + b"\x01"
    with pytest.raises(DecodeError) as err:
        decode(data)
    assert err.value.reason == "too-deep"
