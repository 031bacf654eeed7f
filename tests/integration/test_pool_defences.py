"""The pool manager's door, with a raw websocket client on 127.0.0.1 and no node: a hello must
prove its address for this challenge; shares outside the member's subspaces, duplicates,
stale jobs, impossible scores and floods are rejected with their reason (a training is credited
once, even after its share is pruned); a banned address is refused at the door; stored shares
are pruned as they leave the PPLNS window; the dashboard counts refusals per member and reason
and lists workers that left or fell silent; a minimum payout moves a member's dust to the others;
won blocks settle as confirmed or orphaned by the node's word once 6 deep."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consensus.engines.ponas.space import get_space
from pool import protocol as P
from pool.manager import Manager, ManagerConfig
from pool.rounds import MinerError, RoundInfo
from pool.shares import Share
from tests.builders import keys
from tests.framework.pool import hello as _hello
from tests.framework.pool import made_up_round, send_share
from tests.framework.pool import started as _started

K, OTHER, FEE, PEER, LATE = keys(5, seed=71)
SPACE = get_space("nb201")


async def test_door_and_share_checks(tmp_path: Path) -> None:
    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"), max_share_rate=20.0,
                           grace=0.5)
    fake = [time.time()]  # the manager's clock: the flood bucket refills only when this moves
    async with _started(config, clock=lambda: fake[0]) as manager:
        now = time.time()
        manager.prepare(RoundInfo(1, b"\x01" * 32, b"\x02" * 32, "nb201", "regtest", "commit", now, now + 60, None, 0, 4,
                                  200, None))
        url = f"ws://127.0.0.1:{manager.port}/ws"
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url) as bad:  # a signature by another key
                answer = await _hello(bad, K, sign_with=OTHER)
                assert answer == {"type": "error", "reason": "wrong-address", "detail": "the address is not the key's"}
            peer = await http.ws_connect(url)  # a second member: the space is split between the two
            assert (await _hello(peer, PEER))["type"] == "welcome"
            async with http.ws_connect(url) as ws:
                assert (await _hello(ws, K))["type"] == "welcome"
                job = json.loads(await ws.receive_str(timeout=5))
                assert job["type"] == "job" and job["subspaces"]
                start, stop = job["subspaces"][0]["start"], job["subspaces"][0]["stop"]
                inside = SPACE.encode(start)
                outside = next(SPACE.encode(i) for i in range(SPACE.size)
                               if not any(s["start"] <= i < s["stop"] for s in job["subspaces"]))
                async with http.ws_connect(url) as twin:  # the same member twice
                    assert (await _hello(twin, K))["reason"] == "duplicate-worker"

                async def share(sid: int, genotype: str, seed: int = 1, validation: int = 150, job_id: int | None = None) -> str:
                    await ws.send_str(P.encode("share", id=sid, job=job["job"] if job_id is None else job_id,
                                               genotype=genotype, seed=seed, validation=validation,
                                               weights_hash="ab" * 32, seconds=0.3))
                    while True:
                        msg = json.loads(await ws.receive_str(timeout=5))
                        if msg["type"] in ("accept", "reject") and msg["id"] == sid:
                            return "accept" if msg["type"] == "accept" else msg["reason"]

                assert await share(1, inside) == "accept"
                assert await share(2, inside) == "duplicate"  # same genotype and seed
                assert await share(3, inside, seed=2) == "accept"  # another seed is another training
                assert manager.store is not None and manager.store.prune(manager.store.next_seq) == 2
                assert await share(10, inside, seed=2) == "duplicate"  # pruned, but credited once for ever
                assert await share(4, outside) == "outside-subspace"
                assert await share(5, inside, seed=3, job_id=999) == "stale-job"
                assert await share(6, inside, seed=4, validation=10_000) == "bad-validation"
                assert await share(7, "|not_an_op~0|", seed=5) == "bad-share"
                await ws.send_str(P.encode("share", id=70, job=job["job"]))  # malformed: a reject, not a hang-up
                assert json.loads(await ws.receive_str(timeout=5)) == {
                    "type": "reject", "id": 70, "reason": "bad-share", "detail": "genotype is a string"}
                # a newer job (a member joins: a new plan); the old one is good for `grace` seconds
                late = await http.ws_connect(url)
                assert (await _hello(late, LATE))["type"] == "welcome"
                await asyncio.sleep(0.1)
                assert await share(8, inside, seed=6) == "accept"
                fake[0] += 0.7
                assert await share(9, inside, seed=7) == "stale-job"
                await late.close()
                flood = [await share(100 + i, SPACE.encode(start + (i % (stop - start))), seed=1000 + i) for i in range(25)]
                # a bucket of 20 shares refilled at 20/s by the manager's clock: full again after
                # the 0.7 s step, share 9 took one, so 19 of these 25 pass and the last 6 are refused
                assert flood[:19] == ["accept"] * 19 and flood[19:] == ["rate-limited"] * 6
                # the dashboard counts each member's refusals by reason
                mine = next(x for x in manager.snapshot()["members"] if x["address"] == P.format_address(K.address))
                assert mine["rejects"] == {"bad-share": 2, "bad-validation": 1, "duplicate": 2, "outside-subspace": 1,
                                           "rate-limited": 6, "stale-job": 2} and mine["rejected"] == 14
                # a worker silent past the heartbeat timeout is listed once as gone (a dead-worker alert)
                fake[0] += config.heartbeat_timeout + 1
                watch_stop = asyncio.Event()
                watcher = asyncio.create_task(manager._watch_loop(watch_stop))
                await asyncio.sleep(1.2)
                watch_stop.set()
                await watcher
                silent = [d for d in manager.departed if d["why"] == "silent"]
                assert mine["member"] in {d["member"] for d in silent} and len(silent) == len({d["member"] for d in silent})
            await asyncio.sleep(0.2)  # the manager sees the socket close
            assert any(d["member"] == mine["member"] and d["why"] == "left" for d in manager.snapshot()["departed"])
            await peer.close()
            assert manager.stats["accepted"] >= 2 and manager.store is not None
            manager.store.ban(OTHER.address, "score-mismatch", time.time())
            async with http.ws_connect(url) as banned:
                answer = await _hello(banned, OTHER)
                assert answer["type"] == "error" and answer["reason"] == "banned"


async def test_a_member_survives_a_manager_that_breaks_the_protocol(tmp_path: Path) -> None:
    """A challenge with a nonce that is not hex: the member logs it, backs off and retries;
    it neither crashes nor counts a connection."""
    from aiohttp import web

    from pool.member import Member

    async def garbage(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "challenge", "nonce": "zz", "chain_id": "x"}))
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/ws", garbage)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    member = Member(f"ws://127.0.0.1:{port}", K, "w", "random", rng=random.Random(1))
    stop = asyncio.Event()
    task = asyncio.create_task(member.run(stop))
    await asyncio.sleep(1.5)
    stop.set()
    try:
        stats = await asyncio.wait_for(task, 10)
    finally:
        await runner.cleanup()
    assert stats.connections == 0 and stats.trainings == 0 and stats.banned is None


async def test_stored_shares_are_pruned_two_round_opens_after_they_leave_the_window(tmp_path: Path) -> None:
    """With the default window (the last 3 rounds), a round opening at height h keeps in the store
    the shares the windows of h and of the two opens before it count; older ones are pruned,
    their trainings still credited; a restarted manager replays only what is kept."""
    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"))
    async with _started(config) as manager:
        store = manager.store
        assert store is not None
        now = time.time()
        for h in range(1, 9):
            manager.round_opened(RoundInfo(h, b"\x01" * 32, b"\x02" * 32, "nb201", "regtest", "commit", now, now + 60,
                                           None, 0, 4, 200, None))
            if manager._pruning is not None:  # the prune runs in a worker thread
                await manager._pruning
            for k in range(2):  # two shares found for round h
                stored = store.add_share(K.address, "w", 20, h, SPACE.encode(10 * h + k), k, 150)
                manager.window.add(Share(stored.address, stored.weight, stored.height, stored.seq))
            kept = sorted({x.height for x in store.shares()})
            # the window of round h: rounds h-2..h; the store also keeps what the windows of the
            # two opens before counted (from round h-4)
            assert kept == list(range(max(1, h - 4), h + 1)), (h, kept)
        assert all(store.credited(SPACE.encode(10 * h + k), k) for h in range(1, 9) for k in range(2))
    async with _started(config) as again:
        assert again.store is not None
        assert sorted({s.height for s in again.window.shares()}) == [6, 7, 8]
        assert sorted({x.height for x in again.store.shares()}) == [4, 5, 6, 7, 8]


def test_the_minimum_payout_moves_dust_to_the_other_members(tmp_path: Path) -> None:
    from pool.rounds import TrainResult

    small, big = keys(2, seed=72)
    for min_payout, small_paid in ((1, True), (10**8, False)):
        config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"), min_payout=min_payout)
        manager = Manager(config, rng=random.Random(1), report=lambda line: None, chain_id="ponas-test")
        manager.window.add(Share(big.address, 20 * 300, 1, 1))
        manager.window.add(Share(small.address, 20, 1, 2))  # 1/301 of 49.5 coins: about 0.16 coins
        result = TrainResult(SPACE.encode(0), 1, 150, b"\x00" * 32, b"", 1.0)
        payouts = {p.address: p.amount for p in manager.payouts(result, 50 * 10**8)}
        assert sum(payouts.values()) == 50 * 10**8
        assert all(amount >= min_payout for address, amount in payouts.items() if address != FEE.address)
        assert (small.address in payouts) is small_paid


async def test_won_blocks_are_settled_with_the_node(tmp_path: Path) -> None:
    """A won block stays pending until 6 deep; then the node's ``canonical`` says confirmed or
    orphaned (its payouts leave the paid totals); a node that fails leaves it pending."""
    from consensus.types import Payout

    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"))
    async with _started(config) as manager:
        store = manager.store
        assert store is not None
        kept, lost, later = b"\x03" * 32, b"\x04" * 32, b"\x05" * 32
        store.record_block(3, kept, 1.0, [Payout(K.address, 40)])
        store.record_block(4, lost, 2.0, [Payout(K.address, 30)])
        store.record_block(5, later, 3.0, [Payout(K.address, 20)])
        asked: list[str] = []

        class Node:  # the node's GET /api/v1/blocks/HASH, as far as the check reads it
            async def get(self, path: str) -> dict[str, Any]:
                asked.append(path)
                if later.hex() in path:
                    raise ConnectionError("the node went away")
                return {"canonical": kept.hex() in path}

        manager._client = Node()  # type: ignore[assignment]
        await manager._check_blocks(7)  # block 3 is 5 deep: nothing asked yet
        assert asked == [] and [b.status for b in store.blocks()] == ["pending"] * 3
        manager.round_opened(RoundInfo(11, b"\x01" * 32, b"\x02" * 32, "nb201", "regtest", "commit", 0.0, 60.0,
                                       None, 0, 4, 200, None))  # tip 10: all three are 6 deep or more
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert [b.status for b in store.blocks()] == ["confirmed", "orphaned", "pending"]
        assert store.paid(K.address) == 60 and len(asked) == 3
        assert manager.snapshot()["blocks"][1]["status"] == "orphaned"


async def test_results_already_in_the_epoch_are_not_committed_again(tmp_path: Path) -> None:
    """The round object's ``spent`` pairs (the blocks of the task epoch: the block the pool won
    last round among them) are never offered for commitment again, and leave the pool's best
    results so that other results take their places."""
    from pool.manager import _Result
    from pool.rounds import TrainResult, parse_round

    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"))
    async with _started(config) as manager:
        base = {"height": 5, "parent": "00" * 32, "task_id": "00" * 32, "space": "nb201", "recipe": "regtest",
                "phase": "commit", "opened": 1.0, "deadline": 9.0, "reveal_end": None, "commitments": 0,
                "max_commitments_per_key": 4, "test_set_size": 200, "close": None, "reward": 1}
        assert manager.prepare(parse_round(base))
        genotypes = [get_space("nb201").encode(i) for i in (10, 20, 30)]
        manager._top = [_Result("m", FEE.address, TrainResult(g, 7, 290 - i, bytes(32), b"w", 1.0))
                        for i, g in enumerate(genotypes)]
        won = parse_round({**base, "height": 6, "spent": [[genotypes[0], 7], [genotypes[1], 8]]})
        assert won.spent == {(genotypes[0], 7), (genotypes[1], 8)}
        assert [r.genotype for r in manager.candidates(won, 8)] == genotypes[1:]  # the same cell, another seed: new work
        assert manager.prepare(won)
        assert [r.result.genotype for r in manager._top] == genotypes[1:]
        for bad in ([["g"]], [["g", "7"]], [["g", True]], "g", [[1, 2]]):
            with pytest.raises(MinerError):
                parse_round({**base, "spent": bad})


async def _epoch_turn_scenario(tmp_path: Path) -> None:
    """The scenario of the test below, in a child process (exact mnist1d training and checks
    pin the kernels, which a process that already ran torch cannot)."""
    from consensus.engines.ponas.exact import pin_kernels

    pin_kernels()
    from consensus.engines.ponas.train import score_sequences
    from consensus.engines.ponas.weights import load_weights
    from pool.rounds import parse_round, train_one

    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"), retrain_rate=1.0)
    space = get_space("nb201-1d")
    async with _started(config) as manager:
        manager.genesis = b"\x07" * 32
        base = {"height": 4, "parent": "00" * 32, "task_id": "00" * 32, "space": "nb201-1d",
                "recipe": "mnist1d-regtest", "phase": "commit", "opened": 1.0, "deadline": 9.0, "reveal_end": None,
                "commitments": 0, "max_commitments_per_key": 4, "test_set_size": 500, "close": None, "reward": 1,
                "task": "mnist1d", "train_size": 320, "validation_size": 100, "epoch_rounds": 4}
        assert manager.prepare(parse_round(base))
        stop = asyncio.Event()
        verifier = asyncio.create_task(manager._verify_loop(stop))
        url = f"ws://127.0.0.1:{manager.port}/ws"
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            assert (await _hello(ws, K))["type"] == "welcome"
            job = json.loads(await ws.receive_str(timeout=5))
            assert job["type"] == "job" and job["epoch"] == 0
            genotype = space.encode(job["subspaces"][0]["start"])
            data = parse_round(base).chain_data(manager.genesis)
            assert data is not None
            result = train_one("nb201-1d", "mnist1d-regtest", genotype, 5, data=data, epoch=0)
            later = score_sequences(load_weights(result.weights, "nb201-1d", genotype), *data.validation(1))
            assert later != result.validation  # what a check on the new epoch's data would see
            await ws.send_str(P.encode("share", id=1, job=job["job"], genotype=genotype, seed=5,
                                       validation=result.validation, weights_hash=result.weights_hash.hex(),
                                       seconds=0.5))
            seen = [json.loads(await ws.receive_str(timeout=5)) for _ in range(2)]
            assert [m["type"] for m in seen] == ["accept", "want"]
            assert manager.prepare(parse_round({**base, "height": 5}))  # the epoch turns
            assert manager._data is not None and manager._data[1] == 1
            await ws.send_str(P.encode("weights", id=1, weights=base64.b64encode(result.weights).decode()))
            while True:
                msg = json.loads(await ws.receive_str(timeout=60))
                if msg["type"] in ("verified", "banned"):
                    break
            assert msg == {"type": "verified", "id": 1}
            assert manager.stats["banned"] == 0 and manager._top == []
        stop.set()
        verifier.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await verifier


def test_a_share_whose_epoch_turns_while_it_is_checked_is_checked_on_its_own_epoch(tmp_path: Path) -> None:
    """A mnist1d task epoch turns (round 4 to round 5 of a 4-round epoch) between an honest
    member's share and its weights: the weights are checked on the data of the share's job, not
    the new epoch's (on which its validation score differs: the old manager banned the member
    for ``score-mismatch``), and the result stays out of the new epoch's best."""
    code = ("import asyncio, pathlib, sys; from tests.integration.test_pool_defences import _epoch_turn_scenario as f; "
            "asyncio.run(f(pathlib.Path(sys.argv[1]))); print('scenario passed')")
    child = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=Path(__file__).resolve().parents[2],
                           capture_output=True, text=True, timeout=180)
    assert child.returncode == 0 and "scenario passed" in child.stdout, child.stdout[-2000:] + child.stderr[-4000:]


async def test_an_unanswered_want_voids_its_share_and_workers_share_their_address_limit(tmp_path: Path) -> None:
    """Honest books (issue 19): five free workers of one address sent fake shares and ignored
    the manager's ``want``s, and kept the credit. Now a share whose weights are not shown within
    ``want_timeout`` loses its credit (the window and the store forget it), and an address that
    leaves ``max_unanswered`` wants unanswered is banned (``ignored-want``) with all its shares.
    The share rate is limited per payout address as well as per worker: two workers of one
    address share the address's bucket (``rate-limited``). The queue of weights to check is
    bounded: weights past it are left unchecked (counted), their share keeps its credit."""
    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"), verify_rate=1.0,
                           want_timeout=0.5, max_unanswered=3, max_share_rate=20.0, max_address_share_rate=30.0,
                           max_verify_queue=1)
    fake = [time.time()]
    async with _started(config, clock=lambda: fake[0]) as manager:
        now = time.time()
        manager.prepare(RoundInfo(1, b"\x01" * 32, b"\x02" * 32, "nb201", "regtest", "commit", now, now + 60, None, 0, 4,
                                  200, None))
        url = f"ws://127.0.0.1:{manager.port}/ws"
        async with aiohttp.ClientSession() as http:
            workers = []
            for name in ("w1", "w2"):
                ws = await http.ws_connect(url)
                assert (await _hello(ws, K, worker=name))["type"] == "welcome"
                workers.append(ws)
            jobs = []
            for ws in workers:  # the newest job of each worker (a second worker re-plans the first's)
                jobs.append(json.loads(await ws.receive_str(timeout=5)))
            with contextlib.suppress(asyncio.TimeoutError):
                while True:
                    jobs[0] = json.loads(await workers[0].receive_str(timeout=0.5))

            async def shares(ws: Any, job: dict[str, Any], n: int, seed0: int) -> list[str]:
                start, stop = job["subspaces"][0]["start"], job["subspaces"][0]["stop"]
                out = []
                for i in range(n):
                    await ws.send_str(P.encode("share", id=seed0 + i, job=job["job"],
                                               genotype=SPACE.encode(start + i % (stop - start)), seed=seed0 + i,
                                               validation=150, weights_hash="ab" * 32, seconds=0.3))
                    while True:
                        msg = json.loads(await ws.receive_str(timeout=5))
                        if msg["type"] in ("accept", "reject") and msg["id"] == seed0 + i:
                            out.append("accept" if msg["type"] == "accept" else msg["reason"])
                            break
                return out

            # the clock stands still: worker 1 takes 20 of the address's 30 tokens, worker 2 the last 10
            first = await shares(workers[0], jobs[0], 20, 1000)
            second = await shares(workers[1], jobs[1], 15, 2000)
            assert first == ["accept"] * 20 and second == ["accept"] * 10 + ["rate-limited"] * 5
            assert manager.window.weights_by_member()[K.address] == 30 * manager.window.shares()[0].weight
            # worker 2 shows the weights of two shares: one is queued for its check (the loop is
            # not running here), the other finds the queue full and stays unchecked
            for sid in (2000, 2001):
                await workers[1].send_str(P.encode("weights", id=sid, weights=base64.b64encode(b"w" * 64).decode()))
            await asyncio.sleep(0.3)
            assert manager._verify.qsize() == 1 and manager.stats["unchecked"] == 1
            # every share was wanted (verify_rate 1) and none answered: past the timeout, each
            # loses its credit; the third unanswered want bans the address
            fake[0] += config.want_timeout + 1
            stop = asyncio.Event()
            watcher = asyncio.create_task(manager._watch_loop(stop))
            await asyncio.sleep(1.2)
            stop.set()
            await watcher
            assert manager.store is not None and manager.store.banned(K.address) == "ignored-want"
            assert K.address not in manager.window.weights_by_member()
            assert not [s for s in manager.store.shares() if s.address == K.address]
            assert manager.stats["banned"] == 1 and manager.stats["voided"] == 30  # 28 unanswered, 2 by the ban
            for ws in workers:
                await ws.close()


async def test_a_worker_that_leaves_before_showing_wanted_weights_loses_their_credit(tmp_path: Path) -> None:
    """The reconnect trick: send fake shares, leave before ``want_timeout`` so the watchdog (which
    times out connected workers' wants) never sees them, come back. The wanted shares' credit
    goes with the connection; shares never wanted keep theirs (they may be audited later)."""
    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"), verify_rate=0.0,
                           want_timeout=30.0)
    async with _started(config) as manager:
        manager.prepare(made_up_round())
        url = f"ws://127.0.0.1:{manager.port}/ws"
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url)
            assert (await _hello(ws, K))["type"] == "welcome"
            job = json.loads(await ws.receive_str(timeout=5))
            start = job["subspaces"][0]["start"]
            seen: list[dict[str, Any]] = []
            # shares that may enter the pool's best 8 are wanted (their weights must be shown);
            # a ninth, no better, is not (verify_rate 0)
            top = manager.top_results
            for i in range(top):
                assert await send_share(ws, 1 + i, job["job"], SPACE.encode(start + i), seed=1 + i, validation=150,
                                        seen=seen) == "accept"
            assert await send_share(ws, 99, job["job"], SPACE.encode(start + top), seed=99, validation=100,
                                    seen=seen) == "accept"
            with contextlib.suppress(asyncio.TimeoutError):
                while True:
                    seen.append(json.loads(await ws.receive_str(timeout=0.5)))
            assert [m["id"] for m in seen if m["type"] == "want"] == list(range(1, top + 1))
            unit = manager.window.shares()[0].weight
            assert manager.window.weights_by_member()[K.address] == (top + 1) * unit
            await ws.close()
            for _ in range(50):
                if not manager.members:
                    break
                await asyncio.sleep(0.05)
            assert not manager.members
            assert manager.window.weights_by_member()[K.address] == unit  # the wanted shares' credit is gone
            assert manager.stats["voided"] == top
            assert manager.store is not None and len([s for s in manager.store.shares() if s.address == K.address]) == 1
            assert manager.store.banned(K.address) is None  # a dropped connection is not a ban
            view = manager.worker_snapshot(f"{P.format_address(K.address)}.w")
            assert view is not None and [r["status"] for r in view["recent"]] == ["accepted"] + ["voided"] * top
            # a worker still connected when the manager stops keeps its wanted share: it did nothing wrong
            other = await http.ws_connect(url)
            assert (await _hello(other, OTHER))["type"] == "welcome"
            job = json.loads(await other.receive_str(timeout=5))
            assert await send_share(other, 1, job["job"], SPACE.encode(job["subspaces"][0]["start"]), seed=500,
                                    validation=200) == "accept"
            await manager.stop()
            await other.close()
    from pool.store import PoolStore

    store = PoolStore(str(tmp_path / "pool" / "pool"), "ponas-test")
    try:
        assert [s.seed for s in store.shares() if s.address == OTHER.address] == [500]
    finally:
        store.close()


async def test_shares_are_stored_by_group_commit_and_acknowledged_only_once_stored(tmp_path: Path) -> None:
    """Intake (issue 19): accepted shares are written in groups, one synced batch for all that
    came while the previous batch was written (in a worker thread, off the event loop), and each
    is acknowledged only once stored. A second share of a training still waiting for its batch
    is a ``duplicate``; a manager that stops writes what is waiting before it closes the store."""
    from pool.store import PoolStore

    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"), max_share_rate=1e6,
                           max_address_share_rate=1e6)
    batches: list[int] = []
    async with _started(config) as manager:
        assert manager.store is not None
        plain = manager.store.commit_shares

        def slow_commit(shares: list[Any]) -> None:  # a slow disk: the next shares pile up meanwhile
            batches.append(len(shares))
            time.sleep(0.2)
            plain(shares)

        manager.store.commit_shares = slow_commit  # type: ignore[method-assign]
        now = time.time()
        manager.prepare(RoundInfo(1, b"\x01" * 32, b"\x02" * 32, "nb201", "regtest", "commit", now, now + 60, None, 0, 4,
                                  200, None))
        url = f"ws://127.0.0.1:{manager.port}/ws"
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            assert (await _hello(ws, K))["type"] == "welcome"
            job = json.loads(await ws.receive_str(timeout=5))
            genotype = SPACE.encode(job["subspaces"][0]["start"])
            for seed in range(40):
                await ws.send_str(P.encode("share", id=seed, job=job["job"], genotype=genotype, seed=seed,
                                           validation=150, weights_hash="ab" * 32, seconds=0.3))
            await ws.send_str(P.encode("share", id=99, job=job["job"], genotype=genotype, seed=39, validation=150,
                                       weights_hash="ab" * 32, seconds=0.3))  # the last one again, not yet stored
            answers: dict[int, str] = {}
            wanted: set[int] = set()
            while len(answers) < 41:
                msg = json.loads(await ws.receive_str(timeout=10))
                if msg["type"] == "want":
                    wanted.add(msg["id"])
                if msg["type"] in ("accept", "reject"):
                    answers[msg["id"]] = "accept" if msg["type"] == "accept" else msg["reason"]
                    accepted = sum(1 for v in answers.values() if v == "accept")
                    assert len(list(manager.store.shares())) >= accepted  # on disk before its accept
            assert answers[99] == "duplicate" and [answers[i] for i in range(40)] == ["accept"] * 40
            assert sum(batches) == 40 and len(batches) < 10  # grouped: far fewer fsyncs than shares
            assert len(list(manager.store.shares())) == 40
            # shares still waiting when the manager stops are written before the store closes
            for seed in range(100, 105):
                await ws.send_str(P.encode("share", id=seed, job=job["job"], genotype=genotype, seed=seed,
                                           validation=150, weights_hash="ab" * 32, seconds=0.3))
            await asyncio.sleep(0.1)
            with contextlib.suppress(asyncio.TimeoutError):
                while True:
                    msg = json.loads(await ws.receive_str(timeout=0.3))
                    if msg["type"] == "want":
                        wanted.add(msg["id"])
        # the member left without showing the weights the manager wanted: those shares lose
        # their credit (and leave the store); the others are all there after the stop
        await asyncio.sleep(0.2)
        assert wanted and manager.stats["voided"] == len(wanted)
    store = PoolStore(str(tmp_path / "pool" / "pool"), "ponas-test")
    try:
        assert len(list(store.shares())) == 45 - len(wanted)
    finally:
        store.close()


async def test_a_member_flagged_as_withholding_gets_no_finders_bonus(tmp_path: Path) -> None:
    """The withholding statistic acts (issue 19): when the result a block carries was found by a
    member the scheduler flags (far fewer top results than its share of the work predicts, over
    enough rounds), the coinbase pays no finder's bonus (it stays in the PPLNS split) and the
    dashboard counts it; an unflagged finder gets its bonus."""
    from pool.manager import _Result
    from pool.rounds import TrainResult
    from pool.shares import Share
    from tests.unit.test_pool_schedule import simulate

    withholder, honest = keys(2, seed=72)
    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"))
    async with _started(config) as manager:
        s = simulate(seed=1, withholder=True)  # W trains twice as much as H1, H2 and keeps its best fifth
        assert s.flagged("W") and not s.flagged("H1")
        manager.scheduler = s
        manager.window.add(Share(withholder.address, 10, 1, 1))
        manager.window.add(Share(honest.address, 10, 1, 2))
        reward = 50 * 10**8

        def paid(finder: str, address: bytes) -> dict[bytes, int]:
            result = TrainResult(SPACE.encode(7), 1, 900, bytes(32), b"w", 1.0)
            manager._top = [_Result(finder, address, result)]
            return {p.address: p.amount for p in manager.payouts(result, reward)}

        flagged, fair = paid("W", withholder.address), paid("H1", honest.address)
        bonus = reward * config.finder_bonus_ppm // 10**6
        assert fair[honest.address] - fair[withholder.address] == bonus  # an honest finder: its bonus
        assert flagged[withholder.address] == flagged[honest.address]  # a suspect finder: none
        assert manager.stats["bonus_withheld"] == 1


async def test_a_member_checks_the_coinbase_against_what_the_pool_announced(tmp_path: Path) -> None:
    """Honest books (issue 19): at commit time the manager tells its members what the block
    would pay each (``commit``); a member with a node (``pool join --check``) compares every
    block the pool wins with it: paid as announced is counted, less is an ``underpaid`` error,
    reported to the pool (its dashboard shows the alert) and the command's exit status 3."""
    from pool.manager import _Result
    from pool.member import Member
    from pool.rounds import TrainResult
    from pool.shares import Share

    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"))
    async with _started(config) as manager:
        now = time.time()
        manager.prepare(RoundInfo(7, b"\x01" * 32, b"\x02" * 32, "nb201", "regtest", "commit", now, now + 60, None, 0, 4,
                                  200, None))
        url = f"ws://127.0.0.1:{manager.port}/ws"
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            assert (await _hello(ws, K))["type"] == "welcome"
            manager.window.add(Share(K.address, 10, 7, 1))
            result = TrainResult(SPACE.encode(3), 1, 900, b"\x0c" * 32, b"w", 1.0)
            manager._top = [_Result("K", K.address, result)]
            payouts = manager.payouts(result, 50 * 10**8)
            while True:
                msg = json.loads(await ws.receive_str(timeout=5))
                if msg["type"] == "commit":
                    break
            commit = P.parse_commit(msg)
            assert commit.height == 7 and commit.weights_hash == result.weights_hash
            assert commit.payouts == {p.address: p.amount for p in payouts}
            mine = commit.payouts[K.address]

            member = Member(url, K, "w", check_node="http://127.0.0.1:9")
            await member._handle(None, msg)  # type: ignore[arg-type]
            await member._handle(None, {**msg, "height": 8})  # type: ignore[arg-type]

            def block(height: int, amount: int) -> dict[str, Any]:
                return {"header": {"weights_hash": result.weights_hash.hex()},
                        "payouts": [{"address": P.format_address(K.address), "amount": amount}]}

            await member._check_block(7, block(7, mine))  # paid as announced
            member._ws = ws  # type: ignore[assignment]
            await member._check_block(8, block(8, mine - 1))  # one base unit short
            assert member.stats.blocks_checked == 1 and member.stats.underpaid == [8]
            await wait_until_alert(manager)
            assert manager.snapshot()["alerts"][0]["reason"] == "underpaid"
            assert manager.snapshot()["alerts"][0]["height"] == 8
            for bad in ({**msg, "height": 0}, {**msg, "weights_hash": "ab"}, {**msg, "payouts": [["pn1x", 5]]},
                        {**msg, "payouts": [[P.format_address(K.address), -1]]}):
                with pytest.raises(P.ProtocolError):
                    P.parse_commit(bad)


async def wait_until_alert(manager: Manager) -> None:
    for _ in range(100):
        if manager.alerts:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no alert reached the manager")


async def test_shares_a_failed_write_did_not_store_are_refused_and_not_credited(tmp_path: Path) -> None:
    """The disk fails under a group commit: every share of that batch is answered ``store-failed``
    and earns nothing (an ``accept`` means stored); the same trainings sent again once the disk
    is back are accepted (a failed write does not mark them credited)."""
    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"), verify_rate=0.0,
                           max_share_rate=1e6, max_address_share_rate=1e6)
    async with _started(config) as manager:
        assert manager.store is not None
        plain = manager.store.commit_shares
        failing = [True]

        def flaky(shares: list[Any]) -> None:
            if failing[0]:
                raise OSError("disk full")
            plain(shares)

        manager.store.commit_shares = flaky  # type: ignore[method-assign]
        manager.prepare(made_up_round())
        async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://127.0.0.1:{manager.port}/ws") as ws:
            assert (await _hello(ws, K))["type"] == "welcome"
            job = json.loads(await ws.receive_str(timeout=5))
            genotype = SPACE.encode(job["subspaces"][0]["start"])
            assert await send_share(ws, 1, job["job"], genotype, seed=7) == "store-failed"
            assert not manager.window.weights_by_member() and manager.stats["accepted"] == 0
            assert not list(manager.store.shares())
            failing[0] = False
            assert await send_share(ws, 2, job["job"], genotype, seed=7) == "accept"
            assert len(list(manager.store.shares())) == 1 and K.address in manager.window.weights_by_member()


async def test_a_manager_with_freeze_gc_freezes_what_lives_and_gives_it_back_on_stop(tmp_path: Path) -> None:
    """``freeze_gc`` (``ponas pool serve``): after a group commit the objects alive are frozen
    (full collections then scan only what came since: bench_pool measured 50-150 ms pauses
    every few seconds without it), and a stop unfreezes them."""
    import gc

    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"), verify_rate=0.0, freeze_gc=True)
    gc.unfreeze()
    try:
        async with _started(config) as manager:
            manager._gc_frozen -= 2.0  # the last freeze was over a second ago
            manager.prepare(made_up_round())
            async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://127.0.0.1:{manager.port}/ws") as ws:
                assert (await _hello(ws, K))["type"] == "welcome"
                job = json.loads(await ws.receive_str(timeout=5))
                assert gc.get_freeze_count() == 0
                assert await send_share(ws, 1, job["job"], SPACE.encode(job["subspaces"][0]["start"])) == "accept"
                assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
