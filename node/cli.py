"""The ``ponas`` command line: one console script whose subcommands each package registers.

Packages register through the ``ponas.commands`` entry-point group (see setup.cfg), each with
a ``register(subparsers)`` function, so this entry point imports no upper layer by name.
Commands are thin: parse, call the function that does the work, print.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from consensus.amounts import format_amount, parse_amount
from consensus.crypto import PrivateKey, format_address, parse_address
from consensus.errors import ConsensusError
from consensus.files import write_json_atomic
from consensus.params import PRESETS, TASKS, ChainParams, load_params, preset_params, save_params
from consensus.types import Transfer
from node import logs
from node.keyfile import load_beacon, load_key, save_key
from node.storage import StorageError

EXIT_USAGE = 2
EXIT_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    """The whole ``ponas`` command line, every registered subcommand included."""
    parser = argparse.ArgumentParser(prog="ponas", description="PoNAS chain: a blockchain mined by neural-architecture search.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for ep in sorted(entry_points(group="ponas.commands"), key=lambda e: e.name):
        register: Callable[[argparse._SubParsersAction], None] = ep.load()  # type: ignore[type-arg]
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.verbose)
    try:
        return int(args.func(args) or 0)
    except (ConsensusError, StorageError) as exc:
        print(f"error: {exc.reason}: {exc.detail}" if exc.detail else f"error: {exc.reason}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


# --- ponas genesis ------------------------------------------------------------------------------


def register_genesis(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("genesis", help="write a genesis file (chain parameters)")
    gsub = p.add_subparsers(dest="genesis_command", metavar="ACTION")
    gsub.required = True
    new = gsub.add_parser("new", help="a genesis file from a preset")
    new.add_argument("--preset", choices=PRESETS, default="regtest")
    new.add_argument("--engine", choices=("ponas", "pow"), default="ponas")
    new.add_argument("--task", choices=TASKS,
                     help="the built-in task: digits or mnist1d (generated data, exact verification); default: "
                     "consensus.params.DEFAULT_TASK (digits for now)")
    new.add_argument("--out", required=True, help="genesis file to write")
    new.add_argument("--chain-id", help="default: ponas-PRESET")
    new.add_argument("--prefund", action="append", default=[], metavar="ADDR=COINS", help="fund an address (repeatable)")
    new.add_argument("--demo-keys", metavar="DIR", help="also create and prefund demo account keys in DIR")
    new.add_argument("--demo-count", type=int, default=2, help="how many demo keys (default 2)")
    new.add_argument("--demo-coins", default="1000", help="coins for each demo key (default 1000)")
    new.add_argument("--beacon-out", metavar="FILE", help="write the beacon closer's key here (default: beside --out)")
    new.add_argument("--backup-out", metavar="FILE",
                     help="also name a backup closer and write its key here: it holds the beacon's hash chain with "
                          "a signing key of its own, and closes a round when the beacon is silent for closer_timeout")
    new.add_argument("--time", type=int, help="genesis timestamp (default: now)")
    new.set_defaults(func=cmd_genesis_new)


def cmd_genesis_new(args: argparse.Namespace) -> int:
    if os.path.exists(args.out):
        raise ConsensusError("file-exists", f"{args.out} exists; remove it or choose another --out")
    prefunds: dict[bytes, int] = {}
    for item in args.prefund:
        addr, sep, coins = item.partition("=")
        if not sep:
            raise ConsensusError("bad-prefund", f"{item!r}: use ADDR=COINS")
        prefunds[parse_address(addr)] = parse_amount(coins)
    demo: list[tuple[str, PrivateKey]] = []
    if args.demo_keys:
        os.makedirs(args.demo_keys, exist_ok=True)
        for i in range(args.demo_count):
            key = PrivateKey.generate()
            path = os.path.join(args.demo_keys, f"demo{i}.key")
            save_key(key, path)
            prefunds[key.address] = parse_amount(args.demo_coins)
            demo.append((path, key))
    beacon_path = args.beacon_out or os.path.join(os.path.dirname(os.path.abspath(args.out)), "beacon.key")
    params = write_genesis(args.preset, args.out, beacon_path, prefunds, engine=args.engine, chain_id=args.chain_id,
                           genesis_time=args.time, task=args.task, backup_path=args.backup_out)
    from consensus.chain import genesis_block

    task = f", task {params.ponas.task}" if params.engine == "ponas" else ""
    print(f"wrote {args.out}: chain {params.chain_id}, engine {params.engine}{task}, "
          f"genesis {genesis_block(params).header.hash().hex()}")
    print(f"beacon closer key: {beacon_path}")
    if args.backup_out:
        print(f"backup closer key: {args.backup_out}")
    for path, key in demo:
        print(f"demo key {path}: {format_address(key.address)} ({args.demo_coins} coins)")
    return 0


def write_genesis(
    preset: str, out: str, beacon_path: str, prefunds: dict[bytes, int], *, engine: str = "ponas",
    chain_id: str | None = None, genesis_time: int | None = None, task: str | None = None,
    backup_path: str | None = None,
) -> ChainParams:
    """A new chain: a fresh beacon key (written to ``beacon_path``, mode 0600) and the genesis
    file ``out`` that holds its public key and the anchor of its hash chain of round keys.
    With ``backup_path``, a backup closer too: a signing key of its own, written there with the
    same hash chain (it reveals the same round keys, in the same order, when it closes)."""
    from consensus.beacon import BeaconChain

    beacon = PrivateKey.generate()
    backup = PrivateKey.generate() if backup_path else None
    chain = BeaconChain.create(length=100_000)
    params = preset_params(preset, engine=engine, chain_id=chain_id, prefunds=prefunds, beacon_pubkey=beacon.public_key,
                           beacon_anchor=chain.anchor, genesis_time=genesis_time, task=task,
                           backup_pubkey=backup.public_key if backup is not None else bytes(32))
    save_key(beacon, beacon_path, beacon_seed=chain.seed.hex(), beacon_length=chain.length)
    if backup is not None and backup_path:
        save_key(backup, backup_path, beacon_seed=chain.seed.hex(), beacon_length=chain.length, role="backup")
    save_params(params, out)
    return params


# --- ponas node -------------------------------------------------------------------------------


def register_node(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("node", help="run a full node")
    nsub = p.add_subparsers(dest="node_command", metavar="ACTION")
    nsub.required = True
    run = nsub.add_parser("run", help="run a full node: P2P, rounds, REST API and explorer")
    run.add_argument("--datadir", required=True)
    run.add_argument("--genesis", required=True)
    run.add_argument("--p2p-port", type=int, default=0, help="P2P port (0: any free port)")
    run.add_argument("--api-port", type=int, default=0, help="API and explorer port (0: any free port)")
    run.add_argument("--p2p-host", default="127.0.0.1")
    run.add_argument("--api-host", default="127.0.0.1", help="bind the API here (default 127.0.0.1)")
    run.add_argument("--peer", action="append", default=[], metavar="HOST:PORT", help="a peer to connect to (repeatable)")
    run.add_argument("--closer-key", metavar="FILE", help="close rounds with this key (the beacon's key file)")
    run.add_argument("--min-relay-fee", metavar="COINS", default="0.00001",
                     help="the least fee a transfer needs to enter the mempool (default 0.00001)")
    run.add_argument("--log-file", help="write logs here instead of stderr")
    run.set_defaults(func=cmd_node_run)


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConsensusError("bad-peer", f"{text!r}: use HOST:PORT")
    return host, int(port)


def cmd_node_run(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from node.config import NodeConfig
    from node.service import Node

    params = load_params(args.genesis)
    if params.engine == "ponas" and params.ponas.task == "mnist1d":
        from consensus.engines.ponas.exact import pin_kernels

        pin_kernels()  # exact training and scoring: before the process's first torch operation
    peers = [_hostport(p) for p in args.peer]
    if args.log_file:
        logs.setup(max(args.verbose, 1), logfile=args.log_file)
    config = NodeConfig(
        datadir=args.datadir, p2p_host=args.p2p_host, p2p_port=args.p2p_port, api_host=args.api_host,
        api_port=args.api_port, peers=peers, closer_key=args.closer_key,
        min_relay_fee=parse_amount(args.min_relay_fee, allow_zero=True),
    )

    async def main_async() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        node = Node(config, params)
        await node.start()
        print(f"node up: chain {params.chain_id} height {node.chain.height}  api http://{config.api_host}:"
              f"{node.api_port}/  p2p {config.p2p_host}:{node.p2p_port}  token in {config.datadir}/.cookie", flush=True)
        try:
            await stop.wait()
        finally:
            await node.stop()

    asyncio.run(main_async())
    return 0


# --- ponas chain --------------------------------------------------------------------------------


def register_chain(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("chain", help="work on a local datadir without a network")
    csub = p.add_subparsers(dest="chain_command", metavar="ACTION")
    csub.required = True
    gen = csub.add_parser(
        "generate",
        help="mine blocks into a datadir without a network",
        description="pow chains: grind nonces. ponas chains: play whole rounds with local miners "
        "(one per --address) that train real models, and the beacon's key from --beacon-key.",
    )
    _datadir_args(gen)
    gen.add_argument("--blocks", type=int, default=1, help="blocks (pow) or rounds (ponas) to mine")
    gen.add_argument("--address", required=True, action="append", help="who receives the block rewards; "
                     "on a ponas chain each address is one local miner (repeatable)")
    gen.add_argument("--beacon-key", metavar="FILE", help="ponas: the beacon closer's key file")
    gen.add_argument("--trainings", type=int, default=2, help="ponas: trainings per miner per round (default 2)")
    gen.add_argument("--seed", type=int, help="ponas: seed of the miners' random search (default: random)")
    gen.add_argument("--send-from", metavar="KEYFILE", help="also send coins from this key in the first block")
    gen.add_argument("--send-to", metavar="ADDR")
    gen.add_argument("--amount", default="1", help="coins to send (default 1)")
    gen.add_argument("--fee", default="0.0001", help="fee in coins (default 0.0001)")
    gen.set_defaults(func=cmd_chain_generate)
    show = csub.add_parser("show", help="print the canonical chain")
    _datadir_args(show)
    show.add_argument("--json", action="store_true")
    show.add_argument("--accounts", action="store_true", help="also list the accounts")
    show.set_defaults(func=cmd_chain_show)


def _datadir_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--datadir", required=True)
    p.add_argument("--genesis", required=True)


def cmd_chain_generate(args: argparse.Namespace) -> int:
    from node.generate import generate, open_chain

    params = load_params(args.genesis)
    addresses = [parse_address(a) for a in args.address]
    if args.blocks < 1:
        raise ConsensusError("bad-count", "--blocks must be at least 1")
    if params.engine == "ponas":
        if not args.beacon_key:
            raise ConsensusError("bad-args", "a ponas chain needs --beacon-key to close its rounds")
        if args.trainings < 1:
            raise ConsensusError("bad-count", "--trainings must be at least 1")
        load_beacon(args.beacon_key)  # fail on a bad key file before the datadir is touched
    with open_chain(args.datadir, params) as chain:
        txs = []
        if args.send_from:
            if not args.send_to:
                raise ConsensusError("bad-args", "--send-from needs --send-to")
            key = load_key(args.send_from)
            nonce = chain.account(key.address).nonce
            tx = Transfer.create(
                key, parse_address(args.send_to), parse_amount(args.amount), parse_amount(args.fee, allow_zero=True),
                nonce, params.chain_id,
            )
            txs.append(tx)

        def progress(result, block):  # type: ignore[no-untyped-def]
            print(
                f"mined block {block.header.height} {result.block_hash.hex()[:16]} "
                f"txs={len(block.txs)} nonce={block.header.nonce}",
                flush=True,
            )

        if params.engine == "ponas":
            _generate_ponas(chain, args, addresses, txs)
        else:
            generate(chain, args.blocks, addresses[0], txs, progress)
    return 0


def _generate_ponas(chain: Any, args: argparse.Namespace, addresses: Sequence[bytes], txs: list[Transfer]) -> None:
    import random

    from node.generate import generate_ponas_round

    beacon_key, beacon_chain = load_beacon(args.beacon_key)
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    rng = random.Random(seed)
    print(f"random search seed {seed}; {len(addresses)} miners, {args.trainings} trainings each per round", flush=True)
    status = logs.StatusLine()
    for i in range(args.blocks):
        result = generate_ponas_round(chain, beacon_key, beacon_chain, addresses, args.trainings, rng, txs if i == 0 else (), status)
        status.clear()
        print(f"round {result.height}: {result.seconds:5.1f}s  candidates (score of {chain.params.ponas.test_set_size} "
              f"test samples{_epoch_label(chain.params.ponas, result.height)}):")
        for c in sorted(result.candidates, key=lambda c: -c.score):
            mark = "*" if c is result.winner else " "
            print(f"  {mark} {format_address(c.miner)[:14]}…  score {c.score:>4}  validation {c.validation:>4}  {c.genotype}")
        print(f"  winner {result.winner.block_hash.hex()[:16]} at height {chain.height}", flush=True)


def _epoch_label(ponas: Any, height: int) -> str:
    """``", task epoch N"`` for a chain whose task has epochs (mnist1d), else empty."""
    epoch = ponas.task_epoch(height)
    return "" if epoch is None else f", task epoch {epoch}"


def cmd_chain_show(args: argparse.Namespace) -> int:
    from node.generate import open_chain

    params = load_params(args.genesis)
    with open_chain(args.datadir, params) as chain:
        rows: list[dict[str, Any]] = []
        for block in chain.iter_canonical():
            h = block.header
            rows.append(
                {
                    "height": h.height,
                    "hash": h.hash().hex(),
                    "time": h.timestamp,
                    "genotype": h.genotype,
                    "score": h.score,
                    "txs": len(block.txs),
                    "payouts": [[format_address(p.address), format_amount(p.amount)] for p in block.coinbase.payouts],
                }
            )
        accounts = {
            format_address(a): {"balance": format_amount(acc.balance), "nonce": acc.nonce}
            for a, acc in sorted(chain.accounts.items())
        }
        if args.json:
            out: dict[str, Any] = {"chain_id": params.chain_id, "height": chain.height, "tip": chain.tip_hash.hex(),
                   "state_root": chain.state_root().hex(), "blocks": rows}
            if args.accounts:
                out["accounts"] = accounts
            print(json.dumps(out, indent=2))
            return 0
        print(
            f"chain {params.chain_id}  engine {params.engine}  genesis {chain.genesis_hash.hex()[:16]}  "
            f"height {chain.height}  tip {chain.tip_hash.hex()[:16]}"
        )
        nas = params.engine == "ponas"
        print(f"{'height':>6}  {'hash':16}  {'txs':>3}  " + ("score  " if nas else "") + "payouts" + ("  architecture" if nas else ""))
        for r in rows:
            pays = ", ".join(f"{a[:12]}… {v}" for a, v in r["payouts"]) or "-"
            extra = f"{r['score']:>5}  " if nas else ""
            arch = f"  {r['genotype']}" if nas and r["genotype"] else ""
            print(f"{r['height']:>6}  {r['hash'][:16]}  {r['txs']:>3}  {extra}{pays}{arch}")
        if args.accounts:
            print(f"\n{'account':42}  {'balance':>16}  nonce")
            for addr, acc in accounts.items():
                print(f"{addr:42}  {acc['balance']:>16}  {acc['nonce']}")
        print(f"state root {chain.state_root().hex()}")
    return 0


__all__ = ["main", "register_genesis", "register_chain", "write_json_atomic"]
