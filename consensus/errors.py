"""The error tree of the consensus layer.

Every rejection carries a short, stable ``reason`` code (``bad-nonce``, ``bad-txs-root``, ...)
that logs, the wire and the API repeat verbatim, in the manner of Bitcoin Core's reject
reasons. The classes also subclass ``ValueError`` so that callers who only expect the standard
error still catch them.
"""

from __future__ import annotations


class ConsensusError(ValueError):
    """Base of every rule violation. ``reason`` is stable; ``detail`` is for humans."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class DecodeError(ConsensusError):
    """Bytes that are not the canonical encoding of a known object."""


class InvalidTransaction(ConsensusError):
    """A transaction that breaks a rule on its own or against a state."""


class InvalidBlock(ConsensusError):
    """A block (header, seal or body) that breaks a rule."""


class InvalidParams(ConsensusError):
    """A genesis file or chain-parameter set that is malformed."""


class InvalidRound(ConsensusError):
    """A commitment, round close or candidate that breaks a round rule."""
