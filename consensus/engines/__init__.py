"""Consensus engines: the pluggable part of the rules.

An engine says what makes a block's seal valid, how much a block weighs in fork choice, and
what work a miner must do next. The genesis file names the engine; :func:`get_engine` returns
it. The node never hard-wires one: ``pow`` (classic hashing, the benchmarks' baseline) and
``ponas`` (proof of neural-architecture search) both plug in here.
"""

from __future__ import annotations

from typing import Any, Protocol

from consensus.errors import InvalidParams
from consensus.params import ChainParams
from consensus.state import ChainView
from consensus.types import Block, Header


class Engine(Protocol):
    name: str

    def validate_seal(self, block: Block, parent: Header, chain: ChainView) -> None:
        """The cheap checks of the block's proof (signatures, targets, proofs of membership).

        Raise :class:`~consensus.errors.InvalidBlock` if it is bad."""

    def work_verdict(self, block: Block, weights: bytes) -> object:
        """The expensive part of the work check as a value (for ``ponas``: the model's
        evaluation and retraining), pure and thread-safe, so that a node computes it off its
        event loop; ``None`` for an engine whose work check is cheap. Raises
        :class:`~consensus.errors.InvalidBlock` if the work is bad."""

    def validate_work(
        self, block: Block, parent: Header, chain: ChainView, weights: bytes | None = None, verdict: object = None,
    ) -> None:
        """The check of the proof's work, run last, after the body and the state transition
        passed: with ``verdict`` from :meth:`work_verdict` (it must be this block's), or
        computing it here from ``weights`` (or the stored ones)."""

    def block_work(self, block: Block) -> int:
        """The block's weight in fork choice; a branch weighs the sum of its blocks."""

    def next_work(self, parent: Header, chain: ChainView) -> dict[str, Any]:
        """What a miner must do to extend ``parent`` (e.g. ``{"bits": ...}``)."""


def get_engine(params: ChainParams) -> Engine:
    if params.engine == "pow":
        from consensus.engines.pow import PowEngine

        return PowEngine(params)
    if params.engine == "ponas":
        from consensus.engines.ponas.engine import PonasEngine

        return PonasEngine(params)
    raise InvalidParams("bad-engine", f"no engine named {params.engine!r}")
