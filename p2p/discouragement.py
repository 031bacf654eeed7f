"""Discouragement: one strike, in memory, for a while (Bitcoin Core since 2024).

Any :class:`~p2p.errors.PeerFault` (a protocol error or misbehaviour) disconnects the peer and
discourages it for ``duration`` seconds (default 10 minutes). There are no points: a partial
score looks arbitrary and an attacker just stays under it. Entries live in memory only and
expire; the table is bounded (the oldest entry goes first).

Keying - who exactly is discouraged:

* A routable or private address is keyed by its **IP alone**, as in Bitcoin Core. The IP is
  the one identity a remote peer cannot choose for free, so an inbound connection from a
  discouraged IP is refused the moment it is accepted, and outbound dials to it are skipped.
* A **loopback** address (127.0.0.0/8, ::1) is shared by every process of the machine - every
  node of a local devnet and every test peer - so keying it by IP would let one bad local
  process cut a node off from all the others. Loopback peers are keyed by
  **(IP, node_id)**: the random id each node sends in its ``Hello``. A node id is chosen by the
  peer and so proves nothing on the open internet, which is why it is used only where the
  address space is the operator's own machine (anyone who can open loopback sockets already
  controls the host). A loopback connection can only be checked once its ``Hello`` arrives, so
  it is refused at the handshake (``discouraged``) instead of at accept time.
* A loopback peer that fails **before** a valid ``Hello`` has no identity: it is disconnected
  and logged but cannot be discouraged (keying it by IP would discourage the whole machine;
  keying it by its ephemeral source port would discourage nothing). Such a peer costs us one
  connection and a handshake timeout at most.

Keying by ``(host, listen_port)`` was considered and rejected: the listen port is as
self-declared as the node id, is 0 for nodes that do not listen, and is reused by a restarted
honest node, which would inherit its predecessor's strike.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_DURATION = 600.0
DEFAULT_MAX_ENTRIES = 50_000

Key = tuple[str, bytes | None]


def normalize_host(host: str) -> str:
    """The canonical text of an IP (IPv4-mapped IPv6 becomes IPv4); a name is kept as is."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(normalize_host(host)).is_loopback
    except ValueError:
        return False


def discouragement_key(host: str, node_id: bytes | None) -> Key | None:
    """The table key for a peer, or None when it cannot be keyed (see the module docstring)."""
    ip = normalize_host(host)
    if is_loopback(ip):
        return (ip, bytes(node_id)) if node_id else None
    return (ip, None)


@dataclass(frozen=True, slots=True)
class Discouraged:
    """One entry of the table, as the API shows it. Times are on the table's clock."""

    host: str
    node_id: bytes | None
    reason: str
    detail: str
    since: float
    until: float

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "host": self.host, "node_id": self.node_id.hex() if self.node_id else None, "reason": self.reason,
            "detail": self.detail, "expires_in": max(0.0, round(self.until - now, 3)),
        }


class Discouragement:
    """The table. ``clock`` is injected (monotonic seconds by default)."""

    def __init__(
        self, duration: float = DEFAULT_DURATION, clock: Callable[[], float] = time.monotonic,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.duration = duration
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Key, Discouraged] = OrderedDict()

    def discourage(self, host: str, node_id: bytes | None, reason: str, detail: str = "") -> Discouraged | None:
        """Record a strike; returns the entry, or None for a peer that cannot be keyed."""
        key = discouragement_key(host, node_id)
        if key is None:
            return None
        now = self._clock()
        entry = Discouraged(key[0], key[1], reason, detail, now, now + self.duration)
        self._entries.pop(key, None)
        self._entries[key] = entry
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entry

    def _live(self, key: Key | None) -> bool:
        if key is None:
            return False
        entry = self._entries.get(key)
        if entry is None:
            return False
        if entry.until <= self._clock():
            del self._entries[key]
            return False
        return True

    def is_discouraged(self, host: str, node_id: bytes | None = None) -> bool:
        """Whether a peer at ``host`` claiming ``node_id`` is discouraged. A non-loopback IP is
        discouraged whatever the id; a loopback peer only under its own id."""
        return self._live(discouragement_key(host, node_id))

    def refuses_connection_from(self, host: str) -> bool:
        """The accept-time check: only an IP-keyed (non-loopback) entry can refuse at once."""
        return not is_loopback(host) and self.is_discouraged(host)

    def prune(self) -> None:
        now = self._clock()
        for key in [k for k, e in self._entries.items() if e.until <= now]:
            del self._entries[key]

    def entries(self) -> list[Discouraged]:
        self.prune()
        return list(self._entries.values())

    def remove(self, host: str, node_id: bytes | None = None) -> bool:
        key = discouragement_key(host, node_id)
        return key is not None and self._entries.pop(key, None) is not None

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        self.prune()
        return len(self._entries)


__all__ = ["Discouragement", "Discouraged", "discouragement_key", "is_loopback", "normalize_host", "DEFAULT_DURATION"]
