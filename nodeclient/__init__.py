"""The node's REST API from a client's side (docs/api.md): one client for the wallet, the
pool's manager and members and the solo miner (a neutral package: ``wallet`` and ``pool`` both
import it, and it imports nothing of theirs).

:class:`NodeClient` sends JSON over HTTP (aiohttp) to one node. Its errors are separated as the
style guide asks: :class:`NodeRejected` is a 4xx answer (the node refused the request with a
stable reason; retrying it as is will not help), :class:`NodeUnavailable` is no usable answer
(connection refused or reset, a timeout, a 5xx or a garbled body; worth retrying with
:class:`Backoff`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import aiohttp

__all__ = [
    "Backoff",
    "NodeClient",
    "NodeError",
    "NodeRejected",
    "NodeUnavailable",
    "TOKEN_ENV",
    "decode_answer",
    "normalise_url",
    "read_token",
    "session",
]

TOKEN_ENV = "PONAS_TOKEN"
#: Per-request limits (seconds). A candidate carries up to a few MB of weights.
HTTP_TIMEOUT = 15.0
HTTP_CONNECT_TIMEOUT = 3.0


def session(timeout: float = HTTP_TIMEOUT) -> aiohttp.ClientSession:
    """A client session with this module's time limits."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=HTTP_CONNECT_TIMEOUT))


class NodeError(Exception):
    """A request to the node failed; ``reason`` is stable, ``detail`` for humans."""

    def __init__(self, reason: str, detail: str = "", status: int | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.status = status
        super().__init__(f"{reason}: {detail}" if detail else reason)


class NodeRejected(NodeError):
    """The node answered 4xx: it refused this request (``reason`` from its error body)."""


class NodeUnavailable(NodeError):
    """No usable answer: connection refused or reset, timeout, 5xx, or a garbled body."""


def read_token(token_file: str | None, env: dict[str, str] | None = None) -> str | None:
    """The API write token: the content of ``token_file`` (the node's ``DATADIR/.cookie``),
    else ``$PONAS_TOKEN``, else None."""
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as fh:
                return fh.read().strip() or None
        except OSError as exc:
            raise NodeError("no-token-file", f"cannot read {token_file}: {exc.strerror or exc}") from None
    value = (os.environ if env is None else env).get(TOKEN_ENV, "").strip()
    return value or None


class NodeClient:
    """JSON over HTTP to one node. 2xx -> the decoded body; 4xx -> :class:`NodeRejected` with
    the node's reason; anything else -> :class:`NodeUnavailable`. A 401 (no token) or 403
    (``bad-token``) re-reads the token file once: a restarted node writes a new cookie."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, token: str | None = None, token_file: str | None = None
    ) -> None:
        self.session = session
        self.base_url = normalise_url(base_url)
        self.token = token
        self.token_file = token_file

    async def get(self, path: str) -> Any:
        return await self._request("GET", path)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        return await self._request("POST", path, body)

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        for attempt in range(2):
            headers = {"Accept": "application/json"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            try:
                async with self.session.request(method, self.base_url + path, json=body, headers=headers) as resp:
                    status = resp.status
                    text = await resp.text(errors="replace")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise NodeUnavailable("unreachable", f"{method} {path}: {type(exc).__name__}: {exc}") from None
            if status in (401, 403) and attempt == 0 and self._reload_token():
                continue
            return decode_answer(method, path, status, text)
        raise AssertionError("unreachable")  # pragma: no cover

    def _reload_token(self) -> bool:
        if not self.token_file:
            return False
        try:
            fresh = read_token(self.token_file)
        except NodeError:
            return False
        if fresh and fresh != self.token:
            self.token = fresh
            return True
        return False


def normalise_url(url: str) -> str:
    """``host:port`` or ``http://host:port/`` -> ``http://host:port`` (no trailing slash)."""
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


def decode_answer(method: str, path: str, status: int, text: str) -> Any:
    """The body of a 2xx answer; a 4xx raises :class:`NodeRejected` with the node's reason
    (``http-STATUS`` if the body has none); anything else :class:`NodeUnavailable`."""
    where = f"{method} {path}"
    if 200 <= status < 300:
        try:
            return json.loads(text) if text else {}
        except ValueError:
            raise NodeUnavailable("bad-answer", f"{where}: {status} with a body that is not JSON", status) from None
    if 400 <= status < 500:
        reason, detail = f"http-{status}", text[:200]
        try:
            err = json.loads(text).get("error", {})
            if isinstance(err, dict) and isinstance(err.get("reason"), str):
                reason, detail = err["reason"], str(err.get("detail", ""))
        except (ValueError, AttributeError):
            pass
        raise NodeRejected(reason, f"{where}: {detail}" if detail else where, status)
    raise NodeUnavailable(f"http-{status}", f"{where}: {text[:200]}", status)


class Backoff:
    """Exponential backoff: ``initial``, doubled per failure, at most ``maximum`` seconds."""

    def __init__(self, initial: float = 0.5, maximum: float = 10.0) -> None:
        self.initial, self.maximum = initial, maximum
        self.failures = 0

    def next(self) -> float:
        delay = min(self.maximum, self.initial * (2**self.failures))
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
