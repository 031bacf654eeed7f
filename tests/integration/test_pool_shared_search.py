"""The pool's shared search over the real websocket protocol (a manager on 127.0.0.1, raw
members, no node): once the pool has ``warmup`` results, every accepted share tops up its
member's ``propose`` queue with cells nobody in the pool has trained or been handed in the task;
a member may train a proposal outside its subspaces (accepted), but not any other cell there
(``outside-subspace``); no cell is handed out twice, to one member or to two; a member that
leaves gives its untrained proposals back; a banned member's results leave the model."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import aiohttp

from consensus.engines.ponas.space import get_space
from pool.manager import ManagerConfig
from tests.builders import keys
from tests.framework.pool import hello, made_up_round, send_share, started

A, B, FEE = keys(3, seed=93)
SPACE = get_space("nb201")


async def _drain(ws: aiohttp.ClientWebSocketResponse, into: list[dict[str, Any]], wait: float = 0.3) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        while True:
            into.append(json.loads(await ws.receive_str(timeout=wait)))


def _proposed(msgs: list[dict[str, Any]]) -> list[str]:
    return [g for m in msgs if m["type"] == "propose" for g in m["genotypes"]]


async def test_members_train_what_the_pool_learned_and_nothing_twice(tmp_path: Path) -> None:
    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"), verify_rate=0.0,
                           max_share_rate=1e6, max_address_share_rate=1e6)
    async with started(config) as manager:
        manager.prepare(made_up_round())
        assert manager.shared is not None and not manager.shared.ready
        url = f"ws://127.0.0.1:{manager.port}/ws"
        async with aiohttp.ClientSession() as http:
            wa = await http.ws_connect(url)
            assert (await hello(wa, A))["type"] == "welcome"
            wb = await http.ws_connect(url)
            assert (await hello(wb, B))["type"] == "welcome"
            seen_a: list[dict[str, Any]] = []
            seen_b: list[dict[str, Any]] = []
            await _drain(wa, seen_a)
            await _drain(wb, seen_b)
            job_a = [m for m in seen_a if m["type"] == "job"][-1]  # the plan with both members
            job_b = [m for m in seen_b if m["type"] == "job"][-1]
            ranges = [(sub["start"], sub["stop"]) for sub in job_a["subspaces"]]

            def inside(g: str) -> bool:
                return any(a <= SPACE.decode(g) < b for a, b in ranges)

            start = ranges[0][0]
            # before warm-up: no proposals
            trained = []
            for k in range(manager.shared.warmup - 1):
                g = SPACE.encode(start + k)
                assert await send_share(wa, k, job_a["job"], g, seed=k, validation=100 + k, seen=seen_a) == "accept"
                trained.append(g)
            await _drain(wa, seen_a)
            assert not _proposed(seen_a)
            # the warm-up's last result: proposals come
            g = SPACE.encode(start + 50)
            assert await send_share(wa, 99, job_a["job"], g, seed=99, validation=160, seen=seen_a) == "accept"
            trained.append(g)
            await _drain(wa, seen_a)
            first = _proposed(seen_a)
            assert len(first) == config.proposals_queued and not set(first) & set(trained)
            # a proposal may lie outside the member's subspaces: accepted; another cell there is not
            outside = [p for p in first if not inside(p)]
            other = next(g for g in (SPACE.encode(i) for i in range(SPACE.size)) if not inside(g) and g not in first)
            assert await send_share(wa, 200, job_a["job"], other, seed=200, validation=150,
                                    seen=seen_a) == "outside-subspace"
            for n, p in enumerate(first):
                assert await send_share(wa, 300 + n, job_a["job"], p, seed=300 + n, validation=150,
                                        seen=seen_a) == "accept"
            # a proposal is trained once: a second share of it outside the subspaces is refused
            assert outside, "a proposal outside the member's half of the space (the seeded run has one)"
            assert await send_share(wa, 400, job_a["job"], outside[0], seed=400, validation=150,
                                    seen=seen_a) == "outside-subspace"
            await _drain(wa, seen_a)
            handed_a = _proposed(seen_a)
            assert len(handed_a) == len(set(handed_a)) == 2 * config.proposals_queued
            # the second member: its proposals are none of the first's, nor anything trained
            gb = SPACE.encode(job_b["subspaces"][0]["start"] + 1)
            assert await send_share(wb, 1, job_b["job"], gb, seed=1, validation=120, seen=seen_b) == "accept"
            await _drain(wb, seen_b)
            handed_b = _proposed(seen_b)
            assert handed_b and not set(handed_b) & (set(handed_a) | set(trained) | {gb})
            # member A leaves with proposals untrained: they are given back to the pool's search
            left = handed_a[config.proposals_queued:]
            assert all(manager.shared.seen(p) for p in left)
            await wa.close()
            for _ in range(50):
                if len(manager.members) == 1:
                    break
                await asyncio.sleep(0.05)
            assert not any(manager.shared.seen(p) for p in left)
            # a banned member's results leave the model
            results = manager.shared.results
            b_conn = next(iter(manager.members.values()))
            await manager._ban(b_conn, "bad-weights")
            assert manager.shared.results == results - 1
            await wb.close()
