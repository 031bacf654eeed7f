"""Solo mining is a pool of one (``ponas mine``): a manager and one member in one process.

:class:`Miner` starts a :class:`~pool.manager.Manager` with no fee that pays the whole coinbase
to ``address`` and listens on an ephemeral loopback port, and one
:class:`~pool.member.Member` that connects to it over the real websocket protocol. So a solo
miner searches, streams shares, has its best result verified and committed, and reveals
through exactly the code a pool runs: there is one mining code path.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from consensus.crypto import PrivateKey, format_address, parse_address
from pool.driver import DriverStats
from pool.manager import Manager, ManagerConfig
from pool.member import Member
from pool.search import STRATEGIES, SearchError

__all__ = ["Miner", "MinerStats"]


@dataclass
class MinerStats(DriverStats):
    trainings: int = 0


class Miner:
    """A solo miner following one node: ``address`` (``pn1...``) receives the whole coinbase;
    ``key`` signs the commitments (an ephemeral key when None); ``token`` is the API write
    token (``token_file`` lets a 401 re-read it); ``rng`` drives the search and the training
    seeds; ``report`` receives one human line per round (default: print to stdout)."""

    def __init__(
        self,
        node_url: str,
        address: str,
        strategy_name: str = "evolution",
        device: str = "cpu",
        key: PrivateKey | None = None,
        token: str | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        *,
        token_file: str | None = None,
        report: Callable[[str], None] | None = None,
        poll_interval: float | None = None,
        commit_keys: int = 1,
    ) -> None:
        self.address = parse_address(address)  # BadAddress (reason bad-address) on a typo
        self.address_text = format_address(self.address)
        if strategy_name not in STRATEGIES:
            raise SearchError("bad-strategy", f"unknown strategy {strategy_name!r}; use one of {', '.join(STRATEGIES)}")
        self.rng = rng if rng is not None else random.Random()
        self._dir = tempfile.mkdtemp(prefix="ponas-solo-")
        config = ManagerConfig(node_url, self.address, self._dir, fee_ppm=0, finder_bonus_ppm=0, solo=True,
                               token=token, token_file=token_file, verify_rate=0.0, retrain_rate=0.0,
                               commit_keys=commit_keys)
        self.manager = Manager(config, key=key, rng=random.Random(self.rng.getrandbits(64)), clock=clock, report=report)
        self.manager.driver.poll_interval = poll_interval
        self.member = Member("ws://127.0.0.1:0/ws", PrivateKey.generate(), "solo", strategy_name, device,
                             random.Random(self.rng.getrandbits(64)))
        self.node_url = self.manager.driver.node_url
        self.key = self.manager.key
        self.strategy_name = strategy_name
        self.device = device

    async def run(self, stop: asyncio.Event) -> MinerStats:
        """Mine until ``stop`` is set; returns the counters."""
        try:
            await self.manager.start()
            self.member.url = f"ws://127.0.0.1:{self.manager.port}/ws"
            done = asyncio.Event()  # the member stops after the manager, not before
            member = asyncio.create_task(self.member.run(done), name="ponas-solo-member")
            try:
                await self.manager.run(stop)
            finally:
                done.set()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(member, 60)
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
        return MinerStats(**vars(self.manager.driver.stats), trainings=self.member.stats.trainings)
