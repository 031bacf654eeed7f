"""``DIR/devnet.json``, typed: what a devnet is (topology, ports, accounts, processes) and where
its processes stand (state, supervisor, pids).

The objects are frozen: a change is a new object (``with_state``, ``with_pid``) that the caller
saves. ``to_json`` writes the format the first devnets wrote, key for key and in the same order,
so that a devnet written by an older ``ponas`` resumes with this one; ``from_json`` is strict and
refuses anything else with ``bad-manifest``. Two keys came later and default when absent:
``topology.pool_keys`` (1) and ``aliases`` (none).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

from consensus.files import write_json_atomic
from consensus.params import DEFAULT_TASK, PRESETS, TASKS
from node.devnet.errors import DevnetError

FORMAT = 1
MANIFEST = "devnet.json"
MAX_NODES, MAX_MEMBERS, MAX_SOLO = 16, 32, 16
MAX_POOL_KEYS = 64  # pool.driver.MAX_COMMIT_KEYS (ponas pool serve checks it too)

Role = Literal["node", "pool", "member", "solo"]
#: initialised (written or resumed, nothing started), starting, running, stopping, stopped
State = Literal["initialised", "starting", "running", "stopping", "stopped"]
ROLES: tuple[str, ...] = get_args(Role)
STATES: tuple[str, ...] = get_args(State)


@dataclass(frozen=True, slots=True)
class Topology:
    """The shape of a devnet: how many of each process, the chain preset, the pool's keys."""

    nodes: int = 3
    pool_members: int = 3
    solo: int = 1
    preset: str = "devnet"
    pool_keys: int = 1  # keys the pool commits under (ponas pool serve --commit-keys)
    task: str = DEFAULT_TASK  # the chain's built-in task (ponas genesis new --task)

    def check(self) -> Topology:
        """This topology, if ``ponas devnet`` can start it; else ``bad-args`` naming the flag."""
        if self.preset not in PRESETS:
            raise DevnetError("bad-args", f"--preset is one of {', '.join(PRESETS)}")
        if not 1 <= self.nodes <= MAX_NODES:
            raise DevnetError("bad-args", f"--nodes is 1..{MAX_NODES}")
        if not 0 <= self.pool_members <= MAX_MEMBERS:
            raise DevnetError("bad-args", f"--pool-members is 0..{MAX_MEMBERS}")
        if not 0 <= self.solo <= MAX_SOLO:
            raise DevnetError("bad-args", f"--solo is 0..{MAX_SOLO}")
        if self.task not in TASKS:
            raise DevnetError("bad-args", f"--task is one of {', '.join(TASKS)}")
        if not 1 <= self.pool_keys <= MAX_POOL_KEYS:
            raise DevnetError("bad-args", f"--pool-keys is 1..{MAX_POOL_KEYS}")
        if self.pool_members + self.solo == 0:
            raise DevnetError("bad-args", "nobody would mine: give --pool-members or --solo")
        return self

    def to_json(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "pool_members": self.pool_members, "solo": self.solo, "preset": self.preset,
                "pool_keys": self.pool_keys, "task": self.task}

    @classmethod
    def from_json(cls, data: object, where: str = "topology") -> Topology:
        d = _object(data, where, required=("nodes", "pool_members", "solo", "preset"), optional=("pool_keys", "task"))
        return cls(nodes=_int(d, "nodes", where), pool_members=_int(d, "pool_members", where), solo=_int(d, "solo", where),
                   preset=_str(d, "preset", where),
                   pool_keys=_int(d, "pool_keys", where) if "pool_keys" in d else 1,  # older manifests: one key
                   task=_str(d, "task", where) if "task" in d else "digits")  # older manifests: digits chains


@dataclass(frozen=True, slots=True)
class ProcessEntry:
    """One process of the devnet: its command line, log, CPU priority, API (nodes and the pool)
    and, once started, its pid."""

    name: str
    role: Role
    argv: tuple[str, ...]
    log: str
    nice: int = 0
    api: str | None = None
    pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "argv": list(self.argv), "log": self.log, "nice": self.nice,
                "api": self.api, "pid": self.pid}

    @classmethod
    def from_json(cls, data: object, where: str) -> ProcessEntry:
        keys = ("name", "role", "argv", "log", "nice", "api", "pid")
        d = _object(data, where, required=keys)
        role = _str(d, "role", where)
        if role not in ROLES:
            raise _bad(f"{where}.role is not one of {', '.join(ROLES)}")
        argv = d["argv"]
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise _bad(f"{where}.argv is not a non-empty list of strings")
        return cls(name=_str(d, "name", where), role=cast(Role, role), argv=tuple(argv), log=_str(d, "log", where),
                   nice=_int(d, "nice", where), api=_opt_str(d, "api", where), pid=_opt_int(d, "pid", where))


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """Everything ``ponas devnet`` knows of one devnet. ``ports`` maps ``node{i}.api``,
    ``node{i}.p2p`` and ``pool`` to port numbers; ``accounts`` maps a name (``pool``,
    ``pool-fee``, ``member{i}``, ``solo{i}``, ``alice``, ``bob``) to its address; ``aliases``
    maps the addresses of the pool's other commit keys to ``pool``. ``processes`` are in start
    order; ``supervisor`` is the pid of the ``ponas devnet up`` that watches them, if any."""

    dir: str
    created: str
    state: State = "initialised"
    supervisor: int | None = None
    topology: Topology
    chain_id: str
    genesis: str  # the genesis block's hash, hex
    genesis_time: int
    round_seconds: int
    ports: Mapping[str, int]
    accounts: Mapping[str, str]
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    wallet_node: str
    processes: tuple[ProcessEntry, ...]

    # --- reading ---

    def process(self, name: str) -> ProcessEntry:
        return next(p for p in self.processes if p.name == name)

    def with_role(self, *roles: str) -> list[ProcessEntry]:
        return [p for p in self.processes if p.role in roles]

    def node_apis(self) -> list[tuple[str, str]]:
        """``(name, API URL)`` of every node, node0 first."""
        return [(p.name, p.api) for p in self.processes if p.role == "node" and p.api is not None]

    # --- changing (a new manifest; the caller saves it) ---

    def with_state(self, state: State, **changes: Any) -> Manifest:
        return dataclasses.replace(self, state=state, **changes)

    def with_pid(self, name: str, pid: int | None) -> Manifest:
        procs = tuple(dataclasses.replace(p, pid=pid) if p.name == name else p for p in self.processes)
        return dataclasses.replace(self, processes=procs)

    # --- the file ---

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "dir": self.dir, "created": self.created, "state": self.state,
            "supervisor": self.supervisor, "topology": self.topology.to_json(), "chain_id": self.chain_id,
            "genesis": self.genesis, "genesis_time": self.genesis_time, "round_seconds": self.round_seconds,
            "ports": dict(self.ports), "accounts": dict(self.accounts), "aliases": dict(self.aliases),
            "wallet_node": self.wallet_node, "processes": [p.to_json() for p in self.processes],
        }

    @classmethod
    def from_json(cls, data: object) -> Manifest:
        """The manifest in ``data`` (parsed JSON); raises ``bad-manifest`` naming the first field
        that is missing, unknown or of the wrong type."""
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("processes"), list):
            raise _bad(f"not a devnet manifest of format {FORMAT}")
        required = ("format", "dir", "created", "state", "supervisor", "topology", "chain_id", "genesis",
                    "genesis_time", "round_seconds", "ports", "accounts", "wallet_node", "processes")
        d = _object(data, "manifest", required=required, optional=("aliases",))
        state = _str(d, "state", "manifest")
        if state not in STATES:
            raise _bad(f"state is not one of {', '.join(STATES)}")
        procs = tuple(ProcessEntry.from_json(p, f"processes[{i}]") for i, p in enumerate(d["processes"]))
        names = [p.name for p in procs]
        if len(set(names)) != len(names):
            raise _bad("two processes have the same name")
        return cls(
            dir=_str(d, "dir", "manifest"), created=_str(d, "created", "manifest"), state=cast(State, state),
            supervisor=_opt_int(d, "supervisor", "manifest"), topology=Topology.from_json(d["topology"]),
            chain_id=_str(d, "chain_id", "manifest"), genesis=_str(d, "genesis", "manifest"),
            genesis_time=_int(d, "genesis_time", "manifest"), round_seconds=_int(d, "round_seconds", "manifest"),
            ports=_mapping(d["ports"], "ports", int), accounts=_mapping(d["accounts"], "accounts", str),
            aliases=_mapping(d.get("aliases", {}), "aliases", str), wallet_node=_str(d, "wallet_node", "manifest"),
            processes=procs,
        )


def load(root: Path) -> Manifest:
    """The manifest of the devnet in directory ``root``. Raises ``no-devnet`` if it has none,
    ``bad-manifest`` if its ``devnet.json`` cannot be read or is not a manifest."""
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DevnetError("no-devnet", f"{root} holds no devnet ({MANIFEST} is missing): `ponas devnet up --dir {root}`") from None
    except (OSError, ValueError) as exc:
        raise DevnetError("bad-manifest", f"{path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("processes"), list):
        raise DevnetError("bad-manifest", f"{path} is not a devnet manifest of format {FORMAT}")
    try:
        return Manifest.from_json(data)
    except DevnetError as exc:
        raise DevnetError("bad-manifest", f"{path}: {exc.detail}") from None


def save(root: Path, manifest: Manifest) -> None:
    """Write ``manifest`` to ``root/devnet.json`` (atomically: a reader sees the old or the new)."""
    write_json_atomic(str(root / MANIFEST), manifest.to_json())


# --- strict decoding ----------------------------------------------------------------------------


def _bad(detail: str) -> DevnetError:
    return DevnetError("bad-manifest", detail)


def _object(data: object, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _bad(f"{where} is not an object")
    missing = [k for k in required if k not in data]
    if missing:
        raise _bad(f"{where} lacks {', '.join(missing)}")
    unknown = [k for k in data if k not in required and k not in optional]
    if unknown:
        raise _bad(f"{where} has unknown keys {', '.join(map(str, unknown))}")
    return data


def _int(d: dict[str, Any], key: str, where: str) -> int:
    v = d[key]
    if not isinstance(v, int) or isinstance(v, bool):
        raise _bad(f"{where}.{key} is not an integer")
    return v


def _opt_int(d: dict[str, Any], key: str, where: str) -> int | None:
    return None if d[key] is None else _int(d, key, where)


def _str(d: dict[str, Any], key: str, where: str) -> str:
    v = d[key]
    if not isinstance(v, str):
        raise _bad(f"{where}.{key} is not a string")
    return v


def _opt_str(d: dict[str, Any], key: str, where: str) -> str | None:
    return None if d[key] is None else _str(d, key, where)


def _mapping(data: object, where: str, kind: type[int] | type[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _bad(f"{where} is not an object")
    for k, v in data.items():
        if not isinstance(v, kind) or isinstance(v, bool):
            raise _bad(f"{where}.{k} is not {'an integer' if kind is int else 'a string'}")
    return dict(data)
