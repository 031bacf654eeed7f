"""``ponas devnet``: a whole PoNAS network as local processes, for demos and development.

One directory holds everything of one devnet::

    DIR/devnet.json     the manifest: topology, ports, accounts, and every process (argv, pid, log)
    DIR/genesis.json    the chain (preset regtest or devnet), with the demo wallets prefunded
    DIR/beacon.key      the beacon closer's key; node0 closes the rounds with it
    DIR/keys/           commitment and payout keys of the pool, its members and the solo miners
    DIR/home/           a wallet home (PONAS_HOME): wallets alice and bob, password file, config.toml
    DIR/node0/ ...      the nodes' datadirs;  DIR/pool/  the pool manager's datadir
    DIR/logs/NAME.log   what each process wrote

``up`` writes all that (``init`` writes it without starting anything, for docker-compose), then
starts the nodes (node0 holds the beacon's key, the others peer with it), the pool manager (on
node1), its members and the solo miners (on the last node), each in its own session so that a
Ctrl-C reaches the launcher only, and waits until each answers. Miners run at a lower CPU
priority than nodes: on a small machine the nodes' verification must not starve. It then shows
one row per block (winner, architecture, score, payouts) until ``--rounds`` blocks are in, checks
that every node has the same blocks, prints a summary and stops every process (``--keep``
leaves them running; ``ponas devnet status`` and ``ponas devnet down`` work on them). Ctrl-C
or SIGTERM while it watches prints the summary of the blocks so far, then stops every process.

This module only starts processes and talks to them over their HTTP APIs; the one library it
uses from above the node is the wallet's keystore, to write the demo wallets.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from consensus.amounts import parse_amount
from consensus.crypto import PrivateKey, derived_key, format_address
from consensus.errors import ConsensusError
from consensus.files import write_json_atomic, write_text_atomic
from consensus.params import PRESETS
from consensus.types import COIN
from node import logs
from node.keyfile import save_key

FORMAT = 1
MANIFEST = "devnet.json"
DEFAULT_DIR = "devnet"
DEFAULT_BASE_PORT = 28400  # node i: API base+i, P2P base+100+i; pool: base+200
PASSWORD = "devnet"  # the demo wallets' password, also in DIR/home/password: this is a devnet
DEMO_WALLETS = ("alice", "bob")
DEMO_COINS = 1000
MINER_NICE = 10  # miners yield the CPU to nodes
START_TIMEOUT = 120.0  # seconds for one group of processes to answer
STOP_TIMEOUT = 20.0  # seconds between SIGTERM and SIGKILL
HTTP_TIMEOUT = 3.0
AGREE_WAIT = 30.0  # seconds the summary waits for every node to hold the last block
MAX_NODES, MAX_MEMBERS, MAX_SOLO = 16, 32, 16
MAX_POOL_KEYS = 64  # pool.driver.MAX_COMMIT_KEYS (ponas pool serve checks it too)


def fail(reason: str, detail: str) -> ConsensusError:
    return ConsensusError(reason, detail)


# --- the plan: files, ports and processes -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Topology:
    nodes: int = 3
    pool_members: int = 3
    solo: int = 1
    preset: str = "devnet"
    pool_keys: int = 1  # keys the pool commits under (ponas pool serve --commit-keys)

    def check(self) -> Topology:
        if self.preset not in PRESETS:
            raise fail("bad-args", f"--preset is one of {', '.join(PRESETS)}")
        if not 1 <= self.nodes <= MAX_NODES:
            raise fail("bad-args", f"--nodes is 1..{MAX_NODES}")
        if not 0 <= self.pool_members <= MAX_MEMBERS:
            raise fail("bad-args", f"--pool-members is 0..{MAX_MEMBERS}")
        if not 0 <= self.solo <= MAX_SOLO:
            raise fail("bad-args", f"--solo is 0..{MAX_SOLO}")
        if not 1 <= self.pool_keys <= MAX_POOL_KEYS:
            raise fail("bad-args", f"--pool-keys is 1..{MAX_POOL_KEYS}")
        if self.pool_members + self.solo == 0:
            raise fail("bad-args", "nobody would mine: give --pool-members or --solo")
        return self


def plan_ports(topo: Topology, base: int) -> dict[str, int]:
    """``node{i}.api``, ``node{i}.p2p`` and ``pool`` ports: from ``base``, or free ones if 0."""
    names = [f"node{i}.api" for i in range(topo.nodes)] + [f"node{i}.p2p" for i in range(topo.nodes)]
    names += ["pool"] if topo.pool_members else []
    if base == 0:
        with contextlib.ExitStack() as stack:
            socks = [stack.enter_context(socket.socket()) for _ in names]
            for s in socks:
                s.bind(("127.0.0.1", 0))
            return {n: s.getsockname()[1] for n, s in zip(names, socks)}
    if not 1024 <= base <= 65535 - 300:
        raise fail("bad-args", "--base-port is 1024..65235, or 0 for free ports")
    ports = {f"node{i}.api": base + i for i in range(topo.nodes)}
    ports |= {f"node{i}.p2p": base + 100 + i for i in range(topo.nodes)}
    return ports | ({"pool": base + 200} if topo.pool_members else {})


def check_ports_free(ports: dict[str, int], hint: str = "or give another --base-port (0 picks free ports)") -> None:
    """Raise ``port-in-use`` for a port another process listens on. Like the servers that will
    bind them, the probe sets SO_REUSEADDR: connections of a devnet stopped a moment ago, still
    in TIME_WAIT, do not count."""
    for what, port in ports.items():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise fail("port-in-use", f"127.0.0.1:{port} (for {what}) is in use: stop what holds it, {hint}") from None


def ponas_argv() -> list[str]:
    """How to run ``ponas`` here: the console script beside this interpreter, or the module."""
    script = Path(sys.executable).with_name("ponas")
    return [str(script)] if script.exists() else [sys.executable, "-m", "node"]


def plan_processes(root: Path, topo: Topology, ports: dict[str, int], accounts: dict[str, str]) -> list[dict[str, Any]]:
    """Every process of the devnet, in start order: ``{name, role, argv, log, nice, api}``."""
    ponas = ponas_argv()
    procs: list[dict[str, Any]] = []

    def add(name: str, role: str, args: list[str], nice: int = 0, api: str | None = None) -> None:
        procs.append({"name": name, "role": role, "argv": ponas + ["-v"] + args, "log": str(root / "logs" / f"{name}.log"),
                      "nice": nice, "api": api, "pid": None})

    for i in range(topo.nodes):
        args = ["node", "run", "--datadir", str(root / f"node{i}"), "--genesis", str(root / "genesis.json"),
                "--api-port", str(ports[f"node{i}.api"]), "--p2p-port", str(ports[f"node{i}.p2p"])]
        args += [a for j in range(i) for a in ("--peer", f"127.0.0.1:{ports[f'node{j}.p2p']}")]
        if i == 0:
            args += ["--closer-key", str(root / "beacon.key")]
        add(f"node{i}", "node", args, api=f"http://127.0.0.1:{ports[f'node{i}.api']}")
    pool_node = 1 % topo.nodes
    solo_node = topo.nodes - 1
    if topo.pool_members:
        add("pool", "pool", ["pool", "serve", "--node", f"http://127.0.0.1:{ports[f'node{pool_node}.api']}",
                             "--address", accounts["pool-fee"], "--key", str(root / "keys" / "pool.key"),
                             "--datadir", str(root / "pool"), "--port", str(ports["pool"]),
                             "--token-file", str(root / f"node{pool_node}" / ".cookie")]
            + (["--commit-keys", str(topo.pool_keys)] if topo.pool_keys > 1 else []),
            api=f"http://127.0.0.1:{ports['pool']}")
        for i in range(topo.pool_members):
            add(f"member{i}", "member", ["pool", "join", f"ws://127.0.0.1:{ports['pool']}/ws",
                                         "--address", accounts[f"member{i}"],
                                         "--key", str(root / "keys" / f"member{i}.key"), "--worker", f"member{i}"],
                nice=MINER_NICE)
    for i in range(topo.solo):
        add(f"solo{i}", "solo", ["mine", "--node", f"http://127.0.0.1:{ports[f'node{solo_node}.api']}",
                                 "--address", accounts[f"solo{i}"], "--key", str(root / "keys" / f"solo{i}.key"),
                                 "--token-file", str(root / f"node{solo_node}" / ".cookie"), "-q"],
            nice=MINER_NICE)
    return procs


# --- the directory ------------------------------------------------------------------------------


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail("no-devnet", f"{root} holds no devnet ({MANIFEST} is missing): `ponas devnet up --dir {root}`") from None
    except (OSError, ValueError) as exc:
        raise fail("bad-manifest", f"{path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("processes"), list):
        raise fail("bad-manifest", f"{path} is not a devnet manifest of format {FORMAT}")
    return data


def save_manifest(root: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(str(root / MANIFEST), manifest)


def process_alive(entry: dict[str, Any]) -> bool:
    """Whether the process of a manifest entry runs: its pid lives, is no zombie, and (where
    /proc tells) still runs the entry's command line, so a reused pid is never taken for it."""
    pid = entry.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # somebody else's process has the pid now
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        if stat[stat.rindex(")") + 2:].startswith("Z"):
            return False
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")[:-1]
    except (FileNotFoundError, ProcessLookupError):
        return not proc.parent.joinpath("self").exists()  # no /proc here: trust kill(0)
    args = [a.encode() for a in entry["argv"][1:]]
    return len(cmdline) >= len(args) and cmdline[len(cmdline) - len(args):] == args


def running(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in manifest["processes"] if process_alive(p)]


def prepare_dir(root: Path, fresh: bool, ports: dict[str, int] | None = None) -> None:
    """Make ``root`` ready for a new devnet, or say clearly why not; ``ports`` (if given) must
    be free. Every check comes before an earlier devnet is removed."""
    if (root / MANIFEST).exists():
        try:
            manifest = read_manifest(root)
            alive = running(manifest)
        except ConsensusError:
            manifest, alive = {}, []
        if alive:
            raise fail("devnet-running", f"a devnet is running in {root} ({len(alive)} processes, "
                                         f"e.g. {alive[0]['name']} pid {alive[0]['pid']}): "
                                         f"`ponas devnet status --dir {root}`, or `ponas devnet down --dir {root}` first")
        if not fresh:
            raise fail("stale-devnet", f"{root} holds an earlier devnet (created {manifest.get('created', '?')}, "
                                       "not running): pass --fresh to replace it, or choose another --dir")
        if ports is not None:
            check_ports_free(ports)
        shutil.rmtree(root)
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise fail("dir-not-empty", f"{root} exists and is not a devnet directory; choose another --dir")
    elif ports is not None:
        check_ports_free(ports)
    root.mkdir(parents=True, exist_ok=True)


def init(root: Path, topo: Topology, ports: dict[str, int], lead: float, now: float | None = None) -> dict[str, Any]:
    """Write the devnet's files into ``root`` (ready, see ``prepare_dir``); returns the manifest."""
    from node.cli import write_genesis
    from wallet.keys import new_mnemonic
    from wallet.keystore import Keystore

    for sub in ("keys", "logs", "home"):
        (root / sub).mkdir(mode=0o700, exist_ok=True)
    accounts: dict[str, str] = {}
    aliases: dict[str, str] = {}  # the pool's other commit keys' addresses -> "pool"
    names = ["pool", "pool-fee"] if topo.pool_members else []
    names += [f"member{i}" for i in range(topo.pool_members)] + [f"solo{i}" for i in range(topo.solo)]
    for name in names:
        key = PrivateKey.generate()
        save_key(key, str(root / "keys" / f"{name}.key"))
        accounts[name] = format_address(key.address)
        if name == "pool":
            aliases.update({format_address(derived_key(key, i).address): "pool" for i in range(1, topo.pool_keys)})
    home = root / "home"
    prefunds: dict[bytes, int] = {}
    for name in DEMO_WALLETS:
        store = Keystore.create(str(home), name, new_mnemonic(), PASSWORD)
        accounts[name] = format_address(store.addresses[0])
        prefunds[store.addresses[0]] = DEMO_COINS * COIN
    write_text_atomic(str(home / "password"), PASSWORD + "\n", mode=0o600)
    wallet_node = f"http://127.0.0.1:{ports[f'node{topo.nodes - 1}.api']}"
    write_text_atomic(str(home / "config.toml"), f'[wallet]\nnode = "{wallet_node}"\n')
    start = int((time.time() if now is None else now) + lead)
    params = write_genesis(topo.preset, str(root / "genesis.json"), str(root / "beacon.key"), prefunds,
                           chain_id=f"ponas-{topo.preset}", genesis_time=start)
    from consensus.chain import genesis_block

    manifest = {
        "format": FORMAT, "dir": str(root), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "state": "initialised", "supervisor": None,
        "topology": {"nodes": topo.nodes, "pool_members": topo.pool_members, "solo": topo.solo, "preset": topo.preset,
                     "pool_keys": topo.pool_keys},
        "chain_id": params.chain_id, "genesis": genesis_block(params).header.hash().hex(), "genesis_time": start,
        "round_seconds": params.ponas.commit_window + params.ponas.reveal_window,
        "ports": ports, "accounts": accounts, "aliases": aliases, "wallet_node": wallet_node,
        "processes": plan_processes(root, topo, ports, accounts),
    }
    save_manifest(root, manifest)
    return manifest


# --- HTTP ---------------------------------------------------------------------------------------


def http_json(url: str, timeout: float = HTTP_TIMEOUT) -> Any:
    """GET a JSON answer, or None when the server is not (yet) there or answers an error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own 127.0.0.1 URLs
            return json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def node_apis(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["name"], p["api"]) for p in manifest["processes"] if p["role"] == "node"]


# --- starting and stopping ----------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment of the devnet's processes: ours, unbuffered, without any ``PONAS_*``
    setting of the user's (token, node, wallet home, password) leaking into them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PONAS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return "  (no log)"
    return "\n".join("  | " + line for line in text.splitlines()[-lines:])


class Launcher:
    """Starts the manifest's processes, watches them, stops them; keeps the manifest's pids."""

    def __init__(self, root: Path, manifest: dict[str, Any], start_timeout: float = START_TIMEOUT) -> None:
        self.root, self.manifest, self.start_timeout = root, manifest, start_timeout
        self.popen: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, entry: dict[str, Any]) -> None:
        nice = int(entry.get("nice") or 0)
        with open(entry["log"], "ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - our own argv
                entry["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
                cwd=self.root, start_new_session=True, preexec_fn=(lambda: os.nice(nice)) if nice else None,
            )
        self.popen[entry["name"]] = proc
        entry["pid"] = proc.pid
        save_manifest(self.root, self.manifest)

    def check_alive(self) -> None:
        """Raise ``process-died`` (with its log's tail) if a started process has exited."""
        for entry in self.manifest["processes"]:
            proc = self.popen.get(entry["name"])
            if proc is not None and proc.poll() is not None:
                raise fail("process-died", f"{entry['name']} exited with status {proc.returncode}; "
                                           f"the end of {entry['log']}:\n{log_tail(entry['log'])}")

    def start(self, progress: logs.StatusLine) -> None:
        """Start the processes group by group (nodes, pool, miners), each group answering before
        the next starts. Raises ``process-died`` or ``start-timeout`` (the caller stops the rest)."""
        self.manifest["state"] = "starting"
        self.manifest["supervisor"] = os.getpid()
        groups = [("node",), ("pool",), ("member", "solo")]
        t0 = time.monotonic()
        said = ""
        for roles in groups:
            entries = [p for p in self.manifest["processes"] if p["role"] in roles]
            if not entries:
                continue
            for entry in entries:
                self.spawn(entry)
            deadline = time.monotonic() + self.start_timeout
            while True:
                self.check_alive()
                waiting = [e["name"] for e in entries if not self.healthy(e)]
                if not waiting:
                    break
                if time.monotonic() > deadline:
                    log = self._log(waiting[0])
                    raise fail("start-timeout", f"{', '.join(waiting)} did not answer within {self.start_timeout:.0f}s; "
                                                f"the end of {log}:\n{log_tail(log)}")
                text = (f"starting: {len(entries) - len(waiting)}/{len(entries)} {'/'.join(roles)} up, "
                        f"waiting for {', '.join(waiting[:4])}{'…' if len(waiting) > 4 else ''}")
                if progress.tty:
                    progress(f"{text} ({time.monotonic() - t0:.0f}s)")
                elif text != said:  # a log, not a terminal: each change once
                    progress(text)
                said = text
                time.sleep(0.5)
        progress.clear()
        self.manifest["state"] = "running"
        save_manifest(self.root, self.manifest)

    def _log(self, name: str) -> str:
        return next(p["log"] for p in self.manifest["processes"] if p["name"] == name)

    def healthy(self, entry: dict[str, Any]) -> bool:
        role = entry["role"]
        if role == "node":
            status = http_json(f"{entry['api']}/api/v1/status")
            if not isinstance(status, dict):
                return False
            want_peers = min(1, self.manifest["topology"]["nodes"] - 1)
            return isinstance(status.get("peers"), int) and status["peers"] >= want_peers
        if role == "pool":
            return isinstance(http_json(f"{entry['api']}/api/pool"), dict)
        if role == "member":
            pool = next(p for p in self.manifest["processes"] if p["role"] == "pool")
            snap = http_json(f"{pool['api']}/api/pool")
            address = self.manifest["accounts"][entry["name"]]
            return any(isinstance(m, dict) and m.get("address") == address for m in (snap or {}).get("members", []))
        # a solo miner serves nothing: it is up once it has said what it mines for
        try:
            with open(entry["log"], encoding="utf-8", errors="replace") as fh:
                return "mining for " in fh.read(65536)
        except OSError:
            return False


def stop_processes(manifest: dict[str, Any], popen: dict[str, subprocess.Popen[bytes]] | None = None,
                   timeout: float = STOP_TIMEOUT) -> tuple[list[str], list[str]]:
    """SIGTERM every running process of the manifest (miners first, nodes last), SIGKILL what
    is left after ``timeout``. Returns (stopped cleanly, killed)."""
    popen = popen or {}
    order = {"solo": 0, "member": 0, "pool": 1, "node": 2}
    alive = sorted(running(manifest), key=lambda p: order.get(p["role"], 0))
    stopped: list[str] = []
    for group in sorted({order.get(p["role"], 0) for p in alive}):
        batch = [p for p in alive if order.get(p["role"], 0) == group]
        for p in batch:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in batch:
                proc = popen.get(p["name"])
                if proc is not None:
                    proc.poll()  # reap our own children so that they do not linger as zombies
            if not any(process_alive(p) for p in batch):
                break
            time.sleep(0.1)
        stopped += [p["name"] for p in batch if not process_alive(p)]
    killed = []
    for p in alive:
        if process_alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p["pid"], signal.SIGKILL)
            killed.append(p["name"])
    for proc in popen.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    return stopped, killed


# --- the rounds ---------------------------------------------------------------------------------


_OPS = {"none": "-", "skip_connect": "s", "nor_conv_1x1": "1", "nor_conv_3x3": "3", "avg_pool_3x3": "p"}


def brief_genotype(genotype: str) -> str:
    """``|nor_conv_3x3~0|+|skip_connect~0|none~1|+|...`` -> ``3+s-+...`` (NB201), else as it is."""
    if genotype.startswith("|") and "~" in genotype:
        try:
            return "+".join("".join(_OPS[e.split("~")[0]] for e in node.strip("|").split("|"))
                            for node in genotype.split("+"))
        except KeyError:
            pass
    return genotype if len(genotype) <= 24 else genotype[:23] + "…"


def coins(units: int) -> str:
    return f"{units / COIN:,.2f}"  # display only


def fmt_duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class RoundsView:
    """The blocks as rows, from a node's API, with names for the devnet's addresses."""

    COLUMNS = ("HEIGHT", "WINNER", "ARCHITECTURE", "SCORE", "PAYOUTS", "TIME")

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.names = {a: n for n, a in manifest["accounts"].items()} | manifest.get("aliases", {})
        self.members = {manifest["accounts"][p["name"]] for p in manifest["processes"] if p["role"] == "member"}
        self.last_time: int | None = manifest.get("genesis_time")
        self.rows: list[dict[str, Any]] = []

    def winner(self, miner: str | None) -> str:
        if miner is None:
            return "?"
        return self.names.get(miner, miner[:12] + "…")

    def add(self, block: dict[str, Any]) -> dict[str, Any]:
        header = block.get("header", {})
        payouts = [(self.names.get(p["address"], p["address"][:12] + "…"), p["amount"]) for p in block.get("payouts", [])]
        t = header.get("timestamp")
        row = {"height": block["height"], "hash": block.get("hash"), "winner": self.winner(block.get("miner")),
               "genotype": header.get("genotype", ""), "score": header.get("score"),
               "payouts": payouts, "members_paid": sum(1 for p in block.get("payouts", []) if p["address"] in self.members),
               "interval": (t - self.last_time) if isinstance(t, int) and self.last_time is not None else None}
        self.last_time = t if isinstance(t, int) else self.last_time
        self.rows.append(row)
        return row

    def cells(self, row: dict[str, Any], test_size: int) -> list[str]:
        score = row["score"]
        pct = f" {100 * score / test_size:.1f}%" if isinstance(score, int) and test_size else ""
        pays = ", ".join(f"{n} {coins(a)}" for n, a in row["payouts"])
        return [str(row["height"]), row["winner"], brief_genotype(row["genotype"]), f"{score}/{test_size}{pct}",
                pays, "" if row["interval"] is None else f"{row['interval']}s"]


def format_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


@dataclass
class Transfer:
    """``ponas wallet send --wait`` from alice to bob, as a child process."""

    proc: subprocess.Popen[bytes]
    log: str
    amount: str
    result: dict[str, Any] | None = None
    error: str | None = None

    @classmethod
    def start(cls, root: Path, manifest: dict[str, Any], amount: str) -> Transfer:
        home = root / "home"
        log = str(root / "logs" / "transfer.log")
        argv = ponas_argv() + ["wallet", "send", manifest["accounts"]["bob"], amount, "--wallet", "alice",
                               "--home", str(home), "--password-file", str(home / "password"),
                               "--node", manifest["wallet_node"], "--wait", "--json",
                               "--wait-timeout", str(6 * manifest["round_seconds"])]
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=out,  # noqa: S603
                                    env=child_env())
        return cls(proc, log, amount)

    def poll(self) -> bool:
        """True once the transfer's process has ended (``result`` or ``error`` set)."""
        if self.proc.poll() is None:
            return False
        if self.result is None and self.error is None:
            out = self.proc.stdout.read() if self.proc.stdout else b""
            try:
                data = json.loads(out) if out.strip() else None
            except ValueError:
                data = None
            if self.proc.returncode == 0 and isinstance(data, dict):
                self.result = data
            else:
                self.error = f"`ponas wallet send` exited with status {self.proc.returncode}:\n{log_tail(self.log, 5)}"
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)


def watch(root: Path, launcher: Launcher, rounds: int | None, send: str | None, out: TextIO,
          progress: logs.StatusLine) -> dict[str, Any]:
    """Print a row per block until ``rounds`` blocks are in (forever if None); returns the summary."""
    manifest = launcher.manifest
    apis = node_apis(manifest)
    api0 = apis[0][1]
    view = RoundsView(manifest)
    test_size = 0
    round_seconds = int(manifest["round_seconds"])
    stall = max(6 * round_seconds, 120)
    transfer = Transfer.start(root, manifest, send) if send else None
    status0 = http_json(f"{api0}/api/v1/status") or {}
    seen = first = int(status0.get("height", 0))
    if first > 0:  # a resumed devnet: the next block's time counts from its tip, not from genesis
        tip = http_json(f"{api0}/api/v1/blocks/{first}") or {}
        t = tip.get("header", {}).get("timestamp") if isinstance(tip, dict) else None
        view.last_time = t if isinstance(t, int) else None
    widths = (6, 8, 18, 14, 60, 5)
    print(format_row(RoundsView.COLUMNS, widths), file=out, flush=True)
    t0 = last_block = time.monotonic()
    phase_said = None
    interrupted = False
    try:
        while True:
            launcher.check_alive()
            status = http_json(f"{api0}/api/v1/status")
            height = int(status["height"]) if isinstance(status, dict) and isinstance(status.get("height"), int) else seen
            rnd = status.get("round") if isinstance(status, dict) else None
            if isinstance(rnd, dict):
                test_size = int(rnd.get("test_set_size") or test_size)
            for h in range(seen + 1, height + 1):
                block = http_json(f"{api0}/api/v1/blocks/{h}")
                if not isinstance(block, dict):
                    height = h - 1
                    break
                row = view.add(block)
                progress.clear()
                print(format_row(view.cells(row, test_size), widths), file=out, flush=True)
                seen, last_block = h, time.monotonic()
            if transfer is not None and transfer.result is None and transfer.error is None and transfer.poll():
                progress.clear()
                print(transfer_line(transfer), file=out, flush=True)
            done_rounds = seen - first
            transfer_done = transfer is None or transfer.result is not None or transfer.error is not None
            if rounds is not None and done_rounds >= rounds and transfer_done:
                break
            if rounds is not None and done_rounds >= rounds + 3:
                break  # the transfer is late; the summary says so
            if time.monotonic() - last_block > stall:
                raise fail("stalled", f"no block for {stall}s (tip at height {seen}); see the logs in {root / 'logs'}")
            if isinstance(rnd, dict):
                left = max(0.0, float(rnd.get("deadline") or 0) - time.time())
                reveal_end = rnd.get("reveal_end")
                phase = rnd.get("phase")
                if phase == "reveal" and reveal_end:
                    left = max(0.0, float(reveal_end) - time.time())
                text = (f"round {rnd.get('height')}: {phase}, {left:.0f}s left, {rnd.get('commitments', 0)} commitments"
                        f"  [{fmt_duration(time.monotonic() - t0)}]")
                if progress.tty:
                    progress(text)
                elif (rnd.get("height"), phase) != phase_said:
                    phase_said = (rnd.get("height"), phase)
                    progress(text)
            time.sleep(0.5)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the summary of what came in, unless `down` stops us
        if _stopped_elsewhere(root):
            raise
        interrupted = True
    finally:
        progress.clear()
        if transfer is not None:
            transfer.poll()
            transfer.stop()
    summary = summarise(manifest, view, first, seen, transfer, time.monotonic() - t0, test_size,
                        agree_wait=0.0 if interrupted else AGREE_WAIT)
    summary["interrupted"] = interrupted
    return summary


def transfer_line(transfer: Transfer) -> str:
    if transfer.result is not None:
        r = transfer.result
        return (f"transfer alice -> bob {transfer.amount} coins: confirmed in block {r.get('height')} "
                f"(tx {str(r.get('hash', ''))[:16]}…)")
    return f"transfer alice -> bob {transfer.amount} coins failed: {transfer.error}"


def summarise(manifest: dict[str, Any], view: RoundsView, first: int, last: int, transfer: Transfer | None,
              seconds: float, test_size: int, agree_wait: float = AGREE_WAIT) -> dict[str, Any]:
    """The run's summary: blocks, wins, balances, and whether every node holds the same block at
    the lowest height they all reached (waiting up to ``agree_wait`` s for nodes still behind)."""
    apis = node_apis(manifest)
    deadline = time.monotonic() + agree_wait
    while True:  # a node still retraining the last block connects it a few seconds after the others
        tips: dict[str, Any] = {}
        for name, api in apis:
            status = http_json(f"{api}/api/v1/status") or {}
            tips[name] = {"height": status.get("height"), "tip": status.get("tip")}
        behind = [t for t in tips.values() if isinstance(t["height"], int) and t["height"] < last]  # silent: no wait
        if not behind or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    # every node's block at the last watched height must be the same block
    agree_height = min([last] + [t["height"] for t in tips.values() if isinstance(t["height"], int)])
    hashes = {}
    for name, api in apis:
        block = http_json(f"{api}/api/v1/blocks/{agree_height}") if agree_height > 0 else {"hash": manifest["genesis"]}
        hashes[name] = block.get("hash") if isinstance(block, dict) else None
    agree = len(set(hashes.values())) == 1 and None not in hashes.values()
    balances = {}
    for name, address in manifest["accounts"].items():
        if name == "pool":
            continue
        account = http_json(f"{apis[0][1]}/api/v1/accounts/{address}") or {}
        balances[name] = account.get("balance")
    wins: dict[str, int] = {}
    for row in view.rows:
        wins[row["winner"]] = wins.get(row["winner"], 0) + 1
    return {
        "rounds": last - first, "from_height": first, "to_height": last, "seconds": round(seconds, 1),
        "test_set_size": test_size, "blocks": view.rows, "wins": wins, "nodes": tips,
        "agree": {"height": agree_height, "hashes": hashes, "same": agree},
        "balances": balances,
        "transfer": None if transfer is None else {"amount": transfer.amount, "result": transfer.result, "error": transfer.error},
    }


def print_summary(summary: dict[str, Any], manifest: dict[str, Any], out: TextIO) -> None:
    wins = ", ".join(f"{n} {k}" for n, k in sorted(summary["wins"].items(), key=lambda x: -x[1])) or "nobody"
    agree = summary["agree"]
    said = "interrupted after " if summary.get("interrupted") else ""
    n = summary["rounds"]
    print(f"\n{said}{n} block{'' if n == 1 else 's'} in {fmt_duration(summary['seconds'])}: won by {wins}", file=out)
    if agree["same"]:
        print(f"all {len(agree['hashes'])} nodes have block {agree['height']} "
              f"{next(iter(agree['hashes'].values()))[:16]}…", file=out)
    else:
        print(f"NODES DISAGREE at height {agree['height']}: {agree['hashes']}", file=out)
    pool_paid = sorted({r["members_paid"] for r in summary["blocks"] if r["winner"] == "pool"})
    if pool_paid:
        paid = str(pool_paid[0]) if len(pool_paid) == 1 else f"{pool_paid[0]} to {pool_paid[-1]}"
        print(f"each block the pool won paid {paid} of its members in the coinbase, and the pool's fee", file=out)
    print("balances:", file=out)
    for name, units in summary["balances"].items():
        print(f"  {name:<10} {manifest['accounts'][name]}  {'?' if units is None else coins(units):>12}", file=out)
    t = summary["transfer"]
    if t is not None:
        if t["result"] is not None:
            print(f"transfer alice -> bob {t['amount']} coins: confirmed in block {t['result'].get('height')}", file=out)
        else:
            print(f"transfer alice -> bob {t['amount']} coins: NOT confirmed: {t['error'] or 'still pending'}", file=out)
    out.flush()


# --- commands -----------------------------------------------------------------------------------


def register_devnet(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("devnet", help="a whole local network: nodes, a beacon closer, a pool with members, solo miners")
    dsub = p.add_subparsers(dest="devnet_command", metavar="ACTION")
    dsub.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", default=DEFAULT_DIR, help=f"the devnet's directory (default ./{DEFAULT_DIR})")

    def shape(q: argparse.ArgumentParser) -> None:
        common(q)
        q.add_argument("--preset", choices=PRESETS, help="chain preset (default devnet: a block a minute)")
        q.add_argument("--nodes", type=int, help="full nodes; node0 closes the rounds (default 3)")
        q.add_argument("--pool-members", type=int, help="pool members; 0: no pool (default 3)")
        q.add_argument("--solo", type=int, help="solo miners (default 1)")
        q.add_argument("--pool-keys", type=int,
                       help="keys the pool commits under (default 1; N gives it the commitment slots of N solo miners)")
        q.add_argument("--base-port", type=int,
                       help=f"node i's API is BASE+i, its P2P BASE+100+i, the pool BASE+200 (default {DEFAULT_BASE_PORT}; "
                            "0: free ports)")
        q.add_argument("--fresh", action="store_true", help="replace an earlier devnet in --dir (up: instead of resuming it)")
        q.add_argument("--lead", type=float, default=None, metavar="SECONDS",
                       help="seconds from now to the first round's start of a new devnet (default: enough to start every process)")

    up = dsub.add_parser("up", help="write a devnet (or resume the stopped one in --dir), start it, show its blocks")
    shape(up)
    up.add_argument("--rounds", type=int, help="stop after this many blocks and print a summary (default: run until Ctrl-C)")
    up.add_argument("--send", metavar="COINS", help="also send COINS from wallet alice to wallet bob and wait for the block")
    up.add_argument("--keep", action="store_true", help="leave the devnet running after --rounds (stop: `ponas devnet down`)")
    up.add_argument("--detach", action="store_true", help="return once every process answers; leave them running")
    up.set_defaults(func=cmd_up)
    ini = dsub.add_parser("init", help="only write a devnet's files (genesis, keys, wallets): docker-compose's first step")
    shape(ini)
    ini.add_argument("--if-missing", action="store_true", help="do nothing if --dir already holds a devnet")
    ini.set_defaults(func=cmd_init)
    st = dsub.add_parser("status", help="the processes and the chain of a running devnet")
    common(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    dn = dsub.add_parser("down", help="stop every process of a devnet (its files stay)")
    common(dn)
    dn.set_defaults(func=cmd_down)


#: The shape flags (argparse dest) and their Topology fields; None (not given) takes the default.
SHAPE_FLAGS = ("nodes", "pool_members", "solo", "preset", "pool_keys")


def _topology(args: argparse.Namespace) -> Topology:
    given = {f: getattr(args, f) for f in SHAPE_FLAGS if getattr(args, f) is not None}
    return Topology(**given).check()


def _base_port(args: argparse.Namespace) -> int:
    return DEFAULT_BASE_PORT if args.base_port is None else args.base_port


def default_lead(topo: Topology) -> float:
    """Seconds to start every process on a small machine (each imports torch): the first round
    opens then, so that its miners have the whole commit window."""
    return 6.0 + 1.5 * (topo.nodes + (1 if topo.pool_members else 0) + topo.pool_members + topo.solo)


def _lead(args: argparse.Namespace, topo: Topology) -> float:
    lead = default_lead(topo) if args.lead is None else float(args.lead)
    if not 0 <= lead <= 3600:
        raise fail("bad-args", "--lead is 0..3600 seconds")
    return lead


def _setup(args: argparse.Namespace) -> tuple[Path, dict[str, Any], bool]:
    """The devnet to start: the stopped one in ``--dir`` (resumed: same chain, keys, ports),
    or a new one (``--fresh`` replaces an earlier one). The bool says whether it resumes."""
    root = Path(args.dir).resolve()
    if not args.fresh and (root / MANIFEST).exists():
        return root, resume(root, read_manifest(root), args), True
    topo = _topology(args)
    ports = plan_ports(topo, _base_port(args))
    lead = _lead(args, topo)
    prepare_dir(root, args.fresh, ports)
    return root, init(root, topo, ports, lead), False


def resume(root: Path, manifest: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Make a stopped devnet ready to start again, as it was: its processes keep their datadirs
    (chains, the pool's shares), keys and ports. Raises ``devnet-running`` if any of them runs,
    ``devnet-mismatch`` if a shape flag given asks for another devnet (nothing is touched), and
    ``port-in-use`` if one of its ports is taken."""
    alive = running(manifest)
    if alive:
        raise fail("devnet-running", f"a devnet is running in {root} ({len(alive)} processes, "
                                     f"e.g. {alive[0]['name']} pid {alive[0]['pid']}): "
                                     f"`ponas devnet status --dir {root}`, or `ponas devnet down --dir {root}` first")
    topo = manifest.get("topology", {})
    have = {f: topo.get(f, 1 if f == "pool_keys" else None) for f in SHAPE_FLAGS}  # older manifests: one key
    differ = [f"--{f.replace('_', '-')} {getattr(args, f)} (it has {have[f]})" for f in SHAPE_FLAGS
              if getattr(args, f) is not None and getattr(args, f) != have[f]]
    base = manifest["ports"].get("node0.api")
    if args.base_port not in (None, 0, base):
        differ.append(f"--base-port {args.base_port} (it has {base})")
    if differ:
        raise fail("devnet-mismatch", f"{root} holds a stopped devnet of another shape: {'; '.join(differ)}. "
                                      "Leave those flags out to resume it, or pass --fresh to replace it")
    check_ports_free(manifest["ports"], "or pass --fresh to replace the devnet (its ports are kept when it resumes)")
    manifest["state"] = "initialised"
    return manifest


def cmd_init(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    if args.if_missing and (root / MANIFEST).exists():
        read_manifest(root)
        print(f"{root} already holds a devnet; nothing to do")
        return 0
    topo = _topology(args)
    ports = plan_ports(topo, _base_port(args))
    lead = _lead(args, topo)
    prepare_dir(root, args.fresh)
    manifest = init(root, topo, ports, lead)
    print(f"wrote a {topo.preset} devnet in {root}: chain {manifest['chain_id']}, genesis {manifest['genesis'][:16]}…")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    if args.rounds is not None and not 1 <= args.rounds <= 100_000:
        raise fail("bad-args", "--rounds is 1..100000")
    if args.detach and (args.rounds is not None or args.send):
        raise fail("bad-args", "--detach returns at once: it takes no --rounds or --send")
    if args.send is not None:
        parse_amount(args.send)
    root, manifest, resumed = _setup(args)
    out = sys.stdout
    progress = logs.StatusLine()
    topo = manifest["topology"]
    when = ("resuming its chain" if resumed
            else f"first round at {time.strftime('%H:%M:%S', time.localtime(manifest['genesis_time']))}")
    print(f"devnet {manifest['chain_id']} in {root}: {topo['nodes']} nodes, a pool of {topo['pool_members']} members, "
          f"{topo['solo']} solo miners; {when}", file=out, flush=True)
    launcher = Launcher(root, manifest)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        launcher.start(progress)
        describe(manifest, out)
        if args.detach:
            manifest["supervisor"] = None
            save_manifest(root, manifest)
            print(f"running in the background: `ponas devnet status --dir {args.dir}`, "
                  f"`ponas devnet down --dir {args.dir}`", file=out, flush=True)
            return 0
        summary = watch(root, launcher, args.rounds, args.send, out, progress)
        write_json_atomic(str(root / "summary.json"), summary)
        print_summary(summary, manifest, out)
        if summary["interrupted"]:
            print("interrupted: stopping the devnet", file=out, flush=True)
            _shutdown(root, launcher, out)
            return 130
        ok = summary["agree"]["same"] and (summary["transfer"] is None or summary["transfer"]["result"] is not None)
        if args.keep:
            manifest["supervisor"] = None
            save_manifest(root, manifest)
            print(f"still running: `ponas devnet down --dir {args.dir}` stops it", file=out, flush=True)
        return 0 if ok else 1
    except KeyboardInterrupt:
        progress.clear()
        if _stopped_elsewhere(root):
            print("the devnet was stopped by `ponas devnet down`", file=out, flush=True)
            return 0
        print("\ninterrupted: stopping the devnet", file=out, flush=True)
        _shutdown(root, launcher, out)
        return 130
    except ConsensusError as exc:
        progress.clear()
        if exc.reason == "process-died" and _stopped_elsewhere(root):
            print("the devnet was stopped by `ponas devnet down`", file=out, flush=True)
            return 0
        print(f"error: {exc.reason}: {exc.detail}", file=sys.stderr, flush=True)
        _shutdown(root, launcher, out)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not args.detach and not args.keep and launcher.manifest.get("state") in ("starting", "running"):
            _shutdown(root, launcher, out)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stopped_elsewhere(root: Path) -> bool:
    with contextlib.suppress(ConsensusError):
        return read_manifest(root).get("state") in ("stopping", "stopped")
    return False


def _shutdown(root: Path, launcher: Launcher, out: TextIO) -> None:
    if launcher.manifest.get("state") == "stopped":
        return
    launcher.manifest["state"] = "stopping"
    save_manifest(root, launcher.manifest)
    stopped, killed = stop_processes(launcher.manifest, launcher.popen)
    launcher.manifest["state"] = "stopped"
    launcher.manifest["supervisor"] = None
    save_manifest(root, launcher.manifest)
    extra = f"; killed after {STOP_TIMEOUT:.0f}s: {', '.join(killed)}" if killed else ""
    print(f"stopped {len(stopped)} processes{extra}; logs in {root / 'logs'}", file=out, flush=True)


def describe(manifest: dict[str, Any], out: TextIO) -> None:
    """Where everything is, once it runs."""
    for p in manifest["processes"]:
        if p["role"] == "node":
            print(f"  {p['name']:<8} {p['api']}  (explorer {p['api']}/){'  closer' if p['name'] == 'node0' else ''}", file=out)
        elif p["role"] == "pool":
            print(f"  pool     dashboard {p['api']}/  ({manifest['topology']['pool_members']} members)", file=out)
    home = Path(manifest["dir"]) / "home"
    print(f"  wallets  alice, bob (password '{PASSWORD}'): PONAS_HOME={home} ponas wallet balance --wallet alice",
          file=out)
    print(f"  logs     {Path(manifest['dir']) / 'logs'}", file=out, flush=True)


def cmd_status(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    manifest = read_manifest(root)
    procs = [{"name": p["name"], "role": p["role"], "pid": p["pid"], "running": process_alive(p), "log": p["log"]}
             for p in manifest["processes"]]
    nodes = []
    for name, api in node_apis(manifest):
        s = http_json(f"{api}/api/v1/status") if any(p["name"] == name and p["running"] for p in procs) else None
        nodes.append({"name": name, "api": api, "height": (s or {}).get("height"), "tip": (s or {}).get("tip"),
                      "peers": (s or {}).get("peers"), "round": ((s or {}).get("round") or {}).get("phase")})
    up_count = sum(p["running"] for p in procs)
    state = "running" if up_count == len(procs) else "stopped" if up_count == 0 else "degraded"
    data = {"dir": str(root), "chain_id": manifest["chain_id"], "state": state, "processes": procs, "nodes": nodes,
            "accounts": manifest["accounts"]}
    if args.json:
        print(json.dumps(data, indent=2))
        return 0 if state == "running" else 1
    print(f"devnet {manifest['chain_id']} in {root}: {state} ({up_count}/{len(procs)} processes)")
    for p in procs:
        print(f"  {p['name']:<9} {p['role']:<7} pid {p['pid'] or '-':<8} {'running' if p['running'] else 'stopped':<8} {p['log']}")
    for n in nodes:
        if n["height"] is None:
            print(f"  {n['name']:<9} {n['api']}  not answering")
        else:
            print(f"  {n['name']:<9} {n['api']}  height {n['height']}  tip {str(n['tip'])[:16]}…  "
                  f"peers {n['peers']}  round {n['round']}")
    if state == "stopped":
        print(f"`ponas devnet up --dir {args.dir}` resumes it")
    return 0 if state == "running" else 1


def cmd_down(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    manifest = read_manifest(root)
    alive = running(manifest)
    if not alive:
        print(f"no process of the devnet in {root} is running")
        return 0
    manifest["state"] = "stopping"
    save_manifest(root, manifest)
    stopped, killed = stop_processes(manifest)
    manifest["state"] = "stopped"
    save_manifest(root, manifest)
    left = running(manifest)
    if left:
        raise fail("stop-failed", f"still running: {', '.join(p['name'] for p in left)}")
    extra = f" ({', '.join(killed)} killed after {STOP_TIMEOUT:.0f}s)" if killed else ""
    print(f"stopped {len(stopped) + len(killed)} processes{extra}; the chain and logs stay in {root} "
          f"(`ponas devnet up --dir {args.dir}` resumes it)")
    return 0

