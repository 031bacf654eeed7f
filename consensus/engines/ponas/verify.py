"""Candidate verification: the model checks of a ``ponas`` block, cheapest first.

1. the weights are the ones committed (their hash), within the chain's size limit, and load
   as exactly the declared architecture (names, shapes, dtypes; finite values) without ever
   being unpickled;
2. evaluated on the round's test set (derived from the close's test key), the count of
   correct predictions equals the claimed score within ``score_tolerance`` samples;
3. with the ``retrain`` policy: the architecture is retrained from scratch with the task's
   pinned recipe and the declared seed on the public training data. Identical weights pass at
   once; otherwise the retrained model's score must reach the claim within the tolerance. A
   model that saw anything but the public training data (the round's test digits, say)
   scores above what its recipe can give and fails here, as NASChain's validators catch
   test-set leakage, but deterministically.

Every failure raises :class:`~consensus.errors.InvalidBlock` with a stable reason.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from consensus.errors import InvalidBlock
from consensus.params import PonasParams


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :meth:`Verifier.verify` found for one candidate: it names what it judged (weights,
    architecture, seed, claim, test key), so the import can check that a verdict computed
    elsewhere (off the event loop) is the one for the block it connects."""

    weights_hash: bytes
    genotype: str
    seed: int
    claimed: int
    test_key: bytes
    score: int  # correct predictions on the round's test set, recomputed
    retrained_score: int | None  # the retrained model's score, when retraining ran
    identical: bool  # the retrained weights were byte-identical to the candidate's

    @property
    def retrained(self) -> bool:
        return self.retrained_score is not None


class Verifier:
    """Checks candidates for one chain's built-in task; caches test sets and retrainings.

    Thread-safe: a node retrains in one worker thread and scores candidates in another (the
    caches are locked; models are built per call)."""

    def __init__(self, params: PonasParams) -> None:
        from consensus.engines.ponas.recipe import PRESETS
        from consensus.engines.ponas.space import get_space

        self.params = params
        try:
            self.recipe = PRESETS[params.recipe]
            self.space = get_space(params.space)
        except (KeyError, ValueError) as exc:
            from consensus.errors import InvalidParams

            raise InvalidParams("bad-task", f"unknown recipe or space: {exc}") from None
        self._test_sets: OrderedDict[bytes, object] = OrderedDict()
        self._retrained: OrderedDict[tuple[str, int], tuple[bytes, object]] = OrderedDict()
        self._lock = threading.Lock()  # guards both caches

    def warm_up(self) -> None:
        """Run the model code once, at start-up: a tiny training, a weights round trip and a
        scoring. Torch imports much of itself lazily on first use (autograd, sympy...), and
        done at the first candidate that stalls a busy machine for seconds."""
        import dataclasses

        from consensus.engines.ponas.data import digits_splits
        from consensus.engines.ponas.train import score, train
        from consensus.engines.ponas.weights import load_weights

        genotype = self.space.encode(self.space.size - 1)
        recipe = dataclasses.replace(self.recipe, epochs=1, train_subset=64)
        _model, data = train(self.space.name, genotype, recipe, 0)
        score(load_weights(data, self.space.name, genotype), digits_splits().validation.subset(16))

    def test_set(self, test_key: bytes):  # type: ignore[no-untyped-def]
        from consensus.engines.ponas.data import round_test_set

        with self._lock:
            ds = self._test_sets.get(test_key)
        if ds is None:
            ds = round_test_set(test_key, self.params.test_set_size)  # a pure function of the key
            with self._lock:
                self._test_sets[test_key] = ds
                while len(self._test_sets) > 4:
                    self._test_sets.popitem(last=False)
        return ds

    def evaluate(self, weights: bytes, genotype: str, weights_hash: bytes, test_key: bytes) -> int:
        """Checks 1 and the recomputed score (before comparing it with any claim)."""
        from consensus.engines.ponas.train import score
        from consensus.engines.ponas.weights import WeightsError, load_weights

        if hashlib.sha256(weights).digest() != weights_hash:
            raise InvalidBlock("bad-weights-hash", "the weights are not the committed ones")
        try:
            model = load_weights(weights, self.space.name, genotype, self.params.max_weights_bytes)
        except WeightsError as exc:
            raise InvalidBlock(exc.reason, exc.detail) from None
        return score(model, self.test_set(test_key))  # type: ignore[arg-type]

    def retrain(self, genotype: str, seed: int) -> tuple[bytes, object]:
        """Weights hash and model of a from-scratch training with the pinned recipe."""
        from consensus.engines.ponas.train import train
        from consensus.engines.ponas.weights import weights_hash

        key = (genotype, seed)
        with self._lock:
            found = self._retrained.get(key)
        if found is None:
            model, data = train(self.space.name, genotype, self.recipe, seed)
            found = (weights_hash(data), model)
            with self._lock:
                self._retrained[key] = found
                while len(self._retrained) > 8:
                    self._retrained.popitem(last=False)
        return found

    def verify(
        self, weights: bytes, genotype: str, weights_hash: bytes, seed: int, claimed: int, test_key: bytes,
        retrain: bool,
    ) -> Verdict:
        from consensus.engines.ponas.train import score

        tolerance = self.params.score_tolerance
        got = self.evaluate(weights, genotype, weights_hash, test_key)
        if abs(got - claimed) > tolerance:
            raise InvalidBlock("bad-score", f"claimed {claimed}, the weights score {got} (tolerance {tolerance})")
        judged = (weights_hash, genotype, seed, claimed, test_key)
        if not (retrain and self.params.policy == "retrain"):
            return Verdict(*judged, got, None, False)
        retrained_hash, model = self.retrain(genotype, seed)
        if retrained_hash == weights_hash:
            return Verdict(*judged, got, got, True)
        again = score(model, self.test_set(test_key))  # type: ignore[arg-type]
        if claimed > again + tolerance:
            raise InvalidBlock(
                "retrain-mismatch",
                f"claimed {claimed}, retraining with the pinned recipe and seed {seed} scores {again}: "
                "the model did not come from the recipe on the public training data",
            )
        return Verdict(*judged, got, again, False)
