"""``ponas devnet up|init|status|down``: the flags, and thin commands that parse, call the
plan, the launcher or the watch, and print."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from consensus.amounts import parse_amount
from consensus.errors import ConsensusError
from consensus.files import write_json_atomic
from consensus.params import DEFAULT_TASK, PRESETS, TASKS
from node import logs
from node.devnet import launcher as ln
from node.devnet import manifest as mf
from node.devnet.errors import DevnetError
from node.devnet.launcher import SHAPE_FLAGS, STOP_TIMEOUT, Launcher
from node.devnet.manifest import MANIFEST, Manifest, Topology
from node.devnet.plan import DEFAULT_BASE_PORT, PASSWORD, default_lead, init, plan_ports
from node.devnet.watch import print_summary, watch

DEFAULT_DIR = "devnet"


ROLES = {"node0": "  closer", "node1": "  backup closer"}


def register_devnet(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("devnet", help="a whole local network: nodes, a beacon closer, a pool with members, solo miners")
    dsub = p.add_subparsers(dest="devnet_command", metavar="ACTION")
    dsub.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", default=DEFAULT_DIR, help=f"the devnet's directory (default ./{DEFAULT_DIR})")

    def shape(q: argparse.ArgumentParser) -> None:
        common(q)
        q.add_argument("--preset", choices=PRESETS, help="chain preset (default devnet: a block a minute)")
        q.add_argument("--task", choices=TASKS, help=f"the chain's built-in task (default {DEFAULT_TASK})")
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
    ini.add_argument("--beacon-key", metavar="PATH",
                     help="write the beacon's key (it closes the rounds and knows every future test key) here "
                          "instead of DIR/beacon.key: a place no miner can read")
    ini.set_defaults(func=cmd_init)
    st = dsub.add_parser("status", help="the processes and the chain of a running devnet")
    common(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    dn = dsub.add_parser("down", help="stop every process of a devnet (its files stay)")
    common(dn)
    dn.set_defaults(func=cmd_down)


# --- from the flags -----------------------------------------------------------------------------


def _topology(args: argparse.Namespace) -> Topology:
    """The shape flags given (None: not given, the default) as a checked topology."""
    given = {f: getattr(args, f) for f in SHAPE_FLAGS if getattr(args, f) is not None}
    return Topology(**given).check()


def _base_port(args: argparse.Namespace) -> int:
    return DEFAULT_BASE_PORT if args.base_port is None else args.base_port


def _lead(args: argparse.Namespace, topo: Topology) -> float:
    lead = default_lead(topo) if args.lead is None else float(args.lead)
    if not 0 <= lead <= 3600:
        raise DevnetError("bad-args", "--lead is 0..3600 seconds")
    return lead


def _setup(args: argparse.Namespace) -> tuple[Path, Manifest, bool]:
    """The devnet to start: the stopped one in ``--dir`` (resumed: same chain, keys, ports),
    or a new one (``--fresh`` replaces an earlier one). The bool says whether it resumes."""
    root = Path(args.dir).resolve()
    if not args.fresh and (root / MANIFEST).exists():
        shape = {f: getattr(args, f) for f in SHAPE_FLAGS}
        return root, ln.resume(root, mf.load(root), shape, args.base_port), True
    topo = _topology(args)
    ports = plan_ports(topo, _base_port(args))
    lead = _lead(args, topo)
    ln.prepare_dir(root, args.fresh, ports)
    return root, init(root, topo, ports, lead), False


# --- commands -----------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    if args.if_missing and (root / MANIFEST).exists():
        mf.load(root)
        print(f"{root} already holds a devnet; nothing to do")
        return 0
    topo = _topology(args)
    ports = plan_ports(topo, _base_port(args))
    lead = _lead(args, topo)
    ln.prepare_dir(root, args.fresh)
    manifest = init(root, topo, ports, lead, beacon_key=Path(args.beacon_key).resolve() if args.beacon_key else None)
    print(f"wrote a {topo.preset} devnet in {root}: chain {manifest.chain_id}, genesis {manifest.genesis[:16]}…")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    if args.rounds is not None and not 1 <= args.rounds <= 100_000:
        raise DevnetError("bad-args", "--rounds is 1..100000")
    if args.detach and (args.rounds is not None or args.send):
        raise DevnetError("bad-args", "--detach returns at once: it takes no --rounds or --send")
    if args.send is not None:
        parse_amount(args.send)
    root, manifest, resumed = _setup(args)
    out = sys.stdout
    progress = logs.StatusLine()
    topo = manifest.topology
    when = ("resuming its chain" if resumed
            else f"first round at {time.strftime('%H:%M:%S', time.localtime(manifest.genesis_time))}")
    print(f"devnet {manifest.chain_id} in {root}: {topo.nodes} nodes, a pool of {topo.pool_members} members, "
          f"{topo.solo} solo miners; {when}", file=out, flush=True)
    launcher = Launcher(root, manifest)
    # SIGINT too, explicitly: a process started from a script's background job inherits SIGINT
    # ignored, and Python then leaves it ignored, so Ctrl-C (or kill -INT) would do nothing
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        launcher.start(progress)
        describe(launcher.manifest, out)
        if args.detach:
            launcher.detach()
            print(f"running in the background: `ponas devnet status --dir {args.dir}`, "
                  f"`ponas devnet down --dir {args.dir}`", file=out, flush=True)
            return 0
        summary = watch(root, launcher, args.rounds, args.send, out, progress)
        write_json_atomic(str(root / "summary.json"), summary)
        print_summary(summary, launcher.manifest, out)
        if summary["interrupted"]:
            print("interrupted: stopping the devnet", file=out, flush=True)
            _shutdown(root, launcher, out)
            return 130
        ok = summary["agree"]["same"] and (summary["transfer"] is None or summary["transfer"]["result"] is not None)
        if args.keep:
            launcher.detach()
            print(f"still running: `ponas devnet down --dir {args.dir}` stops it", file=out, flush=True)
        return 0 if ok else 1
    except KeyboardInterrupt:
        progress.clear()
        if ln.stopped_elsewhere(root):
            print("the devnet was stopped by `ponas devnet down`", file=out, flush=True)
            return 0
        print("\ninterrupted: stopping the devnet", file=out, flush=True)
        _shutdown(root, launcher, out)
        return 130
    except ConsensusError as exc:
        progress.clear()
        if exc.reason == "process-died" and ln.stopped_elsewhere(root):
            print("the devnet was stopped by `ponas devnet down`", file=out, flush=True)
            return 0
        print(f"error: {exc.reason}: {exc.detail}", file=sys.stderr, flush=True)
        _shutdown(root, launcher, out)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not args.detach and not args.keep and launcher.manifest.state in ("starting", "running"):
            _shutdown(root, launcher, out)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _shutdown(root: Path, launcher: Launcher, out: TextIO) -> None:
    result = launcher.shutdown()
    if result is None:
        return
    stopped, killed = result
    extra = f"; killed after {STOP_TIMEOUT:.0f}s: {', '.join(killed)}" if killed else ""
    print(f"stopped {len(stopped)} processes{extra}; logs in {root / 'logs'}", file=out, flush=True)


def describe(manifest: Manifest, out: TextIO) -> None:
    """Where everything is, once it runs."""
    for p in manifest.processes:
        if p.role == "node":
            print(f"  {p.name:<8} {p.api}  (explorer {p.api}/){ROLES.get(p.name, '')}", file=out)
        elif p.role == "pool":
            print(f"  pool     dashboard {p.api}/  ({manifest.topology.pool_members} members)", file=out)
    home = Path(manifest.dir) / "home"
    print(f"  wallets  alice, bob (password '{PASSWORD}'): PONAS_HOME={home} ponas wallet balance --wallet alice",
          file=out)
    print(f"  logs     {Path(manifest.dir) / 'logs'}", file=out, flush=True)


def cmd_status(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    data = ln.status(root, mf.load(root))
    state, procs, nodes = data["state"], data["processes"], data["nodes"]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0 if state == "running" else 1
    up_count = sum(bool(p["running"]) for p in procs)
    print(f"devnet {data['chain_id']} in {root}: {state} ({up_count}/{len(procs)} processes)")
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
    manifest = mf.load(root)
    if not ln.running(manifest):
        print(f"no process of the devnet in {root} is running")
        return 0
    stopped, killed = ln.down(root, manifest)
    extra = f" ({', '.join(killed)} killed after {STOP_TIMEOUT:.0f}s)" if killed else ""
    print(f"stopped {len(stopped) + len(killed)} processes{extra}; the chain and logs stay in {root} "
          f"(`ponas devnet up --dir {args.dir}` resumes it)")
    return 0
