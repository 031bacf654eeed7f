"""Helpers for tests that run real processes (``ponas node run``, ``ponas mine``...), in one
place: the ``ponas`` argv, the child environment, narration, free ports, polling, and
:class:`Procs`, which starts each child in its own process group and always kills every group.

Run pytest with ``-s`` to see the narration (:func:`say`); on a failure the children's log tails
are in the message (:meth:`Procs.report`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("ponas")
HTTP_TIMEOUT = 2.0  # seconds for one HTTP request to a node
START_TIMEOUT = 30.0  # a node's process start: imports, LevelDB, listening sockets
STOP_TIMEOUT = 10.0


def ponas_argv(*args: str) -> list[str]:
    """The ``ponas`` console script beside this interpreter, or the same entry point by module."""
    if SCRIPT.exists():
        return [str(SCRIPT), *args]
    return [sys.executable, "-c", "import sys; from node.cli import main; sys.exit(main())", *args]


def child_env(**extra: str) -> dict[str, str]:
    """This environment for a child: unbuffered, the repository first on ``PYTHONPATH``, and no
    ``PONAS_TOKEN`` (a child uses the cookie it is given); ``extra`` is added last."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PONAS_TOKEN", None)
    env.update(extra)
    return env


def say(text: str) -> None:
    """Narrate a test's progress, with the time (shown with ``pytest -s``)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ponas(*args: str, timeout: float = 60, cwd: Path = REPO_ROOT, stdin: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ponas ARGS`` to completion and capture its output."""
    return subprocess.run(
        ponas_argv(*args), capture_output=True, text=True, env=env or child_env(), cwd=cwd, timeout=timeout,
        input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
    )


class Procs:
    """The processes a test started: each with its own log file and process group, all killed
    at the end (:meth:`kill_all`, or leave the ``with`` block), whatever failed."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.pids: list[int] = []
        self.logs: dict[str, Path] = {}

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_all()

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``ponas ARGS`` as ``name`` in a new process group, its output in ``name.log``."""
        log = self.tmp / f"{name}.log"
        self.logs[name] = log
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ponas_argv(*args), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.tmp, env=env or child_env(), start_new_session=True,
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
        """Stop watching ``name`` (it exited, or was stopped on purpose)."""
        self.running.pop(name, None)

    def kill_all(self) -> None:
        """SIGTERM to every group first (nodes and miners stop cleanly), then SIGKILL to what is left."""
        for proc in self.running.values():
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        end = time.monotonic() + STOP_TIMEOUT
        for proc in self.running.values():
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        for proc in self.running.values():  # children a child left behind in its group
            _signal_group(proc, signal.SIGKILL)
        self.running.clear()

    def left_running(self) -> list[int]:
        """The pids this test started that still exist."""
        return [pid for pid in self.pids if not gone(pid)]


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the child leads its own group (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def gone(pid: int) -> bool:
    """Whether no process of ours has this pid any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # the pid was reused by a process of another user
        return True
    return False


def wait_until(cond: Callable[[], Any], timeout: float, what: str, procs: Procs | None = None, step: float = 0.25) -> Any:
    """Poll ``cond`` until it returns something truthy (returned), at most ``timeout`` seconds;
    with ``procs``, fail at once when one of them died, with their log tails."""
    end = time.monotonic() + timeout
    while True:
        if procs is not None:
            procs.check_alive()
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            report = f"\n{procs.report()}" if procs is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{report}")
        time.sleep(step)


# --- nodes as processes ----------------------------------------------------------------------


def get_json(url: str) -> Any:
    """The JSON at ``url``, or None if it cannot be had now."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def api_status(api: str) -> dict[str, Any] | None:
    answer = get_json(api + "/api/v1/status")
    return answer if isinstance(answer, dict) else None


def read_announce(datadir: Path) -> dict[str, Any] | None:
    """A node's ``DATADIR/node.json`` (pid, api, p2p), or None until it is written."""
    try:
        return json.loads((datadir / "node.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None  # not written yet (it is written atomically, so never half)


def start_node_process(procs: Procs, name: str, datadir: Path, genesis: Path, *extra: str,
                       timeout: float = START_TIMEOUT) -> dict[str, Any]:
    """Start ``ponas node run`` and return its ``node.json`` once it is written and its API
    answers. Checks what a node announces: its pid, ports chosen and a private cookie."""
    node_log = procs.tmp / f"{name}.node.log"
    proc = procs.start(name, "node", "run", "--datadir", str(datadir), "--genesis", str(genesis),
                       "--log-file", str(node_log), *extra)
    procs.logs[f"{name} log-file"] = node_log
    announce = wait_until(lambda: read_announce(datadir), timeout, f"{name}'s node.json", procs)
    assert announce["pid"] == proc.pid
    assert announce["api"].startswith("http://127.0.0.1:") and announce["p2p"].startswith("127.0.0.1:")
    assert int(announce["api"].rsplit(":", 1)[1]) > 0 and int(announce["p2p"].rsplit(":", 1)[1]) > 0
    wait_until(lambda: api_status(announce["api"]), timeout, f"{name}'s API", procs)
    cookie = (datadir / ".cookie").read_text()
    assert len(cookie) >= 32
    assert (datadir / ".cookie").stat().st_mode & 0o077 == 0, "the cookie must be private to its owner"
    say(f"{name} up: api {announce['api']} p2p {announce['p2p']}")
    return announce


def synced_apis(apis: list[str], min_height: int = 0) -> dict[str, Any] | None:
    """The first node's status when every node answers at ``min_height`` or more on one tip
    and one state root; else None."""
    answers = [api_status(api) for api in apis]
    if any(a is None for a in answers):
        return None
    first = answers[0]
    assert first is not None
    if {(a["tip"], a["state_root"]) for a in answers if a} != {(first["tip"], first["state_root"])}:
        return None
    return first if first["height"] >= min_height else None


def sync_processes(apis: list[str], timeout: float, procs: Procs | None = None, min_height: int = 0) -> dict[str, Any]:
    """Wait until the nodes behind ``apis`` share one tip (Bitcoin's ``sync_blocks`` for processes)."""
    return wait_until(lambda: synced_apis(apis, min_height), timeout,  # type: ignore[no-any-return]
                      f"{len(apis)} nodes on one tip at height >= {min_height}", procs)


__all__ = [
    "REPO_ROOT", "ponas_argv", "child_env", "say", "free_port", "run_ponas", "Procs", "gone", "wait_until",
    "get_json", "api_status", "read_announce", "start_node_process", "synced_apis", "sync_processes",
]
