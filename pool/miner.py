"""The solo miner: a local search that trains architectures, played by the round driver.

``ponas mine --node URL --address ADDR`` runs :class:`Miner`: a :class:`LocalSearch` (the
search strategy proposes genotypes, a worker thread trains them one at a time with the task's
pinned recipe, and the best by validation score is what the driver commits) under a
:class:`~pool.driver.RoundDriver` that pays the whole coinbase to ``ADDR``.

Training never depends on the parent block, so the best result (and the strategy's state)
carry over from round to round while the task's space and recipe stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consensus.crypto import PrivateKey, format_address, parse_address
from consensus.types import Block, Payout
from pool.driver import DriverStats, RoundDriver
from pool.rounds import RoundInfo, TrainResult, _Aborted, train_one
from pool.search import STRATEGIES, SearchError, SearchStrategy, make_strategy

__all__ = ["LocalSearch", "Miner", "MinerStats"]

log = logging.getLogger("ponas.miner")


@dataclass
class MinerStats(DriverStats):
    trainings: int = 0


@dataclass
class _Search:
    """The search of one task (space and recipe): kept across rounds."""

    space: str
    recipe: str
    strategy: SearchStrategy
    best: TrainResult | None = None
    trainings: int = 0


class LocalSearch:
    """A :class:`~pool.driver.CandidateSource` that trains here and pays one address."""

    def __init__(self, address: bytes, strategy_name: str, device: str, rng: random.Random) -> None:
        if strategy_name not in STRATEGIES:
            raise SearchError("bad-strategy", f"unknown strategy {strategy_name!r}; use one of {', '.join(STRATEGIES)}")
        self.address = address
        self.strategy_name = strategy_name
        self.device = device
        self.rng = rng
        self.trainings = 0
        self.on_better: Callable[[], None] = lambda: None
        self._search: _Search | None = None
        self._unknown_task: tuple[str, str] | None = None
        self._training_allowed = asyncio.Event()
        self._abort = threading.Event()
        self._torch = threading.Lock()  # torch's deterministic mode is process-global: one job at a time

    # -- CandidateSource ---------------------------------------------------------------------

    def prepare(self, rnd: RoundInfo) -> bool:
        return self._search_for(rnd) is not None

    def set_training(self, allowed: bool) -> None:
        if allowed:
            self._training_allowed.set()
        else:
            self._training_allowed.clear()

    def best(self, rnd: RoundInfo) -> TrainResult | None:
        return self._search.best if self._search is not None else None

    def rest_address(self) -> bytes:
        return self.address

    def payouts(self, result: TrainResult, reward: int) -> list[Payout]:
        return [Payout(self.address, reward)]

    def round_opened(self, rnd: RoundInfo) -> None:
        pass

    def committed(self, rnd: RoundInfo, result: TrainResult, block: Block) -> None:
        pass

    def won(self, height: int, block_hash: bytes, score: int) -> None:
        pass

    # -- training ----------------------------------------------------------------------------

    def locked(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._torch:
            return fn(*args)

    def _search_for(self, rnd: RoundInfo) -> _Search | None:
        """The search for the round's task; a new task (space or recipe) starts a new search."""
        from consensus.engines.ponas.recipe import PRESETS
        from consensus.engines.ponas.space import GenotypeError, get_space

        s = self._search
        if s is not None and (s.space, s.recipe) == (rnd.space, rnd.recipe):
            return s
        try:
            space = get_space(rnd.space)
            if rnd.recipe not in PRESETS:
                raise GenotypeError("unknown-recipe", rnd.recipe)
        except GenotypeError:
            if self._unknown_task != (rnd.space, rnd.recipe):  # log once, not on every poll
                self._unknown_task = (rnd.space, rnd.recipe)
                log.error("unknown-task", extra={"space": rnd.space, "recipe": rnd.recipe})
            return None
        self._search = _Search(rnd.space, rnd.recipe, make_strategy(self.strategy_name, space, self.rng))
        log.info("search-start", extra={"space": rnd.space, "recipe": rnd.recipe, "strategy": self.strategy_name,
                                        "size": space.size})
        return self._search

    async def run(self, stop: asyncio.Event) -> None:
        """Train until ``stop``; a training in progress is abandoned at its next epoch."""
        try:
            await self._train_loop(stop)
        finally:
            self._abort.set()

    async def _train_loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            search = self._search
            if not self._training_allowed.is_set() or search is None:
                await self._wait_gate(stop)
                continue
            genotype = search.strategy.propose()
            seed = self.rng.getrandbits(32)
            try:
                result: TrainResult = await asyncio.to_thread(
                    self.locked, train_one, search.space, search.recipe, genotype, seed, self.device, self._abort
                )
            except _Aborted:
                return
            except Exception as exc:  # e.g. CUDA out of memory: log, pause, go on
                failures += 1
                pause = min(30.0, 2.0**failures)
                log.error("training-failed", extra={"genotype": genotype, "error": f"{type(exc).__name__}: {exc}",
                                                    "retry_s": pause})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                continue
            failures = 0
            search.strategy.observe(genotype, result.validation)
            search.trainings += 1
            self.trainings += 1
            improved = search.best is None or result.validation > search.best.validation
            if improved:
                search.best = result
                self.on_better()  # the driver may want to commit it now
            best = search.best
            assert best is not None
            log.info("trained", extra={"n": search.trainings, "genotype": genotype, "seed": seed,
                                       "validation": result.validation, "seconds": f"{result.seconds:.2f}",
                                       "best": best.validation, "new_best": improved})

    async def _wait_gate(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._training_allowed.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()


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
    ) -> None:
        self.address = parse_address(address)  # BadAddress (reason bad-address) on a typo
        self.address_text = format_address(self.address)
        self.search = LocalSearch(self.address, strategy_name, device, rng if rng is not None else random.Random())
        self.driver = RoundDriver(node_url, self.search, key, token, clock, token_file=token_file, report=report,
                                  poll_interval=poll_interval, scorer=self.search.locked)
        self.search.on_better = self.driver.wake
        self.node_url = self.driver.node_url
        self.key = self.driver.key
        self.strategy_name = strategy_name
        self.device = device

    async def run(self, stop: asyncio.Event) -> MinerStats:
        """Mine until ``stop`` is set; returns the counters."""
        trainer = asyncio.create_task(self.search.run(stop), name="ponas-miner-train")
        try:
            driven = await self.driver.run(stop)
        finally:
            # Let a training in its worker thread stop at its next epoch and end before we
            # return: torch's deterministic mode and thread count are process-wide settings
            # that a training left running would still hold.
            self.search._abort.set()
            try:
                await asyncio.wait_for(asyncio.shield(trainer), 60)
            except (TimeoutError, asyncio.CancelledError):
                trainer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await trainer
        return MinerStats(**vars(driven), trainings=self.search.trainings)
