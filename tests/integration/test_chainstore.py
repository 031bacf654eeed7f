"""The LevelDB chain store: blocks connect in synced batches, a heavier branch causes a reorg
whose state equals a freshly replayed chain (and back again), an invalid heavier branch is
refused without touching the chain, a reopened datadir has exactly the same tip and state,
and a locked, foreign or future-schema datadir is refused and left untouched."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus.chain import genesis_block
from consensus.errors import InvalidBlock
from consensus.types import Block
from node.chain import Chain
from node.generate import open_chain
from node.storage import StorageError
from node.storage import schema as S
from node.storage.kv import open_datadir
from tests.builders import Clock, keys, make_params, pow_block, reseal, transfer

K = keys(4)
PARAMS = make_params(K[:2])


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    with open_chain(str(tmp_path / "node"), PARAMS, clock=Clock()) as c:
        yield c


def extend(c: Chain, parent_hash: bytes, n: int, miner: int, txs_first: list | None = None) -> list[Block]:  # type: ignore[type-arg]
    """Build ``n`` blocks on ``parent_hash`` with the state at that block, import each."""
    blocks = []
    replay = replay_accounts(c, parent_hash)
    parent = c.index[parent_hash].header
    for i in range(n):
        txs = txs_first if (i == 0 and txs_first) else []
        b = pow_block(PARAMS, parent, replay, K[miner].address, txs, extra=bytes([miner, i]))
        from consensus.state import apply_body

        replay = {**replay, **apply_body(replay, b, PARAMS)}
        c.import_block(b)
        blocks.append(b)
        parent = b.header
    return blocks


def replay_accounts(c: Chain, block_hash: bytes) -> dict:  # type: ignore[type-arg]
    """Accounts at ``block_hash``, computed from scratch by replaying its branch."""
    from consensus.state import apply_body, genesis_accounts

    path = []
    h = block_hash
    while h != c.genesis_hash:
        path.append(h)
        h = c.index[h].header.parent
    accounts = genesis_accounts(PARAMS)
    for bh in reversed(path):
        block = c.get_block(bh)
        assert block is not None
        accounts = {**accounts, **apply_body(accounts, block, PARAMS)}
    return accounts


def fresh_root(c: Chain) -> bytes:
    from consensus.state import state_root

    return state_root(replay_accounts(c, c.tip_hash))


def test_connect_and_reopen(tmp_path: Path) -> None:
    d = str(tmp_path / "node")
    with open_chain(d, PARAMS, clock=Clock()) as c:
        extend(c, c.tip_hash, 4, 2, [transfer(PARAMS, K[0], K[1].address, 123, 0)])
        tip, root, height = c.tip_hash, c.state_root(), c.height
        assert c.tip.state_root == root
    with open_chain(d, PARAMS, clock=Clock()) as c2:
        assert (c2.tip_hash, c2.state_root(), c2.height) == (tip, root, height)
        assert c2.account(K[1].address).balance == 1000 * 10**8 + 123
        block_hash, position = c2.find_tx(transfer(PARAMS, K[0], K[1].address, 123, 0).hash())  # type: ignore[misc]
        assert c2.index[block_hash].header.height == 1 and position == 1


def test_three_block_reorg_and_back(chain: Chain) -> None:
    r"""
        genesis - a1 - a2 - a3 ............ - a4 - a5     (A, tip at the end)
               \
                b1 - b2 - b3 - b4                          (B, tip in the middle)
    """
    g = chain.genesis_hash
    a = extend(chain, g, 3, 2, [transfer(PARAMS, K[0], K[2].address, 5 * 10**8, 0)])
    root_a3 = chain.state_root()
    assert chain.tip_hash == a[-1].header.hash() and root_a3 == fresh_root(chain)

    b = extend(chain, g, 3, 3, [transfer(PARAMS, K[0], K[3].address, 7 * 10**8, 0)])
    assert chain.tip_hash == a[-1].header.hash(), "equal work: the first seen branch stays"
    b += extend(chain, b[-1].header.hash(), 1, 3)
    assert chain.tip_hash == b[-1].header.hash()
    assert chain.height == 4
    assert chain.state_root() == fresh_root(chain) == chain.tip.state_root
    assert chain.account(K[2].address).balance == 0
    assert chain.account(K[3].address).balance == 4 * PARAMS.subsidy(1) + 7 * 10**8 + 1000
    assert chain.find_tx(a[0].txs[0].hash()) is None

    more = extend(chain, a[-1].header.hash(), 2, 2)
    assert chain.tip_hash == more[-1].header.hash() and chain.height == 5
    assert chain.state_root() == fresh_root(chain) == chain.tip.state_root
    assert chain.account(K[2].address).balance == 5 * PARAMS.subsidy(1) + 5 * 10**8 + 1000
    assert [chain.hash_at(i) for i in range(1, 4)] == [x.header.hash() for x in a]


def history(c: Chain, k: int, limit: int = 100, before: tuple[int, int] | None = None) -> list[tuple[int, int, int]]:
    return [(i.height, i.position, i.roles) for i in c.history(K[k].address, limit, before)]


def test_address_history_follows_reorgs_and_reopen(tmp_path: Path) -> None:
    r"""
        genesis - a1(K0->K2, K0->K1) - a2            (A)
               \
                b1 - b2 - b3                          (B: no transfer; K3 mines)
    """
    d = str(tmp_path / "node")
    with open_chain(d, PARAMS, clock=Clock()) as c:
        g = c.genesis_hash
        assert history(c, 0) == [(0, 0, S.ROLE_GENESIS)]
        a = extend(c, g, 2, 2, [transfer(PARAMS, K[0], K[2].address, 5 * 10**8, 0),
                                transfer(PARAMS, K[0], K[1].address, 10**8, 1)])
        assert history(c, 0) == [(1, 2, S.ROLE_SENDER), (1, 1, S.ROLE_SENDER), (0, 0, S.ROLE_GENESIS)]
        assert history(c, 1) == [(1, 2, S.ROLE_RECIPIENT), (0, 0, S.ROLE_GENESIS)]
        assert history(c, 2) == [(2, 0, S.ROLE_PAYOUT), (1, 1, S.ROLE_RECIPIENT), (1, 0, S.ROLE_PAYOUT)]
        # paging: newest first, then what lies below the cursor
        assert history(c, 2, limit=1) == [(2, 0, S.ROLE_PAYOUT)]
        assert history(c, 2, before=(2, 0)) == [(1, 1, S.ROLE_RECIPIENT), (1, 0, S.ROLE_PAYOUT)]
        assert history(c, 2, before=(1, 1)) == [(1, 0, S.ROLE_PAYOUT)]
        b = extend(c, g, 3, 3)
        assert c.tip_hash == b[-1].header.hash()
        assert history(c, 0) == [(0, 0, S.ROLE_GENESIS)]
        assert history(c, 2) == []
        assert history(c, 3) == [(3, 0, S.ROLE_PAYOUT), (2, 0, S.ROLE_PAYOUT), (1, 0, S.ROLE_PAYOUT)]
        extend(c, a[-1].header.hash(), 2, 2)  # back to A, now the heavier branch
        assert history(c, 3) == []
        assert history(c, 0)[0] == (1, 2, S.ROLE_SENDER)
        want = {k: history(c, k) for k in range(4)}
    with open_chain(d, PARAMS, clock=Clock()) as c2:
        assert {k: history(c2, k) for k in range(4)} == want
        assert len(want[2]) == 5


def test_reorg_result_names_old_and_new(chain: Chain) -> None:
    r"""
        genesis - a1 - a2                 (A: the tip, then disconnected: a2 first)
               \
                b1 - b2 - b3              (B: b3 makes it heavier; connected b1, b2, b3)
    """
    g = chain.genesis_hash
    a = extend(chain, g, 2, 2)
    b = extend(chain, g, 2, 3)
    replay = replay_accounts(chain, b[-1].header.hash())
    b3 = pow_block(PARAMS, b[-1].header, replay, K[3].address)
    result = chain.import_block(b3)
    assert result.status == "reorg"
    assert result.old_tip == a[-1].header.hash() and result.new_tip == b3.header.hash()
    assert [b.header.hash() for b in result.disconnected] == [a[1].header.hash(), a[0].header.hash()]
    assert [b_.header.hash() for b_ in result.connected] == [b[0].header.hash(), b[1].header.hash(), b3.header.hash()]


def test_invalid_heavier_branch_is_refused(chain: Chain) -> None:
    r"""
        genesis - a1 - a2                 (A: stays the tip)
               \
                b1* - b2 - b3             (B: b1 overspends; stored as a side branch until b3
                                           makes B heavier, then refused: insufficient-funds)
    """
    g = chain.genesis_hash
    a = extend(chain, g, 2, 2)
    root = chain.state_root()
    # A side branch whose first block overspends: stored (its header is fine), but when the
    # branch becomes heavier and is connected, it fails and the chain stays on A.
    bad_tx = transfer(PARAMS, K[0], K[3].address, 5000 * 10**8, 0)
    b1 = pow_block(PARAMS, chain.genesis.header, replay_accounts(chain, g), K[3].address)
    b1 = Block(b1.header, b1.coinbase, (bad_tx,), None)
    b1 = reseal(b1, txs_root=b1.compute_txs_root())
    assert chain.import_block(b1).status == "side"
    b2 = pow_block(PARAMS, b1.header, replay_accounts(chain, g), K[3].address, timestamp=b1.header.timestamp + 1)
    assert chain.import_block(b2).status == "side"
    b3 = pow_block(PARAMS, b2.header, replay_accounts(chain, g), K[3].address, timestamp=b2.header.timestamp + 1)
    with pytest.raises(InvalidBlock) as err:
        chain.import_block(b3)
    assert err.value.reason == "insufficient-funds"
    assert chain.tip_hash == a[-1].header.hash() and chain.state_root() == root
    with pytest.raises(InvalidBlock) as err2:
        chain.import_block(b3)
    assert err2.value.reason == "duplicate-invalid"


def test_side_blocks_are_refused_for_what_needs_no_state(chain: Chain) -> None:
    """Attack 9 of the round-protocol review: a side block (one that does not join the tip) was
    stored after its header, seal and body shape only; a coinbase paying 1,000 times the
    subsidy and weights over the chain's limit were kept. Both are refused on arrival now,
    before anything is stored, with their reasons; the side block within the rules is kept."""
    from dataclasses import replace

    from consensus.types import Coinbase, Payout

    a = extend(chain, chain.genesis_hash, 2, 2)
    side = pow_block(PARAMS, chain.genesis.header, replay_accounts(chain, chain.genesis_hash), K[3].address,
                     extra=b"side")
    greedy = Coinbase(1, (Payout(K[3].address, 1000 * PARAMS.subsidy(1)),))
    rich = replace(side, coinbase=greedy)
    rich = reseal(rich, payouts_root=greedy.payouts_root(), txs_root=rich.compute_txs_root())
    with pytest.raises(InvalidBlock) as err:
        chain.import_block(rich)
    assert err.value.reason == "bad-cb-amount"
    entry = chain.index.get(rich.header.hash())
    assert entry is None or entry.status.name == "FAILED"  # marked, never stored as data
    heavy = b"\x00" * (PARAMS.ponas.max_weights_bytes + 1)
    fat = reseal(side, weights_hash=hashlib.sha256(heavy).digest())
    with pytest.raises(InvalidBlock) as err:
        chain.import_block(fat, heavy)
    assert err.value.reason == "weights-too-large" and chain.get_weights(fat.header.weights_hash) is None
    assert chain.import_block(side).status == "side" and chain.tip_hash == a[-1].header.hash()


def test_unknown_parent_and_duplicate(chain: Chain) -> None:
    orphan = reseal(pow_block(PARAMS, chain.tip, chain.accounts, K[2].address), parent=b"\x07" * 32)
    with pytest.raises(InvalidBlock) as err:
        chain.import_block(orphan)
    assert err.value.reason == "unknown-parent"
    block = pow_block(PARAMS, chain.tip, chain.accounts, K[2].address)
    assert chain.import_block(block).status == "connected"
    assert chain.import_block(block).status == "duplicate"


def _digest_dir(path: Path) -> str:
    h = hashlib.sha256()
    for root, _dirs, files in sorted(os.walk(path)):
        for name in sorted(files):
            p = Path(root) / name
            h.update(str(p.relative_to(path)).encode() + p.read_bytes())
    return h.hexdigest()


def test_second_open_is_locked(tmp_path: Path) -> None:
    d = str(tmp_path / "node")
    with open_chain(d, PARAMS, clock=Clock()):
        with pytest.raises(StorageError) as err:
            open_datadir(d, PARAMS.chain_id, genesis_block(PARAMS).header.hash())
        assert err.value.reason == "datadir-locked"
    with open_chain(d, PARAMS, clock=Clock()) as c:  # the lock was released on close
        assert c.height == 0


def test_foreign_chain_and_schema_refused_untouched(tmp_path: Path) -> None:
    d = tmp_path / "node"
    with open_chain(str(d), PARAMS, clock=Clock()) as c:
        extend(c, c.tip_hash, 2, 2)
    before = _digest_dir(d)
    other = make_params(K[:2], chain_id="ponas-elsewhere")
    with pytest.raises(StorageError) as err:
        with open_chain(str(d), other, clock=Clock()):
            pass
    assert err.value.reason == "wrong-chain"
    assert _digest_dir(d) == before
    ident = json.loads((d / "chain.json").read_text())
    ident["schema"] = 99
    (d / "chain.json").write_text(json.dumps(ident))
    before = _digest_dir(d)
    with pytest.raises(StorageError) as err:
        with open_chain(str(d), PARAMS, clock=Clock()):
            pass
    assert err.value.reason == "wrong-schema"
    assert _digest_dir(d) == before
