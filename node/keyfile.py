"""Plain key files for node-side keys (closer and beacon keys, devnet demo accounts).

A key file is JSON ``{"type": "ed25519", "seed": HEX, "address": "pn1..."}`` written
atomically with permissions 0600. People's coins belong in the wallet's encrypted keystore.
"""

from __future__ import annotations

import json
import os
from typing import Any

from consensus.beacon import BeaconChain
from consensus.crypto import PrivateKey, format_address, key_from_json
from consensus.errors import ConsensusError


def write_bytes_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a synced temporary file and a rename, so a crash
    leaves the old file or the new one, never a torn one."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str, text: str, mode: int = 0o644) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), mode)


def write_json_atomic(path: str, data: Any, mode: int = 0o644) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n", mode)


def save_key(key: PrivateKey, path: str, **extra: Any) -> None:
    if os.path.exists(path):
        raise ConsensusError("file-exists", f"{path} exists; refusing to overwrite a key")
    data = {"type": "ed25519", "seed": key.seed.hex(), "address": format_address(key.address), **extra}
    write_json_atomic(path, data, mode=0o600)


def load_key(path: str) -> PrivateKey:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ConsensusError("no-key-file", f"no key file at {path}") from None
    except (OSError, ValueError) as exc:
        raise ConsensusError("bad-key-file", f"{path}: {exc}") from None
    return key_from_json(data, path)


def load_beacon(path: str) -> tuple[PrivateKey, BeaconChain]:
    """The beacon closer's signing key and its hash chain of round keys."""
    key = load_key(path)
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    seed, length = data.get("beacon_seed"), data.get("beacon_length")
    if not isinstance(seed, str) or not isinstance(length, int):
        raise ConsensusError("bad-key-file", f"{path} is not a beacon key (no beacon_seed)")
    try:
        return key, BeaconChain(bytes.fromhex(seed), length)
    except ValueError:
        raise ConsensusError("bad-key-file", f"{path}: beacon_seed is not hex") from None
