"""A no-proof ``ponas`` verifier, after py-evm's ``NoProofConsensus``: round tests that are not
about the model run every rule of a round (close, beacon key, commitment, Merkle proof, header
against commitment, body, state, fork choice) without training or scoring a model.

:class:`NoProofVerifier` keeps the checks that are not about the model (the weights are the
committed ones, within the chain's size limit) and takes the claimed score as the score. Inject
it with :func:`noproof_engine` into ``Node(..., engine=...)`` or ``Chain(..., engine=...)``.
Tests about the model, training or verification themselves keep the real
:class:`~consensus.engines.ponas.verify.Verifier`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from consensus.chain import genesis_block
from consensus.engines.ponas.engine import PonasEngine
from consensus.engines.ponas.verify import Verdict, Verifier
from consensus.errors import InvalidBlock
from consensus.params import ChainParams, PonasParams
from node.chain import Chain
from node.storage.kv import open_datadir


class NoProofVerifier(Verifier):
    """Checks the weights' hash and size, never loads, scores or trains a model."""

    def __init__(self, params: PonasParams) -> None:
        super().__init__(params)  # the space (genotypes are still parsed by the seal) and recipe
        self.verified: list[tuple[str, int, int]] = []  # (genotype, seed, claimed), for tests

    def warm_up(self) -> None:
        """Nothing to warm: no model code runs."""

    def evaluate(self, weights: bytes, genotype: str, weights_hash: bytes, test_key: bytes) -> int:
        """The weights' checks that are not about the model; there is no score to recompute, so 0."""
        if hashlib.sha256(weights).digest() != weights_hash:
            raise InvalidBlock("bad-weights-hash", "the weights are not the committed ones")
        if len(weights) > self.params.max_weights_bytes:
            raise InvalidBlock("weights-too-large", f"{len(weights)} > {self.params.max_weights_bytes} bytes")
        return 0

    def retrain(self, genotype: str, seed: int) -> tuple[bytes, object]:
        raise AssertionError("the no-proof verifier never retrains: verify() takes the claim")

    def verify(
        self, weights: bytes, genotype: str, weights_hash: bytes, seed: int, claimed: int, test_key: bytes,
        retrain: bool, *, height: int | None = None,
    ) -> Verdict:
        """The claim taken as the score; under the ``retrain`` policy, as the retrained score too."""
        self.evaluate(weights, genotype, weights_hash, test_key)
        self.verified.append((genotype, seed, claimed))
        retrained = retrain and self.params.policy == "retrain"
        return Verdict(weights_hash, genotype, seed, claimed, test_key, claimed, claimed if retrained else None, False)


def noproof_engine(params: ChainParams) -> PonasEngine:
    """A ``ponas`` engine whose model checks are the no-proof ones."""
    return PonasEngine(params, verifier=NoProofVerifier(params.ponas))


@contextmanager
def open_noproof_chain(
    datadir: str | Path, params: ChainParams, clock: Callable[[], float] = time.time
) -> Iterator[Chain]:
    """Like :func:`node.generate.open_chain`, with the no-proof engine; always closes."""
    dd = open_datadir(str(datadir), params.chain_id, genesis_block(params).header.hash())
    try:
        yield Chain(dd.kv, params, engine=noproof_engine(params), clock=clock)
    finally:
        dd.close()


__all__ = ["NoProofVerifier", "noproof_engine", "open_noproof_chain"]
