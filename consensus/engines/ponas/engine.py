"""The ``ponas`` consensus engine: blocks won by neural-architecture search.

* seal (cheap): the close in the block is signed by the round's closer and its test key is
  the beacon's next key after the parent's close; the block's commitment is in the close and
  signed; the header, with the seal's salt, opens the commitment's sealed digest; the
  genotype parses.
* work (expensive, last, after the state transition): the model checks of
  :mod:`.verify` on the round's test set, with retraining under the ``retrain`` policy.
* fork choice: :func:`.rounds.fork_weight`, so that among blocks of one round the best
  score wins, then the lower tiebreak (:func:`.rounds.tiebreak`); a longer chain outweighs any
  score.

The built-in task is the genesis parameters' ``task``: ``digits``, or ``mnist1d``, whose data
derive from the genesis hash and the block's epoch and whose scores and retrains are bit-exact
(:mod:`.verify`); a ``mnist1d`` node pins the exact kernels in :meth:`PonasEngine.warm_up`,
which must be the process's first torch use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from consensus.engines.ponas.rounds import BUILTIN_TASK, check_candidate, check_close, fork_weight, seal_tiebreak
from consensus.errors import InvalidBlock, InvalidParams, InvalidRound
from consensus.params import ChainParams
from consensus.state import ChainView
from consensus.types import Block, Header

if TYPE_CHECKING:
    from consensus.engines.ponas.verify import Verdict, Verifier


class PonasEngine:
    name = "ponas"

    def __init__(self, params: ChainParams, *, retrain: bool = True, verifier: Verifier | None = None) -> None:
        """``retrain=False`` skips the retrain check (an operator's choice for fast replays of
        blocks it already verified, like Bitcoin Core's assumevalid); it is on by default.
        ``verifier`` replaces the model checks (tests inject a no-proof one, as py-evm's
        ``NoProofConsensus``); by default the real :class:`~.verify.Verifier`."""
        from consensus.engines.ponas.verify import Verifier

        if params.ponas.task == "digits":
            from consensus.engines.ponas.data import split_hash

            if params.ponas.data_split_hash != split_hash():
                raise InvalidParams(
                    "bad-data-split",
                    "this installation's digits split differs from the genesis file's (another scikit-learn data file?)",
                )
        self.params = params
        self.pp = params.ponas
        self.retrain = retrain
        self.verifier = verifier if verifier is not None else Verifier(self.pp, self.genesis_hash)

    @property
    def genesis_hash(self) -> bytes:
        """The hash of this chain's genesis block (what a ``mnist1d`` chain's data derive from)."""
        from consensus.chain import genesis_block  # consensus.chain imports the engines' interface

        return genesis_block(self.params).header.hash()

    def warm_up(self) -> None:
        """Run the model code once, at start-up (see :meth:`.verify.Verifier.warm_up`). For a
        ``mnist1d`` chain it first pins the exact kernels (:func:`.exact.pin_kernels`), so the
        node calls it before any other torch operation of the process."""
        if self.pp.task == "mnist1d":
            from consensus.engines.ponas.exact import pin_kernels

            pin_kernels()
        self.verifier.warm_up()

    def previous_key(self, parent: Header, chain: ChainView) -> tuple[bytes, int]:
        """The test key (and its index) of the close that made ``parent``; the beacon's
        anchor for the genesis block."""
        key, index, _time = self.previous_close(parent, chain)
        return key, index

    def previous_close(self, parent: Header, chain: ChainView) -> tuple[bytes, int, int]:
        """The test key, key index and timestamp of the close that made ``parent``; the beacon's
        anchor, 0 and the genesis time for the genesis block."""
        if parent.height == 0:
            return self.pp.beacon_anchor, 0, self.params.genesis_time
        block = chain.get_block(parent.hash())
        if block is None or block.proof is None:
            raise InvalidBlock("unknown-parent", "the parent's round seal is not available")
        close = block.proof.close
        return close.test_key, close.key_index, close.timestamp

    def validate_seal(self, block: Block, parent: Header, chain: ChainView) -> None:
        header = block.header
        if header.bits or header.nonce:
            raise InvalidBlock("bad-seal", "a ponas block carries no hash proof of work")
        if block.proof is None:
            raise InvalidBlock("no-commitment", "a ponas block carries its round seal")
        prev_key, prev_index, prev_time = self.previous_close(parent, chain)
        try:
            check_close(block.proof.close, self.params.chain_id, self.pp, prev_key=prev_key, prev_key_index=prev_index,
                        prev_time=prev_time)
        except InvalidRound as exc:
            raise InvalidBlock(exc.reason, exc.detail) from None
        check_candidate(block, self.params.chain_id, self.pp)
        if header.task_id != BUILTIN_TASK:
            raise InvalidBlock("unknown-task", "only the built-in task exists yet")
        from consensus.engines.ponas.space import GenotypeError

        try:
            self.verifier.space.decode(header.genotype)
        except GenotypeError as exc:
            raise InvalidBlock("bad-genotype", exc.detail) from None
        if header.score > self.pp.test_set_size:
            raise InvalidBlock("bad-score", f"score {header.score} above the test set's {self.pp.test_set_size}")
        self._check_new_work(header, parent, chain)

    def _check_new_work(self, header: Header, parent: Header, chain: ChainView) -> None:
        """``repeated-work``: on a task with epochs (``mnist1d``), a (genotype, seed) pair that
        a block of this branch already carries in the same task epoch earns nothing again. In one
        epoch the training data are the same, so the pair's exact training gives the same weights
        byte for byte: the block would be a copy of work already paid for (free to make once
        the chain has shown it). In another epoch the data differ and the same pair is new work."""
        spent = self.spent_work(parent, chain, header.height)
        if (header.genotype, header.seed) in spent:
            raise InvalidBlock("repeated-work", f"block {spent[(header.genotype, header.seed)]} of this task epoch "
                                                f"already carries this genotype with seed {header.seed}")

    def spent_work(self, parent: Header, chain: ChainView, height: int) -> dict[tuple[str, int], int]:
        """The (genotype, seed) pairs that the blocks of ``parent``'s branch in the task epoch of
        ``height`` carry, each with its block's height: what a block at ``height`` may not
        repeat (empty for a task without epochs). Reads at most ``epoch_rounds - 1`` headers."""
        epoch = self.pp.task_epoch(height)
        spent: dict[tuple[str, int], int] = {}
        if epoch is None:
            return spent
        ancestor: Header | None = parent
        while ancestor is not None and ancestor.height > 0 and self.pp.task_epoch(ancestor.height) == epoch:
            spent.setdefault((ancestor.genotype, ancestor.seed), ancestor.height)
            ancestor = chain.get_header(ancestor.parent)
        return spent

    @property
    def retrains(self) -> bool:
        """Whether the work check retrains the candidate (the task's policy, unless the
        operator turned retraining off)."""
        return self.retrain and self.pp.policy == "retrain"

    def work_verdict(self, block: Block, weights: bytes, retrain: bool | None = None) -> Verdict:
        """The expensive part of the work check, as a value: the model checks of :mod:`.verify`
        (with retraining under the ``retrain`` policy) for ``block`` and its ``weights``. Pure
        and thread-safe, so a node computes it off its event loop and hands it to
        :meth:`validate_work`. ``retrain=False``: the evaluation alone (a round candidate on
        arrival). Raises :class:`InvalidBlock` with the model's reason."""
        h = block.header
        if block.proof is None:
            raise InvalidBlock("no-commitment", "a ponas block carries its round seal")
        if not weights:
            raise InvalidBlock("missing-weights", "the block's model weights are not available")
        return self.verifier.verify(weights, h.genotype, h.weights_hash, h.seed, h.score, block.proof.close.test_key,
                                    self.retrain if retrain is None else retrain, height=h.height)

    def validate_work(
        self, block: Block, parent: Header, chain: ChainView, weights: bytes | None = None, verdict: object = None,
    ) -> None:
        """The model check, last: ``verdict`` (from :meth:`work_verdict`) must be the one for
        this block, with retraining when the policy asks for it; without one it is computed
        here, from ``weights`` or the stored weights."""
        header = block.header
        assert block.proof is not None  # validate_seal ran first
        if verdict is None:
            if weights is None:
                weights = chain.get_weights(header.weights_hash)
            if weights is None:
                raise InvalidBlock("missing-weights", "the block's model weights are not available")
            verdict = self.work_verdict(block, weights)
        from consensus.engines.ponas.verify import Verdict

        judged = (header.weights_hash, header.genotype, header.seed, header.score, block.proof.close.test_key)
        if not isinstance(verdict, Verdict) or (verdict.weights_hash, verdict.genotype, verdict.seed, verdict.claimed,
                                                verdict.test_key) != judged:
            raise InvalidBlock("bad-verdict", "the verdict handed to the import is not this block's")
        if self.retrains and not verdict.retrained:
            raise InvalidBlock("bad-verdict", "the task's policy asks for retraining and the verdict has none")

    def block_work(self, block: Block) -> int:
        return fork_weight(block.header, seal_tiebreak(block.proof))

    def next_work(self, parent: Header, chain: ChainView) -> dict[str, Any]:
        return {
            "engine": self.name,
            "task_id": BUILTIN_TASK.hex(),
            "space": self.pp.space,
            "recipe": self.pp.recipe,
            "task": self.pp.task,
            "commit_window": self.pp.commit_window,
            "reveal_window": self.pp.reveal_window,
        }
