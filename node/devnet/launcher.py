"""The devnet's processes: the directory made ready for a new devnet or a stopped one resumed,
each process started in its own session and waited for until it answers, and every process
stopped (SIGTERM, then SIGKILL). The manifest keeps their pids, so that another ``ponas devnet``
(``status``, ``down``) finds them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from node import logs
from node.devnet import manifest as mf
from node.devnet.errors import DevnetError
from node.devnet.manifest import MANIFEST, Manifest, ProcessEntry
from node.devnet.plan import check_ports_free

START_TIMEOUT = 120.0  # seconds for one group of processes to answer
STOP_TIMEOUT = 20.0  # seconds between SIGTERM and SIGKILL
HTTP_TIMEOUT = 3.0
#: The shape flags (argparse dest, also Topology fields) that ``resume`` compares.
SHAPE_FLAGS = ("nodes", "pool_members", "solo", "preset", "pool_keys", "task")


def http_json(url: str, timeout: float = HTTP_TIMEOUT) -> Any:
    """GET a JSON answer, or None when the server is not (yet) there or answers an error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own 127.0.0.1 URLs
            return json.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


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


# --- which processes run ------------------------------------------------------------------------


def process_alive(entry: ProcessEntry) -> bool:
    """Whether the process of a manifest entry runs: its pid lives, is no zombie, and (where
    /proc tells) still runs the entry's command line, so a reused pid is never taken for it."""
    pid = entry.pid
    if pid is None or pid <= 0:
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
    args = [a.encode() for a in entry.argv[1:]]
    return len(cmdline) >= len(args) and cmdline[len(cmdline) - len(args):] == args


def running(manifest: Manifest) -> list[ProcessEntry]:
    return [p for p in manifest.processes if process_alive(p)]


def refuse_running(root: Path, manifest: Manifest) -> None:
    """Raise ``devnet-running`` if any process of the devnet in ``root`` runs."""
    alive = running(manifest)
    if alive:
        raise DevnetError("devnet-running", f"a devnet is running in {root} ({len(alive)} processes, "
                                            f"e.g. {alive[0].name} pid {alive[0].pid}): "
                                            f"`ponas devnet status --dir {root}`, or `ponas devnet down --dir {root}` first")


def stopped_elsewhere(root: Path) -> bool:
    """Whether the manifest in ``root`` says that somebody (``ponas devnet down``) stops it."""
    with contextlib.suppress(DevnetError):
        return mf.load(root).state in ("stopping", "stopped")
    return False


# --- the directory ------------------------------------------------------------------------------


def prepare_dir(root: Path, fresh: bool, ports: Mapping[str, int] | None = None) -> None:
    """Make ``root`` ready for a new devnet, or say clearly why not; ``ports`` (if given) must
    be free. Every check comes before an earlier devnet is removed."""
    if (root / MANIFEST).exists():
        manifest: Manifest | None
        try:
            manifest = mf.load(root)
        except DevnetError:
            manifest = None
        if manifest is not None:
            refuse_running(root, manifest)
        if not fresh:
            created = manifest.created if manifest is not None else "?"
            raise DevnetError("stale-devnet", f"{root} holds an earlier devnet (created {created}, "
                                              "not running): pass --fresh to replace it, or choose another --dir")
        if ports is not None:
            check_ports_free(ports)
        shutil.rmtree(root)
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DevnetError("dir-not-empty", f"{root} exists and is not a devnet directory; choose another --dir")
    elif ports is not None:
        check_ports_free(ports)
    root.mkdir(parents=True, exist_ok=True)


def resume(root: Path, manifest: Manifest, shape: Mapping[str, object], base_port: int | None) -> Manifest:
    """Make a stopped devnet ready to start again, as it was: its processes keep their datadirs
    (chains, the pool's shares), keys and ports. ``shape`` holds the shape flags given (None:
    not given). Raises ``devnet-running`` if any of its processes runs, ``devnet-mismatch`` if
    a flag given asks for another devnet (nothing is touched), and ``port-in-use`` if one of
    its ports is taken. Returns the manifest to start (not saved yet)."""
    refuse_running(root, manifest)
    have = manifest.topology.to_json()
    differ = [f"--{f.replace('_', '-')} {shape[f]} (it has {have[f]})" for f in SHAPE_FLAGS
              if shape.get(f) is not None and shape[f] != have[f]]
    base = manifest.ports.get("node0.api")
    if base_port not in (None, 0, base):
        differ.append(f"--base-port {base_port} (it has {base})")
    if differ:
        raise DevnetError("devnet-mismatch", f"{root} holds a stopped devnet of another shape: {'; '.join(differ)}. "
                                             "Leave those flags out to resume it, or pass --fresh to replace it")
    check_ports_free(manifest.ports, "or pass --fresh to replace the devnet (its ports are kept when it resumes)")
    return manifest.with_state("initialised")


# --- starting and stopping ----------------------------------------------------------------------


class Launcher:
    """Starts the manifest's processes, watches them, stops them. ``manifest`` is the current
    manifest (the launcher replaces it as pids and the state change, and saves each)."""

    def __init__(self, root: Path, manifest: Manifest, start_timeout: float = START_TIMEOUT) -> None:
        self.root, self.manifest, self.start_timeout = root, manifest, start_timeout
        self.popen: dict[str, subprocess.Popen[bytes]] = {}

    def save(self, manifest: Manifest) -> None:
        self.manifest = manifest
        mf.save(self.root, manifest)

    def spawn(self, entry: ProcessEntry) -> None:
        nice = entry.nice
        with open(entry.log, "ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - our own argv
                entry.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
                cwd=self.root, start_new_session=True, preexec_fn=(lambda: os.nice(nice)) if nice else None,
            )
        self.popen[entry.name] = proc
        self.save(self.manifest.with_pid(entry.name, proc.pid))

    def check_alive(self) -> None:
        """Raise ``process-died`` (with its log's tail) if a started process has exited."""
        for entry in self.manifest.processes:
            proc = self.popen.get(entry.name)
            if proc is not None and proc.poll() is not None:
                raise DevnetError("process-died", f"{entry.name} exited with status {proc.returncode}; "
                                                  f"the end of {entry.log}:\n{log_tail(entry.log)}")

    def start(self, progress: logs.StatusLine) -> None:
        """Start the processes group by group (nodes, pool, miners), each group answering before
        the next starts. Raises ``process-died`` or ``start-timeout`` (the caller stops the rest)."""
        self.manifest = self.manifest.with_state("starting", supervisor=os.getpid())
        groups = [("node",), ("pool",), ("member", "solo")]
        t0 = time.monotonic()
        said = ""
        for roles in groups:
            names = [p.name for p in self.manifest.with_role(*roles)]
            if not names:
                continue
            for name in names:
                self.spawn(self.manifest.process(name))
            deadline = time.monotonic() + self.start_timeout
            while True:
                self.check_alive()
                waiting = [n for n in names if not self.healthy(self.manifest.process(n))]
                if not waiting:
                    break
                if time.monotonic() > deadline:
                    log = self.manifest.process(waiting[0]).log
                    raise DevnetError("start-timeout", f"{', '.join(waiting)} did not answer within {self.start_timeout:.0f}s; "
                                                       f"the end of {log}:\n{log_tail(log)}")
                text = (f"starting: {len(names) - len(waiting)}/{len(names)} {'/'.join(roles)} up, "
                        f"waiting for {', '.join(waiting[:4])}{'…' if len(waiting) > 4 else ''}")
                if progress.tty:
                    progress(f"{text} ({time.monotonic() - t0:.0f}s)")
                elif text != said:  # a log, not a terminal: each change once
                    progress(text)
                said = text
                time.sleep(0.5)
        progress.clear()
        self.save(self.manifest.with_state("running"))

    def healthy(self, entry: ProcessEntry) -> bool:
        if entry.role == "node":
            status = http_json(f"{entry.api}/api/v1/status")
            if not isinstance(status, dict):
                return False
            want_peers = min(1, self.manifest.topology.nodes - 1)
            return isinstance(status.get("peers"), int) and status["peers"] >= want_peers
        if entry.role == "pool":
            return isinstance(http_json(f"{entry.api}/api/pool"), dict)
        if entry.role == "member":
            pool = self.manifest.with_role("pool")[0]
            snap = http_json(f"{pool.api}/api/pool")
            address = self.manifest.accounts[entry.name]
            return any(isinstance(m, dict) and m.get("address") == address for m in (snap or {}).get("members", []))
        # a solo miner serves nothing: it is up once it has said what it mines for
        try:
            with open(entry.log, encoding="utf-8", errors="replace") as fh:
                return "mining for " in fh.read(65536)
        except OSError:
            return False

    def detach(self) -> None:
        """Leave the processes running with no supervisor (``--detach``, ``--keep``)."""
        self.save(self.manifest.with_state(self.manifest.state, supervisor=None))

    def shutdown(self) -> tuple[list[str], list[str]] | None:
        """Stop every process (see ``stop_processes``) and mark the devnet stopped; None if it
        was stopped already."""
        if self.manifest.state == "stopped":
            return None
        self.save(self.manifest.with_state("stopping"))
        result = stop_processes(self.manifest, self.popen)
        self.save(self.manifest.with_state("stopped", supervisor=None))
        return result


def stop_processes(manifest: Manifest, popen: Mapping[str, subprocess.Popen[bytes]] | None = None,
                   timeout: float = STOP_TIMEOUT) -> tuple[list[str], list[str]]:
    """SIGTERM every running process of the manifest (miners first, nodes last), SIGKILL what
    is left after ``timeout``. Returns (stopped cleanly, killed)."""
    popen = popen or {}
    order = {"solo": 0, "member": 0, "pool": 1, "node": 2}
    alive = sorted(running(manifest), key=lambda p: order.get(p.role, 0))
    stopped: list[str] = []
    for group in sorted({order.get(p.role, 0) for p in alive}):
        batch = [p for p in alive if order.get(p.role, 0) == group]
        for p in batch:
            assert p.pid is not None  # running
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in batch:
                proc = popen.get(p.name)
                if proc is not None:
                    proc.poll()  # reap our own children so that they do not linger as zombies
            if not any(process_alive(p) for p in batch):
                break
            time.sleep(0.1)
        stopped += [p.name for p in batch if not process_alive(p)]
    killed = []
    for p in alive:
        if process_alive(p):
            assert p.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            killed.append(p.name)
    for proc in popen.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    return stopped, killed


def down(root: Path, manifest: Manifest) -> tuple[list[str], list[str]]:
    """Stop the running processes of the devnet in ``root`` (``ponas devnet down``, from another
    process than the one that started them). Raises ``stop-failed`` if one still runs."""
    manifest = manifest.with_state("stopping")
    mf.save(root, manifest)
    stopped, killed = stop_processes(manifest)
    manifest = manifest.with_state("stopped")
    mf.save(root, manifest)
    left = running(manifest)
    if left:
        raise DevnetError("stop-failed", f"still running: {', '.join(p.name for p in left)}")
    return stopped, killed


def status(root: Path, manifest: Manifest) -> dict[str, Any]:
    """What ``ponas devnet status`` shows: every process (running or not) and each node's chain."""
    procs = [{"name": p.name, "role": p.role, "pid": p.pid, "running": process_alive(p), "log": p.log}
             for p in manifest.processes]
    nodes = []
    for name, api in manifest.node_apis():
        s = http_json(f"{api}/api/v1/status") if any(p["name"] == name and p["running"] for p in procs) else None
        nodes.append({"name": name, "api": api, "height": (s or {}).get("height"), "tip": (s or {}).get("tip"),
                      "peers": (s or {}).get("peers"), "round": ((s or {}).get("round") or {}).get("phase")})
    up_count = sum(bool(p["running"]) for p in procs)
    state = "running" if up_count == len(procs) else "stopped" if up_count == 0 else "degraded"
    return {"dir": str(root), "chain_id": manifest.chain_id, "state": state, "processes": procs, "nodes": nodes,
            "accounts": dict(manifest.accounts)}

