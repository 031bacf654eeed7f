"""A table of invalid transactions and blocks, each rejected by the pure rules with its
stable reason code; and the valid block beside them accepted, so the table cannot pass by
rejecting everything."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from consensus.chain import genesis_block, validate_block
from consensus.engines import get_engine
from consensus.engines.pow import solve
from consensus.errors import InvalidBlock
from consensus.merkle import merkle_root
from consensus.state import Account, genesis_accounts
from consensus.types import MAX_AMOUNT, Block, Coinbase, Payout, Transfer
from tests.builders import GENESIS_TIME, keys, make_params, pow_block, reseal, transfer, with_body
from tests.framework.chainview import MemoryView

K = keys(4)
PARAMS = make_params(K[:2], coins=1000)
OTHER_CHAIN = make_params(K[:2], coins=1000, chain_id="ponas-other")
ENGINE = get_engine(PARAMS)
GENESIS = genesis_block(PARAMS)
ACCOUNTS = genesis_accounts(PARAMS)
NOW = GENESIS_TIME + 100
MINER = K[3].address


def good(txs: tuple[Transfer, ...] = ()) -> Block:
    return pow_block(PARAMS, GENESIS.header, ACCOUNTS, MINER, txs)


def tx(amount: int = 5, nonce: int = 0, fee: int = 1000, key: int = 0, params=PARAMS) -> Transfer:  # type: ignore[no-untyped-def]
    return transfer(params, K[key], K[2].address, amount, nonce, fee)


def forged_signature() -> Block:
    t = tx()
    return with_body(good(), txs=(replace(t, signature=bytes(64)),))


def overflow_amount() -> Block:
    t = Transfer.create(K[0], K[2].address, MAX_AMOUNT, 1, 0, PARAMS.chain_id)
    return with_body(good(), txs=(t,))


def big_coinbase() -> Block:
    b = good()
    cb = Coinbase(1, (Payout(MINER, PARAMS.subsidy(1) + 1),))
    return with_body(b, coinbase=cb)


def bad_state_root() -> Block:
    return reseal(good(), state_root=bytes(32))


def bad_txs_root() -> Block:
    return reseal(good((tx(),)), txs_root=merkle_root([b"x"]))


def bad_payouts_root() -> Block:
    return reseal(good(), payouts_root=bytes(32))


def unsealed() -> Block:
    b = good()
    for nonce in range(1000):  # find a nonce that misses the target
        h = replace(b.header, nonce=nonce)
        if int.from_bytes(h.hash(), "big") > (1 << 255):
            return replace(b, header=h)
    raise AssertionError("no failing nonce found")


CASES: list[tuple[str, Callable[[], Block]]] = [
    ("bad-signature", forged_signature),
    ("bad-signature", lambda: with_body(good(), txs=(tx(params=OTHER_CHAIN),))),  # replay from another chain
    ("bad-nonce", lambda: with_body(good(), txs=(tx(nonce=1),))),  # gap
    ("bad-nonce", lambda: with_body(good(), txs=(tx(nonce=0), tx(amount=6, nonce=0)))),  # reuse
    ("insufficient-funds", lambda: with_body(good(), txs=(tx(amount=1000 * 10**8),))),  # overspend by the fee
    ("insufficient-funds", lambda: with_body(good(), txs=(tx(key=3),))),  # unfunded sender
    ("self-transfer", lambda: with_body(good(), txs=(transfer(PARAMS, K[2], K[2].address, 5, 0),))),
    ("amount-overflow", overflow_amount),
    ("bad-amount", lambda: with_body(good(), txs=(tx(amount=0),))),
    ("bad-txns-duplicate", lambda: with_body(good(), txs=(tx(), tx()))),
    ("bad-cb-amount", big_coinbase),
    ("bad-cb-payout", lambda: with_body(good(), coinbase=Coinbase(1, (Payout(MINER, 0),)))),
    ("bad-cb-height", lambda: with_body(good(), coinbase=Coinbase(2, (Payout(MINER, 1),)))),
    ("bad-txs-root", bad_txs_root),
    ("bad-state-root", bad_state_root),
    ("bad-payouts-root", bad_payouts_root),
    ("time-too-old", lambda: reseal(good(), timestamp=GENESIS_TIME)),
    ("time-too-new", lambda: reseal(good(), timestamp=NOW + PARAMS.max_future_secs + 1)),
    ("bad-prevblk", lambda: reseal(good(), parent=bytes(32))),
    ("bad-height", lambda: reseal(good(), height=2)),
    ("bad-version", lambda: reseal(good(), version=2)),
    ("bad-engine", lambda: reseal(good(), engine="ponas")),
    ("bad-diffbits", lambda: reseal(good(), bits=0x1F00FFFF)),
    ("high-hash", unsealed),
    ("bad-seal", lambda: reseal(good(), score=5)),
]


def check(block: Block) -> dict[bytes, Account]:
    return validate_block(block, GENESIS.header, ACCOUNTS, PARAMS, ENGINE, MemoryView(GENESIS.header), NOW)


def test_the_valid_block_passes() -> None:
    changes = check(good((tx(), tx(amount=7, nonce=1))))
    assert changes[K[2].address].balance == 12
    assert changes[K[0].address].nonce == 2
    assert changes[MINER].balance == PARAMS.subsidy(1) + 2000


@pytest.mark.parametrize(("reason", "make"), CASES, ids=[f"{i}-{r}" for i, (r, _) in enumerate(CASES)])
def test_invalid_block_rejected_with_reason(reason: str, make: Callable[[], Block]) -> None:
    block = make()
    with pytest.raises(InvalidBlock) as err:
        check(block)
    assert err.value.reason == reason, err.value


def test_pow_solve_meets_target() -> None:
    h = solve(replace(good().header, nonce=0))
    assert ENGINE.block_work(replace(good(), header=h)) > 0
