"""Crash-safe file writes, shared by every layer that keeps files (node, wallet, pool).

A write goes to a synced temporary file in the same directory and is then renamed over the
target, so a crash leaves the old file or the new one, never a torn one. With
``exclusive=True`` the new file is linked into place instead, which fails if the target
exists: creating a wallet or a key never replaces one.
"""

from __future__ import annotations

import json
import os
from typing import Any

from consensus.crypto import PrivateKey, key_from_json
from consensus.errors import ConsensusError

__all__ = ["FileExists", "load_key_file", "write_bytes_atomic", "write_text_atomic", "write_json_atomic"]


class FileExists(FileExistsError):
    """The target of an exclusive write exists; nothing was written."""


def write_bytes_atomic(path: str, data: bytes, mode: int = 0o644, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` atomically with permissions ``mode``.

    Raises :class:`FileExists` (and writes nothing) when ``exclusive`` and ``path`` exists."""
    if exclusive and os.path.lexists(path):
        raise FileExists(path)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask does not loosen or tighten what was asked
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExists(path) from None
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
        _sync_dir(os.path.dirname(os.path.abspath(path)))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _sync_dir(directory: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str, text: str, mode: int = 0o644, exclusive: bool = False) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), mode, exclusive)


def write_json_atomic(path: str, data: Any, mode: int = 0o644, exclusive: bool = False) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n", mode, exclusive)


def load_key_file(path: str) -> PrivateKey:
    """A plain key file ``{"type": "ed25519", "seed": HEX, ...}`` (node, pool and demo keys).

    Raises :class:`~consensus.errors.ConsensusError` ``no-key-file`` or ``bad-key-file``."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ConsensusError("no-key-file", f"no key file at {path}") from None
    except (OSError, ValueError) as exc:
        raise ConsensusError("bad-key-file", f"{path}: {exc}") from None
    return key_from_json(data, path)
