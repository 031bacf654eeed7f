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
import logging
import random
import signal
from typing import TYPE_CHECKING

from consensus.errors import ConsensusError

if TYPE_CHECKING:  # pragma: no cover
    from pool.miner import Miner, MinerStats

__all__ = ["register_mine", "cmd_mine"]

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
    p.add_argument("--address", required=True, metavar="ADDR", help="pn1... address that receives the rewards")
    p.add_argument("--strategy", choices=("evolution", "random"), default="evolution",
                   help="search strategy (default: evolution, population 10, sample 3)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where to train during search (default cpu; verification is always on CPU)")
    p.add_argument("--key", metavar="FILE", help="key file that signs the commitments (default: a fresh key)")
    p.add_argument("--token-file", metavar="FILE", help="the node's DATADIR/.cookie (default: $PONAS_TOKEN)")
    p.add_argument("--seed", type=int, help="seed of the search and training seeds (default: random, logged)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the per-round lines, no per-training log")
    p.set_defaults(func=cmd_mine)


def _reason(exc: Exception) -> ConsensusError:
    if isinstance(exc, ConsensusError):
        return exc
    return ConsensusError(getattr(exc, "reason", "bad-args"), getattr(exc, "detail", str(exc)))


def cmd_mine(args: argparse.Namespace) -> int:
    from consensus.crypto import format_address
    from pool.miner import Miner
    from pool.rounds import MinerError, load_key_file
    from pool.search import SearchError
    from wallet.client import NodeError, read_token

    if args.seed is not None and not 0 <= args.seed <= _MAX_SEED:
        raise ConsensusError("bad-args", "--seed must be in 0..2**64-1")
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    try:
        key = load_key_file(args.key) if args.key else None
        token = read_token(args.token_file)
        miner = Miner(args.node, args.address, args.strategy, args.device, key, token, random.Random(seed),
                      token_file=args.token_file)
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
        f"device {args.device}, seed {seed}, commitment key {miner.key.public_key.hex()[:16]}…",
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
