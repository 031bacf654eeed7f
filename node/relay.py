"""Relay, sans-I/O: what this node has seen, what a refusal costs the peer, whom to tell.

* **Seen set.** The hash of every transfer, commitment, close and block this node relayed or
  admitted, with the time it was first seen; a message seen before is not handled or relayed
  again. Entries older than ``ttl`` seconds are pruned, and past ``max_seen`` the oldest goes.
* **Benign refusals.** Some reasons are no fault of the peer that relayed the data (timing,
  races between peers, a full mempool): they are ignored. Every other refusal discourages it.
* **Whom.** Everything new goes to every connected peer but the one it came from; transfers
  are collected and sent as batches (one message per thousand) on the next tick, so a burst
  stays inside peers' message-rate limits.

Time is a parameter; nothing here touches a socket.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from consensus.types import Transfer
from node.actions import Action, Broadcast, Discourage, PeerRef, Send
from p2p import messages as M

#: Reasons that are no fault of the peer that relayed a block or candidate (timing, races).
BENIGN = frozenset({
    "time-too-new", "wrong-close", "bad-prevblk", "unknown-parent", "close-ahead", "close-other-parent",
    "commit-too-late", "commit-wrong-round", "round-moved", "duplicate-seq", "txn-already-in-mempool",
    "bad-nonce", "insufficient-funds", "txn-mempool-conflict", "mempool-full", "too-many-commitments",
    "missing-weights", "round-final", "penalised-miner", "round-full", "reveal-window-open",
    # a close judged against this node's own view of the round (its attempts, its clock): an
    # honest relayer with another view (a restart, a clock a little off) passes it on in good faith
    "wrong-key-index", "retry-too-early", "retry-with-candidates", "close-too-early", "close-in-future",
    # the reveal set: a relayer that has not got the set (or the close) yet, or a clock a little off
    "not-in-reveal-set", "not-round-winner", "candidate-refused-before", "reveal-set-unknown-close",
    "reveal-set-in-future",
    # the backup closer's turn, judged on this node's timeline of the round
    "backup-too-early", "closer-timed-out",
    # a race for a round's free places (each node fills them in its own order of arrival)
    "free-places-full",
})

#: How long a hash stays in the seen set (seconds).
SEEN_TTL = 3600.0
#: At most this many hashes in the seen set (the oldest go first): a peer that sends junk
#: fast cannot make it grow for an hour (about 100 bytes an entry: some 20 MB at most).
MAX_SEEN = 200_000


class Relay:
    def __init__(self, ttl: float = SEEN_TTL, max_seen: int = MAX_SEEN) -> None:
        self.ttl = ttl
        self.max_seen = max_seen
        self.seen: OrderedDict[bytes, float] = OrderedDict()  # in order of first sight
        self.peers: dict[PeerRef, None] = {}  # connected peers, in connection order
        self._txs: list[tuple[Transfer, PeerRef | None]] = []  # admitted since the last flush

    # --- peers ------------------------------------------------------------------------------

    def connected(self, peer: PeerRef) -> None:
        self.peers[peer] = None

    def disconnected(self, peer: PeerRef) -> None:
        self.peers.pop(peer, None)

    # --- the seen set -----------------------------------------------------------------------

    def is_seen(self, h: bytes) -> bool:
        return h in self.seen

    def mark(self, h: bytes, now: float) -> None:
        self.first_sight(h, now)

    def first_sight(self, h: bytes, now: float) -> bool:
        """True the first time ``h`` is seen (and remember it, forgetting the oldest hash past
        ``max_seen``)."""
        if h in self.seen:
            return False
        self.seen[h] = now
        if len(self.seen) > self.max_seen:
            self.seen.popitem(last=False)  # O(1); a plain dict's first key is found by a scan
        return True

    def prune(self, now: float) -> int:
        cutoff = now - self.ttl
        before = len(self.seen)
        self.seen = OrderedDict((h, t) for h, t in self.seen.items() if t > cutoff)
        return before - len(self.seen)

    # --- what to send -----------------------------------------------------------------------

    def announce(self, h: bytes, msg: M.Message, now: float, origin: PeerRef | None = None) -> list[Action]:
        """Tell every peer but ``origin`` about ``msg`` (hash ``h``), once."""
        return [Broadcast(msg, origin)] if self.first_sight(h, now) else []

    def queue_tx(self, tx: Transfer, h: bytes, now: float, origin: PeerRef | None = None) -> None:
        self.mark(h, now)
        self._txs.append((tx, origin))

    def flush_txs(self) -> list[Action]:
        """The transfers admitted since the last flush, as batches to every peer but each
        transfer's origin."""
        pending, self._txs = self._txs, []
        out: list[Action] = []
        for target in self.peers:
            txs = [tx for tx, origin in pending if origin != target]
            for i in range(0, len(txs), M.MAX_TX_BATCH):
                out.append(Send(target, M.TxBatch(tuple(txs[i : i + M.MAX_TX_BATCH]))))
        return out

    @staticmethod
    def refused(peer: Hashable, reason: str, detail: str = "") -> list[Action]:
        """What a refusal of the peer's data costs it: nothing if the reason is benign."""
        return [] if reason in BENIGN else [Discourage(peer, reason, detail)]


__all__ = ["BENIGN", "MAX_SEEN", "Relay", "SEEN_TTL"]
