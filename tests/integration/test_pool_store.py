"""The pool manager's LevelDB store: shares, bans, payouts and won blocks survive a restart;
voiding removes exactly a banned member's shares; another chain's store is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.types import Payout
from pool.store import PoolStore, StoreError

A, B = b"\x01" * 20, b"\x02" * 20


def test_store_survives_restart_and_voids_one_member(tmp_path: Path) -> None:
    s = PoolStore(str(tmp_path / "pool"), "ponas-test")
    for i in range(5):
        s.add_share(A if i % 2 else B, "w", 3, 1, f"|g{i}|", i, 100 + i)
    s.ban(A, "score-mismatch", 1.0)
    assert s.void(A) == 2
    s.record_block(4, b"\xaa" * 32, 2.0, [Payout(B, 70), Payout(A, 30)])
    s.record_block(4, b"\xaa" * 32, 2.0, [Payout(B, 70), Payout(A, 30)])  # once only
    s.close()
    s = PoolStore(str(tmp_path / "pool"), "ponas-test")
    assert [(x.seq, x.address, x.genotype) for x in s.shares()] == [(1, B, "|g0|"), (3, B, "|g2|"), (5, B, "|g4|")]
    assert s.next_seq == 6 and s.banned(A) == "score-mismatch" and s.banned(B) is None
    assert (s.paid(A), s.paid(B)) == (30, 70) and [b[0] for b in s.blocks()] == [4]
    s.prune(4)
    assert [x.seq for x in s.shares()] == [5]
    s.close()
    with pytest.raises(StoreError) as err:
        PoolStore(str(tmp_path / "pool"), "other-chain")
    assert err.value.reason == "wrong-chain"
