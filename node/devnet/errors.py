"""The devnet's error type and its reason codes.

``DevnetError`` subclasses :class:`~consensus.errors.ConsensusError`, the type the ``ponas``
entry point catches: it prints ``error: REASON: DETAIL`` and exits with status 1. The reason
codes are stable (scripts and tests match them); the detail is for humans.

=================  =======================================================================
``bad-args``       a flag out of range, or flags that do not go together
``port-in-use``    a port the devnet needs is taken by another process
``no-devnet``      the directory holds no ``devnet.json``
``bad-manifest``   ``devnet.json`` is not a devnet manifest of this format
``devnet-running`` a process of the devnet in the directory runs (up, init --fresh)
``stale-devnet``   the directory holds an earlier, stopped devnet and ``--fresh`` was not given
``dir-not-empty``  the directory exists and is not a devnet's
``devnet-mismatch`` a shape flag asks for another devnet than the stopped one it would resume
``process-died``   a started process exited (the detail carries its log's tail)
``start-timeout``  a started process did not answer in time
``stalled``        no block came in for a long while
``stop-failed``    ``down`` left a process running
=================  =======================================================================
"""

from __future__ import annotations

from consensus.errors import ConsensusError

REASONS = frozenset({
    "bad-args", "port-in-use", "no-devnet", "bad-manifest", "devnet-running", "stale-devnet", "dir-not-empty",
    "devnet-mismatch", "process-died", "start-timeout", "stalled", "stop-failed",
})


class DevnetError(ConsensusError):
    """Something about a devnet (its arguments, directory, ports or processes) that stops a
    ``ponas devnet`` command. ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
