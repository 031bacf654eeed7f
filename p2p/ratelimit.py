"""A token bucket, sans I/O: the per-peer flood control counts messages and bytes with two.

The bucket starts full (``burst`` tokens) and refills at ``rate`` tokens per second of the
injected clock, so tests drive it without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable


class TokenBucket:
    __slots__ = ("rate", "burst", "_tokens", "_last", "_clock")

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def take(self, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough; False (and nothing spent) if not."""
        now = self._clock()
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = max(self._last, now)
        if cost > self._tokens:
            return False
        self._tokens -= cost
        return True

    @property
    def tokens(self) -> float:
        return self._tokens


__all__ = ["TokenBucket"]
