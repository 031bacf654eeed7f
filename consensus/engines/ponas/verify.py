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

For a ``mnist1d`` chain (``PonasParams.task``) the checks are exact, on the data of the round's
epoch (:class:`.mnist1d.ChainData`, derived from the genesis hash; the epoch from the block's
height):

2. the score is :func:`.train.score_sequences` on the round's test set (``test_set_size``
   samples generated from the close's test key with the epoch's task parameters) and must
   equal the claim (the chain's tolerance is 0) -> ``bad-score``;
3. with the ``retrain`` policy, the architecture is retrained with the pinned recipe and the
   declared seed on the epoch's training set, bit-exactly (:mod:`.exact`), and the retrained
   weights' hash must equal the committed weights hash -> ``retrain-mismatch`` otherwise (no
   score comparison: any other training data, or any other procedure, gives other bytes).

Exact training and scoring need the process pinned to the exact kernels before its first torch
operation (:func:`.exact.pin_kernels`): :meth:`Verifier.warm_up` pins first, and every exact
step pins again (idempotent); a process that ran torch before raises
:class:`~.exact.ExactnessError` (``kernels-not-pinned``: our own error, not the block's).

Every failure of the block raises :class:`~consensus.errors.InvalidBlock` with a stable reason.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from consensus.errors import InvalidBlock, InvalidParams
from consensus.params import PonasParams

if TYPE_CHECKING:
    from consensus.engines.ponas.mnist1d import ChainData


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

    ``genesis`` (the genesis block's hash) is what a ``mnist1d`` chain's data derive from; a
    digits chain does not need it. Thread-safe: a node retrains in one worker thread and scores
    candidates in another (the caches are locked; models are built per call)."""

    def __init__(self, params: PonasParams, genesis: bytes | None = None) -> None:
        from consensus.engines.ponas.recipe import PRESETS
        from consensus.engines.ponas.space import get_space

        self.params = params
        try:
            self.recipe = PRESETS[params.recipe]
            self.space = get_space(params.space)
        except (KeyError, ValueError) as exc:
            raise InvalidParams("bad-task", f"unknown recipe or space: {exc}") from None
        self.exact = params.task == "mnist1d"
        self.data: ChainData | None = None
        if self.exact and genesis is not None:
            from consensus.engines.ponas.mnist1d import ChainData

            self.data = ChainData(genesis, params.train_size, params.validation_size, params.test_set_size,
                                  params.epoch_rounds)
        self._test_sets: OrderedDict[tuple[bytes, int], object] = OrderedDict()
        self._retrained: OrderedDict[tuple[str, int, int], tuple[bytes, object]] = OrderedDict()
        self._lock = threading.Lock()  # guards both caches

    def _chain_data(self) -> ChainData:
        if self.data is None:
            raise InvalidParams("bad-task", "a mnist1d verifier needs the chain's genesis hash")
        return self.data

    def _epoch(self, height: int | None) -> int:
        """The task epoch of the round at ``height`` (0 for digits, which has none)."""
        if not self.exact:
            return 0
        if height is None:
            raise InvalidParams("bad-task", "mnist1d: verification needs the block's height (its epoch)")
        return self._chain_data().epoch(height)

    def _pin(self) -> None:
        """For an exact task: pin the kernels (idempotent) before this step's first torch op."""
        if self.exact:
            from consensus.engines.ponas.exact import pin_kernels

            pin_kernels()

    def warm_up(self) -> None:
        """Run the model code once, at start-up: a tiny training, a weights round trip and a
        scoring. Torch imports much of itself lazily on first use (autograd, sympy...), and
        done at the first candidate that stalls a busy machine for seconds. For ``mnist1d``
        this pins the exact kernels first, so it must be the process's first torch use."""
        import dataclasses

        from consensus.engines.ponas.weights import load_weights

        self._pin()
        genotype = self.space.encode(self.space.size - 1)
        recipe = dataclasses.replace(self.recipe, epochs=1, train_subset=64)
        if self.exact:
            from consensus.engines.ponas.train import score_sequences, train_sequences

            data = self._chain_data()
            x, y = data.train(0)
            _model, weights = train_sequences(genotype, recipe, 0, x, y, space_name=self.space.name)
            vx, vy = data.validation(0)
            score_sequences(load_weights(weights, self.space.name, genotype), vx[:16], vy[:16])
            return
        from consensus.engines.ponas.data import digits_splits
        from consensus.engines.ponas.train import score, train

        _model, weights = train(self.space.name, genotype, recipe, 0)
        score(load_weights(weights, self.space.name, genotype), digits_splits().validation.subset(16))

    def test_set(self, test_key: bytes, height: int | None = None):  # type: ignore[no-untyped-def]
        """The round's test set: a digits :class:`.data.Dataset`, or ``(x, y)`` sequences of the
        round's epoch for ``mnist1d``; a pure function of the key (and the height's epoch)."""
        epoch = self._epoch(height)
        with self._lock:
            ds = self._test_sets.get((test_key, epoch))
        if ds is None:
            if self.exact:
                ds = self._chain_data().test(test_key, epoch)
            else:
                from consensus.engines.ponas.data import round_test_set

                ds = round_test_set(test_key, self.params.test_set_size)
            with self._lock:
                self._test_sets[(test_key, epoch)] = ds
                while len(self._test_sets) > 4:
                    self._test_sets.popitem(last=False)
        return ds

    def _score(self, model: object, test_key: bytes, height: int | None) -> int:
        ds = self.test_set(test_key, height)
        if self.exact:
            from consensus.engines.ponas.train import score_sequences

            return score_sequences(model, *ds)  # type: ignore[arg-type]
        from consensus.engines.ponas.train import score

        return score(model, ds)  # type: ignore[arg-type]

    def evaluate(
        self, weights: bytes, genotype: str, weights_hash: bytes, test_key: bytes, height: int | None = None,
    ) -> int:
        """Checks 1 and the recomputed score (before comparing it with any claim); ``height``
        (the round's) is needed for ``mnist1d``, whose test set depends on the epoch."""
        from consensus.engines.ponas.weights import WeightsError, load_weights

        if hashlib.sha256(weights).digest() != weights_hash:
            raise InvalidBlock("bad-weights-hash", "the weights are not the committed ones")
        self._epoch(height)  # a missing height fails before any work
        self._pin()
        try:
            model = load_weights(weights, self.space.name, genotype, self.params.max_weights_bytes)
        except WeightsError as exc:
            raise InvalidBlock(exc.reason, exc.detail) from None
        return self._score(model, test_key, height)

    def retrain(self, genotype: str, seed: int, height: int | None = None) -> tuple[bytes, object]:
        """Weights hash and model of a from-scratch training with the pinned recipe (for
        ``mnist1d``: exact, on the training set of the epoch of ``height``)."""
        from consensus.engines.ponas.weights import weights_hash

        epoch = self._epoch(height)
        key = (genotype, seed, epoch)
        with self._lock:
            found = self._retrained.get(key)
        if found is None:
            if self.exact:
                from consensus.engines.ponas.train import train_sequences

                self._pin()
                x, y = self._chain_data().train(epoch)
                model, data = train_sequences(genotype, self.recipe, seed, x, y, space_name=self.space.name)
            else:
                from consensus.engines.ponas.train import train

                model, data = train(self.space.name, genotype, self.recipe, seed)
            found = (weights_hash(data), model)
            with self._lock:
                self._retrained[key] = found
                while len(self._retrained) > 8:
                    self._retrained.popitem(last=False)
        return found

    def verify(
        self, weights: bytes, genotype: str, weights_hash: bytes, seed: int, claimed: int, test_key: bytes,
        retrain: bool, *, height: int | None = None,
    ) -> Verdict:
        """Checks 1-3 for one candidate; ``height`` (the block's) is needed for ``mnist1d``."""
        tolerance = self.params.score_tolerance
        got = self.evaluate(weights, genotype, weights_hash, test_key, height)
        if abs(got - claimed) > tolerance:
            raise InvalidBlock("bad-score", f"claimed {claimed}, the weights score {got} (tolerance {tolerance})")
        judged = (weights_hash, genotype, seed, claimed, test_key)
        if not (retrain and self.params.policy == "retrain"):
            return Verdict(*judged, got, None, False)
        retrained_hash, model = self.retrain(genotype, seed, height)
        if retrained_hash == weights_hash:
            return Verdict(*judged, got, got, True)
        if self.exact:
            raise InvalidBlock(
                "retrain-mismatch",
                f"retraining with the pinned recipe and seed {seed} on the epoch's training data gives weights "
                f"{retrained_hash.hex()[:16]}, not the committed {weights_hash.hex()[:16]} (training is bit-exact)",
            )
        again = self._score(model, test_key, height)
        if claimed > again + tolerance:
            raise InvalidBlock(
                "retrain-mismatch",
                f"claimed {claimed}, retraining with the pinned recipe and seed {seed} scores {again}: "
                "the model did not come from the recipe on the public training data",
            )
        return Verdict(*judged, got, again, False)
