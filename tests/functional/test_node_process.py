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
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("ponas")
STATUS_TIMEOUT = 2.0  # seconds for one HTTP request to a node
START_TIMEOUT = 30.0  # a node's process start: imports, LevelDB, listening sockets
BLOCKS_TIMEOUT = 75.0  # two NAS rounds (8 s commit + 4 s reveal each, training and verification) on 2 cores
STOP_TIMEOUT = 10.0
GENESIS_LEAD = 8  # seconds from now to the genesis time (see the test)


def ponas_argv(*args: str) -> list[str]:
    """The ``ponas`` console script beside this interpreter, or the same entry point by module."""
    if SCRIPT.exists():
        return [str(SCRIPT), *args]
    return [sys.executable, "-c", "import sys; from node.cli import main; sys.exit(main())", *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PONAS_TOKEN", None)  # the miner must use the cookie it is given
    return env


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class Procs:
    """The processes this test started: each with its own log file, all killed at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.pids: list[int] = []
        self.logs: dict[str, Path] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}.log"
        self.logs[name] = log
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ponas_argv(*args), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.tmp, env=child_env(),
            )
        self.running[name] = proc
        self.pids.append(proc.pid)
        say(f"started {name} (pid {proc.pid}): ponas {' '.join(args)}")
        return proc

    def tail(self, name: str, lines: int = 25) -> str:
        try:
            text = self.logs[name].read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def report(self) -> str:
        return "\n".join(f"--- {name} (last lines of {log}) ---\n{self.tail(name)}" for name, log in self.logs.items())

    def check_alive(self) -> None:
        for name, proc in self.running.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with status {proc.returncode}\n{self.report()}")

    def forget(self, name: str) -> None:
        self.running.pop(name, None)

    def kill_all(self) -> None:
        """SIGTERM first (nodes and the miner stop cleanly), then SIGKILL what is left."""
        for proc in self.running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + STOP_TIMEOUT
        for proc in self.running.values():
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        self.running.clear()


def wait_until(cond: Callable[[], Any], timeout: float, what: str, procs: Procs, step: float = 0.25) -> Any:
    """Poll ``cond`` until it returns something truthy, at most ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        procs.check_alive()
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{procs.report()}")
        time.sleep(step)


def read_announce(datadir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((datadir / "node.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None  # not written yet (it is written atomically, so never half)


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=STATUS_TIMEOUT) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def status(api: str) -> dict[str, Any] | None:
    answer = get_json(api + "/api/v1/status")
    return answer if isinstance(answer, dict) else None


def start_node(procs: Procs, name: str, datadir: Path, genesis: Path, *extra: str) -> dict[str, Any]:
    """Start ``ponas node run`` and return its ``node.json`` once it is written and the API answers."""
    node_log = procs.tmp / f"{name}.node.log"
    proc = procs.start(name, "node", "run", "--datadir", str(datadir), "--genesis", str(genesis),
                       "--log-file", str(node_log), *extra)
    procs.logs[f"{name} log-file"] = node_log
    announce = wait_until(lambda: read_announce(datadir), START_TIMEOUT, f"{name}'s node.json", procs)
    assert announce["pid"] == proc.pid
    assert announce["api"].startswith("http://127.0.0.1:") and announce["p2p"].startswith("127.0.0.1:")
    assert int(announce["api"].rsplit(":", 1)[1]) > 0 and int(announce["p2p"].rsplit(":", 1)[1]) > 0
    wait_until(lambda: status(announce["api"]), START_TIMEOUT, f"{name}'s API", procs)
    cookie = (datadir / ".cookie").read_text()
    assert len(cookie) >= 32
    assert (datadir / ".cookie").stat().st_mode & 0o077 == 0, "the cookie must be private to its owner"
    say(f"{name} up: api {announce['api']} p2p {announce['p2p']}")
    return announce


def synced(apis: list[str], min_height: int) -> dict[str, Any] | None:
    """Node 0's status when every node is at ``min_height`` or more on one tip."""
    answers = [status(api) for api in apis]
    if any(a is None for a in answers):
        return None
    if {a["tip"] for a in answers} != {answers[0]["tip"]} or answers[0]["height"] < min_height:  # type: ignore[index]
        return None
    return answers[0]


def run_ponas(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ponas_argv(*args), capture_output=True, text=True, env=child_env(), cwd=REPO_ROOT,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def chain_show(datadir: Path, genesis: Path) -> dict[str, Any]:
    shown = run_ponas("chain", "show", "--datadir", str(datadir), "--genesis", str(genesis), "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # the pid was reused by a process of another user
        return True
    return False


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
        a0 = start_node(procs, "node0", n0, genesis, "--closer-key", str(beacon))
        a1 = start_node(procs, "node1", n1, genesis, "--peer", a0["p2p"])
        procs.start("miner", "mine", "--node", a1["api"], "--address", address, "--token-file", str(n1 / ".cookie"),
                    "--strategy", "evolution", "--seed", "7")
        apis = [a0["api"], a1["api"]]
        st = status(a0["api"])
        assert st is not None and st["chain_id"] == chain_id and st["engine"] == "ponas"

        st = wait_until(lambda: synced(apis, 2), BLOCKS_TIMEOUT, "both nodes at height >= 2 on one tip", procs)
        say(f"both nodes at height {st['height']} tip {st['tip'][:16]} after {time.monotonic() - started:.1f}s")
        assert (st1 := status(a1["api"])) is not None and st1["peers"] >= 1

        # Stop node 1 in a round's reveal window, once node 0 holds the miner's candidate: node 0
        # makes the block while node 1 is down, so node 1 must sync it when it comes back.
        def revealing() -> tuple[dict[str, Any], dict[str, Any]] | None:
            s0, s1 = status(a0["api"]), status(a1["api"])
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
        s0 = wait_until(lambda: (st0 := status(a0["api"])) and st0["height"] > s0["height"] and st0, 15,
                        "node 0 to import the revealed block", procs)
        target = s0["height"]
        say(f"node 0 at height {target}, node 1's datadir at {shown['height']}")

        # Restarted (on the same ports, so the miner finds it again), node 1 syncs to node 0.
        p2p_port, api_port = a1["p2p"].rsplit(":", 1)[1], a1["api"].rsplit(":", 1)[1]
        a1b = start_node(procs, "node1-again", n1, genesis, "--peer", a0["p2p"], "--p2p-port", p2p_port, "--api-port", api_port)
        assert a1b["api"] == a1["api"] and a1b["p2p"] == a1["p2p"]
        assert (n1 / ".cookie").read_text() != cookie1, "a restarted node writes a new cookie"
        st = wait_until(lambda: synced(apis, target), 30, f"node 1 back in sync with node 0 at height {target} or more", procs)
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
