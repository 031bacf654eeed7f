"""What the node's sans-I/O protocol asks the service to do.

:class:`~node.core.NodeCore`, :class:`~node.relay.Relay` and :class:`~node.sync.Sync` take the
clock's reading and messages and return these; :mod:`node.service` carries them out (sockets,
worker threads) and feeds what comes back (a verdict, a score) to the core again. A peer is an
opaque, hashable handle here: nothing in the protocol calls it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from consensus.types import Block
from node.chain import Checked
from p2p.messages import Message

PeerRef = Hashable


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``msg`` to ``peer`` (an answer, a request for headers or blocks)."""

    peer: PeerRef
    msg: Message


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``msg`` to every connected peer but ``exclude`` (the one it came from)."""

    msg: Message
    exclude: PeerRef | None = None


@dataclass(frozen=True, slots=True)
class Discourage:
    """The peer sent invalid data: drop and discourage it (one strike), with the reason."""

    peer: PeerRef
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the connection without blame beyond the reason (a stalling download)."""

    peer: PeerRef
    reason: str


@dataclass(frozen=True, slots=True)
class Verify:
    """Compute the engine's work verdict of a checked block off the event loop, then hand it
    to :meth:`~node.core.NodeCore.on_verified` (before the peer's next message)."""

    peer: PeerRef | None
    checked: Checked


@dataclass(frozen=True, slots=True)
class Evaluate:
    """Score a round candidate's model off the event loop, then hand the verdict to
    :meth:`~node.core.NodeCore.on_evaluated` (or the refusal to
    :meth:`~node.core.NodeCore.on_evaluation_failed`). ``held``: a candidate a peer relayed,
    held since and scored now because its claim may win (the peer did not vouch for it)."""

    peer: PeerRef | None
    block: Block
    weights: bytes
    held: bool = False


@dataclass(frozen=True, slots=True)
class Retrain:
    """Retrain the round's best candidate in the background (its full work verdict), then
    hand it to :meth:`~node.core.NodeCore.on_retrained`. Nothing waits for it but the round's
    selection."""

    block: Block
    weights: bytes


@dataclass(frozen=True, slots=True)
class StoreRound:
    """Store the record of round ``height`` (:func:`node.rounds.round_record`: what this node
    saw of it), so the explorer can show the round after a restart."""

    height: int
    record: dict[str, Any]


Action = Send | Broadcast | Discourage | Disconnect | Verify | Evaluate | Retrain | StoreRound

__all__ = ["Action", "Broadcast", "Discourage", "Disconnect", "Evaluate", "PeerRef", "Retrain", "Send", "StoreRound",
           "Verify"]
