"""The mempool: admission against the tip state plus pending transfers (nonce order, funds,
signature, duplicates, replacement by fee), selection by fee with each sender's nonces in
order, a size cap that evicts the cheapest, expiry, and re-admission after a reorg."""

from __future__ import annotations

import pytest

from consensus.errors import InvalidTransaction
from consensus.state import Account
from consensus.types import COIN
from node.mempool import Mempool
from tests.builders import Clock, keys, make_params, transfer

K = keys(5)
PARAMS = make_params()
BAL = {k.address: Account(10 * COIN, 0) for k in K[:4]}


def pool(**kw) -> Mempool:  # type: ignore[no-untyped-def]
    return Mempool(PARAMS.chain_id, lambda a: BAL.get(a, Account(0, 0)), clock=kw.pop("clock", Clock()), **kw)


def tx(k: int, nonce: int, fee: int = 1000, amount: int = COIN, to: int = 4):  # type: ignore[no-untyped-def]
    return transfer(PARAMS, K[k], K[to].address, amount, nonce, fee)


def reason(mp: Mempool, t) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidTransaction) as err:
        mp.add(t)
    return err.value.reason


def test_admission_rules() -> None:
    mp = pool()
    mp.add(tx(0, 0))
    assert reason(mp, tx(0, 0)) == "txn-already-in-mempool"
    assert reason(mp, tx(0, 2)) == "bad-nonce"  # gap
    mp.add(tx(0, 1))
    assert mp.pending_nonce(K[0].address) == 2
    assert reason(mp, tx(0, 2, amount=9 * COIN)) == "insufficient-funds"  # counts the pending ones
    assert reason(mp, tx(0, 1, fee=1000, amount=2 * COIN)) == "txn-mempool-conflict"
    mp.add(tx(0, 1, fee=5000, amount=2 * COIN))  # replacement by a higher fee
    assert len(mp) == 2
    assert reason(mp, tx(4, 0, to=0)) == "insufficient-funds"  # unfunded sender
    assert reason(mp, transfer(make_params(chain_id="ponas-other"), K[1], K[4].address, 1, 0)) == "bad-signature"
    assert reason(mp, tx(1, 0, amount=0)) == "bad-amount"


def test_selection_by_fee_in_nonce_order() -> None:
    mp = pool()
    mp.add(tx(0, 0, fee=100))
    mp.add(tx(0, 1, fee=9000))
    mp.add(tx(1, 0, fee=500))
    mp.add(tx(2, 0, fee=300))
    picked = mp.select(10)
    assert [(t.sender, t.nonce) for t in picked] == [
        (K[1].public_key, 0), (K[2].public_key, 0), (K[0].public_key, 0), (K[0].public_key, 1)]
    assert len(mp.select(2)) == 2


def test_size_cap_evicts_the_cheapest() -> None:
    mp = pool(max_count=2)
    mp.add(tx(0, 0, fee=100))
    mp.add(tx(1, 0, fee=200))
    assert reason(mp, tx(2, 0, fee=50)) == "mempool-full"
    mp.add(tx(2, 0, fee=300))
    assert {t.sender for t in mp.txs()} == {K[1].public_key, K[2].public_key}


def test_expiry() -> None:
    clock = Clock()
    mp = pool(clock=clock, expiry=60)
    mp.add(tx(0, 0))
    clock.now += 30
    mp.add(tx(1, 0))
    clock.now += 40
    assert mp.expire() == 1 and len(mp) == 1


def test_update_after_blocks_and_reorgs() -> None:
    mp = pool()
    a, b = tx(0, 0), tx(1, 0)
    mp.add(a)
    mp.add(b)
    BAL[K[0].address] = Account(10 * COIN - COIN - 1000, 1)  # a was mined
    try:
        mp.update(connected_txs=[a])
        assert mp.txs() == [b]
        BAL[K[0].address] = Account(10 * COIN, 0)  # ...and disconnected again by a reorg
        mp.update(connected_txs=[], disconnected_txs=[a])
        assert set(mp.txs()) == {a, b}
        assert a.hash() in mp.verified
    finally:
        BAL[K[0].address] = Account(10 * COIN, 0)
