"""A no-proof miner: the real round driver (:class:`pool.driver.RoundDriver`, the code
``ponas mine`` runs: template, commit, close, reveal over the node's API) with a candidate
source that trains nothing. Each round it commits one architecture with arbitrary weight bytes
and reveals it with a fixed claimed score, which only a node with the no-proof verifier
(:mod:`tests.framework.noproof`) accepts. For tests about wallets, pools' bookkeeping or the
node, not about the model."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from consensus.crypto import PrivateKey
from consensus.types import Block, Payout
from pool.driver import RoundDriver
from pool.rounds import RoundInfo, TrainResult
from tests.ponas_builders import GENOTYPES


class NoProofSource:
    """A :class:`pool.driver.CandidateSource` that pays ``address`` the whole coinbase and
    offers one untrained candidate per round (another seed each round)."""

    def __init__(self, address: bytes, genotype: str = GENOTYPES[0]) -> None:
        self.address, self.genotype = address, genotype
        self.won_heights: list[int] = []
        self._results: dict[int, TrainResult] = {}

    def prepare(self, rnd: RoundInfo) -> bool:
        return True

    def set_training(self, allowed: bool) -> None:
        pass

    def candidates(self, rnd: RoundInfo, k: int) -> list[TrainResult]:
        result = self._results.get(rnd.height)
        if result is None:
            seed = len(self._results) + 1  # a (genotype, seed) already in the chain earns nothing again
            weights = hashlib.sha256(f"{self.genotype}/{seed}/{rnd.height}".encode()).digest() * 4
            result = self._results[rnd.height] = TrainResult(
                self.genotype, seed, 100, hashlib.sha256(weights).digest(), weights)
        return [result][:k]

    def rest_address(self) -> bytes:
        return self.address

    def payouts(self, result: TrainResult, reward: int) -> list[Payout]:
        return [Payout(self.address, reward)]

    def round_opened(self, rnd: RoundInfo) -> None:
        pass

    def committed(self, rnd: RoundInfo, result: TrainResult, block: Block) -> None:
        pass

    def won(self, height: int, block_hash: bytes, score: int) -> None:
        self.won_heights.append(height)


def claimed_scores(score: int) -> Callable[..., Any]:
    """The driver's scorer hook: every result "scores" ``score`` on the round's test set."""
    def scorer(fn: Callable[..., Any], results: list[TrainResult], *args: Any) -> list[int]:
        return [score for _ in results]

    return scorer


def noproof_miner(node_url: str, address: bytes, token: str, key: PrivateKey | None = None, score: int = 100,
                  report: Callable[[str], None] | None = None) -> RoundDriver:
    """A solo miner for ``address`` against the node at ``node_url``: ``await miner.run(stop)``."""
    return RoundDriver(node_url, NoProofSource(address), key, token, report=report or (lambda line: None),
                       scorer=claimed_scores(score))


__all__ = ["NoProofSource", "claimed_scores", "noproof_miner"]
