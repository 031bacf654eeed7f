"""The round as a miner plays it, in pure functions: parse the node's round object, decide
when to commit, check a template, build the candidate, choose what to reveal, and the model
work (training one architecture, scoring results on the round's test set).

:class:`~pool.driver.RoundDriver` calls these against a node; tests call them without one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from consensus.engines.ponas.rounds import commitments_root, round_seal, sealed_digest
from consensus.errors import ConsensusError
from consensus.types import Block, Commitment, Payout, RoundClose

if TYPE_CHECKING:
    from consensus.engines.ponas.mnist1d import ChainData

#: At most this many seconds before the deadline are kept for the template + commit round trip.
COMMIT_MARGIN_MAX = 2.0
#: ... and at most this share of the commit window (short regtest windows).
COMMIT_MARGIN_SHARE = 0.2


# --- errors ---------------------------------------------------------------------------------


class MinerError(ValueError):
    """Bad local input or an answer that contradicts our request. ``reason`` is stable:
    ``bad-answer``, ``bad-template``, ``header-mismatch``, ``close-mismatch``,
    ``bad-commitments``, ``not-in-close``, ``wrong-engine``, ``no-key-file``, ``bad-key-file``,
    ``no-token-file``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


# --- pure decisions -------------------------------------------------------------------------


def commit_margin(window: float) -> float:
    """Seconds before the deadline at which the miner commits: ``min(2 s, 20% of the window)``."""
    return min(COMMIT_MARGIN_MAX, COMMIT_MARGIN_SHARE * max(0.0, window))


def should_commit(now: float, deadline: float, window: float, have_result: bool, committed: bool) -> bool:
    """Whether to commit now: we have a result that is not committed yet (``committed`` is
    also True when no seq is left), the deadline has not passed, and it is within the margin.

    Committing late lets the search use almost the whole window; the margin leaves time for
    the template and commitment requests.
    """
    if not have_result or committed or now >= deadline:
        return False
    return now >= deadline - commit_margin(window)


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """The round's close as the node announces it (``close`` in the round object)."""

    hash: bytes
    test_key: bytes
    key_index: int
    timestamp: float
    commitments_count: int
    close: RoundClose


@dataclass(frozen=True, slots=True)
class RoundInfo:
    """The round object of ``GET /api/v1/round``."""

    height: int
    parent: bytes
    task_id: bytes
    space: str
    recipe: str
    phase: str
    opened: float
    deadline: float
    reveal_end: float | None
    commitments: int
    max_commitments_per_key: int
    test_set_size: int
    close: CloseInfo | None
    reward: int = 0  # subsidy and the fees a template would take now (base units)
    # The chain's built-in task and its data sizes (PonasParams); a round object without them
    # is a digits chain's.
    task: str = "digits"
    train_size: int = 0
    validation_size: int = 0
    epoch_rounds: int = 0
    # (genotype, seed) pairs already in this round's task epoch: committing one again is refused
    # (repeated-work); empty from a node that does not say
    spent: frozenset[tuple[str, int]] = frozenset()

    def chain_data(self, genesis: bytes | None) -> ChainData | None:
        """A ``mnist1d`` chain's data for the chain of ``genesis`` (its genesis hash, from the
        node's status); None for digits. Raises ``bad-answer`` for mnist1d without a genesis."""
        if self.task != "mnist1d":
            return None
        from consensus.engines.ponas.mnist1d import ChainData

        if genesis is None or len(genesis) != 32:
            raise MinerError("bad-answer", "a mnist1d round needs the chain's genesis hash")
        return ChainData(genesis, self.train_size, self.validation_size, self.test_set_size, self.epoch_rounds)

    @property
    def window(self) -> float:
        """Length of the commit window in seconds."""
        return self.deadline - self.opened

    @property
    def ident(self) -> tuple[int, bytes, bytes, float, float]:
        """What distinguishes one round from another (a retry has a new open and deadline)."""
        return (self.height, self.parent, self.task_id, self.opened, self.deadline)


def _field(data: dict[str, Any], name: str, kinds: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise MinerError("bad-answer", f"field {name!r} missing or of the wrong type: {value!r}"[:200])
    return value


def _hex(data: dict[str, Any], name: str, length: int | None = 32) -> bytes:
    text = _field(data, name, str)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise MinerError("bad-answer", f"field {name!r} is not hex") from None
    if length is not None and len(raw) != length:
        raise MinerError("bad-answer", f"field {name!r} holds {len(raw)} bytes, want {length}")
    return raw


def parse_round(data: Any) -> RoundInfo:
    """Parse and cross-check a round object; raises :class:`MinerError` ``bad-answer``.

    The close is decoded from its canonical encoding and must match the announced hash, test
    key, key index and height, so the miner never reveals against a close it cannot prove.
    """
    if not isinstance(data, dict):
        raise MinerError("bad-answer", "the round is a JSON object")
    number = (int, float)
    close: CloseInfo | None = None
    raw_close = data.get("close")
    if raw_close is not None:
        if not isinstance(raw_close, dict):
            raise MinerError("bad-answer", "close is an object or null")
        encoded = _hex(raw_close, "encoded", None)
        try:
            decoded = RoundClose.decode(encoded)
        except (ConsensusError, ValueError) as exc:
            raise MinerError("bad-answer", f"the close does not decode: {exc}") from None
        announced = _hex(raw_close, "hash")
        if decoded.hash() != announced or decoded.test_key != _hex(raw_close, "test_key"):
            raise MinerError("bad-answer", "the close's hash or test key differ from its encoding")
        close = CloseInfo(
            hash=announced,
            test_key=decoded.test_key,
            key_index=decoded.key_index,
            timestamp=float(raw_close.get("timestamp") or decoded.timestamp),
            commitments_count=decoded.commitments_count,
            close=decoded,
        )
    reveal_end = data.get("reveal_end")
    if reveal_end is not None and (isinstance(reveal_end, bool) or not isinstance(reveal_end, number)):
        raise MinerError("bad-answer", "reveal_end is a number or null")
    info = RoundInfo(
        height=_field(data, "height", int),
        parent=_hex(data, "parent"),
        task_id=_hex(data, "task_id"),
        space=_field(data, "space", str),
        recipe=_field(data, "recipe", str),
        phase=_field(data, "phase", str),
        opened=float(_field(data, "opened", number)),
        deadline=float(_field(data, "deadline", number)),
        reveal_end=None if reveal_end is None else float(reveal_end),
        commitments=_field(data, "commitments", int),
        max_commitments_per_key=_field(data, "max_commitments_per_key", int),
        test_set_size=_field(data, "test_set_size", int),
        close=close,
        reward=_field(data, "reward", int),
        spent=_spent(data.get("spent", [])),
        **_task_fields(data),
    )
    if close is not None and close.close.height != info.height:
        raise MinerError("bad-answer", f"the close is for height {close.close.height}, the round {info.height}")
    return info


def _spent(items: Any) -> frozenset[tuple[str, int]]:
    """The round's ``spent`` pairs: a list of at most 100,000 ``[genotype, seed]``."""
    if not isinstance(items, list) or len(items) > 100_000:
        raise MinerError("bad-answer", "spent is a list of [genotype, seed]")
    out = set()
    for item in items:
        if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str)
                or isinstance(item[1], bool) or not isinstance(item[1], int)):
            raise MinerError("bad-answer", "spent is a list of [genotype, seed]")
        out.add((item[0], item[1]))
    return frozenset(out)


def _task_fields(data: dict[str, Any]) -> dict[str, Any]:
    task = data.get("task", "digits")
    if task == "digits":
        return {}
    if task != "mnist1d":
        raise MinerError("bad-answer", f"unknown task {task!r}"[:200])
    sizes = {name: _field(data, name, int) for name in ("train_size", "validation_size", "epoch_rounds")}
    if not all(1 <= v <= 1_000_000 for v in sizes.values()):
        raise MinerError("bad-answer", "mnist1d sizes out of range")
    return {"task": task, **sizes}


@dataclass(frozen=True, slots=True)
class TrainResult:
    """One trained architecture (weights are the canonical safetensors bytes)."""

    genotype: str
    seed: int
    validation: int
    weights_hash: bytes
    weights: bytes = field(repr=False)
    seconds: float = 0.0


def check_template(block: Block, rnd: RoundInfo, result: TrainResult, payouts: Sequence[Payout]) -> None:
    """The node's template must be for this round, declare exactly our result, and pay exactly
    the ``payouts`` we asked for (the last one, asked with amount 0, takes the rest).

    Raises :class:`MinerError` ``bad-template``: the tip moved under us, or a node that does
    not do what we asked (we would otherwise sign a commitment to someone else's payout).
    """
    h = block.header
    want = (rnd.height, rnd.parent, rnd.task_id, result.genotype, result.weights_hash, result.seed)
    got = (h.height, h.parent, h.task_id, h.genotype, h.weights_hash, h.seed)
    if got != want:
        names = ("height", "parent", "task", "genotype", "weights_hash", "seed")
        diff = [n for n, a, b in zip(names, got, want) if a != b]
        raise MinerError("bad-template", f"the template differs from the request in {', '.join(diff)}")
    got_payouts = block.coinbase.payouts
    same = len(got_payouts) == len(payouts) and all(
        g.address == w.address and (g.amount == w.amount or i == len(payouts) - 1)
        for i, (g, w) in enumerate(zip(got_payouts, payouts)))
    if h.payouts_root != block.coinbase.payouts_root() or not same:
        raise MinerError("bad-template", "the template's coinbase pays someone else")
    if block.proof is not None or h.score or h.bits or h.nonce:
        raise MinerError("bad-template", "a template is unsealed")


def build_candidate(
    template_block: Block,
    close: RoundClose,
    commitments: Sequence[Commitment],
    my_commitment: Commitment,
    salt: bytes,
    score: int,
    chain_id: str,
) -> Block:
    """The candidate block: the template with ``round_close`` and ``score`` set and the seal
    proving ``my_commitment`` is in ``close`` (``commitments`` in the close's order), opened by
    ``salt``.

    Raises :class:`MinerError`: ``header-mismatch`` (the template and salt do not open the
    commitment), ``close-mismatch`` (the close is for another round), ``bad-commitments`` (the
    list does not hash to the close's root and count), ``not-in-close`` (the closer left us out).
    """
    h, c = template_block.header, my_commitment
    if (c.height, c.parent, c.task_id) != (h.height, h.parent, h.task_id) or sealed_digest(h, salt, chain_id) != c.sealed:
        raise MinerError("header-mismatch", "the commitment does not bind this template")
    if (close.height, close.parent, close.task_id) != (h.height, h.parent, h.task_id):
        raise MinerError("close-mismatch", f"the close is for height {close.height} on another parent or task")
    if len(commitments) != close.commitments_count or commitments_root(commitments) != close.commitments_root:
        raise MinerError("bad-commitments", "the commitments do not hash to the close's root and count")
    mine = c.hash()
    index = next((i for i, other in enumerate(commitments) if other.hash() == mine), None)
    if index is None:
        raise MinerError("not-in-close", f"the close's {len(commitments)} commitments do not include ours")
    header = replace(h, round_close=close.hash(), score=score)
    return replace(template_block, header=header, proof=round_seal(close, commitments, index, salt))


def choose_reveal(scored: Sequence[tuple[int, int]]) -> int:
    """Which of our included commitments to reveal, given ``(test score, tiebreak)`` pairs
    (:func:`consensus.engines.ponas.rounds.tiebreak`): the best score, then the lower
    tiebreak (the selection rule's). Returns the position in ``scored``."""
    if not scored:
        raise ValueError("nothing to reveal")
    return min(range(len(scored)), key=lambda i: (-scored[i][0], scored[i][1]))


# --- model work (torch; runs in a worker thread) --------------------------------------------


class _Aborted(Exception):
    """The miner is stopping: a training gives up at its next epoch."""


def train_one(
    space_name: str,
    recipe_name: str,
    genotype: str,
    seed: int,
    device: str = "cpu",
    abort: threading.Event | None = None,
    *,
    data: ChainData | None = None,
    epoch: int = 0,
) -> TrainResult:
    """Train ``genotype`` with the pinned recipe and ``seed``; score it on the validation split.

    ``data`` is a ``mnist1d`` chain's data (None: the digits task): then the training is exact
    (pinned kernels, on CPU whatever ``device`` says: the weights must hash as a verifier's
    retrain) on the training set of ``epoch``, and the validation score is on that epoch's
    validation split. The process must not have run torch before its first exact training
    (:func:`consensus.engines.ponas.exact.pin_kernels`, called here first)."""
    from consensus.engines.ponas.recipe import PRESETS
    from consensus.engines.ponas.train import train_for_task
    from consensus.engines.ponas.weights import weights_hash

    recipe = PRESETS[recipe_name]

    def progress(done: int, total: int, loss: float) -> None:
        if abort is not None and abort.is_set():
            raise _Aborted()

    started = time.monotonic()
    trained = train_for_task(space_name, genotype, recipe, seed, data=data, epoch=epoch, device=device,
                             progress=progress)
    weights, validation = trained.weights, trained.validation_correct
    return TrainResult(genotype, seed, validation, weights_hash(weights), weights, time.monotonic() - started)


def round_scores(
    results: Sequence[TrainResult], space_name: str, test_key: bytes, test_set_size: int,
    *, data: ChainData | None = None, epoch: int = 0,
) -> list[int]:
    """Each result's score on the round's test set (as every verifier recomputes it: the
    weights loaded back from their bytes, scored on ``round_test_set(test_key, size)``, or for
    a ``mnist1d`` chain's ``data`` exactly on the test set of ``test_key`` and ``epoch``)."""
    from consensus.engines.ponas.weights import load_weights

    if data is not None:
        from consensus.engines.ponas.exact import pin_kernels
        from consensus.engines.ponas.train import score_sequences

        pin_kernels()
        x, y = data.test(test_key, epoch)
        return [score_sequences(load_weights(r.weights, space_name, r.genotype), x, y) for r in results]
    from consensus.engines.ponas.data import round_test_set
    from consensus.engines.ponas.train import score

    test_set = round_test_set(test_key, test_set_size)
    return [score(load_weights(r.weights, space_name, r.genotype), test_set) for r in results]


# --- local files ----------------------------------------------------------------------------


def _decode_hex_object(kind: Any, data: Any, name: str) -> Any:
    if not isinstance(data, dict):
        raise MinerError("bad-answer", f"expected an object with {name!r}")
    raw = _hex(data, name, None)
    try:
        return kind.decode(raw)
    except (ConsensusError, ValueError) as exc:
        raise MinerError("bad-answer", f"{name} does not decode: {exc}") from None


