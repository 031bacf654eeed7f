"""The explorer page as a person sees it: a real node, a real headless Chromium.

What it proves:

* The page at ``/`` runs its script in a browser against the node's own API and renders what
  a person should see: the chain id in the header, the tip's height, one ``.block-row`` per
  block newest first with the right heights, hashes and scores (the API's), the winner and the
  payouts, for each NAS block an ``<svg>`` drawing of the NAS-Bench-201 cell (six edges, four
  nodes, an edge per operation of the genotype, which is in its ``aria-label``), the round
  panel with its height and phase, and the peers panel.
* A 1280x800 screenshot is a real picture of the page: a PNG of that size with the dark header
  bar at the top, the light page background and the cell drawings' operation colours on it.

It needs Debian's ``chromium`` (``/usr/bin/chromium``). Without it the test is skipped, unless
``$CI`` is set: there ``.ci/run`` installs it, and a missing browser is a failure. The node runs
in-process (the browser is an asyncio subprocess, so the node keeps answering it); the DOM and
the screenshot are left in the test's tmp_path for a person to look at.
"""

from __future__ import annotations

import random
import struct
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from consensus.amounts import format_amount
from consensus.crypto import format_address
from node.generate import generate_ponas_round, open_chain
from tests.builders import keys
from tests.framework.browser import chromium, chromium_path, decode_png, parse_dom, squash
from tests.framework.nodes import start_node
from tests.ponas_builders import BEACON, BEACON_CHAIN, ponas_params

BLOCKS = 3
WIDTH, HEIGHT = 1280, 800
PHASES = {"commit", "closing", "reveal"}
# The page's operation colours (node/explorer.py's COL) and the header bar's.
OP_COLOURS = {
    "skip_connect": (0x2A, 0x9D, 0x8F), "nor_conv_1x1": (0xE9, 0xC4, 0x6A),
    "nor_conv_3x3": (0xE7, 0x6F, 0x51), "avg_pool_3x3": (0x45, 0x7B, 0x9D),
}
SHORT = {"none": "none", "skip_connect": "skip", "nor_conv_1x1": "1x1", "nor_conv_3x3": "3x3", "avg_pool_3x3": "pool"}
HEADER_BAR = (0x1D, 0x23, 0x30)
PAGE_BACKGROUND = (0xF6, 0xF7, 0xF9)


@pytest.mark.slow
async def test_explorer_page_in_a_headless_browser(tmp_path: Path) -> None:
    binary = chromium_path()
    params = replace(ponas_params(), genesis_time=int(time.time()) - 120)
    miners = [k.address for k in keys(2, seed=41)]
    started = time.monotonic()
    with open_chain(str(tmp_path / "n0"), params) as chain:
        for i in range(BLOCKS):
            generate_ponas_round(chain, BEACON, BEACON_CHAIN, miners, 1, random.Random(11 + i))
        assert chain.height == BLOCKS
    print(f"{BLOCKS} NAS blocks in {time.monotonic() - started:.1f}s")
    node = await start_node(tmp_path, "n0", params)
    try:
        # a dispute with the closer, as RoundService records one (its rules: test_round_service)
        assert node.rounds is not None
        dispute = {"kind": "left-out-commitment", "height": BLOCKS + 1, "attempt": 0, "close": "ab" * 32,
                   "key_index": BLOCKS + 1, "commitment": "cd" * 32, "miner": "ef" * 32, "seen_before_close_s": 7.5}
        node.rounds.disputes.appendleft(dispute)
        url = f"http://127.0.0.1:{node.api_port}/"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.get(url + "api/v1/blocks?limit=15") as resp:
                api_blocks = (await resp.json())["blocks"]
        assert [b["height"] for b in api_blocks] == list(range(BLOCKS, -1, -1))

        t0 = time.monotonic()
        code, out, err = await chromium(binary, tmp_path / "profile-dom", "--virtual-time-budget=5000", "--dump-dom", url)
        print(f"dump-dom in {time.monotonic() - t0:.1f}s")
        assert code == 0, err.decode(errors="replace")[-3000:]
        html = out.decode()
        (tmp_path / "explorer.html").write_text(html)
        round_info = node.status()["round"]

        t0 = time.monotonic()
        shot = tmp_path / "explorer.png"
        code, _, err = await chromium(binary, tmp_path / "profile-shot", "--virtual-time-budget=5000",
                                      f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}", url)
        print(f"screenshot in {time.monotonic() - t0:.1f}s: {shot}")
        assert code == 0, err.decode(errors="replace")[-3000:]
    finally:
        await node.stop()

    dom = parse_dom(html)
    # The header: the page's name, the chain id and engine, the tip.
    assert squash(dom.find_all("h1")[0].text()) == "PoNAS explorer"
    chain_line = squash(dom.by_id("chain").text())
    assert chain_line.startswith(f"{params.chain_id} · ponas · "), f"the header reads {chain_line!r}"
    assert "unreachable" not in chain_line and "connecting" not in chain_line
    tip = api_blocks[0]
    assert squash(dom.by_id("tip").text()) == f"height {BLOCKS} · tip {tip['hash'][:12]}…"

    # One row per block, newest first, each as the API has it.
    rows = dom.by_id("blocks").find_all("tr", cls="block-row")
    assert len(rows) == BLOCKS + 1
    for row, block in zip(rows, api_blocks, strict=True):
        cells = row.find_all("td")
        assert len(cells) == 7
        height, short_hash, arch, score, epoch, winner, payouts = cells
        assert squash(height.text()) == str(block["height"])
        assert squash(short_hash.text()) == block["hash"][:12] + "…"
        paid = squash(payouts.text())
        for p in block["payouts"]:
            assert f"{p['address'][:12]}… {format_amount(p['amount'])}" in paid, paid
        if block["height"] == 0:
            assert squash(arch.text()) == "genesis" and squash(score.text()) == ""
            continue
        size = params.ponas.test_set_size
        assert block["test_set_size"] == size and block["score"] > 0
        assert squash(score.text()) == f"{block['score']} / {size} ({100 * block['score'] / size:.1f}%)"
        assert block["task_epoch"] is None and squash(epoch.text()) == "–"  # digits: one task, no epochs
        assert {p["address"] for p in block["payouts"]} <= {format_address(a) for a in miners}
        assert block["miner"].startswith("pn1")  # the address of the key that signed the commitment
        assert squash(winner.text()) == block["payouts"][0]["address"][:12] + "…"  # the address paid
        svgs = arch.find_all("svg")
        assert len(svgs) == 1, f"block {block['height']}: no cell drawing"
        svg = svgs[0]
        assert svg.attrs.get("role") == "img" and svg.attrs.get("aria-label") == block["genotype"]
        assert len(svg.find_all("circle")) == 4, "the cell's four nodes"
        edges = svg.find_all("path")
        assert len(edges) == 6, "the cell's six edges"
        # Each edge is titled with its operation and its nodes, in the genotype's order.
        wanted = [(op, int(i), to) for to, grp in enumerate(block["genotype"].split("+"), start=1)
                  for op, i in (t.split("~") for t in grp.split("|") if t)]
        assert len(wanted) == 6
        assert [squash(e.find_all("title")[0].text()) for e in edges] == [f"{op} {i}→{to}" for op, i, to in wanted]
        # The edges between neighbouring nodes are labelled with their operation's short name.
        labels = [squash(t.text()) for t in svg.find_all("text") if not t.text().strip().isdigit()]
        assert labels == [SHORT[op] for op, i, to in wanted if to - i == 1]

    # The round panel: the round after the tip, in a known phase.
    panel = dom.by_id("round")
    assert squash(dom.by_id("round-height").text()) == str(BLOCKS + 1)
    phases = [squash(e.text()) for e in panel.find_all("span", cls="phase")]
    assert len(phases) == 1 and phases[0] in PHASES, phases
    assert round_info is not None and round_info["height"] == BLOCKS + 1
    assert "space nb201" in squash(panel.text()) and "recipe regtest" in squash(panel.text())
    assert f"task digits · test set {params.ponas.test_set_size}" in squash(panel.text())
    assert round_info["disputes"] == [dispute]
    assert squash(dom.by_id("disputes").text()) == (
        f"1 dispute with the closer; the latest: round {BLOCKS + 1}, a commitment by {'ef' * 6}… seen 7.5 s before "
        "the close was left out of it")
    # The peers panel: this node is alone.
    assert squash(dom.by_id("peers").text()) == "no peers"

    # The screenshot: a 1280x800 PNG of the page, not a blank or an error page.
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (WIDTH, HEIGHT)
    assert len(data) > 20_000, f"a {len(data)}-byte screenshot is too plain to be the page"
    t0 = time.monotonic()
    image = decode_png(data)[:, :, :3]
    print(f"decoded the screenshot in {time.monotonic() - t0:.1f}s")
    assert tuple(image[5, 5]) == HEADER_BAR and tuple(image[5, WIDTH - 5]) == HEADER_BAR, "the dark header bar"
    assert tuple(image[HEIGHT - 5, 5]) == PAGE_BACKGROUND, "the page's background"
    colours = {tuple(int(v) for v in px) for px in image.reshape(-1, 3)[::7]}
    assert len(colours) > 50, f"only {len(colours)} colours on the screen"
    # The cells' operation colours are on the screen: surely those of the straight edges (2.5 px
    # wide, so some pixels are the exact colour), and none of an operation no block uses.
    drawn = {op for op, rgb in OP_COLOURS.items() if (image == np.array(rgb, dtype=np.uint8)).all(axis=2).any()}
    edges_of = [[(t.split("~")[0], int(t.split("~")[1]), to) for to, grp in enumerate(b["genotype"].split("+"), start=1)
                 for t in grp.split("|") if t] for b in api_blocks if b["genotype"]]
    used = {op for es in edges_of for op, _, _ in es if op in OP_COLOURS}
    straight = {op for es in edges_of for op, i, to in es if to - i == 1 and op in OP_COLOURS}
    assert straight <= drawn <= used, f"operation colours on the screen {sorted(drawn)}, in the genotypes {sorted(used)}"
