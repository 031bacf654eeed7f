"""Model work of one process takes turns (consensus.engines.ponas.train._ModelTurns): one
thread at a time; a waiting scoring goes before waiting trainings, and trainings go first come,
first served. Threads and events only, no model: the order is what is tested."""

from __future__ import annotations

import threading
import time

from consensus.engines.ponas.train import _ModelTurns


def _waiting(turns: _ModelTurns, n: int, timeout: float = 5.0) -> None:
    """Wait until ``n`` threads wait for a turn."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with turns._cond:
            if len(turns._queue) + turns._scorings_waiting == n:
                return
        time.sleep(0.001)
    raise AssertionError(f"{n} threads never waited")


def test_one_at_a_time_scoring_first_then_trainings_in_arrival_order() -> None:
    turns = _ModelTurns()
    order: list[str] = []
    inside = [0]
    most = [0]

    def work(name: str, scoring: bool) -> None:
        with turns.turn(scoring=scoring):
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            order.append(name)
            time.sleep(0.005)
            inside[0] -= 1

    release = threading.Event()

    def holder() -> None:
        with turns.turn():
            order.append("holder")
            release.wait(5)

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    while not order:
        time.sleep(0.001)
    for i, (name, scoring) in enumerate([("train-1", False), ("train-2", False), ("score", True), ("train-3", False)]):
        t = threading.Thread(target=work, args=(name, scoring))
        t.start()
        threads.append(t)
        _waiting(turns, i + 1)
    release.set()
    for t in threads:
        t.join(5)
    assert order == ["holder", "score", "train-1", "train-2", "train-3"]
    assert most[0] == 1
    with turns.turn(scoring=True):  # free again: taken at once
        pass
