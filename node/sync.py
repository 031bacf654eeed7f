"""Headers-first sync, sans-I/O (after Bitcoin Core's): locator, headers, blocks in flight,
stalls.

A peer whose handshake shows a higher chain is asked for headers after our locator; the
headers must connect to each other and to a block we know, or the peer is discouraged. The
blocks they name are then asked for in batches, at most ``GETBLOCKS_BATCH`` in flight per
peer, the next batch as the previous arrive; when the tip grows and nothing is left to fetch,
headers are asked again until a peer answers none. A block asked for and not delivered in
``STALL_TIMEOUT`` seconds marks its peer as stalling: it is disconnected and the sync goes
on with the best other peer.

Time is a parameter (:meth:`Sync.tick`); the chain is read, never written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from consensus.types import ZERO_HASH, Header
from node.actions import Action, Disconnect, Discourage, PeerRef, Send
from node.chain import Chain
from p2p import messages as M

log = logging.getLogger("ponas.sync")

#: Blocks asked for at once from one peer (Bitcoin Core keeps 16 in flight).
GETBLOCKS_BATCH = 16
#: Headers in one answer (Bitcoin Core's 2,000).
HEADERS_MAX = 2000
#: Seconds a requested block may take before its peer counts as stalling. Blocks carry up to a
#: megabyte of weights, and a node under load answers late: generous, unlike Core's 2 s.
STALL_TIMEOUT = 60.0


def locator(chain: Chain) -> tuple[bytes, ...]:
    """Hashes from the tip back to genesis, dense first then doubling steps (Bitcoin's)."""
    out: list[bytes | None] = []
    step, height = 1, chain.height
    while height > 0 and len(out) < 100:
        out.append(chain.hash_at(height))
        if len(out) >= 10:
            step *= 2
        height -= step
    out.append(chain.genesis_hash)
    return tuple(h for h in out if h is not None)


def headers_after(chain: Chain, loc: Sequence[bytes], stop: bytes) -> list[Header]:
    """The canonical headers after the first locator hash we hold canonical (genesis if
    none), up to ``stop`` or ``HEADERS_MAX``."""
    start = 0
    for h in loc:
        if chain.is_canonical(h):
            start = chain.index[h].header.height + 1
            break
    out = []
    for height in range(start, min(chain.height + 1, start + HEADERS_MAX)):
        found = chain.hash_at(height)
        assert found is not None
        out.append(chain.index[found].header)
        if found == stop:
            break
    return out


class Sync:
    def __init__(self, chain: Chain, stall_timeout: float = STALL_TIMEOUT) -> None:
        self.chain = chain
        self.stall_timeout = stall_timeout
        self.requested: dict[bytes, tuple[PeerRef, float]] = {}  # block hash -> (peer, asked at)
        self.to_fetch: dict[PeerRef, list[bytes]] = {}  # announced by headers, not asked for yet
        self.syncing: set[PeerRef] = set()  # peers asked for headers, answer pending or blocks left
        self.heights: dict[PeerRef, int] = {}  # the height each peer showed (handshake, headers)

    @property
    def active(self) -> bool:
        return bool(self.syncing)

    def in_flight(self, peer: PeerRef) -> int:
        return sum(1 for p, _t in self.requested.values() if p == peer)

    # --- peers --------------------------------------------------------------------------------

    def connected(self, peer: PeerRef, height: int) -> list[Action]:
        self.heights[peer] = height
        return self.request_headers(peer) if height > self.chain.height else []

    def disconnected(self, peer: PeerRef) -> list[Action]:
        """Forget the peer; if it left blocks undelivered, go on with the best other peer."""
        self.heights.pop(peer, None)
        self.syncing.discard(peer)
        self.to_fetch.pop(peer, None)
        lost = [h for h, (p, _t) in self.requested.items() if p == peer]
        for h in lost:
            del self.requested[h]
        return self._resume() if lost else []

    def _resume(self) -> list[Action]:
        ahead = [(height, i, p) for i, (p, height) in enumerate(self.heights.items()) if height > self.chain.height]
        if not ahead:
            return []
        _h, _i, best = max(ahead, key=lambda t: (t[0], -t[1]))
        return self.request_headers(best)

    # --- messages -----------------------------------------------------------------------------

    def request_headers(self, peer: PeerRef) -> list[Action]:
        self.syncing.add(peer)
        return [Send(peer, M.GetHeaders(locator(self.chain), ZERO_HASH))]

    def on_get_headers(self, peer: PeerRef, msg: M.GetHeaders) -> list[Action]:
        return [Send(peer, M.Headers(tuple(headers_after(self.chain, msg.locator, msg.stop))))]

    def on_headers(self, peer: PeerRef, headers: Sequence[Header], now: float) -> list[Action]:
        """Check that the headers connect, then ask for the blocks we lack."""
        if not headers:
            self.syncing.discard(peer)
            return []
        known = self.chain.index
        prev = None
        wanted = []
        for header in headers:
            h = header.hash()
            if prev is not None and header.parent != prev:
                return [Discourage(peer, "bad-headers", "headers do not connect")]
            if prev is None and header.parent not in known:
                return [Discourage(peer, "bad-headers", "the first header's parent is unknown")]
            prev = h
            if h not in known and h not in self.requested:
                wanted.append(h)
        self.heights[peer] = max(self.heights.get(peer, 0), headers[-1].height)
        log.info("headers", extra={"peer": str(peer), "count": len(headers), "wanted": len(wanted)})
        if not wanted:
            self.syncing.discard(peer)
            return []
        self.to_fetch[peer] = wanted
        return self._fetch_more(peer, now)

    def on_block(self, peer: PeerRef, h: bytes, now: float) -> list[Action]:
        """A block arrived: if we asked for it, keep the pipe full."""
        if self.requested.pop(h, None) is None:
            return []
        return self._fetch_more(peer, now)

    def on_not_found(self, peer: PeerRef, hashes: Sequence[bytes]) -> list[Action]:
        """The peer has not got blocks we asked it for (a reorg there): not a stall; forget
        them (the next headers will say what to fetch) and keep the pipe full."""
        for h in hashes:
            if self.requested.get(h, (None, 0.0))[0] == peer:
                del self.requested[h]
        return []

    def after_connect(self, peer: PeerRef, grew: bool) -> list[Action]:
        """The tip grew with a block from ``peer``: when its batch is done, ask for more
        headers (the peer may have more than one answer held)."""
        if grew and peer in self.syncing and not self.requested and not self.to_fetch.get(peer):
            return self.request_headers(peer)
        return []

    def _fetch_more(self, peer: PeerRef, now: float) -> list[Action]:
        """Keep at most ``GETBLOCKS_BATCH`` blocks in flight from ``peer``: ask for the next
        ones as the previous arrive."""
        queue = self.to_fetch.get(peer)
        in_flight = self.in_flight(peer)
        if not queue or in_flight >= GETBLOCKS_BATCH // 2:
            return []
        batch = tuple(queue[: GETBLOCKS_BATCH - in_flight])
        del queue[: len(batch)]
        for h in batch:
            self.requested[h] = (peer, now)
        return [Send(peer, M.GetBlocks(batch))]

    # --- the clock ----------------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """Disconnect peers that hold a requested block past the stall timeout."""
        stalled = {p for p, t in self.requested.values() if now - t > self.stall_timeout}
        out: list[Action] = []
        for peer in stalled:
            log.warning("block download stalled", extra={"peer": str(peer), "timeout": self.stall_timeout})
            out.append(Disconnect(peer, "block-stall"))
            out.extend(self.disconnected(peer))
        return out


__all__ = ["GETBLOCKS_BATCH", "HEADERS_MAX", "STALL_TIMEOUT", "Sync", "headers_after", "locator"]
