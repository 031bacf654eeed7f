"""``ponas mine``: the solo miner's command (thin: parse, build a :class:`~pool.miner.Miner`,
run it until SIGINT or SIGTERM, print a summary).

Pool errors (``bad-strategy``, ``bad-key-file``, ``no-token-file``, ...) are raised as
:class:`~consensus.errors.ConsensusError` with the same reason, which ``ponas`` prints as
``error: REASON: detail`` with exit status 1; a mistyped address is ``bad-address`` (or
``bad-checksum``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from consensus.errors import ConsensusError

if TYPE_CHECKING:  # pragma: no cover
    from pool.miner import Miner, MinerStats

__all__ = ["register_mine", "register_pool", "cmd_mine", "cmd_pool_serve", "cmd_pool_join"]

_MAX_SEED = (1 << 64) - 1


def register_mine(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "mine",
        help="solo mining: search architectures, commit and reveal through a node",
        description="Follow a node's rounds: train architectures proposed by the search strategy during the "
        "commit phase, commit the best shortly before the deadline, reveal its test score once the round "
        "closes. The whole coinbase goes to --address. Writes need the node's cookie (--token-file "
        "DATADIR/.cookie) or $PONAS_TOKEN.",
    )
    p.add_argument("--node", required=True, metavar="URL", help="the node's REST API, e.g. http://127.0.0.1:8545")
    p.add_argument("--address", metavar="ADDR", help="pn1... address that receives the rewards (default: --key's address)")
    p.add_argument("--strategy", choices=("evolution", "random"), default="evolution",
                   help="search strategy (default: evolution, population 10, sample 3)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where to train during search (default cpu; verification is always on CPU)")
    p.add_argument("--key", metavar="FILE", help="key file that signs the commitments (default: a fresh key)")
    p.add_argument("--token-file", metavar="FILE", help="the node's DATADIR/.cookie (default: $PONAS_TOKEN)")
    p.add_argument("--commit-keys", type=int, default=1, metavar="N",
                   help="commit under N keys: the given key and N-1 derived from it (1..64, default 1). The chain bounds commitments per key, so N keys give N times the slots")
    p.add_argument("--seed", type=int, help="seed of the search and training seeds (default: random, logged)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the per-round lines, no per-training log")
    p.set_defaults(func=cmd_mine)


def _reason(exc: Exception) -> ConsensusError:
    if isinstance(exc, ConsensusError):
        return exc
    return ConsensusError(getattr(exc, "reason", "bad-args"), getattr(exc, "detail", str(exc)))


def cmd_mine(args: argparse.Namespace) -> int:
    from consensus.crypto import format_address
    from consensus.files import load_key_file
    from nodeclient import NodeError, read_token
    from pool.miner import Miner
    from pool.rounds import MinerError
    from pool.search import SearchError

    if args.seed is not None and not 0 <= args.seed <= _MAX_SEED:
        raise ConsensusError("bad-args", "--seed must be in 0..2**64-1")
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    try:
        key = load_key_file(args.key) if args.key else None
        token = read_token(args.token_file)
        address = _address_or_key(args.address, key, "the address that receives the rewards")
        miner = Miner(args.node, address, args.strategy, args.device, key, token, random.Random(seed),
                      token_file=args.token_file, commit_keys=check_commit_keys(args.commit_keys))
    except (MinerError, SearchError, NodeError) as exc:
        raise _reason(exc) from None
    if token is None:
        raise ConsensusError("no-token", "writes need the node's cookie: --token-file DATADIR/.cookie or $PONAS_TOKEN")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConsensusError("no-cuda", "--device cuda, but torch sees no CUDA device")
    if not args.quiet and getattr(args, "verbose", 0) == 0:
        logging.getLogger("ponas.miner").setLevel(logging.INFO)  # progress lines on stderr by default
    print(
        f"mining for {format_address(miner.address)} on {miner.node_url}: strategy {args.strategy}, "
        f"device {args.device}, seed {seed}, commitment key {miner.key.public_key.hex()[:16]}…"
        + (f" and {args.commit_keys - 1} derived" if args.commit_keys > 1 else ""),
        flush=True,
    )
    stats = asyncio.run(_run(miner))
    print(
        f"stopped: {stats.rounds} rounds, {stats.trainings} trainings, {stats.commitments} commitments, "
        f"{stats.candidates} candidates, {stats.wins} won",
        flush=True,
    )
    return 0


async def _run(miner: Miner) -> MinerStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on this platform
            pass
    try:
        return await miner.run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover
                pass


# --- ponas pool ---------------------------------------------------------------------------------


def register_pool(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from pool.shares import DEFAULT_WINDOW_ROUNDS, MAX_WINDOW_ROUNDS

    p = sub.add_parser("pool", help="a mining pool: run its manager, or join one as a member")
    psub = p.add_subparsers(dest="pool_command", metavar="ACTION")
    psub.required = True
    s = psub.add_parser("serve", help="run a pool manager on a node (members connect over a websocket)",
                        description="Follow the node's rounds, hand members subspaces, verify their shares, commit "
                        "the pool's best result with the coinbase split among the members (fee, finder's bonus, "
                        "PPLNS), reveal it. Dashboard at http://HOST:PORT/. See docs/pool-protocol.md.")
    s.add_argument("--node", required=True, metavar="URL", help="the node's REST API")
    s.add_argument("--address", metavar="ADDR", help="the pool's fee address (default: --key's address)")
    s.add_argument("--fee", default="1", metavar="PCT", help="pool fee in percent (default 1)")
    s.add_argument("--finder-bonus", default="0.5", metavar="PCT", help="bonus to the member whose result is committed (0.5)")
    s.add_argument("--min-payout", default="0.00000001", metavar="COINS",
                   help="smallest coinbase output paid to a member (default one base unit); a smaller part goes to the "
                        "other members, as the pool never holds coins to pay it later")
    s.add_argument("--window-rounds", type=int, metavar="K",
                   help=f"PPLNS over the shares of the last K rounds (1..{MAX_WINDOW_ROUNDS}, default {DEFAULT_WINDOW_ROUNDS}: "
                        "P2Pool's three blocks' worth of work)")
    s.add_argument("--window", type=int, metavar="UNITS",
                   help="PPLNS over the last UNITS work units (training epochs) instead of by rounds")
    s.add_argument("--datadir", required=True, help="where the pool keeps shares and payouts (LevelDB)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0, help="members and dashboard port (0: any free port)")
    s.add_argument("--token-file", metavar="FILE", help="the node's DATADIR/.cookie (default: $PONAS_TOKEN)")
    s.add_argument("--key", metavar="FILE", help="key file that signs the pool's commitments (default: a fresh key)")
    s.add_argument("--commit-keys", type=int, default=1, metavar="N",
                   help="the pool commits under N keys: the given key and N-1 derived from it (1..64, default 1). The chain bounds commitments per key, so N keys give N times the slots")
    s.set_defaults(func=cmd_pool_serve)
    j = psub.add_parser("join", help="join a pool as a member: search the subspaces it assigns, stream shares")
    j.add_argument("url", metavar="URL", help="the pool's address, e.g. ws://127.0.0.1:3333")
    j.add_argument("--address", metavar="ADDR",
                   help="your payout address (you sign the pool's challenge); default: the key's, or the wallet's first")
    j.add_argument("--key", metavar="FILE", help="the key file of ADDR")
    j.add_argument("--wallet", metavar="NAME", help="take the key of ADDR from this wallet (asks its password)")
    j.add_argument("--home", help="wallet home (default $PONAS_HOME or ~/.ponas)")
    j.add_argument("--password-file", metavar="FILE", help="the wallet's password (else $PONAS_WALLET_PASSWORD or a prompt)")
    j.add_argument("--pool-key", metavar="HEX",
                   help="the pool's public key (printed by pool serve, shown on its dashboard): a challenge from "
                        "another pool is refused (wrong-pool), so no pool can relay another's challenge to you")
    j.add_argument("--check", metavar="NODE_URL",
                   help="check every block the pool wins on this node: its coinbase must pay you what the pool "
                        "announced at commit time; an underpayment is logged, reported to the pool, and the "
                        "command exits with status 3")
    j.add_argument("--worker", default="w", help="this machine's name in the pool (default w)")
    j.add_argument("--workers", type=int, default=1, help="trainings in parallel, one connection each (default 1)")
    j.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    j.add_argument("--strategy", choices=("evolution", "random"), default="evolution")
    j.add_argument("--seed", type=int, help="seed of the search (default: random)")
    j.set_defaults(func=cmd_pool_join)


def _address_or_key(address: str | None, key: Any, what: str) -> str:
    """``--address``, or else the address of ``--key``'s key."""
    if address is not None:
        return address
    if key is None:
        raise ConsensusError("no-address", f"give --address ADDR ({what}), or --key FILE to use its address")
    from consensus.crypto import format_address

    return format_address(key.address)


def check_commit_keys(n: int) -> int:
    """``--commit-keys``: 1..MAX_COMMIT_KEYS, else reason ``bad-commit-keys``."""
    from pool.driver import MAX_COMMIT_KEYS

    if not 1 <= n <= MAX_COMMIT_KEYS:
        raise ConsensusError("bad-commit-keys", f"--commit-keys must be 1 to {MAX_COMMIT_KEYS}, not {n}")
    return n


def check_window(units: int | None, rounds: int | None) -> dict[str, Any]:
    """``--window UNITS`` or ``--window-rounds K`` (not both) as ManagerConfig fields; a bad
    one is reason ``bad-window``."""
    from pool.shares import DEFAULT_WINDOW_ROUNDS, PoolError, make_window

    if units is not None and rounds is not None:
        raise ConsensusError("bad-window", "give --window (units) or --window-rounds, not both")
    k = DEFAULT_WINDOW_ROUNDS if rounds is None else rounds
    try:
        make_window(units, k)
    except PoolError as exc:
        raise ConsensusError(exc.reason, exc.detail) from None
    return {"window": units, "window_rounds": k}


def percent_ppm(text: str, name: str) -> int:
    """``"1.5"`` (percent) -> 15000 parts per million, exactly; 0..100 with at most 4 decimals."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text.strip()) * 10_000
    except InvalidOperation:
        raise ConsensusError("bad-args", f"--{name} {text!r} is not a percentage") from None
    if not value.is_finite() or value != value.to_integral_value() or not 0 <= value <= 1_000_000:
        raise ConsensusError("bad-args", f"--{name} is a percentage in 0..100 with at most 4 decimals")
    return int(value)


async def _until_signal(work: Callable[[asyncio.Event], Awaitable[Any]]) -> Any:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return await work(stop)


def cmd_pool_serve(args: argparse.Namespace) -> int:
    from consensus.amounts import parse_amount
    from consensus.crypto import parse_address
    from consensus.files import load_key_file
    from nodeclient import NodeError, read_token
    from pool.manager import Manager, ManagerConfig
    from pool.rounds import MinerError

    try:
        token = read_token(args.token_file)
        key = load_key_file(args.key) if args.key else None
    except (MinerError, NodeError) as exc:
        raise _reason(exc) from None
    fee_text = _address_or_key(args.address, key, "the pool's fee address")
    fee_address = parse_address(fee_text)
    if token is None:
        raise ConsensusError("no-token", "the pool commits through the node: --token-file DATADIR/.cookie or $PONAS_TOKEN")
    config = ManagerConfig(args.node, fee_address, args.datadir, fee_ppm=percent_ppm(args.fee, "fee"),
                           finder_bonus_ppm=percent_ppm(args.finder_bonus, "finder-bonus"),
                           **check_window(args.window, args.window_rounds), min_payout=parse_amount(args.min_payout),
                           host=args.host, port=args.port, token=token, token_file=args.token_file,
                           commit_keys=check_commit_keys(args.commit_keys), freeze_gc=True)
    if config.fee_ppm + config.finder_bonus_ppm > 1_000_000:
        raise ConsensusError("bad-args", "--fee plus --finder-bonus exceed 100%")

    async def serve(stop: asyncio.Event) -> None:
        manager = Manager(config, key=key)
        try:
            await manager.start()
        except NodeError as exc:
            raise _reason(exc) from None
        print(f"pool on ws://{args.host}:{manager.port}/ws (dashboard http://{args.host}:{manager.port}/), "
              f"fee {args.fee}% to {fee_text}, node {args.node}", flush=True)
        print(f"pool key {manager.key.public_key.hex()} (members: pool join ... --pool-key KEY)", flush=True)
        await manager.run(stop)

    logging.getLogger("ponas.pool").setLevel(logging.INFO)
    asyncio.run(_until_signal(serve))
    return 0


def cmd_pool_join(args: argparse.Namespace) -> int:
    from consensus.crypto import parse_address
    from consensus.files import load_key_file
    from pool.member import Member
    from pool.rounds import MinerError

    if not 1 <= args.workers <= 64:
        raise ConsensusError("bad-args", "--workers is 1..64")
    if args.key:
        try:
            key = load_key_file(args.key)
        except MinerError as exc:
            raise _reason(exc) from None
    elif args.wallet:
        from wallet.cli import read_password
        from wallet.errors import WalletError
        from wallet.keystore import Keystore

        home = os.path.abspath(os.path.expanduser(args.home or os.environ.get("PONAS_HOME") or "~/.ponas"))
        try:
            store = Keystore.load(home, args.wallet)
            address = parse_address(args.address) if args.address else store.addresses[0]  # its first address
            key = store.unlock(read_password(args)).key_for(address)
        except WalletError as exc:
            raise _reason(exc) from None
    else:
        raise ConsensusError("no-key", "the pool pays ADDR only if you prove it: give --key FILE or --wallet NAME")
    address = parse_address(args.address) if args.address else key.address
    if key.address != address:
        raise ConsensusError("wrong-key", "the key is not the key of --address")
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    url = args.url if "://" in args.url else f"ws://{args.url}"
    pool_key = None
    if args.pool_key is not None:
        try:
            pool_key = bytes.fromhex(args.pool_key)
        except ValueError:
            pool_key = b""
        if len(pool_key) != 32:
            raise ConsensusError("bad-pool-key", "--pool-key is the pool's public key: 64 hex digits")
    members = [Member(url, key, f"{args.worker}{i}" if args.workers > 1 else args.worker, args.strategy, args.device,
                      random.Random(seed + i), report=lambda line: print(line, flush=True), pool_key=pool_key,
                      check_node=args.check if i == 0 else None)  # one checker is enough
               for i in range(args.workers)]

    async def work(stop: asyncio.Event) -> list[Any]:
        return list(await asyncio.gather(*(m.run(stop) for m in members)))

    logging.getLogger("ponas.member").setLevel(logging.INFO)
    stats = asyncio.run(_until_signal(work))
    total = sum(s.trainings for s in stats)
    print(f"stopped: {total} trainings, {sum(s.accepted for s in stats)} shares accepted, "
          f"{sum(s.rejected for s in stats)} rejected", flush=True)
    underpaid = sorted({h for s in stats for h in s.underpaid})
    if underpaid:
        print(f"UNDERPAID in blocks {', '.join(map(str, underpaid))}: the coinbase paid less than the pool announced",
              flush=True)
        return 3
    return 1 if any(s.banned for s in stats) else 0
