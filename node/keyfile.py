"""Plain key files for node-side keys (closer and beacon keys, devnet demo accounts).

A key file is JSON ``{"type": "ed25519", "seed": HEX, "address": "pn1..."}`` written
atomically with permissions 0600. People's coins belong in the wallet's encrypted keystore.
"""

from __future__ import annotations

import json
from typing import Any

from consensus.beacon import BeaconChain
from consensus.crypto import PrivateKey, format_address
from consensus.errors import ConsensusError
from consensus.files import FileExists, write_json_atomic
from consensus.files import load_key_file as load_key


def save_key(key: PrivateKey, path: str, **extra: Any) -> None:
    data = {"type": "ed25519", "seed": key.seed.hex(), "address": format_address(key.address), **extra}
    try:
        write_json_atomic(path, data, mode=0o600, exclusive=True)
    except FileExists:
        raise ConsensusError("file-exists", f"{path} exists; refusing to overwrite a key") from None


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
