"""The plan of a devnet: its ports, its processes' command lines, and the files ``init`` writes
(keys, demo wallets, genesis, the manifest). Nothing here starts a process."""

from __future__ import annotations

import contextlib
import errno
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from consensus.crypto import PrivateKey, derived_key, format_address
from consensus.files import write_text_atomic
from consensus.types import COIN
from node.devnet import manifest as mf
from node.devnet.errors import DevnetError
from node.devnet.manifest import Manifest, ProcessEntry, Role, Topology
from node.keyfile import save_key

DEFAULT_BASE_PORT = 28400  # node i: API base+i, P2P base+100+i; pool: base+200
PASSWORD = "devnet"  # the demo wallets' password, also in DIR/home/password: this is a devnet
DEMO_WALLETS = ("alice", "bob")
DEMO_COINS = 1000
#: Coins the genesis gives every key that commits (the pool's commit keys, each solo miner's):
#: a key with less than one coin shares the round's 16 free places with every other empty key
#: (consensus/engines/ponas/rounds.py ``FUNDED_BALANCE``), so without this the devnet's first
#: commitments of a round would take the places first come, and a solo miner, paid to its own
#: key, would leave the race for them after its first block while the pool's keys (its members
#: are paid, not its keys) never would. Every party starts funded alike.
MINER_COINS = 10
BACKUP_KEY = "beacon-backup.key"  # the backup closer's key, beside the beacon's; node1 runs it
MINER_NICE = 10  # miners yield the CPU to nodes


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
        raise DevnetError("bad-args", "--base-port is 1024..65235, or 0 for free ports")
    ports = {f"node{i}.api": base + i for i in range(topo.nodes)}
    ports |= {f"node{i}.p2p": base + 100 + i for i in range(topo.nodes)}
    return ports | ({"pool": base + 200} if topo.pool_members else {})


def check_ports_free(ports: Mapping[str, int], hint: str = "or give another --base-port (0 picks free ports)") -> None:
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
                raise DevnetError("port-in-use", f"127.0.0.1:{port} (for {what}) is in use: stop what holds it, {hint}") from None


def ponas_argv() -> list[str]:
    """How to run ``ponas`` here: the console script beside this interpreter, or the module."""
    script = Path(sys.executable).with_name("ponas")
    return [str(script)] if script.exists() else [sys.executable, "-m", "node"]


def _public_key(path: Path) -> str | None:
    """The public key (hex) of a key file, if it is there (written by ``init``)."""
    from consensus.errors import ConsensusError
    from consensus.files import load_key_file

    try:
        return load_key_file(str(path)).public_key.hex()
    except ConsensusError:  # no-key-file (a plan made before init wrote the keys): no pin
        return None


def plan_processes(root: Path, topo: Topology, ports: Mapping[str, int], accounts: Mapping[str, str]) -> list[ProcessEntry]:
    """Every process of the devnet, in start order (none started: no pids)."""
    ponas = ponas_argv()
    procs: list[ProcessEntry] = []

    def add(name: str, role: Role, args: list[str], nice: int = 0, api: str | None = None) -> None:
        procs.append(ProcessEntry(name=name, role=role, argv=tuple(ponas + ["-v"] + args),
                                  log=str(root / "logs" / f"{name}.log"), nice=nice, api=api))

    for i in range(topo.nodes):
        args = ["node", "run", "--datadir", str(root / f"node{i}"), "--genesis", str(root / "genesis.json"),
                "--api-port", str(ports[f"node{i}.api"]), "--p2p-port", str(ports[f"node{i}.p2p"])]
        args += [a for j in range(i) for a in ("--peer", f"127.0.0.1:{ports[f'node{j}.p2p']}")]
        if i == 0:
            args += ["--closer-key", str(root / "beacon.key")]
        if i == 1:  # the backup closer: it closes when node0 has been silent for closer_timeout
            args += ["--closer-key", str(root / BACKUP_KEY)]
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
        pool_key = _public_key(root / "keys" / "pool.key")
        for i in range(topo.pool_members):
            add(f"member{i}", "member", ["pool", "join", f"ws://127.0.0.1:{ports['pool']}/ws",
                                         "--address", accounts[f"member{i}"],
                                         "--key", str(root / "keys" / f"member{i}.key"), "--worker", f"member{i}",
                                         # each block the pool wins checked on the pool's node
                                         "--check", f"http://127.0.0.1:{ports[f'node{pool_node}.api']}"]
                + (["--pool-key", pool_key] if pool_key else []),
                nice=MINER_NICE)
    for i in range(topo.solo):
        add(f"solo{i}", "solo", ["mine", "--node", f"http://127.0.0.1:{ports[f'node{solo_node}.api']}",
                                 "--address", accounts[f"solo{i}"], "--key", str(root / "keys" / f"solo{i}.key"),
                                 "--token-file", str(root / f"node{solo_node}" / ".cookie"), "-q"],
            nice=MINER_NICE)
    return procs


def default_lead(topo: Topology) -> float:
    """Seconds to start every process on a small machine (each imports torch): the first round
    opens then, so that its miners have the whole commit window."""
    return 6.0 + 1.5 * (topo.nodes + (1 if topo.pool_members else 0) + topo.pool_members + topo.solo)


def init(root: Path, topo: Topology, ports: Mapping[str, int], lead: float, now: float | None = None,
         beacon_key: Path | None = None) -> Manifest:
    """Write the devnet's files into ``root`` (ready: see ``launcher.prepare_dir``): keys, the
    demo wallets, a genesis that prefunds them and starts ``lead`` seconds from ``now``, and
    the manifest, which it returns."""
    from consensus.chain import genesis_block
    from node.cli import write_genesis
    from wallet.keys import new_mnemonic
    from wallet.keystore import Keystore

    for sub in ("keys", "logs", "home"):
        (root / sub).mkdir(mode=0o700, exist_ok=True)
    accounts: dict[str, str] = {}
    aliases: dict[str, str] = {}  # the pool's other commit keys' addresses -> "pool"
    committing: list[bytes] = []  # the keys that commit: funded by the genesis (MINER_COINS)
    names = ["pool", "pool-fee"] if topo.pool_members else []
    names += [f"member{i}" for i in range(topo.pool_members)] + [f"solo{i}" for i in range(topo.solo)]
    for name in names:
        key = PrivateKey.generate()
        save_key(key, str(root / "keys" / f"{name}.key"))
        accounts[name] = format_address(key.address)
        if name == "pool":
            aliases.update({format_address(derived_key(key, i).address): "pool" for i in range(1, topo.pool_keys)})
        if name == "pool" or name.startswith("solo"):
            committing += [derived_key(key, i).address for i in range(topo.pool_keys if name == "pool" else 1)]
    home = root / "home"
    prefunds: dict[bytes, int] = {address: MINER_COINS * COIN for address in committing}
    for name in DEMO_WALLETS:
        store = Keystore.create(str(home), name, new_mnemonic(), PASSWORD)
        accounts[name] = format_address(store.addresses[0])
        prefunds[store.addresses[0]] = DEMO_COINS * COIN
    write_text_atomic(str(home / "password"), PASSWORD + "\n", mode=0o600)
    wallet_node = f"http://127.0.0.1:{ports[f'node{topo.nodes - 1}.api']}"
    write_text_atomic(str(home / "config.toml"), f'[wallet]\nnode = "{wallet_node}"\n')
    start = int((time.time() if now is None else now) + lead)
    beacon_path = beacon_key or root / "beacon.key"  # elsewhere: out of the miners' reach (docker-compose)
    backup_path = beacon_path.with_name(BACKUP_KEY) if topo.nodes > 1 else None  # beside it, run by node1
    params = write_genesis(topo.preset, str(root / "genesis.json"), str(beacon_path), prefunds,
                           chain_id=f"ponas-{topo.preset}", genesis_time=start, task=topo.task,
                           backup_path=str(backup_path) if backup_path else None)
    manifest = Manifest(
        dir=str(root), created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), state="initialised",
        supervisor=None, topology=topo, chain_id=params.chain_id, genesis=genesis_block(params).header.hash().hex(),
        genesis_time=start, round_seconds=params.ponas.commit_window + params.ponas.reveal_window,
        ports=dict(ports), accounts=accounts, aliases=aliases, wallet_node=wallet_node,
        processes=tuple(plan_processes(root, topo, ports, accounts)),
    )
    mf.save(root, manifest)
    return manifest
