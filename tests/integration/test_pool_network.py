"""A pool on 127.0.0.1 (regtest): one node holding the beacon's closer key, a pool manager on it
and four members that really train, each in the subspaces the manager assigns (the node checks
blocks with the no-proof verifier: the pool's own checks of its members are under test here,
not the node's). The pool wins
blocks, and the coinbase of a won block pays each member exactly what the PPLNS computation
over the manager's stored shares (the default window: the last three rounds) says. A member
that forges its validation score is caught by re-evaluation, banned, and its shares voided; a
restarted manager still has every share, ban and booked block."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

from consensus.crypto import format_address
from consensus.types import Payout
from pool.manager import Manager, ManagerConfig
from pool.member import Member
from pool.rounds import TrainResult, train_one
from pool.shares import RoundsWindow, Share, split_reward
from pool.store import PoolStore
from tests.builders import keys
from tests.framework.nodes import start_node, wait_for
from tests.framework.noproof import noproof_engine
from tests.ponas_builders import ponas_params

MEMBERS = keys(4, seed=61)
FEE, CHEAT = keys(2, seed=62)


def forged(space: str, recipe: str, genotype: str, seed: int, device: str = "cpu", abort: Any = None) -> TrainResult:
    """A cheater: trains for real, then claims a validation score 40 higher than it got."""
    real = train_one(space, recipe, genotype, seed, device, abort)
    return replace(real, validation=real.validation + 40)


async def test_pool_of_four_wins_and_pays_pplns_then_bans_a_cheater(tmp_path: Path) -> None:
    params = replace(ponas_params(), genesis_time=int(time.time()))
    node = await start_node(tmp_path, "n0", params, closer=True, engine=noproof_engine(params))
    url = f"http://127.0.0.1:{node.api_port}"
    config = ManagerConfig(url, FEE.address, str(tmp_path / "pool"), fee_ppm=10_000, finder_bonus_ppm=5_000,
                           token=node.token, verify_rate=0.5, retrain_rate=0.0)  # the default window: 3 rounds
    manager = Manager(config, rng=random.Random(5), report=lambda line: None)
    await manager.start()
    ws = f"ws://127.0.0.1:{manager.port}/ws"
    stop, member_stop = asyncio.Event(), asyncio.Event()
    members = [Member(ws, k, f"m{i}", "random", rng=random.Random(i), heartbeat=1.0,
                      check_node=url if i == 0 else None)  # member 0 checks what the pool announced on the node
               for i, k in enumerate(MEMBERS)]
    tasks = [asyncio.create_task(manager.run(stop))] + [asyncio.create_task(m.run(member_stop)) for m in members]
    cheater_task = None
    try:
        await wait_for(lambda: len(manager.members) == 4, 15, "four members connected")
        await wait_for(lambda: all(m.stats.jobs for m in members), 30, "every member has a job")
        # every live member searches its own subspaces: together they cover the space once
        plan = manager.scheduler.plan  # type: ignore[union-attr]
        covered = sorted(a.subspace.as_range() for m in manager.members for a in plan.assignments_of(m)
                         if a.role == "primary")
        assert covered[0][0] == 0 and covered[-1][1] == 15625
        assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))

        await wait_for(lambda: manager.store is not None and len(manager.store.blocks()) >= 1, 150,
                       "a block won by the pool and booked", 0.5)
        height, block_hash, _when, payouts, status = manager.store.blocks()[0]  # type: ignore[union-attr]
        assert status in ("pending", "confirmed")  # confirmed once 6 deep on the canonical chain
        block = node.chain.get_block(block_hash)
        assert block is not None and node.chain.is_canonical(block_hash)
        assert list(block.coinbase.payouts) == payouts
        # the split is what PPLNS over the stored shares says, recomputed independently
        weights, finder, reward, last_seq = manager.split_log[block.header.payouts_root]
        assert config.window is None and isinstance(manager.window, RoundsWindow)
        window = RoundsWindow(config.window_rounds)
        window.advance(height)
        for s in manager.store.shares():  # type: ignore[union-attr]
            if s.seq <= last_seq:
                window.add(Share(s.address, s.weight, s.height, s.seq))
        assert window.weights_by_member() == weights and sum(weights.values()) > 0
        accepted = [(x.genotype, x.seed) for x in manager.store.shares()]  # type: ignore[union-attr]
        assert reward == sum(p.amount for p in block.coinbase.payouts)
        want = split_reward(reward, weights, fee_address=FEE.address, fee_ppm=10_000, finder=finder,
                            finder_bonus_ppm=5_000)
        got = sorted(block.coinbase.payouts, key=lambda p: p.address)
        assert sorted(want, key=lambda p: p.address)[:-1] != [] and _same_split(got, want)
        paid_members = {p.address for p in block.coinbase.payouts} & {k.address for k in MEMBERS}
        assert len(paid_members) >= 2, "the coinbase pays at least two members"
        assert finder in {k.address for k in MEMBERS}
        fee_paid = next(p.amount for p in block.coinbase.payouts if p.address == FEE.address)
        assert fee_paid >= reward * 10_000 // 1_000_000
        # member 0 found, on its own node, that the block pays it what the pool announced
        await wait_for(lambda: members[0].stats.blocks_checked >= 1, 30, "member 0's check of the won block", 0.5)
        assert members[0].stats.underpaid == [] and manager.alerts == deque()

        # a cheater joins: its forged best is re-evaluated, it is banned, its shares voided
        cheater = Member(ws, CHEAT, "x", "random", rng=random.Random(9), heartbeat=1.0, train=forged)
        cheater_task = asyncio.create_task(cheater.run(member_stop))
        await wait_for(lambda: cheater.stats.banned is not None, 90, "the cheater banned")
        assert cheater.stats.banned == "score-mismatch"
        assert manager.store.banned(CHEAT.address) == "score-mismatch"  # type: ignore[union-attr]
        assert all(s.address != CHEAT.address for s in manager.store.shares())  # type: ignore[union-attr]
        assert CHEAT.address not in manager.window.weights_by_member()
        assert manager._best is None or manager._best.address != CHEAT.address
        snap = manager.snapshot()
        assert {m["address"] for m in snap["members"]} == {format_address(k.address) for k in MEMBERS}
        # expected payout: each member's part of the last quoted reward under the window now
        now_split = {format_address(p.address): p.amount for p in split_reward(
            manager._last_reward or 0, manager.window.weights_by_member(), fee_address=FEE.address, fee_ppm=10_000,
            finder=None, finder_bonus_ppm=0)}
        assert manager._last_reward is not None
        assert all(m["expected_payout"] == now_split.get(m["address"]) for m in snap["members"])
        assert format_address(CHEAT.address) in snap["banned"] and snap["blocks"][0]["hash"] == block_hash.hex()
    finally:
        member_stop.set()
        stop.set()
        await asyncio.gather(*tasks, *([cheater_task] if cheater_task else []), return_exceptions=True)
        await node.stop()
    # a restarted manager (its store reopened) has every share, the ban and the booked block
    store = PoolStore(str(tmp_path / "pool" / "pool"), params.chain_id)
    try:
        assert store.banned(CHEAT.address) == "score-mismatch"
        assert [b[1] for b in store.blocks()][:1] == [block_hash]
        # the shares of the window (and of the last two rounds' windows) are kept; every training
        # accepted stays credited, pruned or not
        kept = {x.seq for x in store.shares()}
        assert {x.seq for x in manager.window.shares()} <= kept
        assert len(kept) <= manager.stats["accepted"] - manager.stats["voided"]
        assert all(store.credited(g, seed) for g, seed in accepted)
        assert all(store.paid(p.address) >= p.amount for p in payouts)
    finally:
        store.close()


def _same_split(got: list[Payout], want: list[Payout]) -> bool:
    """The template's last payout (the fee address, asked as "the rest") may also hold fees that
    arrived between the two template requests; every other amount is exact."""
    g, w = {p.address: p.amount for p in got}, {p.address: p.amount for p in want}
    return g.keys() == w.keys() and all(g[a] == w[a] for a in g if a != FEE.address) and g[FEE.address] >= w[FEE.address]


async def test_backup_covers_a_killed_high_reward_member_and_the_round_commits(tmp_path: Path) -> None:
    """With a zero threshold every high-reward member whose performance varied gets a backup on
    its subspaces; killing such a member mid-round moves its subspaces to the backup at once,
    the backup's results inside them are accepted, and the pool still commits."""
    params = replace(ponas_params(), genesis_time=int(time.time()))
    node = await start_node(tmp_path, "n0", params, closer=True, engine=noproof_engine(params))
    config = ManagerConfig(f"http://127.0.0.1:{node.api_port}", FEE.address, str(tmp_path / "pool"), window=120,
                           token=node.token, verify_rate=0.2, retrain_rate=0.0, std_threshold=0.0, top_k=1000,
                           heartbeat_timeout=3.0, shared_search=False)  # members train their own subspaces only
    manager = Manager(config, rng=random.Random(8), report=lambda line: None)
    await manager.start()
    ws = f"ws://127.0.0.1:{manager.port}/ws"
    stop = asyncio.Event()
    members = {f"{format_address(k.address)}.m{i}": Member(ws, k, f"m{i}", "random", rng=random.Random(20 + i),
                                                           heartbeat=0.5) for i, k in enumerate(MEMBERS[:3])}
    driver = asyncio.create_task(manager.run(stop))
    tasks = {mid: asyncio.create_task(m.run(stop)) for mid, m in members.items()}
    try:
        def shadowed() -> tuple[str, str] | None:
            stats = manager.scheduler.stats() if manager.scheduler is not None else {}
            for mid, st in stats.items():
                if st["alive"] and st["backed_up_by"] and st["backed_up_by"] in members and st["subspaces"]:
                    return mid, st["backed_up_by"]
            return None

        await wait_for(lambda: shadowed() is not None, 120, "a high-reward member with a backup", 0.25)
        primary, backup = shadowed()  # type: ignore[misc]
        ranges = [tuple(r) for r in manager.scheduler.stats()[primary]["subspaces"]]  # type: ignore[union-attr]
        assert set(ranges) <= {tuple(r) for r in manager.scheduler.stats()[backup]["backup_subspaces"]}  # type: ignore[union-attr]
        seq_at_kill = manager.store.next_seq  # type: ignore[union-attr]
        commits_at_kill = manager.driver.stats.commitments
        tasks[primary].cancel()  # killed mid-round: its connection drops without a goodbye
        await asyncio.gather(tasks[primary], return_exceptions=True)

        def taken_over() -> bool:
            plan = manager.scheduler.plan  # type: ignore[union-attr]
            return all(plan.owner_of(r) == backup for r in ranges)

        await wait_for(taken_over, 10, "the backup owning the killed member's subspaces")
        space_decode = manager.scheduler.space.decode  # type: ignore[union-attr]
        backup_worker = backup.rsplit(".", 1)[1]

        def covered() -> bool:
            return any(s.seq >= seq_at_kill and s.worker == backup_worker
                       and any(a <= space_decode(s.genotype) < b for a, b in ranges)
                       for s in manager.store.shares())  # type: ignore[union-attr]

        await wait_for(covered, 60, "the backup's results inside the killed member's subspaces", 0.25)
        await wait_for(lambda: manager.driver.stats.commitments > commits_at_kill, 60, "the pool committing again", 0.25)
    finally:
        stop.set()
        await asyncio.gather(driver, *tasks.values(), return_exceptions=True)
        await node.stop()
