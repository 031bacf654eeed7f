"""The pool's dashboard and a worker's page as a person sees them: a real pool manager, real
members over the websocket protocol, a real headless Chromium.

A manager runs in-process on 127.0.0.1 without a node (rounds are made up, as in the defence
tests) on a clock the test moves: ten minutes of pool life pass in 10-second steps. Five workers
of four payout addresses join, heartbeat and send shares; some are refused for six different
reasons (``outside-subspace``, ``bad-share``, ``duplicate``, ``rate-limited``, ``stale-job``,
``bad-validation``); one share is really trained and its weights really re-evaluated
(``verified``: it becomes the pool's best and makes its worker a high-reward member, which gets
a backup once its performance varies); a worker shows weights that do not match its share and
is banned; one leaves; one reports an underpaid block. Three blocks won are booked (confirmed,
orphaned, pending) with the PPLNS split of the window at the time.

What it proves, the DOM checked against ``/api/pool`` and ``/api/pool/workers/{id}``:

* the dashboard: the map has one tile per subspace of the plan, in the space's order, covering
  it, each with the holder and backup the API names (written on the tile) and the high-reward
  mark; the chart has one bucket per 10 s and counts every accepted and refused share; each
  member's row shows its accepted shares, its refusals by reason, its last-seen time, its
  pending payout and paid total in coins, and links to its page; the blocks won with their
  status and payouts in coins; the alerts (the underpaid report, the ban, the departure);
* the worker page: its counters, its refusals by reason, its recent shares with their status
  (accepted, refused with the reason, verified), its subspaces and backup duties, its payouts
  per block won and its pending payout, in coins;
* a 1280x800 screenshot of each page is a real picture: the dark header bar at the top and more
  than 50 colours. With ``$PONAS_DOCS_SCREENSHOTS`` set to a directory the two screenshots are
  also written there (``pool-dashboard.png``, ``pool-worker.png``: the README's pictures).

Two Chromium runs in all (each dumps the DOM and takes the screenshot at once).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import re
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consensus.amounts import format_amount
from consensus.crypto import format_address
from consensus.engines.ponas.space import get_space
from pool import protocol as P
from pool.manager import ManagerConfig
from pool.rounds import train_one
from pool.shares import split_reward
from tests.builders import keys
from tests.framework.browser import chromium, chromium_path, decode_png, parse_dom, squash
from tests.framework.pool import hello, made_up_round, send_share, started

WIDTH, HEIGHT = 1280, 800
HEADER_BAR = (0x1D, 0x23, 0x30)
COIN = 10**8
REWARD = 50 * COIN
STEP = 10.0  # seconds of the manager's clock per step: one chart bucket each
STEPS = 60
SPACE = get_space("nb201")
A, B, C, D, FEE = keys(5, seed=95)
SHORT_OPS = {"none": "none", "skip_connect": "skip", "nor_conv_1x1": "1x1", "nor_conv_3x3": "3x3", "avg_pool_3x3": "pool"}
WORKERS = [(A, "rig-1"), (A, "rig-2"), (B, "gpu-0"), (C, "cpu-3"), (D, "box-9")]


@dataclass
class Worker:
    key: Any
    name: str
    ws: aiohttp.ClientWebSocketResponse
    job: dict[str, Any] = field(default_factory=dict)
    trainings: int = 0
    sent: int = 0
    accepted: list[tuple[int, str, int]] = field(default_factory=list)  # (share id, genotype, seed)

    @property
    def id(self) -> str:
        return f"{format_address(self.key.address)}.{self.name}"

    def inside(self, k: int) -> str:
        """A genotype of its first subspace (a different one for each k)."""
        sub = self.job["subspaces"][0]
        return SPACE.encode(sub["start"] + k % (sub["stop"] - sub["start"]))

    def outside(self) -> str:
        return next(SPACE.encode(i) for i in range(SPACE.size)
                    if not any(s["start"] <= i < s["stop"] for s in self.job["subspaces"]))

    async def share(self, seed: int, *, genotype: str | None = None, job: int | None = None, validation: int = 150,
                    weights_hash: str = "ab" * 32) -> str:
        self.sent += 1
        sid = self.sent
        seen: list[dict[str, Any]] = []
        g = genotype if genotype is not None else self.inside(seed)
        answer = await send_share(self.ws, sid, self.job["job"] if job is None else job, g, seed=seed,
                                  validation=validation, weights_hash=weights_hash, seen=seen)
        for msg in seen:  # a re-plan (a member left or was banned) sends a new job
            if msg["type"] == "job":
                self.job = msg
        if answer == "accept":
            self.accepted.append((sid, g, seed))
        return answer

    async def heartbeat(self, throughput: float) -> None:
        self.trainings += round(throughput * STEP)
        await self.ws.send_str(P.encode("heartbeat", job=self.job["job"], trainings=self.trainings,
                                        throughput=throughput))

    async def next_job(self) -> None:
        while True:
            msg = P.decode(await self.ws.receive_str(timeout=5))
            if msg["type"] == "job":
                self.job = msg
                return


def ago(seconds: float) -> str:  # the pages' relative times
    s = max(0.0, seconds)
    if s < 1:
        return "just now"
    if s < 60:
        return f"{int(s)} s ago"
    return f"{int(s // 60)} min ago" if s < 3600 else f"{int(s // 3600)} h ago"


def compact(genotype: str | None) -> str:  # how the pages write a genotype: the explorer's short operation names
    if genotype is None:
        return "–"
    return re.sub(r"[a-z_0-9]+(?=~)", lambda m: SHORT_OPS.get(m.group(0), m.group(0)), genotype)


def label(member: str | None) -> str:  # how the pages name a worker
    if not member:
        return "unassigned"
    address, worker = member.split(".", 1)
    return f"{worker} · {address[:9]}…"


@pytest.mark.slow
async def test_pool_dashboard_and_worker_page_in_a_headless_browser(tmp_path: Path) -> None:
    binary = chromium_path()
    began = time.monotonic()
    clock = [float(int(time.time()) - STEPS * STEP - 30)]
    # grace: a worker that sends a share every 40 s may still hold the job a re-plan replaced
    config = ManagerConfig("http://127.0.0.1:9", FEE.address, str(tmp_path / "pool"), verify_rate=0.0,
                           retrain_rate=0.0, heartbeat_timeout=120.0, grace=300.0)
    rng = random.Random(19)
    async with started(config, clock=lambda: clock[0]) as manager, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{manager.port}"
        stop = asyncio.Event()
        verifier = asyncio.create_task(manager._verify_loop(stop))  # checks shown weights, as `run` does
        workers: list[Worker] = []
        for key, name in WORKERS:  # all join before the first round: one plan for everyone
            ws = await http.ws_connect(f"ws://127.0.0.1:{manager.port}/ws")
            assert (await hello(ws, key, worker=name))["type"] == "welcome"
            workers.append(Worker(key, name, ws))
        rig1, rig2, gpu0, cpu3, box9 = workers

        async def open_round(height: int) -> None:
            rnd = made_up_round(height, opened=clock[0], reward=REWARD)
            manager.round_opened(rnd)  # the driver's order: the round opens, then the manager prepares it
            manager.prepare(rnd)
            for w in workers:
                if w.id in manager.members:
                    await w.next_job()

        await open_round(41)
        training: asyncio.Future[Any] | None = None
        seed = 0
        won: dict[int, list[Any]] = {}  # height -> the coinbase's payouts: the PPLNS split of the window then

        def split() -> list[Any]:
            return split_reward(REWARD, manager.window.weights_by_member(), fee_address=FEE.address,
                                fee_ppm=config.fee_ppm, finder=A.address, finder_bonus_ppm=config.finder_bonus_ppm)

        for step in range(STEPS):
            clock[0] += STEP
            if step == 30:
                won[34] = split()
                await open_round(42)
            if step == 50:
                won[38] = split()
                await open_round(43)
            live = [w for w in workers if w.id in manager.members]
            for w in live:
                if w is rig2 and step >= STEPS - 4:
                    continue  # rig-2 goes quiet for the last steps: seen 40 s ago
                slow = w is rig1 and step >= 30  # rig-1's throughput varies: it gets a backup
                await w.heartbeat(0.4 if slow else 3.0 if w is rig1 else 1.0 + 0.5 * (w is gpu0))
                if w is rig1:
                    n = (1 if step % 4 == 0 else 0) if step >= 12 else 2  # rig-1 slows down
                else:
                    n = rng.choice((0, 1, 1, 2, 2, 3)) if w is not box9 else step % 2
                for _ in range(n):
                    seed += 1
                    assert await w.share(seed, validation=rng.randint(120, 215)) == "accept"
            if step == 2:  # rig-1 trains one architecture of its subspace for real
                genotype = rig1.inside(7)
                training = asyncio.ensure_future(asyncio.to_thread(train_one, "nb201", "regtest", genotype, 5))
            if step == 5:
                assert await rig2.share(9_001, genotype=rig2.outside()) == "outside-subspace"
                assert await gpu0.share(9_002, genotype="|not_an_op~0|") == "bad-share"
            if step == 8:
                sid, genotype, again = rig1.accepted[-1]
                assert await rig1.share(again, genotype=genotype) == "duplicate"
            if step == 14:  # a burst past the worker's bucket of 20 shares a second
                answers = [await gpu0.share(20_000 + i) for i in range(25)]
                assert answers.count("rate-limited") >= 5 and set(answers) == {"accept", "rate-limited"}
            if step == 20:
                assert await rig1.share(9_003, job=999) == "stale-job"
                assert await rig1.share(9_004, validation=10_000) == "bad-validation"
            if step == 25:
                assert await box9.share(9_005, validation=10_000) == "bad-validation"
            if step == 28:  # its share and, asked for them, its weights: re-evaluated, verified
                assert training is not None
                result = await training
                answer = await rig1.share(5, genotype=result.genotype, validation=result.validation,
                                          weights_hash=result.weights_hash.hex())
                assert answer == "accept"
                await rig1.ws.send_str(P.encode("weights", id=rig1.sent,
                                                weights=base64.b64encode(result.weights).decode()))
                while P.decode(await rig1.ws.receive_str(timeout=30)) != {"type": "verified", "id": rig1.sent}:
                    pass
            if step == 33:  # gpu-0's own node found a block that pays it less than announced
                paid = next(p.amount for p in won[34] if p.address == B.address)
                await gpu0.ws.send_str(P.encode("alert", reason="underpaid", height=34, detail=(
                    f"block 34 pays this member {paid} base units, the pool announced {paid + 250_000}")))
            if step == 40:  # box-9 shows weights that are not its share's: banned, its shares voided
                sid = box9.accepted[-1][0]
                await box9.ws.send_str(P.encode("weights", id=sid, weights=base64.b64encode(b"not weights").decode()))
                while P.decode(await box9.ws.receive_str(timeout=30))["type"] != "banned":
                    pass
            if step == 45:
                await cpu3.ws.close()
            await asyncio.sleep(0)
        clock[0] += 4.0
        await asyncio.sleep(0.2)  # the manager sees cpu-3's socket close
        assert box9.id not in manager.members and cpu3.id not in manager.members

        # three blocks won, each paying the PPLNS split of the window of its round, booked as the
        # manager books them (record_block, then the node's word on their status)
        store = manager.store
        assert store is not None
        won[42] = split()
        for height, status in ((34, "confirmed"), (38, "orphaned"), (42, "pending")):
            payouts = won[height]
            block_hash = hashlib.sha256(f"block {height}".encode()).digest()
            store.record_block(height, block_hash, clock[0] - (44 - height) * 60, payouts)
            if status != "pending":
                store.set_block_status(height, status)
        print(f"pool life simulated in {time.monotonic() - began:.1f}s")

        # the scenario did what the pages are to show
        snap = manager.snapshot()
        assert snap["best"] is not None and snap["best"]["member"] == rig1.id
        tiles = snap["space"]["subspaces"]
        assert any(t["high_reward"] for t in tiles) and any(t["backup"] for t in tiles)
        assert {t["primary"] for t in tiles} == {rig1.id, rig2.id, gpu0.id}
        assert {n["kind"] for n in snap["notices"]} == {"underpaid", "banned", "left"}

        pages = {}
        for name, path in (("dashboard", "/"), ("worker", f"/worker/{rig1.id}")):
            t0 = time.monotonic()
            shot = tmp_path / f"pool-{name}.png"
            code, out, err = await chromium(binary, tmp_path / f"profile-{name}", "--virtual-time-budget=5000",
                                            f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}", "--dump-dom",
                                            url + path)
            print(f"{name}: dom and screenshot in {time.monotonic() - t0:.1f}s")
            assert code == 0, err.decode(errors="replace")[-3000:]
            (tmp_path / f"pool-{name}.html").write_bytes(out)
            pages[name] = (out.decode(), shot)
        async with http.get(url + "/api/pool") as resp:
            api = await resp.json()
        async with http.get(url + f"/api/pool/workers/{rig1.id}") as resp:
            assert resp.status == 200
            mine = await resp.json()
        stop.set()
        verifier.cancel()
        for w in workers:
            await w.ws.close()

    assert api["now"] == clock[0]  # nothing moved since the pages were drawn
    check_dashboard(parse_dom(pages["dashboard"][0]), api)
    check_worker_page(parse_dom(pages["worker"][0]), mine, api)
    docs = os.environ.get("PONAS_DOCS_SCREENSHOTS")
    for _html, shot in pages.values():
        check_screenshot(shot)
        if docs:
            shutil.copyfile(shot, Path(docs) / shot.name)
    print(f"whole test {time.monotonic() - began:.1f}s")


def check_dashboard(dom: Any, api: dict[str, Any]) -> None:
    assert squash(dom.find_all("h1")[0].text()) == "PoNAS pool"
    assert squash(dom.by_id("summary-line").text()) == f"{len(api['members'])} members · fee 1% · finder bonus 0.5%"
    assert squash(dom.by_id("round-height").text()) == "43"
    assert squash(dom.by_id("pool-reward").text()) == "50 coins"
    assert squash(dom.by_id("pool-window").text()) == f"last 3 rounds ({api['pool']['window_units']} units now)"
    assert squash(dom.by_id("pool-best").text()).startswith(
        f"validation {api['best']['validation']} by {label(api['best']['member'])}")
    assert squash(dom.by_id("pool-shares").text()) == (
        f"{api['pool']['accepted']} accepted · {api['pool']['rejected']} refused · {api['pool']['verified']} verified · "
        f"{api['pool']['voided']} voided")

    # The map: one tile per subspace, in the space's order, covering it, with the API's holders.
    tiles = dom.by_id("map").find_all("div", cls="tile")
    want = api["space"]["subspaces"]
    assert len(tiles) == len(want) == int(squash(dom.by_id("tile-count").text()))
    assert want[0]["start"] == 0 and want[-1]["stop"] == api["space"]["size"]
    assert all(a["stop"] == b["start"] for a, b in zip(want, want[1:]))
    for tile, sub in zip(tiles, want, strict=True):
        a = tile.attrs
        assert (int(a["data-start"]), int(a["data-stop"])) == (sub["start"], sub["stop"])
        assert a["data-primary"] == (sub["primary"] or "") and a["data-backup"] == (sub["backup"] or "")
        text = squash(tile.text())
        assert text.startswith(f"{sub['start']}–{sub['stop'] - 1}") and label(sub["primary"]) in text, text
        assert (f"backup {label(sub['backup'])}" in text) == bool(sub["backup"]), text
        assert ("high" in tile.classes) == sub["high_reward"] and ("★" in text) == sub["high_reward"]
        assert ("unassigned" in tile.classes) == (sub["primary"] is None)
        assert "background:" in a.get("style", "")  # coloured by its holder

    # The chart: a bucket per 10 s since the pool started, every share counted.
    buckets = dom.by_id("chart").find_all("g", cls="bucket")
    series = api["series"]["buckets"]
    assert len(buckets) == len(series) and 60 <= len(series) <= 360
    assert [int(b.attrs["data-t"]) for b in buckets] == [s[0] for s in series]
    assert sum(int(b.attrs["data-accepted"]) for b in buckets) == api["pool"]["accepted"]
    assert sum(int(b.attrs["data-refused"]) for b in buckets) == api["pool"]["rejected"]
    assert sum(int(b.attrs["data-trainings"]) for b in buckets) == sum(s[3] for s in series) > 0

    # Members: a row each, as the API has them, amounts in coins, a link to each worker's page.
    rows = {r.attrs["data-member"]: r for r in dom.by_id("members").find_all("tr", cls="member-row")}
    assert set(rows) == {m["member"] for m in api["members"]}
    for m in api["members"]:
        row = rows[m["member"]]
        cell = {next(k for k in c.classes if k not in ("n", "nowrap")): c for c in row.find_all("td")}
        links = row.find_all("a", cls="member-link")
        assert links[0].attrs["href"] == f"/worker/{m['member']}" and squash(links[0].text()) == m["worker"]
        assert squash(cell["worker"].text()).endswith(m["address"][:12] + "…")
        assert squash(cell["accepted"].text()) == str(m["accepted"])
        assert squash(cell["refused"].find_all("b")[0].text()) == str(m["rejected"])
        reasons = [squash(d.text()) for d in cell["refused"].find_all("div", cls="nowrap")]
        assert reasons == [f"{r} {n}" for r, n in m["rejects"].items()]
        assert squash(cell["last-seen"].text()) == ago(api["now"] - m["last_seen"])
        assert float(squash(cell["throughput"].text())) == pytest.approx(m["throughput"], abs=0.006)
        assert m["expected_payout"] is not None and m["expected_payout"] > 0
        assert squash(cell["pending"].text()) == format_amount(m["expected_payout"])
        assert squash(cell["paid"].text()) == format_amount(m["paid"])
        assert squash(cell["subspaces"].text()).startswith(str(len(m["schedule"]["subspaces"])))
    refused = {r for m in api["members"] for r in m["rejects"]}
    assert {"outside-subspace", "bad-share", "duplicate", "rate-limited", "stale-job", "bad-validation"} <= refused
    seen = {m["member"]: squash(rows[m["member"]].text()) for m in api["members"]}
    assert any("backed up by" in t for t in seen.values()) and any("backs up" in t for t in seen.values())

    # Blocks won, newest first, with their status and payouts in coins.
    blocks = dom.by_id("blocks").find_all("tr", cls="block-row")
    assert [int(b.attrs["data-height"]) for b in blocks] == [b["height"] for b in reversed(api["blocks"])] == [42, 38, 34]
    for row, block in zip(blocks, reversed(api["blocks"]), strict=True):
        text = squash(row.text())
        assert block["status"] in text and squash(row.find_all("td", cls="total")[0].text()) == format_amount(block["total"])
        for address, amount in block["payouts"][:4]:
            assert f"{address[:12]}… {format_amount(amount)}" in text
    assert [b["status"] for b in api["blocks"]] == ["confirmed", "orphaned", "pending"]

    # Alerts: the underpaid report, the ban, the departure, newest first.
    notices = dom.by_id("alerts").find_all("li", cls="notice")
    assert [n.attrs["data-kind"] for n in notices] == [n["kind"] for n in api["notices"]]
    for li, notice in zip(notices, api["notices"], strict=True):
        assert squash(li.find_all("span", cls="text")[0].text()) == squash(notice["text"])
        assert label(notice["member"]) in squash(li.text())
    assert "banned (bad-weights)" in squash(dom.by_id("alerts").text())
    assert "bad-weights" in squash(dom.by_id("banned").text())


def check_worker_page(dom: Any, w: dict[str, Any], api: dict[str, Any]) -> None:
    assert squash(dom.by_id("worker-name").text()) == label(w["member"])
    assert "connected" in squash(dom.by_id("state").text())
    cards = {c.attrs["data-key"]: squash(c.find_all("div", cls="v")[0].text()) for c in dom.find_all("div", cls="card")}
    assert cards["accepted"] == str(w["accepted"]) and cards["refused"] == str(w["rejected"])
    assert cards["verified"] == str(w["verified"]) == "1" and cards["trainings"] == str(w["trainings"])
    assert cards["last-seen"] == ago(w["now"] - w["last_seen"])
    assert cards["pending"] == format_amount(w["expected_payout"]) and cards["paid"] == format_amount(w["paid"])
    row = next(m for m in api["members"] if m["member"] == w["member"])
    assert (w["accepted"], w["rejected"], w["rejects"], w["paid"]) == (row["accepted"], row["rejected"], row["rejects"],
                                                                       row["paid"])
    # refused by reason
    rejects = {r.attrs["data-reason"]: squash(r.find_all("td")[1].text()) for r in dom.find_all("tr", cls="reject-row")}
    assert rejects == {r: str(n) for r, n in w["rejects"].items()} and set(rejects) >= {"duplicate", "stale-job"}
    # recent shares, newest first, with their status
    shares = dom.find_all("tr", cls="share-row")
    assert len(shares) == len(w["recent"]) and 10 <= len(shares) <= 20
    for tr, share in zip(shares, w["recent"], strict=True):
        cells = [squash(c.text()) for c in tr.find_all("td")]
        assert tr.attrs["data-status"] == share["status"]
        assert cells[1] == str(share["id"]) and cells[2] == compact(share["genotype"])
        assert tr.find_all("td", cls="geno")[0].attrs["title"] == (share["genotype"] or "")
        assert cells[3] == (str(share["validation"]) if share["validation"] is not None else "–")
        assert cells[4] == share["status"] + (f" {share['reason']}" if share["reason"] else "")
    statuses = {s["status"] for s in w["recent"]}
    assert {"accepted", "refused", "verified"} <= statuses
    assert {s["reason"] for s in w["recent"] if s["status"] == "refused"} == {"stale-job", "bad-validation"}
    # subspaces and backup duties
    duties = dom.by_id("duties").find_all("tr", cls="duty-row")
    assert [d.attrs["data-role"] for d in duties] == [d["role"] for d in w["duties"]]
    for tr, duty in zip(duties, w["duties"], strict=True):
        cells = [squash(c.text()) for c in tr.find_all("td")]
        assert cells[0] == f"{duty['start']}–{duty['stop'] - 1}"
        for who, cell in ((duty["primary"], cells[2]), (duty["backup"], cells[3])):
            assert cell == ("–" if who is None else "this worker" if who == w["member"] else label(who))
    assert w["schedule"]["high_reward"] and all(d["backup"] for d in w["duties"] if d["role"] == "primary")
    # payouts to its address, per block won, and its pending payout, in coins
    payouts = dom.find_all("tr", cls="payout-row")
    assert [int(p.attrs["data-height"]) for p in payouts] == [p["height"] for p in w["payouts"]] == [42, 38, 34]
    for tr, payout in zip(payouts, w["payouts"], strict=True):
        cells = [squash(c.text()) for c in tr.find_all("td")]
        assert cells[2] == payout["status"] and cells[3] == format_amount(payout["amount"])
    assert w["paid"] == sum(p["amount"] for p in w["payouts"] if p["status"] != "orphaned")
    assert squash(dom.by_id("expected-coins").text()) == format_amount(w["expected_payout"])


def check_screenshot(shot: Path) -> None:
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (WIDTH, HEIGHT)
    image = decode_png(data)[:, :, :3]
    assert tuple(image[5, 5]) == HEADER_BAR and tuple(image[5, WIDTH - 5]) == HEADER_BAR, "the dark header bar"
    colours = {tuple(int(v) for v in px) for px in image.reshape(-1, 3)[::7]}
    assert len(colours) > 50, f"only {len(colours)} colours on {shot.name}"
