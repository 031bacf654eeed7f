"""``ponas devnet`` as a user runs it: real processes, real training, real sockets on 127.0.0.1.

* ``up --preset regtest --rounds 3 --send 5 --keep``: three nodes (node0 closes the rounds), a
  pool manager with three members and a solo miner start and answer; three blocks come in and
  the command prints them and a summary, then leaves the devnet running. Every node has the
  same blocks; the pool wins a block whose coinbase pays at least two of its members (read
  from the chain itself, through the nodes' API); the transfer from wallet alice to wallet bob
  is in a block, and bob's balance shows it. ``status`` lists every process running;
  ``down`` stops them all and leaves no process behind; ``status`` then says stopped.
* Ctrl-C (SIGINT) on a foreground ``up`` that watches the blocks prints the summary of what came
  in (``summary.json`` too, marked interrupted) and stops every process it started.
* After ``down`` the chain stays: ``up`` without ``--fresh`` resumes it (same chain, keys and
  ports) and mines on from its tip; ``up`` asking for another shape refuses (``devnet-mismatch``).
* Bad starts give a reason and start nothing: a port in use, a directory that holds an earlier
  devnet (``init``; ``--fresh`` replaces it), a directory that is not a devnet, a process that
  dies during start-up (its log's tail is in the message).

Who wins a round is chance: a solo miner that found a cell which does well on the rounds' test
sets can win several rounds in a row. The test waits up to eight more rounds (about 100 s, only
when needed) for a pool block before it calls that a failure. Every process is killed
in a ``finally`` whatever failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from node import logs
from node.devnet import manifest as mf
from node.devnet.launcher import Launcher, log_tail, process_alive, running, stop_processes
from node.devnet.manifest import Manifest, ProcessEntry, Topology
from node.devnet.plan import ponas_argv
from tests.framework.procs import get_json as get
from tests.framework.procs import say

REPO_ROOT = Path(__file__).resolve().parents[2]
UP_TIMEOUT = 300.0  # start-up and three 12-second regtest rounds on a busy 2-core machine
EXTRA_ROUNDS = 8  # the pool usually wins within the first three; a lucky solo miner can hold on for a while


def ponas(*args: str) -> list[str]:
    return ponas_argv() + list(args)


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PONAS_")}
    e["PYTHONUNBUFFERED"] = "1"
    e["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ponas(*args), capture_output=True, text=True, timeout=timeout, env=env(), cwd=REPO_ROOT)



def kill_leftovers(root: Path) -> list[str]:
    """SIGKILL whatever of the devnet still runs; the names of what did."""
    try:
        manifest = mf.load(root)
    except Exception:  # noqa: BLE001 - nothing was written
        return []
    left = running(manifest)
    for p in left:
        try:
            os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]  # running: it has a pid
        except ProcessLookupError:
            pass
    return [p.name for p in left]


def pids_gone(manifest: Manifest, timeout: float = 10.0) -> list[str]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = [p.name for p in manifest.processes if process_alive(p)]
        if not left:
            return []
        time.sleep(0.2)
    return left


@pytest.mark.slow
def test_devnet_up_mines_pays_the_pool_members_confirms_a_transfer_and_goes_down(tmp_path: Path) -> None:
    root = tmp_path / "dn"
    try:
        say("ponas devnet up --preset regtest --rounds 3 --send 5 --keep")
        up = subprocess.run(
            ponas("devnet", "up", "--preset", "regtest", "--rounds", "3", "--send", "5", "--keep",
                  "--dir", str(root), "--base-port", "0"),
            capture_output=True, text=True, timeout=UP_TIMEOUT, env=env(), cwd=tmp_path,
        )
        print(up.stdout[-4000:], up.stderr[-2000:], sep="\n")
        assert up.returncode == 0, f"up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        manifest = mf.load(root)
        # the printed table and summary
        assert "HEIGHT" in up.stdout and "WINNER" in up.stdout
        assert "blocks in" in up.stdout and "transfer alice -> bob 5 coins: confirmed in block" in up.stdout
        assert "still running" in up.stdout
        summary = json.loads((root / "summary.json").read_text())
        assert summary["rounds"] >= 3 and summary["agree"]["same"] and summary["interrupted"] is False

        # status: every process runs
        st = run("devnet", "status", "--dir", str(root), "--json")
        dead = [p for p in manifest.processes if not process_alive(p)]
        assert st.returncode == 0, st.stdout + st.stderr + "".join(f"\n{p.name}:\n{log_tail(p.log, 20)}" for p in dead)
        status = json.loads(st.stdout)
        assert status["state"] == "running"
        assert sorted(p["role"] for p in status["processes"]) == ["member"] * 3 + ["node"] * 3 + ["pool", "solo"]

        apis = [p.api for p in manifest.processes if p.role == "node"]
        members = {manifest.accounts[f"member{i}"] for i in range(3)}
        pool_key = manifest.accounts["pool"]

        def pool_blocks(tip: int) -> list[dict[str, Any]]:
            blocks = [get(f"{apis[0]}/api/v1/blocks/{h}") for h in range(1, tip + 1)]
            return [b for b in blocks if b["miner"] == pool_key]

        # the pool wins a block (waiting a few more rounds if the solo miner won these)
        tip = get(f"{apis[0]}/api/v1/status")["height"]
        won = pool_blocks(tip)
        end = time.monotonic() + EXTRA_ROUNDS * manifest.round_seconds + 30
        while not won and time.monotonic() < end:
            time.sleep(2)
            tip = get(f"{apis[0]}/api/v1/status")["height"]
            won = pool_blocks(tip)
        assert won, f"the pool won none of {tip} blocks: {[r['winner'] for r in summary['blocks']]}"
        paid = max(len({p["address"] for p in b["payouts"]} & members) for b in won)
        say(f"pool blocks {[b['height'] for b in won]}; most members paid by one: {paid}")
        assert paid >= 2
        fee = manifest.accounts["pool-fee"]
        assert all(any(p["address"] == fee for p in b["payouts"]) for b in won)

        # every node has the same block at the lowest tip
        heights = [get(f"{a}/api/v1/status")["height"] for a in apis]
        h = min(heights)
        assert h >= 3
        hashes = {get(f"{a}/api/v1/blocks/{h}")["hash"] for a in apis}
        assert len(hashes) == 1, f"nodes differ at height {h}: {hashes}"

        # the transfer: in a block, and bob has 1000 + 5 coins on every node
        bob = manifest.accounts["bob"]
        for a in apis:
            assert get(f"{a}/api/v1/accounts/{bob}")["balance"] == 1005 * 10**8
        history = get(f"{apis[0]}/api/v1/accounts/{bob}/history")
        assert any(i["kind"] == "transfer" and i["direction"] == "in" and i["amount"] == 5 * 10**8
                   and i["from"] == manifest.accounts["alice"] for i in history["items"])

        # down: every process stops, none is left
        dn = run("devnet", "down", "--dir", str(root), timeout=90)
        assert dn.returncode == 0, dn.stdout + dn.stderr
        assert "stopped 8 processes" in dn.stdout and "resumes it" in dn.stdout
        assert pids_gone(manifest) == []
        for p in manifest.processes:  # gone, or a zombie that init has yet to reap
            stat = Path(f"/proc/{p.pid}/stat")
            assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", p.name
        st = run("devnet", "status", "--dir", str(root))
        assert st.returncode == 1 and "stopped (0/8 processes)" in st.stdout and "devnet up --dir" in st.stdout
        again = run("devnet", "down", "--dir", str(root))
        assert again.returncode == 0 and "no process" in again.stdout
        # the chain stays: an up of another shape refuses it; an up without --fresh resumes it
        other = run("devnet", "up", "--nodes", "2", "--dir", str(root))
        assert other.returncode == 1 and "error: devnet-mismatch:" in other.stderr and "--nodes 2 (it has 3)" in other.stderr
        say("ponas devnet up --rounds 1 (resuming)")
        res = subprocess.run(ponas("devnet", "up", "--preset", "regtest", "--rounds", "1", "--dir", str(root)),
                             capture_output=True, text=True, timeout=UP_TIMEOUT, env=env(), cwd=tmp_path)
        print(res.stdout[-3000:], res.stderr[-2000:], sep="\n")
        assert res.returncode == 0, f"resume failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        assert "resuming its chain" in res.stdout
        resumed = json.loads((root / "summary.json").read_text())
        assert resumed["from_height"] >= h and resumed["to_height"] > resumed["from_height"], resumed
        assert resumed["agree"]["same"] and resumed["balances"]["bob"] == 1005 * 10**8
        assert pids_gone(mf.load(root)) == []
    finally:
        assert kill_leftovers(root) == []


@pytest.mark.slow
def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    root = tmp_path / "dn"
    proc = subprocess.Popen(
        ponas("devnet", "up", "--preset", "regtest", "--nodes", "2", "--pool-members", "1", "--solo", "1",
              "--dir", str(root), "--base-port", "0"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env(), cwd=tmp_path,
    )
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            if (root / mf.MANIFEST).exists() and mf.load(root).state == "running":
                break
            time.sleep(0.5)
        manifest = mf.load(root)
        assert manifest.state == "running"
        assert len(running(manifest)) == 5
        # a second up on the running devnet, even with --fresh, refuses and touches nothing
        for extra in ([], ["--fresh"]):
            again = run("devnet", "up", "--preset", "regtest", "--dir", str(root), "--base-port", "0", *extra)
            assert again.returncode == 1 and "error: devnet-running:" in again.stderr, again.stderr
        assert len(running(manifest)) == 5
        # once it watches the blocks (its table's header is out), Ctrl-C prints the summary first
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, b"")), daemon=True)
        reader.start()
        end = time.monotonic() + 30
        while not any(line.startswith(b"HEIGHT") for line in list(lines)) and time.monotonic() < end:
            time.sleep(0.2)
        assert any(line.startswith(b"HEIGHT") for line in list(lines)), b"".join(lines).decode()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)  # the summary may wait 30 s for nodes to agree, then 20 s of SIGTERM grace
        reader.join(timeout=10)
        text = b"".join(lines).decode()
        assert proc.returncode == 130, text
        assert "interrupted: stopping the devnet" in text and "stopped 5 processes" in text
        assert re.search(r"\ninterrupted after \d+ blocks? in ", text) and "balances:" in text, text
        assert text.index("balances:") < text.index("interrupted: stopping the devnet"), text
        summary = json.loads((root / "summary.json").read_text())
        assert summary["interrupted"] is True and summary["agree"]["same"] is True
        assert set(summary["balances"]) >= {"alice", "bob", "member0", "solo0"}
        assert pids_gone(manifest) == []
        assert mf.load(root).state == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert kill_leftovers(root) == []


def test_a_port_in_use_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        base = s.getsockname()[1]
        if base > 65535 - 300:
            pytest.skip("the system gave a port too high to be a base port")
        r = run("devnet", "up", "--dir", str(tmp_path / "dn"), "--base-port", str(base))
    assert r.returncode == 1
    assert f"error: port-in-use: 127.0.0.1:{base} (for node0.api) is in use" in r.stderr
    assert not (tmp_path / "dn" / mf.MANIFEST).exists()


def test_stale_and_foreign_directories(tmp_path: Path) -> None:
    root = tmp_path / "dn"
    first = run("devnet", "init", "--dir", str(root), "--preset", "regtest", "--base-port", "0")
    assert first.returncode == 0, first.stderr
    genesis = (root / "genesis.json").read_text()
    again = run("devnet", "init", "--dir", str(root), "--base-port", "0")
    assert again.returncode == 1 and "error: stale-devnet:" in again.stderr and "--fresh" in again.stderr
    assert (root / "genesis.json").read_text() == genesis  # nothing lost
    same = run("devnet", "init", "--dir", str(root), "--if-missing")
    assert same.returncode == 0 and "nothing to do" in same.stdout
    # up resumes the devnet in the directory; asked for another shape, it refuses and touches nothing
    for args, said in ((["--nodes", "2"], "--nodes 2 (it has 3)"), (["--preset", "devnet"], "--preset devnet (it has regtest)"),
                       (["--pool-keys", "3"], "--pool-keys 3 (it has 1)"), (["--base-port", "1234"], "--base-port 1234 (it has ")):
        r = run("devnet", "up", "--dir", str(root), *args)
        assert r.returncode == 1 and "error: devnet-mismatch:" in r.stderr and said in r.stderr, r.stderr
        assert (root / "genesis.json").read_text() == genesis
    # a resume keeps the devnet's ports: one of them taken, it starts nothing and says so
    with socket.socket() as s:
        port = mf.load(root).ports["node1.p2p"]
        with contextlib.suppress(OSError):  # if something else took it meanwhile, it is in use all the same
            s.bind(("127.0.0.1", port))
            s.listen()
        r = run("devnet", "up", "--dir", str(root))
        assert r.returncode == 1 and f"error: port-in-use: 127.0.0.1:{port} (for node1.p2p)" in r.stderr, r.stderr
        assert "--fresh" in r.stderr and mf.load(root).state == "initialised"
    # --fresh checks the ports before it removes the earlier devnet: a port in use removes nothing
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        base = s.getsockname()[1]
        if base <= 65535 - 300:
            r = run("devnet", "up", "--dir", str(root), "--base-port", str(base), "--fresh")
            assert r.returncode == 1 and "error: port-in-use:" in r.stderr
            assert (root / "genesis.json").read_text() == genesis
    fresh = run("devnet", "init", "--dir", str(root), "--preset", "regtest", "--base-port", "0", "--fresh")
    assert fresh.returncode == 0 and (root / "genesis.json").read_text() != genesis
    # what init wrote: keys, wallets, a genesis that prefunds the wallets and every committing key
    # (the pool's one key and the solo miner's: 10 coins each), and nobody else (not the members)
    manifest = mf.load(root)
    for name in ("pool", "pool-fee", "member0", "member1", "member2", "solo0"):
        assert (root / "keys" / f"{name}.key").stat().st_mode & 0o777 == 0o600
    prefunds = json.loads((root / "genesis.json").read_text())["prefunds"]
    assert prefunds == {manifest.accounts["alice"]: 1000 * 10**8, manifest.accounts["bob"]: 1000 * 10**8,
                        manifest.accounts["pool"]: 10 * 10**8, manifest.accounts["solo0"]: 10 * 10**8}
    # a directory that is not a devnet is never touched
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    r = run("devnet", "up", "--dir", str(other), "--base-port", "0", "--fresh")
    assert r.returncode == 1 and "error: dir-not-empty:" in r.stderr
    assert (other / "notes.txt").read_text() == "mine"
    # status and down on a directory without a devnet
    for action in ("status", "down"):
        r = run("devnet", action, "--dir", str(other))
        assert r.returncode == 1 and "error: no-devnet:" in r.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / mf.MANIFEST).write_text("{not json")
    r = run("devnet", "status", "--dir", str(broken))
    assert r.returncode == 1 and "error: bad-manifest:" in r.stderr


def test_init_can_keep_the_beacon_key_out_of_the_devnet_dir(tmp_path: Path) -> None:
    """``devnet init --beacon-key PATH`` (docker-compose's init) writes the beacon's key there,
    not beside the miners' keys: the beacon knows every future test key."""
    root, beacon = tmp_path / "dn", tmp_path / "beacon" / "beacon.key"
    beacon.parent.mkdir()
    r = run("devnet", "init", "--dir", str(root), "--preset", "regtest", "--base-port", "0", "--beacon-key", str(beacon))
    assert r.returncode == 0, r.stderr
    assert beacon.stat().st_mode & 0o777 == 0o600 and not (root / "beacon.key").exists()
    assert not any("beacon" in p.name for p in root.rglob("*"))


@pytest.mark.parametrize("args,reason", [
    (["--rounds", "0"], "bad-args"), (["--nodes", "0"], "bad-args"), (["--send", "-1"], "bad-amount"),
    (["--detach", "--rounds", "2"], "bad-args"), (["--lead", "-5"], "bad-args"),
])
def test_bad_arguments(tmp_path: Path, args: list[str], reason: str) -> None:
    r = run("devnet", "up", "--dir", str(tmp_path / "dn"), "--base-port", "0", *args)
    assert r.returncode == 1 and f"error: {reason}" in r.stderr, r.stderr
    assert not (tmp_path / "dn" / mf.MANIFEST).exists()


def bare_manifest(root: Path, topology: Topology, processes: list[ProcessEntry]) -> Manifest:
    """A manifest of just these processes, the rest placeholders."""
    return Manifest(dir=str(root), created="2026-01-01T00:00:00Z", state="initialised", topology=topology,
                    chain_id="ponas-regtest", genesis="00" * 32, genesis_time=0, round_seconds=12, ports={},
                    accounts={}, wallet_node="http://127.0.0.1:9", processes=tuple(processes))


def test_a_process_that_never_answers_is_a_start_timeout(tmp_path: Path) -> None:
    root = tmp_path / "dn"
    (root / "logs").mkdir(parents=True)
    mute = [sys.executable, "-c", "import time; print('still loading', flush=True); time.sleep(60)"]
    manifest = bare_manifest(root, Topology(nodes=1), [
        ProcessEntry(name="node0", role="node", argv=tuple(mute), log=str(root / "logs" / "node0.log"), nice=0,
                     api="http://127.0.0.1:9", pid=None)])
    launcher = Launcher(root, manifest, start_timeout=2)
    try:
        with pytest.raises(Exception) as exc:
            launcher.start(logs.StatusLine())
        assert getattr(exc.value, "reason", None) == "start-timeout"
        assert "node0 did not answer within 2s" in exc.value.detail and "still loading" in exc.value.detail
        assert stop_processes(launcher.manifest, launcher.popen) == (["node0"], [])  # the manifest with the pids
    finally:
        for p in launcher.popen.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def test_a_process_that_dies_at_start_is_reported_and_the_rest_stopped(tmp_path: Path) -> None:
    root = tmp_path / "dn"
    (root / "logs").mkdir(parents=True)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    dier = [sys.executable, "-c", "import sys; print('cannot open the datadir', flush=True); sys.exit(3)"]
    manifest = bare_manifest(root, Topology(nodes=2), [
        ProcessEntry(name="node0", role="node", argv=tuple(sleeper), log=str(root / "logs" / "node0.log"), nice=0,
                     api="http://127.0.0.1:9", pid=None),
        ProcessEntry(name="node1", role="node", argv=tuple(dier), log=str(root / "logs" / "node1.log"), nice=0,
                     api="http://127.0.0.1:9", pid=None),
    ])
    launcher = Launcher(root, manifest)
    try:
        with pytest.raises(Exception) as exc:
            launcher.start(logs.StatusLine())
        assert getattr(exc.value, "reason", None) == "process-died"
        assert "node1 exited with status 3" in exc.value.detail and "cannot open the datadir" in exc.value.detail
        manifest = launcher.manifest  # the manifest with the pids
        assert process_alive(manifest.processes[0])
        stopped, killed = stop_processes(manifest, launcher.popen)
        assert stopped == ["node0"] and killed == []
        assert not process_alive(manifest.processes[0])
    finally:
        for p in launcher.popen.values():
            if p.poll() is None:
                p.kill()
                p.wait()
