"""The pool logic's error type (pure modules :mod:`pool.shares` and :mod:`pool.schedule`)."""

from __future__ import annotations

__all__ = ["PoolError"]


class PoolError(ValueError):
    """A bad request to the pool's accounting or scheduling logic.

    ``reason`` is a short stable code, ``detail`` a human explanation:

    - ``bad-share``: a malformed :class:`~pool.shares.Share` or one out of ``seq`` order;
    - ``bad-window``: a bad PPLNS window size or persisted form;
    - ``bad-split``: a coinbase split request out of range (negative or oversized reward,
      ppm outside ``0..1_000_000``, fee plus bonus over 100 %, bad addresses or weights);
    - ``bad-schedule``: a bad scheduler parameter or call argument (time, score, location);
    - ``bad-member``: a member id that is not a non-empty string;
    - ``unknown-member``: a member the scheduler never saw or that has left;
    - ``bad-throughput``: a negative or non-finite throughput.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)
