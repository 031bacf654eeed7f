"""Length-prefixed frames, sans I/O.

A frame is a 4-byte big-endian payload length followed by the payload. The parser never
touches a socket: the network layer feeds it whatever bytes arrived and gets back the complete
payloads (aiohttp's ``feed_data`` pattern), so it is tested byte by byte without an event loop.

The length is checked as soon as its four bytes are in, before any of the payload is buffered:
a peer announcing a 2 GiB frame is dropped after 4 bytes, not after we stored them.

Bitcoin Core caps a message at 4,000,000 bytes. Our blocks travel with their model weights
(``max_weights_bytes`` is up to 4 MiB on devnet) in one ``block`` message, so the default cap is
8 MiB; it is a parameter for the network to choose.
"""

from __future__ import annotations

from p2p.errors import ProtocolError

HEADER_SIZE = 4
#: Default largest payload: room for a block plus its weights.
MAX_FRAME = 8 * 1024 * 1024
#: Bitcoin Core's largest message, for reference and for peers that want its cap.
BITCOIN_MAX_MESSAGE = 4_000_000
_LENGTH_LIMIT = 2**32 - 1


def encode_frame(payload: bytes) -> bytes:
    """The frame carrying ``payload``. An empty or over-4-GiB payload is a programming error."""
    n = len(payload)
    if not 0 < n <= _LENGTH_LIMIT:
        raise ValueError(f"a frame carries 1 to {_LENGTH_LIMIT} bytes, not {n}")
    return n.to_bytes(HEADER_SIZE, "big") + bytes(payload)


class FrameDecoder:
    """Turns a byte stream into payloads. ``feed`` returns the payloads completed by ``data``
    and keeps any partial frame. It raises :class:`ProtocolError` (``oversized-frame``,
    ``empty-frame``) at the first bad length; after that the stream is unusable and every
    further ``feed`` raises the same error."""

    __slots__ = ("max_frame", "_buf", "_error")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if not 0 < max_frame <= _LENGTH_LIMIT:
            raise ValueError(f"max_frame must be in 1..{_LENGTH_LIMIT}")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes, max_count: int | None = None) -> list[bytes]:
        """Add ``data``; return the completed payloads, at most ``max_count`` of them (the rest
        stay buffered, their lengths not yet checked: a handshake takes one frame at a time,
        each under the limit in force for it)."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        try:
            while len(buf) - pos >= HEADER_SIZE and (max_count is None or len(out) < max_count):
                n = int.from_bytes(buf[pos : pos + HEADER_SIZE], "big")
                if n == 0:
                    raise ProtocolError("empty-frame", "a frame of length 0")
                if n > self.max_frame:
                    raise ProtocolError("oversized-frame", f"{n} > {self.max_frame} bytes")
                end = pos + HEADER_SIZE + n
                if len(buf) < end:
                    break
                out.append(bytes(buf[pos + HEADER_SIZE : end]))
                pos = end
        except ProtocolError as exc:
            self._error = exc
            self._buf = bytearray()  # drop what the hostile stream made us hold
            raise
        if pos:
            del buf[:pos]
        return out


__all__ = ["HEADER_SIZE", "MAX_FRAME", "BITCOIN_MAX_MESSAGE", "encode_frame", "FrameDecoder"]
