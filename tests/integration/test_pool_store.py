"""The pool manager's LevelDB store: shares, bans, payouts and won blocks survive a restart;
voiding removes exactly a banned member's shares; pruning forgets old shares but not that their
trainings were credited; a won block is pending until confirmed or orphaned, and an orphaned
block's payouts leave the paid totals (and come back if it is canonical again); a schema-1 or
schema-2 store is upgraded in place, losing nothing; another chain's store is refused; new
shares are written as ordered ``s`` keys only, and a share number is never given twice."""

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
    assert s.prune(4) == 2
    assert [x.seq for x in s.shares()] == [5]
    assert all(s.credited(f"|g{i}|", i) for i in range(5))  # pruned and voided trainings stay credited
    assert not s.credited("|g0|", 1) and not s.credited("|g9|", 9)
    s.close()
    with pytest.raises(StoreError) as err:
        PoolStore(str(tmp_path / "pool"), "other-chain")
    assert err.value.reason == "wrong-chain"


@pytest.mark.parametrize("schema", [1, 2])
def test_an_older_store_is_upgraded_in_place(tmp_path: Path, schema: int) -> None:
    import plyvel

    from consensus.encoding import encode

    path = str(tmp_path / "pool")
    db = plyvel.DB(path, create_if_missing=True)  # schema 1 wrote no "d" keys; 2 one per share (below)
    db.put(b"M", encode([schema, "ponas-test", 3]))
    if schema == 2:
        from pool.store import _credited_key

        db.put(_credited_key("|g1|", 1), b"")
        db.put(_credited_key("|g2|", 2), b"")
    db.put(b"b" + (4).to_bytes(8, "big"), encode([b"\xcc" * 32, 5, [[A, 7]]]))
    for seq in (1, 2):
        db.put(b"s" + seq.to_bytes(8, "big"), encode([A, "w", 20, 7, f"|g{seq}|", seq, 250]))
    db.close()
    s = PoolStore(path, "ponas-test")
    assert [x.seq for x in s.shares()] == [1, 2] and s.next_seq == 3
    assert s.credited("|g1|", 1) and s.credited("|g2|", 2) and not s.credited("|g1|", 2)
    assert [(b.height, b.payouts, b.status) for b in s.blocks()] == [(4, [Payout(A, 7)], "pending")]
    s.close()
    db = plyvel.DB(path)
    assert db.get(b"M") == encode([3, "ponas-test", 3])
    db.close()


def _keys(path: str) -> list[bytes]:
    import plyvel

    db = plyvel.DB(path)
    try:
        return list(db.iterator(include_value=False))
    finally:
        db.close()


def test_new_shares_are_ordered_keys_and_their_numbers_never_repeat(tmp_path: Path) -> None:
    from pool.store import _credited_key

    path = str(tmp_path / "pool")
    s = PoolStore(path, "ponas-test")
    for i in range(4):
        s.add_share(A if i < 3 else B, "w", 3, 1, f"|g{i}|", i, 100 + i)
    assert s.credited("|g3|", 3) and not s.credited("|g3|", 4)
    s.close()
    # the share writes left nothing but s keys beside the store's creation (M of a new store)
    keys = _keys(path)
    assert [k for k in keys if not k.startswith(b"s")] == [b"M"]
    assert [int.from_bytes(k[1:], "big") for k in keys if k.startswith(b"s")] == [1, 2, 3, 4]
    s = PoolStore(path, "ponas-test")
    assert s.next_seq == 5  # past the last stored share, although M still says 1
    assert s.void_share(4) and not s.void_share(4)  # the last share gone: its number is not given again
    s.close()
    s = PoolStore(path, "ponas-test")
    assert s.next_seq == 5 and s.credited("|g3|", 3)  # its training stays credited (a d key now)
    assert s.add_share(A, "w", 3, 1, "|g9|", 9, 1).seq == 5
    assert s.prune(6) == 4 and [x.seq for x in s.shares()] == [] and s.next_seq == 6
    s.close()
    keys = _keys(path)
    assert sorted(k for k in keys if k.startswith(b"d")) == sorted(
        _credited_key(f"|g{i}|", i) for i in (0, 1, 2, 3, 9))
    s = PoolStore(path, "ponas-test")
    assert s.next_seq == 6 and all(s.credited(f"|g{i}|", i) for i in (0, 1, 2, 3, 9))
    assert s.void(A) == 0
    s.close()


def test_won_blocks_settle_and_orphans_leave_the_paid_totals(tmp_path: Path) -> None:
    s = PoolStore(str(tmp_path / "pool"), "ponas-test")
    s.record_block(4, b"\xaa" * 32, 2.0, [Payout(B, 70), Payout(A, 30)])
    s.record_block(5, b"\xbb" * 32, 3.0, [Payout(A, 50)])
    assert [b.status for b in s.blocks()] == ["pending", "pending"] and s.paid(A) == 80
    s.set_block_status(4, "orphaned")
    assert (s.paid(A), s.paid(B)) == (50, 0)
    s.set_block_status(4, "orphaned")  # once only
    assert (s.paid(A), s.paid(B)) == (50, 0)
    s.set_block_status(4, "confirmed")  # a reorganisation made it canonical again
    s.set_block_status(5, "confirmed")
    assert (s.paid(A), s.paid(B)) == (80, 70)
    for height, status, reason in ((4, "lost", "bad-status"), (9, "confirmed", "no-block")):
        with pytest.raises(StoreError) as err:
            s.set_block_status(height, status)
        assert err.value.reason == reason
    s.close()
    s = PoolStore(str(tmp_path / "pool"), "ponas-test")
    assert [(b.height, b.status) for b in s.blocks()] == [(4, "confirmed"), (5, "confirmed")]
    s.close()
