"""The explorer's pages as a person sees them: a real node, a real headless Chromium.

The chain: two NAS blocks generated locally (the first carries a transfer), then round 3 played
live on the node (it holds the beacon's key and closes; its clock is the test's): three miners
commit through the API; after the close the best honest candidate is submitted through the API
(scored at once, then retrained), a false claim above it is refused (``bad-score``) and a
worse honest candidate comes from a peer over P2P (held: a claim below the standing best is
never scored); the node signs the reveal set and takes the best listed candidate. Round 4 is
in progress with one commitment.

What it proves, each page loaded in Chromium (``--dump-dom``) and read against the API:

* a block page (``#/block/1``) shows the header fields, the cell drawn as an ``<svg>`` (six
  edges, four nodes), the score out of the test set, the payouts and the transfer in coins;
* an address page shows the balance in coins, the nonce and the history, one row per item of
  ``/history``, each change in coins with its sign;
* a decided round's page (``#/round/3``, the record the node wrote when it decided the round)
  shows the winner, the close, the commitments with their index and miner, the reveal set and
  the leaderboard in the protocol's order: the refused false claim (with its reason), the
  winner (with this node's score), the claim that was never scored;
* the round in progress (``#/round/4``) is shown live, with its commitment;
* the search box: a transaction hash lands on the transaction's page, a hash nothing has says
  so (``not-found``);
* a 1280x800 screenshot of the block, address and round pages is a real picture (the header
  bar, the page's background, many colours). With ``$PONAS_DOCS_SCREENSHOTS`` set to a folder,
  the screenshots (and one of the home page) are written there too, as ``explorer-block.png``,
  ``explorer-address.png``, ``explorer-round.png`` and ``explorer.png``: the docs' pictures.

It needs Debian's ``chromium`` (see :func:`tests.framework.browser.chromium_path`).
"""

from __future__ import annotations

import base64
import datetime
import os
import random
import shutil
import struct
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consensus.amounts import format_amount
from consensus.crypto import format_address
from consensus.engines.ponas.rounds import candidate_rank, commitment_for, seal_tiebreak
from consensus.types import COIN, Commitment, RoundClose
from node.generate import generate_ponas_round, open_chain
from node.service import Node
from p2p import messages as M
from tests.builders import keys, transfer
from tests.framework.browser import Element, chromium, chromium_path, decode_png, parse_dom, squash
from tests.framework.nodes import start_node, wait_for
from tests.framework.peer import FakePeer
from tests.ponas_builders import (
    BEACON,
    BEACON_CHAIN,
    GENOTYPES,
    honest_score,
    noproof_entry,
    ponas_params,
    reveal,
    trained_entry,
)

WIDTH, HEIGHT = 1280, 800
HEADER_BAR = (0x1D, 0x23, 0x30)
PAGE_BACKGROUND = (0xF6, 0xF7, 0xF9)
STATUS = {"winner": "winner", "scored": "scored", "refused": "refused", "not-listed": "not listed",
          "not-scored": "not scored"}
PAYER, MINER2 = keys(2, seed=41)  # the generated rounds' miners; the first is funded and pays
LIVE = keys(3, seed=45)  # round 3's miners
LATE = keys(1, seed=46)[0]  # commits in round 4
RECIPIENT = keys(1, seed=44)[0].address
AMOUNT = 12 * COIN + 34_500_000  # 12.345 coins


def utc(t: float | None) -> str:
    return "–" if t is None else datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def out_of(score: int, size: int) -> str:
    return f"{score} / {size} ({100 * score / size:.1f}%)"


def short(text: str) -> str:
    return text[:12] + "…"


def text(el: Element) -> str:
    return squash(el.text())


class Api:
    def __init__(self, node: Node, http: aiohttp.ClientSession) -> None:
        self.base, self.http, self.token = f"http://127.0.0.1:{node.api_port}", http, node.token

    async def get(self, path: str) -> Any:
        async with self.http.get(self.base + path) as r:
            assert r.status == 200, (path, r.status, await r.text())
            return await r.json()

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        async with self.http.post(self.base + path, json=body, headers={"Authorization": f"Bearer {self.token}"}) as r:
            return r.status, await r.json()


async def play_round_3(node: Node, api: Api, clock: list[float]) -> dict[str, Any]:
    """Round 3, live on the node: the roles of its three candidates (``winner``, ``false``,
    ``relayed``), each (entry, block)."""
    assert node.rounds is not None and node.rounds.round.height == 3
    params, tip = node.params, node.chain.tip
    entries = [trained_entry(params, tip, node.chain.accounts, k, GENOTYPES[i], seed=3 + i) for i, k in enumerate(LIVE)]
    for e in entries:
        status, out = await api.post("/api/v1/commitments", {
            "commitment": commitment_for(e.block.header, e.key, params.chain_id).encode().hex()})
        assert status == 202, out
    clock[0] = node.rounds.round.deadline + 0.5  # the node closes at its tick
    await wait_for(lambda: node.rounds is not None and node.rounds.round.close is not None, 10, "the close")
    info = await api.get("/api/v1/round")
    close = RoundClose.decode(bytes.fromhex(info["close"]["encoded"]))
    commitments = [Commitment.decode(bytes.fromhex(c)) for c in (await api.get("/api/v1/round/commitments"))["commitments"]]
    honest = [reveal(e, close, commitments, honest_score(params, e, close)) for e in entries]
    order = sorted(range(3), key=lambda i: candidate_rank(honest[i].header.score, seal_tiebreak(honest[i].proof),
                                                          honest[i].header.hash()))
    best, second, third = order
    size, tolerance = params.ponas.test_set_size, params.ponas.score_tolerance
    claim = min(size, honest[best].header.score + tolerance + 2)  # above the best, and beyond the tolerance
    assert claim - honest[third].header.score > tolerance
    false = reveal(entries[third], close, commitments, claim)
    status, out = await api.post("/api/v1/candidates", {
        "block": honest[best].encode().hex(), "weights": base64.b64encode(entries[best].weights).decode()})
    assert status == 202 and out["score"] == honest[best].header.score, out
    status, out = await api.post("/api/v1/candidates", {
        "block": false.encode().hex(), "weights": base64.b64encode(entries[third].weights).decode()})
    assert (status, out["error"]["reason"]) == (400, "bad-score"), out
    peer = await FakePeer.connect(node, best_height=node.chain.height)
    try:
        relayed = honest[second]
        await peer.send(M.BlockMsg(relayed, entries[second].weights, True))
        await wait_for(lambda: node.rounds is not None and relayed.header.hash() in node.rounds.round.held, 10,
                       "the relayed candidate held")
    finally:
        await peer.close()
    clock[0] = close.timestamp + params.ponas.reveal_window + 0.5  # the window ends: set, retrain, import
    await wait_for(lambda: node.chain.height == 3, 60, "round 3's block")
    assert node.chain.tip_hash == honest[best].header.hash()
    return {"winner": honest[best], "false": false, "relayed": relayed}


async def open_round_4(node: Node, api: Api) -> None:
    await wait_for(lambda: node.rounds is not None and node.rounds.round.height == 4, 10, "round 4")
    entry = noproof_entry(node.params, node.chain.tip, node.chain.accounts, LATE, GENOTYPES[0], seed=9)
    status, out = await api.post("/api/v1/commitments", {
        "commitment": commitment_for(entry.block.header, LATE, node.params.chain_id).encode().hex()})
    assert status == 202, out


@pytest.mark.slow
async def test_explorer_pages_in_a_headless_browser(tmp_path: Path) -> None:
    binary = chromium_path()
    docs = os.environ.get("PONAS_DOCS_SCREENSHOTS")
    params = replace(ponas_params([PAYER]), genesis_time=int(time.time()) - 120)
    started = time.monotonic()
    tx = transfer(params, PAYER, RECIPIENT, AMOUNT, 0, fee=2500)
    with open_chain(str(tmp_path / "n0"), params) as chain:
        generate_ponas_round(chain, BEACON, BEACON_CHAIN, [PAYER.address, MINER2.address], 1, random.Random(5), txs=[tx])
        generate_ponas_round(chain, BEACON, BEACON_CHAIN, [PAYER.address, MINER2.address], 1, random.Random(6))
        assert chain.height == 2
    print(f"2 NAS blocks in {time.monotonic() - started:.1f}s")
    clock = [time.time()]
    node = await start_node(tmp_path, "n0", params, closer=True, clock=lambda: clock[0], tick=0.05)
    shots: dict[str, Path] = {}
    doms: dict[str, Element] = {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            api = Api(node, http)
            t0 = time.monotonic()
            roles = await play_round_3(node, api, clock)
            await open_round_4(node, api)
            print(f"round 3 played live in {time.monotonic() - t0:.1f}s")
            block1 = await api.get("/api/v1/blocks/1")
            account = await api.get(f"/api/v1/accounts/{format_address(PAYER.address)}")
            history = await api.get(f"/api/v1/accounts/{format_address(PAYER.address)}/history")
            round3 = await api.get("/api/v1/rounds/3")
            round4 = await api.get("/api/v1/rounds/4")
            found = await api.get(f"/api/v1/search?q={tx.hash().hex()}")
            assert (found["kind"], found["target"], found["height"]) == ("tx", tx.hash().hex(), 1)

            url = f"http://127.0.0.1:{node.api_port}/"
            pages = {"block": "#/block/1", "address": f"#/address/{format_address(PAYER.address)}",
                     "round": "#/round/3", "live": "#/round/4", "search-tx": f"#/search/{tx.hash().hex()}",
                     "search-miss": f"#/search/{'ef' * 32}"}
            t0 = time.monotonic()
            for name, route in pages.items():
                code, out, err = await chromium(binary, tmp_path / f"profile-{name}", "--virtual-time-budget=3000",
                                                "--dump-dom", url + route)
                assert code == 0, err.decode(errors="replace")[-3000:]
                (tmp_path / f"explorer-{name}.html").write_text(out.decode())
                doms[name] = parse_dom(out.decode())
            for name in ("block", "address", "round") + (("home",) if docs else ()):
                shots[name] = tmp_path / ("explorer.png" if name == "home" else f"explorer-{name}.png")
                code, _, err = await chromium(binary, tmp_path / f"profile-shot-{name}", "--virtual-time-budget=3000",
                                              f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shots[name]}",
                                              url + pages.get(name, ""))
                assert code == 0, err.decode(errors="replace")[-3000:]
            print(f"{len(pages)} pages and {len(shots)} screenshots in {time.monotonic() - t0:.1f}s: {tmp_path}")
    finally:
        await node.stop()
    size = params.ponas.test_set_size

    # --- the block page: block 1, with its transfer -----------------------------------------------
    dom = doms["block"]
    assert text(dom.by_id("b-height")) == "1" and text(dom.by_id("b-hash")) == block1["hash"]
    assert text(dom.by_id("b-parent")) == block1["header"]["parent"]
    assert text(dom.by_id("b-time")) == utc(block1["timestamp"])
    assert text(dom.by_id("b-miner")) == block1["miner"]
    assert text(dom.by_id("b-score")) == out_of(block1["score"], size)
    assert text(dom.by_id("b-epoch")) == "–" and text(dom.by_id("b-genotype")) == block1["genotype"]
    assert text(dom.by_id("b-state-root")) == block1["header"]["state_root"]
    svg, = dom.by_id("b-cell").find_all("svg")
    assert svg.attrs["aria-label"] == block1["genotype"]
    assert len(svg.find_all("path")) == 6 and len(svg.find_all("circle")) == 4
    rows = dom.by_id("payouts").find_all("tr", cls="payout-row")
    assert [[text(td) for td in r.find_all("td")] for r in rows] == [
        [p["address"], format_amount(p["amount"])] for p in block1["payouts"]]
    assert text(dom.by_id("payout-total")) == format_amount(sum(p["amount"] for p in block1["payouts"]))
    assert sum(p["amount"] for p in block1["payouts"]) == params.subsidy(1) + 2500  # the subsidy and the fee
    sent, = block1["transactions"]
    assert sent["hash"] == tx.hash().hex() and sent["amount_coins"] == "12.345"
    row, = dom.by_id("txs").find_all("tr", cls="tx-row")
    assert [text(td) for td in row.find_all("td")] == [
        short(sent["hash"]), short(sent["from"]), short(sent["to"]), "12.345", "0.000025", "0"]

    # --- the address page: the payer (a prefund, the transfer out, maybe payouts) ------------------
    dom = doms["address"]
    assert text(dom.by_id("a-address")) == account["address"]
    assert text(dom.by_id("a-balance")) == f"{format_amount(account['balance'])} coins"
    assert text(dom.by_id("a-nonce")) == "1" == str(account["nonce"])
    rows = dom.by_id("history").find_all("tr", cls="hist-row")
    assert len(rows) == len(history["items"]) >= 2 and not history["pending"]
    for r, item in zip(rows, history["items"], strict=True):
        cells = [text(td) for td in r.find_all("td")]
        sign = "+" if item["delta"] > 0 else ""
        assert cells[0] == str(item["height"]) and cells[2] == item["kind"]
        assert cells[4] == sign + item["delta_coins"], (cells, item)
    kinds = [i["kind"] for i in history["items"]]
    assert kinds[-1] == "genesis" and "transfer" in kinds
    out = next(i for i in history["items"] if i["kind"] == "transfer")
    assert out["delta_coins"] == "-12.345025"

    # --- the decided round: round 3's leaderboard -----------------------------------------------
    dom = doms["round"]
    winner, false, relayed = roles["winner"], roles["false"], roles["relayed"]
    assert round3["status"] == "decided" and round3["source"] == "node" and round3["canonical"]
    assert [(c["block"], c["status"], c["reason"]) for c in round3["candidates"]] == [
        (false.header.hash().hex(), "refused", "bad-score"),
        (winner.header.hash().hex(), "winner", None),
        (relayed.header.hash().hex(), "not-scored", None)]
    assert round3["candidates"][1]["score"] == winner.header.score and round3["candidates"][2]["score"] is None
    assert [c["listed"] for c in round3["candidates"]] == [False, True, True]  # the closer left the refused one out
    assert [e["block"] for e in round3["reveal_set"]["entries"]] == sorted(
        [winner.header.hash().hex(), relayed.header.hash().hex()], key=lambda h: [
            c["index"] for c in round3["candidates"] if c["block"] == h][0])
    assert text(dom.by_id("r-height")) == "3" and text(dom.by_id("r-status")) == "decided"
    assert text(dom.by_id("r-winner")) == winner.header.hash().hex()
    assert text(dom.by_id("r-close")).startswith(f"beacon key {round3['close']['key_index']} · ")
    assert "3 commitments" in text(dom.by_id("r-close"))
    assert text(dom.by_id("r-reveal")).startswith("2 candidates listed by the closer")
    rows = dom.by_id("leaderboard").find_all("tr", cls="cand-row")
    assert len(rows) == 3
    for r, c in zip(rows, round3["candidates"], strict=True):
        cells = [text(td) for td in r.find_all("td")]
        status = STATUS[c["status"]] + (f" {c['reason']}" if c["reason"] else "")
        verified = "–" if c["score"] is None else out_of(c["score"], size)
        listed = {None: "–", True: "yes", False: "no"}[c["listed"]]
        assert cells == [str(c["rank"]), short(c["block"]), short(c["miner"]), str(c["index"]),
                         out_of(c["claimed"], size), verified, listed, status], cells
    claims = [c["claimed"] for c in round3["candidates"]]
    assert claims == sorted(claims, reverse=True)
    rows = dom.by_id("commitments").find_all("tr", cls="commit-row")
    assert [[text(td) for td in r.find_all("td")][:2] for r in rows] == [
        [str(i), short(format_address(k.address))] for i, k in enumerate(LIVE)]  # in the order they came
    assert all(c["seen"] is not None for c in round3["commitments"]["items"])
    assert len(dom.by_id("reveal-entries").find_all("tr", cls="reveal-row")) == 2

    # --- the round in progress --------------------------------------------------------------------
    dom = doms["live"]
    assert round4["status"] == "in-progress" and round4["commitments"]["count"] == 1
    assert text(dom.by_id("r-height")) == "4" and text(dom.by_id("r-status")).startswith("in progress · ")
    assert text(dom.by_id("r-commitments")) == "1"
    row, = dom.by_id("commitments").find_all("tr", cls="commit-row")
    assert [text(td) for td in row.find_all("td")][:2] == ["0", short(format_address(LATE.address))]
    assert text(dom.by_id("no-candidates")) == "no candidates yet"

    # --- the search box: a transaction hash, and a hash nothing has ---------------------------------
    dom = doms["search-tx"]
    assert text(dom.by_id("t-hash")) == tx.hash().hex()
    assert text(dom.by_id("t-status")).startswith("confirmed in block 1 (position 1)")
    assert text(dom.by_id("t-amount")) == "12.345 coins" and text(dom.by_id("t-fee")) == "0.000025 coins"
    assert text(dom.by_id("t-from")) == format_address(PAYER.address) and text(dom.by_id("t-to")) == format_address(RECIPIENT)
    miss = doms["search-miss"].by_id("search-result")
    assert miss.attrs["data-reason"] == "not-found" and f"Nothing matches “{'ef' * 32}”" in text(miss)

    # --- the screenshots ----------------------------------------------------------------------------
    for name, shot in shots.items():
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (WIDTH, HEIGHT)
        assert len(data) > 20_000, f"a {len(data)}-byte screenshot of the {name} page is too plain to be it"
        if name == "round":
            image = decode_png(data)[:, :, :3]
            assert tuple(image[5, 5]) == HEADER_BAR and tuple(image[HEIGHT - 5, 5]) in (PAGE_BACKGROUND, (255, 255, 255))
            colours = {tuple(int(v) for v in px) for px in image.reshape(-1, 3)[::7]}
            assert len(colours) > 50, f"only {len(colours)} colours on the screen"
        if docs:
            shutil.copyfile(shot, Path(docs) / shot.name)
