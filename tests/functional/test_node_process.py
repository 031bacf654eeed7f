"""Two real ``ponas node run`` processes and one real ``ponas mine`` process on 127.0.0.1.

What it proves (after Bitcoin Core's functional tests, with real processes and real training):

* A regtest network started from the command line works end to end: node 0 holds the beacon's
  key and closes the rounds, node 1 peers with it, a solo miner follows node 1's rounds with
  node 1's cookie, and both nodes reach height 2 or more on the same tip.
* Each node announces itself in ``DATADIR/node.json`` (pid, api, p2p) and ``DATADIR/.cookie``,
  with ports chosen by the system when asked for port 0.
* SIGTERM stops a node cleanly: exit status 0 within seconds, ``node.json`` and ``.cookie``
  removed, and the datadir reopens (``ponas chain show --json``) on the tip the node had, a
  block node 0 has too. Stopped during a reveal window, it misses the block that node 0 then
  makes; restarted (on the same ports, with a new cookie), it syncs up to node 0 again.
* The miner's blocks pay its address, and it stops on SIGTERM with status 0.
* A second ``ponas node run`` on a datadir in use exits non-zero with ``error: datadir-locked``
  and leaves the running node's files alone; a ``--peer`` of bad form exits 1 with
  ``error: bad-peer`` before any datadir is created.

The genesis time is a few seconds ahead, so that the first round's commit window (which opens
at the genesis time) fits the start of the nodes and of a cold miner on a busy machine.

Every process is killed in a ``finally`` and checked gone, whatever failed. Run pytest with
``-s`` to see the narration; on a failure the processes' log tails are in the message.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.framework.procs import (
    STOP_TIMEOUT,
    Procs,
    api_status,
    get_json,
    gone,
    read_announce,
    run_ponas,
    say,
    start_node_process,
    synced_apis,
    wait_until,
)

BLOCKS_TIMEOUT = 75.0  # two NAS rounds (8 s commit + 4 s reveal each, training and verification) on 2 cores
GENESIS_LEAD = 8  # seconds from now to the genesis time (see the test)


def chain_show(datadir: Path, genesis: Path) -> dict[str, Any]:
    shown = run_ponas("chain", "show", "--datadir", str(datadir), "--genesis", str(genesis), "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_two_node_processes_and_a_miner_process(tmp_path: Path) -> None:
    started = time.monotonic()
    genesis = tmp_path / "genesis.json"
    # The first round opens at the genesis time; a few seconds ahead, its commit window fits the
    # start of two nodes and a cold miner (torch, the digits) even on a busy 2-core machine.
    genesis_time = int(time.time()) + GENESIS_LEAD
    made = run_ponas("genesis", "new", "--preset", "regtest", "--out", str(genesis), "--demo-keys", str(tmp_path / "keys"),
                     "--time", str(genesis_time))
    assert made.returncode == 0, made.stderr
    beacon = tmp_path / "beacon.key"
    assert beacon.exists(), "genesis new writes the beacon's key beside the genesis file"
    chain_id = json.loads(genesis.read_text())["chain_id"]
    assert json.loads(genesis.read_text())["genesis_time"] == genesis_time
    address = json.loads((tmp_path / "keys" / "demo1.key").read_text())["address"]
    n0, n1 = tmp_path / "n0", tmp_path / "n1"
    procs = Procs(tmp_path)
    try:
        a0 = start_node_process(procs, "node0", n0, genesis, "--closer-key", str(beacon))
        a1 = start_node_process(procs, "node1", n1, genesis, "--peer", a0["p2p"])
        procs.start("miner", "mine", "--node", a1["api"], "--address", address, "--token-file", str(n1 / ".cookie"),
                    "--strategy", "evolution", "--seed", "7")
        apis = [a0["api"], a1["api"]]
        st = api_status(a0["api"])
        assert st is not None and st["chain_id"] == chain_id and st["engine"] == "ponas"

        st = wait_until(lambda: synced_apis(apis, 2), BLOCKS_TIMEOUT, "both nodes at height >= 2 on one tip", procs)
        say(f"both nodes at height {st['height']} tip {st['tip'][:16]} after {time.monotonic() - started:.1f}s")
        assert (st1 := api_status(a1["api"])) is not None and st1["peers"] >= 1

        # Stop node 1 in a round's reveal window, once node 0 holds the miner's candidate: node 0
        # makes the block while node 1 is down, so node 1 must sync it when it comes back.
        def revealing() -> tuple[dict[str, Any], dict[str, Any]] | None:
            s0, s1 = api_status(a0["api"]), api_status(a1["api"])
            if s0 is None or s1 is None or s0["tip"] != s1["tip"] or s0["round"]["height"] != s0["height"] + 1:
                return None
            return (s0, s1) if s0["round"]["phase"] == "reveal" and s0["round"]["candidates"] >= 1 else None

        s0, before = wait_until(revealing, BLOCKS_TIMEOUT, "a reveal window with the miner's candidate on node 0", procs,
                                step=0.1)
        say(f"round {s0['round']['height']} revealing, {s0['round']['candidates']} candidate(s) on node 0")
        cookie1 = (n1 / ".cookie").read_text()
        node1 = procs.running["node1"]
        node1.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        code = node1.wait(timeout=STOP_TIMEOUT)
        say(f"node1 stopped by SIGTERM in {time.monotonic() - t0:.2f}s with status {code}")
        procs.forget("node1")
        assert code == 0, procs.report()
        assert not (n1 / "node.json").exists() and not (n1 / ".cookie").exists()
        shown = chain_show(n1, genesis)
        assert shown["chain_id"] == chain_id
        assert shown["height"] >= before["height"]
        assert shown["blocks"][before["height"]]["hash"] == before["tip"], "a block node 1 had was lost"
        assert shown["blocks"][-1]["hash"] == shown["tip"] and shown["blocks"][-1]["height"] == shown["height"]
        assert [b["height"] for b in shown["blocks"]] == list(range(shown["height"] + 1))
        # The tip it kept is a block of the network's chain: node 0 has it at the same height.
        wait_until(lambda: (b := get_json(f"{a0['api']}/api/v1/blocks/{shown['tip']}")) and b["height"] == shown["height"],
                   15, "node 0 to have node 1's last tip", procs)
        # Node 0 closes the round alone and imports the miner's block.
        s0 = wait_until(lambda: (st0 := api_status(a0["api"])) and st0["height"] > s0["height"] and st0, 15,
                        "node 0 to import the revealed block", procs)
        target = s0["height"]
        say(f"node 0 at height {target}, node 1's datadir at {shown['height']}")

        # Restarted (on the same ports, so the miner finds it again), node 1 syncs to node 0.
        p2p_port, api_port = a1["p2p"].rsplit(":", 1)[1], a1["api"].rsplit(":", 1)[1]
        a1b = start_node_process(procs, "node1-again", n1, genesis, "--peer", a0["p2p"], "--p2p-port", p2p_port, "--api-port", api_port)
        assert a1b["api"] == a1["api"] and a1b["p2p"] == a1["p2p"]
        assert (n1 / ".cookie").read_text() != cookie1, "a restarted node writes a new cookie"
        st = wait_until(lambda: synced_apis(apis, target), 30, f"node 1 back in sync with node 0 at height {target} or more", procs)
        say(f"after the restart both at height {st['height']} tip {st['tip'][:16]}")
        # Every block above genesis is the miner's: it won each round alone and got the coinbase.
        blocks = blocks_via_api(a0["api"], st["height"])
        assert blocks[-1]["hash"] == st["tip"]
        for block in blocks[1:]:
            assert [p["address"] for p in block["payouts"]] == [address] and block["genotype"], block["height"]

        # The miner stops cleanly on SIGTERM too, with its summary line.
        miner = procs.running["miner"]
        miner.send_signal(signal.SIGTERM)
        assert miner.wait(timeout=STOP_TIMEOUT) == 0, procs.report()
        procs.forget("miner")
        assert "stopped:" in procs.tail("miner", 5)

        # While node 0 runs, a second process on its datadir is refused and leaves the running
        # node's announcement and cookie alone. (Last: these processes take CPU a cold miner needs.)
        cookie0 = (n0 / ".cookie").read_text()
        second = run_ponas("node", "run", "--datadir", str(n0), "--genesis", str(genesis))
        assert second.returncode != 0
        assert "error: datadir-locked" in second.stderr, second.stderr
        assert read_announce(n0) == a0 and (n0 / ".cookie").read_text() == cookie0
        # A peer of bad form is a usage error found before the datadir is touched.
        for bad in ("nocolon", "127.0.0.1:", ":18444", "127.0.0.1:port", "127.0.0.1:70000"):
            refused = run_ponas("node", "run", "--datadir", str(tmp_path / "never"), "--genesis", str(genesis), "--peer", bad)
            assert refused.returncode == 1, (bad, refused.stderr)
            assert "error: bad-peer" in refused.stderr, (bad, refused.stderr)
        assert not (tmp_path / "never").exists()
        say("datadir-locked and bad-peer checked")
    finally:
        pids = list(procs.pids)
        procs.kill_all()
        left = [pid for pid in pids if not gone(pid)]
        say(f"all {len(pids)} processes stopped; {time.monotonic() - started:.1f}s in all")
    assert not left, f"processes left running: {left}"


def blocks_via_api(api: str, height: int) -> list[dict[str, Any]]:
    """Blocks 0..height of a node's chain, by the API, each checked to link to its parent."""
    blocks: list[dict[str, Any]] = []
    for h in range(height + 1):
        block = get_json(f"{api}/api/v1/blocks/{h}")
        assert block is not None and block["height"] == h
        if blocks:
            assert block["header"]["parent"] == blocks[-1]["hash"]
        blocks.append(block)
    return blocks
