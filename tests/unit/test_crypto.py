"""Keys and addresses: bech32m addresses detect mistyped characters; signatures verify only
for the right key, message and domain; amounts parse exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.amounts import BadAmount, format_amount, parse_amount
from consensus.crypto import (
    BadAddress,
    PrivateKey,
    format_address,
    parse_address,
    signing_digest,
    verify,
    verify_many,
)
from tests.builders import keys

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


@given(st.binary(min_size=20, max_size=20))
def test_address_round_trip(raw: bytes) -> None:
    text = format_address(raw)
    assert text.startswith("pn1")
    assert parse_address(text) == raw
    assert parse_address(text.upper()) == raw


@given(st.binary(min_size=20, max_size=20), st.integers(min_value=3), st.sampled_from(CHARSET))
def test_any_single_mistyped_character_is_detected(raw: bytes, pos: int, char: str) -> None:
    text = format_address(raw)
    pos = 3 + pos % (len(text) - 3)
    if text[pos] == char:
        return
    typo = text[:pos] + char + text[pos + 1 :]
    with pytest.raises(BadAddress) as err:
        parse_address(typo)
    assert err.value.reason == "bad-checksum"


@pytest.mark.parametrize("text", ["", "pn1", "bc1qxyz", "pn1" + "b" * 40, "Pn1abc", "pn1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqo"])
def test_malformed_addresses(text: str) -> None:
    with pytest.raises(BadAddress):
        parse_address(text)


def test_sign_and_verify() -> None:
    a, b = keys(2)
    digest = signing_digest("ponas/test", "chain-a", [1, 2])
    sig = a.sign(digest)
    assert verify(a.public_key, digest, sig)
    assert not verify(b.public_key, digest, sig)
    assert not verify(a.public_key, signing_digest("ponas/test", "chain-b", [1, 2]), sig)
    assert not verify(a.public_key, signing_digest("ponas/other", "chain-a", [1, 2]), sig)
    assert not verify(a.public_key, digest, sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not verify(a.public_key[:31], digest, sig)


def test_verify_many_matches_verify() -> None:
    ks = keys(4)
    items = []
    for i in range(200):
        k = ks[i % 4]
        d = signing_digest("t", "c", [i])
        sig = k.sign(d)
        if i % 7 == 0:
            sig = bytes(64)
        items.append((k.public_key, d, sig))
    assert verify_many(items, threads=2) == [verify(*it) for it in items]
    assert verify_many(items, threads=2).count(False) == len(range(0, 200, 7))


def test_private_key_repr_hides_secret() -> None:
    k = PrivateKey.generate()
    assert k.seed.hex() not in repr(k)


@pytest.mark.parametrize(
    ("text", "units"),
    [("1", 100_000_000), ("0.00000001", 1), ("12.5", 1_250_000_000), ("1.10000000", 110_000_000), ("0.5", 50_000_000)],
)
def test_parse_amount(text: str, units: int) -> None:
    assert parse_amount(text) == units
    assert parse_amount(format_amount(units)) == units


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("-1", "bad-amount"),
        ("0", "bad-amount"),
        ("1e9999", "bad-amount"),
        ("0.000000001", "too-precise"),
        ("abc", "bad-amount"),
        ("", "bad-amount"),
        ("1.", "bad-amount"),
        ("99999999999999999999", "amount-too-large"),
        ("nan", "bad-amount"),
    ],
)
def test_bad_amounts(text: str, reason: str) -> None:
    with pytest.raises(BadAmount) as err:
        parse_amount(text)
    assert err.value.reason == reason


def test_derived_keys_are_deterministic_and_distinct() -> None:
    import hashlib

    from consensus.crypto import derived_key

    key = PrivateKey(bytes(range(32)))
    keys = [derived_key(key, i) for i in range(5)]
    assert keys[0] is key and len({k.seed for k in keys}) == 5
    assert derived_key(key, 3) == keys[3] and derived_key(PrivateKey(bytes(32)), 3) != keys[3]
    # pinned: a change of the derivation would move every pool's commit keys
    assert derived_key(key, 1).seed == hashlib.sha256(b"ponas/commit-key/v1" + key.seed + (1).to_bytes(4, "big")).digest()
    for bad in (-1, 1 << 32):
        with pytest.raises(ValueError):
            derived_key(key, bad)
