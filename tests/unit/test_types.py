"""Typed objects: canonical round trips through the codec, strict field checks on decode,
and signatures bound to the chain id."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.chain import genesis_block
from consensus.encoding import decode, encode
from consensus.errors import DecodeError
from consensus.state import genesis_accounts
from consensus.types import Block, Coinbase, Commitment, Payout, RoundClose, Transfer
from tests.builders import keys, make_params, pow_block, transfer

K = keys(3)
PARAMS = make_params(K)


def test_block_round_trip() -> None:
    g = genesis_block(PARAMS)
    tx = transfer(PARAMS, K[0], K[1].address, 5, 0)
    accounts = genesis_accounts(PARAMS)
    block = pow_block(PARAMS, g.header, accounts, K[2].address, [tx])
    data = block.encode()
    assert Block.decode(data) == block
    assert Block.decode(data).encode() == data


@given(st.integers(min_value=0, max_value=2**62), st.integers(min_value=0, max_value=2**40))
def test_transfer_round_trip(amount: int, nonce: int) -> None:
    tx = Transfer(K[0].public_key, K[1].address, amount, 7, nonce, bytes(64))
    assert Transfer.decode(tx.encode()) == tx


def test_round_objects_round_trip() -> None:
    c = Commitment(3, bytes(32), bytes(32), b"\x05" * 32, 0, K[0].public_key, bytes(64))
    assert Commitment.decode(c.encode()) == c
    rc = RoundClose(3, bytes(32), bytes(32), bytes(32), bytes(32), 4, 0, 1_700_000_000, K[0].public_key, bytes(64))
    assert RoundClose.decode(rc.encode()) == rc


@pytest.mark.parametrize(
    "mutate",
    [
        lambda v: v[:-1],  # a field missing
        lambda v: v + [0],  # a field too many
        lambda v: [v[0], v[1][:31]] + v[2:],  # short public key
        lambda v: [v[0], v[1], v[2], True] + v[4:],  # bool for an int
        lambda v: [v[0], v[1], v[2], -1] + v[4:],  # negative amount
        lambda v: [9] + v[1:],  # wrong tag
        lambda v: [v[0], v[1], v[2], "5"] + v[4:],  # text for an int
    ],
)
def test_transfer_decode_rejects_bad_fields(mutate) -> None:  # type: ignore[no-untyped-def]
    tx = transfer(PARAMS, K[0], K[1].address, 5, 0)
    with pytest.raises(DecodeError):
        Transfer.decode(encode(mutate(tx.to_value())))


def test_signature_covers_chain_id() -> None:
    tx = transfer(PARAMS, K[0], K[1].address, 5, 0)
    assert tx.has_valid_signature(PARAMS.chain_id)
    assert not tx.has_valid_signature("ponas-other")


def test_coinbase_and_payouts() -> None:
    cb = Coinbase(1, (Payout(K[0].address, 3), Payout(K[1].address, 4)))
    assert cb.total == 7
    assert Coinbase.decode(cb.encode()) == cb
    assert decode(cb.encode())[0] == Coinbase.TAG
