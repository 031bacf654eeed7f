"""The error tree of the P2P layer.

Every error carries a short, stable ``reason`` (``oversized-frame``, ``wrong-genesis``,
``flood``) that logs, the peer list and the API repeat verbatim, and a free ``detail`` for
humans. Four different situations get four different types (trio's and Bitcoin Core's split):

* :class:`ProtocolError` - the peer sent bytes that are not our protocol (a bad frame, an
  undecodable or unknown message, a broken handshake order). Disconnect and discourage.
* :class:`Misbehaving` - the bytes decode but the content is unacceptable (an invalid block,
  headers that do not connect, a flood). Raised by the node's handler or by the flood control.
  Disconnect and discourage.
* :class:`HandshakeRefused` - an honest peer we cannot talk to (another chain or genesis, an
  unsupported version, ourselves, a duplicate, no free slot). Disconnect, no discouragement.
* :class:`ConnectionClosed` - the peer or the network broke the connection (EOF, reset,
  timeout); also a ``ConnectionError``. :class:`PeerClosedByUs` - we closed it ourselves
  (shutdown, discouragement, keepalive); using the peer afterwards is a local mistake.

:class:`PeerFault` is the common base of the first two: "the peer's fault, one strike".
"""

from __future__ import annotations


class P2PError(Exception):
    """Base of every P2P error. ``reason`` is stable; ``detail`` is for humans."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class PeerFault(P2PError):
    """The peer is at fault: the connection is dropped and the peer discouraged."""


class ProtocolError(PeerFault, ValueError):
    """The peer sent something malformed (framing, encoding, message order)."""


class Misbehaving(PeerFault):
    """Well-formed but unacceptable content: an invalid block, a flood, a lie."""


class HandshakeRefused(P2PError):
    """An honest but incompatible or unwanted peer (``wrong-chain``, ``wrong-genesis``,
    ``bad-version``, ``self-connection``, ``duplicate``, ``discouraged``, ``too-many-inbound``)."""


class ConnectionClosed(P2PError, ConnectionError):
    """The peer or the network closed the connection (``eof``, ``connection-lost``); a
    ``ConnectionError`` for callers expecting one."""


class PeerClosedByUs(P2PError):
    """We closed this connection ourselves: ``shutdown``, ``closed`` (asked by the handler), a
    fault's reason (the peer was discouraged), ``handshake-timeout``, ``ping-timeout`` (a silence
    we no longer wait out) or ``send-buffer-full`` (a peer that does not read)."""


__all__ = [
    "P2PError", "PeerFault", "ProtocolError", "Misbehaving", "HandshakeRefused", "ConnectionClosed", "PeerClosedByUs",
]
