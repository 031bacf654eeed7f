"""The pool dashboard's HTTP side, with a raw websocket member on 127.0.0.1 and no node: a
worker's data at ``/api/pool/workers/{id}`` (a connected worker, then the same worker after it
left), an unknown id answered 404 ``unknown-worker`` and a malformed one 400 ``bad-worker-id``,
in the node API's error form; the pages are served; the chart's time series and each worker's
recent shares stay bounded however long the pool runs (two hours of shares on the manager's
clock)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp

from consensus.crypto import format_address
from consensus.engines.ponas.space import get_space
from pool.dashboard import RECENT_SHARES, SERIES_BUCKET_S, SERIES_BUCKETS, Series
from pool.manager import ManagerConfig
from tests.builders import keys
from tests.framework.pool import hello, made_up_round, send_share, started

K, OTHER, FEE = keys(3, seed=97)
SPACE = get_space("nb201")


async def test_worker_api_and_its_error_reasons(tmp_path: Path) -> None:
    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"))
    async with started(config) as manager, aiohttp.ClientSession() as http:
        manager.prepare(made_up_round(7, reward=50 * 10**8))
        url = f"http://127.0.0.1:{manager.port}"
        member = f"{format_address(K.address)}.rig-1"

        async def get(path: str) -> tuple[int, dict]:
            async with http.get(url + path) as resp:
                return resp.status, await resp.json()

        ws = await http.ws_connect(f"ws://127.0.0.1:{manager.port}/ws")
        assert (await hello(ws, K, worker="rig-1"))["type"] == "welcome"
        job = await ws.receive_json(timeout=5)
        assert job["type"] == "job"
        inside = SPACE.encode(job["subspaces"][0]["start"])
        assert await send_share(ws, 1, job["job"], inside, validation=180) == "accept"
        assert await send_share(ws, 2, job["job"], inside) == "duplicate"

        status, w = await get(f"/api/pool/workers/{member}")
        assert status == 200
        assert (w["member"], w["worker"], w["address"]) == (member, "rig-1", format_address(K.address))
        assert w["connected"] and w["departed"] is None and w["banned"] is None
        assert (w["accepted"], w["rejected"], w["rejects"]) == (1, 1, {"duplicate": 1})
        assert [(r["id"], r["status"], r["reason"], r["genotype"]) for r in w["recent"]] == [
            (2, "refused", "duplicate", inside), (1, "accepted", None, inside)]
        assert w["recent"][1]["validation"] == 180
        plan = manager.scheduler.plan  # type: ignore[union-attr]
        assert [(d["start"], d["stop"], d["role"]) for d in w["duties"]] == sorted(
            (a.subspace.start, a.subspace.stop, a.role) for a in plan.assignments_of(member))
        # the only member: the whole split but the fee is its pending payout; nothing paid yet
        assert w["expected_payout"] == 50 * 10**8 - 50 * 10**8 * config.fee_ppm // 10**6 and w["paid"] == 0
        assert w["payouts"] == [] and w["address_workers"] == [member]

        unknown = f"{format_address(OTHER.address)}.rig-1"
        status, body = await get(f"/api/pool/workers/{unknown}")
        assert status == 404 and body["error"]["reason"] == "unknown-worker" and unknown in body["error"]["detail"]
        address = format_address(K.address)
        for bad in ("nonsense", f"{address}.", f"{address[:-1]}{'q' if address[-1] != 'q' else 'p'}.rig-1",
                    f"{address.upper()}.rig-1", f"{address}.bad worker!", f"{address}.{'w' * 33}", "x" * 300):
            status, body = await get("/api/pool/workers/" + quote(bad, safe=""))
            assert status == 400 and body["error"]["reason"] == "bad-worker-id", (bad, body)
            assert body["error"]["detail"]

        for path, title in (("/", "<title>PoNAS pool</title>"), (f"/worker/{member}", "<title>PoNAS pool: worker</title>"),
                            (f"/worker/{unknown}", "<title>PoNAS pool: worker</title>")):
            async with http.get(url + path) as resp:  # the page is static; its script asks the API
                assert resp.status == 200 and resp.content_type == "text/html" and title in await resp.text()
        async with http.get(url + "/metrics") as resp:
            assert "ponas_pool_members 1\n" in await resp.text() and "ponas_pool_accepted 1\n" in await resp.text()

        await ws.close()
        for _ in range(50):
            if member not in manager.members:
                break
            await asyncio.sleep(0.02)
        status, w = await get(f"/api/pool/workers/{member}")  # gone, still listed for a while
        assert status == 200 and not w["connected"] and w["departed"]["why"] == "left" and w["accepted"] == 1
        assert w["duties"] == [] and w["address_workers"] == []
        status, snap = await get("/api/pool")
        assert [(n["kind"], n["member"]) for n in snap["notices"]] == [("left", member)]


async def test_the_series_and_the_recent_shares_stay_bounded(tmp_path: Path) -> None:
    """Two hours of shares, one every 20 s of the manager's clock: the chart keeps the last
    hour (360 buckets of 10 s), the worker its last ``RECENT_SHARES`` shares."""
    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"), grace=10**6)
    start = float(int(time.time()) // 10 * 10)
    clock = [start]
    async with started(config, clock=lambda: clock[0]) as manager, aiohttp.ClientSession() as http:
        manager.prepare(made_up_round(1, opened=start))
        ws = await http.ws_connect(f"ws://127.0.0.1:{manager.port}/ws")
        assert (await hello(ws, K))["type"] == "welcome"
        job = await ws.receive_json(timeout=5)
        sub = job["subspaces"][0]
        total = 2 * 3600 // 20
        for i in range(total):
            clock[0] = start + 20 * (i + 1)
            genotype = SPACE.encode(sub["start"] + i % (sub["stop"] - sub["start"]))
            assert await send_share(ws, i, job["job"], genotype, seed=i) == "accept"
        await ws.close()
        snap = manager.snapshot()
        buckets = snap["series"]["buckets"]
        assert snap["series"]["bucket_s"] == SERIES_BUCKET_S and len(buckets) == SERIES_BUCKETS
        assert buckets[-1][0] == int(clock[0]) // 10 * 10 and buckets[0][0] == buckets[-1][0] - 3590
        assert [b[0] for b in buckets] == list(range(buckets[0][0], buckets[-1][0] + 1, 10))
        assert sum(b[1] for b in buckets) == 180 and manager.stats["accepted"] == total  # the last hour's shares
        worker = manager.worker_snapshot(f"{format_address(K.address)}.w")
        assert worker is not None and len(worker["recent"]) == RECENT_SHARES
        assert [r["id"] for r in worker["recent"]] == list(range(total - 1, total - 1 - RECENT_SHARES, -1))


def test_series_counts_in_a_fixed_ring() -> None:
    s = Series(10, 6)  # one minute
    for t in range(0, 120):  # two minutes, one share a second, a refusal every 10 s
        s.accepted(1000.0 + t)
        if t % 10 == 0:
            s.refused(1000.0 + t)
        s.trainings(1000.0 + t, 2)
    got = s.buckets(1119.0)
    assert got == [[1060 + 10 * i, 10, 1, 20] for i in range(6)]
    s.accepted(1000.0)  # older than the ring holds: dropped, nothing overwritten
    s.trainings(1119.0, 0)
    assert s.buckets(1119.0) == got
    assert s.buckets(1119.0, since=1100.0) == got[-2:]  # from a start inside the window
    assert s.buckets(1300.0) == [[1250 + 10 * i, 0, 0, 0] for i in range(6)]  # quiet for minutes: empty buckets
    assert len(s._bucket) == len(s._accepted) == 6  # the memory is fixed
