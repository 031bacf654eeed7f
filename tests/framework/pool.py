"""A pool manager on 127.0.0.1 without a node, and raw websocket members speaking the pool
protocol (docs/pool-protocol.md) to it: for the pool's door, defence and page tests.

The manager is started without ``run`` (no round driver, no verifier or watchdog unless a test
starts them), so a test prepares a made-up round itself (:func:`made_up_round`) and controls
the manager's clock."""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from pool import protocol as P
from pool.manager import Manager, ManagerConfig
from pool.rounds import RoundInfo


async def hello(ws: aiohttp.ClientWebSocketResponse, key: Any, worker: str = "w", sign_with: Any = None) -> dict[str, Any]:
    """Answer the manager's challenge with a hello for ``key``'s address (signed by
    ``sign_with``, by default the key itself); the manager's answer (``welcome`` or ``error``)."""
    challenge = json.loads(await ws.receive_str(timeout=5))
    hello = json.loads(P.make_hello(sign_with or key, challenge["chain_id"], bytes.fromhex(challenge["nonce"]), worker,
                                    pool=P.challenge_pool_key(challenge)))
    hello["address"] = P.format_address(key.address)
    await ws.send_str(json.dumps(hello))
    return json.loads(await ws.receive_str(timeout=5))


@contextlib.asynccontextmanager
async def started(config: ManagerConfig, **kw: Any) -> AsyncIterator[Manager]:
    """A manager started without ``run`` (chain ``ponas-test``, seeded rng, silent), then
    stopped."""
    manager = Manager(config, rng=random.Random(1), report=lambda line: None, chain_id="ponas-test", **kw)
    await manager.start()
    try:
        yield manager
    finally:
        await manager.stop()


def made_up_round(height: int = 1, *, opened: float | None = None, reward: int = 0) -> RoundInfo:
    """A regtest round on the digits task's NAS-Bench-201 space in its commit phase."""
    now = time.time() if opened is None else opened
    return RoundInfo(height, b"\x01" * 32, b"\x02" * 32, "nb201", "regtest", "commit", now, now + 60, None, 0, 4, 200,
                     None, reward)


async def send_share(ws: aiohttp.ClientWebSocketResponse, sid: int, job: int, genotype: str, *, seed: int = 1,
                     validation: int = 150, weights_hash: str = "ab" * 32,
                     seen: list[dict[str, Any]] | None = None) -> str:
    """Send one share and wait for its answer: ``"accept"`` or the reason it was refused. Other
    messages that come first (``want``, a new ``job``) go to ``seen`` if given."""
    await ws.send_str(P.encode("share", id=sid, job=job, genotype=genotype, seed=seed, validation=validation,
                               weights_hash=weights_hash, seconds=0.3))
    while True:
        msg = json.loads(await ws.receive_str(timeout=5))
        if msg["type"] in ("accept", "reject") and msg.get("id") == sid:
            return "accept" if msg["type"] == "accept" else str(msg["reason"])
        if seen is not None:
            seen.append(msg)
