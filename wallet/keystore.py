"""The encrypted keystore: one file per wallet, and the outbox of signed transfers beside it.

A wallet file ``HOME/wallets/NAME.wallet`` is JSON (mode 0600, written atomically; creating one
never replaces another)::

    {"format": "ponas-wallet", "version": 1, "name": "alice", "created": 1700000000,
     "path": "m/44'/7377'/0'/0'/i'", "addresses": ["pn1...", ...],
     "kdf": {"name": "scrypt", "salt": HEX, "n": 32768, "r": 8, "p": 1},
     "cipher": {"name": "aes-256-gcm", "nonce": HEX},
     "ciphertext": HEX}

The secret (the BIP-39 mnemonic, as JSON ``{"mnemonic": "..."}``) is sealed with AES-256-GCM
under a key that scrypt (memory-hard, 32 MiB at these parameters) derives from the password.
Everything outside ``ciphertext`` is the cipher's associated data, so the public part (the
addresses shown without the password) cannot be altered without unlocking failing. A wrong
password and an altered file therefore give the same answer, ``bad-password``; a file that is
not a wallet at all (truncated, not JSON, fields missing) is ``bad-keystore``. Nothing here
writes over a wallet file except :meth:`Keystore.add_address` (a new address), which rewrites
it atomically under a fresh nonce.

The outbox ``NAME.outbox.json`` keeps every transfer the wallet signed until a node has it in a
block, so a transfer signed while the node was down (or that a node dropped) is never lost:
``ponas wallet resend`` submits it again. It holds no secrets.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from consensus.crypto import Address, BadAddress, PrivateKey, format_address, parse_address
from consensus.errors import ConsensusError
from consensus.files import FileExists, write_json_atomic
from consensus.types import Transfer
from wallet.errors import WalletError
from wallet.keys import PATH, derive_key, normalise_mnemonic, seed_from_mnemonic

__all__ = ["FORMAT", "KDF_DEFAULT", "Keystore", "Unlocked", "OutboxEntry", "Outbox", "check_name", "wallet_path",
           "list_wallets"]

FORMAT = "ponas-wallet"
VERSION = 1
SUFFIX = ".wallet"
#: scrypt cost: N = 2**15, r = 8 (32 MiB, ~0.1 s here); what a file asks is bounded on load
#: so that a crafted file cannot make the wallet allocate gigabytes.
KDF_DEFAULT = {"n": 1 << 15, "r": 8, "p": 1}
_KDF_MAX_MEMORY = 256 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_MAX_FILE = 1 << 20


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(".outbox"):
        raise WalletError("bad-name", f"{name!r}: a wallet name is 1-64 letters, digits, '_', '.', '-'")
    return name


def wallet_path(home: str, name: str) -> str:
    return os.path.join(home, "wallets", check_name(name) + SUFFIX)


def list_wallets(home: str) -> list[str]:
    directory = os.path.join(home, "wallets")
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    return [n[: -len(SUFFIX)] for n in names if n.endswith(SUFFIX) and _NAME.fullmatch(n[: -len(SUFFIX)])]


def _kdf_key(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password.encode("utf-8"))


def _aad(public: dict[str, Any]) -> bytes:
    return json.dumps(public, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Unlocked:
    """A wallet's secrets, held only while a command needs them."""

    mnemonic: str
    keys: tuple[PrivateKey, ...]

    def key_for(self, address: bytes) -> PrivateKey:
        for key in self.keys:
            if key.address == address:
                return key
        raise WalletError("not-mine", f"{format_address(address)} is not an address of this wallet")


@dataclass
class Keystore:
    """The public view of one wallet file; :meth:`unlock` needs the password."""

    path: str
    name: str  # the file's name, which selects the wallet
    label: str  # the name it was created with (part of the sealed data; a renamed file keeps it)
    created: int
    addresses: list[Address]
    kdf: dict[str, Any]
    cipher: dict[str, Any]
    ciphertext: bytes

    # --- creating ---------------------------------------------------------------------------

    @classmethod
    def create(cls, home: str, name: str, mnemonic: str, password: str, accounts: int = 1,
               kdf: dict[str, int] | None = None) -> Keystore:
        """Seal ``mnemonic`` under ``password`` in a new wallet file. Raises ``wallet-exists``
        (nothing is written) if the name is taken, ``weak-password`` for an empty password."""
        if not password:
            raise WalletError("weak-password", "the password must not be empty")
        phrase = normalise_mnemonic(mnemonic)
        path = wallet_path(home, name)
        if os.path.lexists(path):
            raise WalletError("wallet-exists", f"a wallet named {name!r} exists ({path})")
        seed = seed_from_mnemonic(phrase)
        addresses = [derive_key(seed, i).address for i in range(max(1, accounts))]
        params = dict(KDF_DEFAULT if kdf is None else kdf)
        store = cls(path, name, name, int(time.time()), addresses, {"name": "scrypt", "salt": "", **params},
                    {"name": "aes-256-gcm", "nonce": ""}, b"")
        store._seal(phrase, password)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        try:
            write_json_atomic(path, store.to_json(), mode=0o600, exclusive=True)
        except FileExists:
            raise WalletError("wallet-exists", f"a wallet named {name!r} exists ({path})") from None
        return store

    def _public(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "name": self.label, "created": self.created, "path": PATH,
                "addresses": [format_address(a) for a in self.addresses], "kdf": self.kdf, "cipher": self.cipher}

    def _seal(self, phrase: str, password: str) -> None:
        self.kdf["salt"] = os.urandom(16).hex()
        self.cipher["nonce"] = os.urandom(12).hex()
        key = _kdf_key(password, bytes.fromhex(self.kdf["salt"]), self.kdf["n"], self.kdf["r"], self.kdf["p"])
        secret = json.dumps({"mnemonic": phrase}).encode("utf-8")
        self.ciphertext = AESGCM(key).encrypt(bytes.fromhex(self.cipher["nonce"]), secret, _aad(self._public()))

    def to_json(self) -> dict[str, Any]:
        return {**self._public(), "ciphertext": self.ciphertext.hex()}

    # --- loading ----------------------------------------------------------------------------

    @classmethod
    def load(cls, home: str, name: str) -> Keystore:
        """Read and check a wallet file's shape (no password needed). Raises ``no-wallet`` or
        ``bad-keystore``."""
        path = wallet_path(home, name)
        try:
            with open(path, "rb") as fh:
                raw = fh.read(_MAX_FILE + 1)
        except FileNotFoundError:
            raise WalletError("no-wallet", f"no wallet named {name!r} (looked for {path}); see `ponas wallet list`") from None
        except OSError as exc:
            raise WalletError("bad-keystore", f"cannot read {path}: {exc.strerror or exc}") from None
        return cls.from_bytes(path, name, raw)

    @classmethod
    def from_bytes(cls, path: str, name: str, raw: bytes) -> Keystore:
        def bad(why: str) -> WalletError:
            return WalletError("bad-keystore", f"{path} is damaged or not a wallet: {why}")

        if len(raw) > _MAX_FILE:
            raise bad("too large")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise bad("not JSON (truncated?)") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise bad("no ponas-wallet header")
        if data.get("version") != VERSION:
            raise WalletError("bad-keystore", f"{path}: wallet format version {data.get('version')!r}; this wallet reads {VERSION}")
        try:
            kdf, cipher = data["kdf"], data["cipher"]
            n, r, p = kdf["n"], kdf["r"], kdf["p"]
            if kdf["name"] != "scrypt" or cipher["name"] != "aes-256-gcm":
                raise bad("unknown kdf or cipher")
            if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (n, r, p)):
                raise bad("scrypt parameters are not positive integers")
            if n & (n - 1) or 128 * r * n > _KDF_MAX_MEMORY or p > 16:
                raise bad("scrypt parameters out of range")
            salt, nonce = bytes.fromhex(kdf["salt"]), bytes.fromhex(cipher["nonce"])
            if len(salt) < 16 or len(nonce) != 12:
                raise bad("salt or nonce of the wrong length")
            addresses = [parse_address(a) for a in data["addresses"]]
            ciphertext = bytes.fromhex(data["ciphertext"])
            created, label = int(data["created"]), data["name"]
            if data["path"] != PATH or not isinstance(label, str) or not addresses:
                raise bad("name, path or addresses malformed")
        except WalletError:
            raise
        except (KeyError, TypeError, ValueError, BadAddress):
            raise bad("fields missing or malformed") from None
        return cls(path, name, label, created, addresses, dict(kdf), dict(cipher), ciphertext)

    def unlock(self, password: str) -> Unlocked:
        """Decrypt with ``password``. Raises ``bad-password`` (wrong password, or the file was
        altered) or ``bad-keystore`` (the sealed content does not match its addresses)."""
        key = _kdf_key(password, bytes.fromhex(self.kdf["salt"]), self.kdf["n"], self.kdf["r"], self.kdf["p"])
        try:
            secret = AESGCM(key).decrypt(bytes.fromhex(self.cipher["nonce"]), self.ciphertext, _aad(self._public()))
        except InvalidTag:
            raise WalletError("bad-password", f"wrong password for wallet {self.name!r} (or its file was altered)") from None
        try:
            phrase = normalise_mnemonic(json.loads(secret)["mnemonic"])
        except (ValueError, KeyError, TypeError, WalletError):
            raise WalletError("bad-keystore", f"{self.path}: the sealed content is not a mnemonic") from None
        seed = seed_from_mnemonic(phrase)
        keys = tuple(derive_key(seed, i) for i in range(len(self.addresses)))
        if [k.address for k in keys] != self.addresses:
            raise WalletError("bad-keystore", f"{self.path}: the addresses do not come from the sealed mnemonic")
        return Unlocked(phrase, keys)

    def add_address(self, password: str) -> bytes:
        """Derive the next account's address and record it (rewrites the file atomically)."""
        unlocked = self.unlock(password)
        address = derive_key(seed_from_mnemonic(unlocked.mnemonic), len(self.addresses)).address
        self.addresses.append(address)
        self._seal(unlocked.mnemonic, password)
        write_json_atomic(self.path, self.to_json(), mode=0o600)
        return address


# --- the outbox ---------------------------------------------------------------------------------


@dataclass
class OutboxEntry:
    """A signed transfer and what the wallet knows of it."""

    tx: Transfer
    created: float
    submitted: bool = False
    last_error: str = ""

    @property
    def hash(self) -> bytes:
        return self.tx.hash()

    def to_json(self) -> dict[str, Any]:
        return {"hash": self.hash.hex(), "tx": self.tx.encode().hex(), "created": self.created,
                "submitted": self.submitted, "last_error": self.last_error}


@dataclass
class Outbox:
    """Signed transfers not yet seen in a block, in a JSON file beside the wallet."""

    path: str
    entries: list[OutboxEntry] = field(default_factory=list)

    @classmethod
    def for_wallet(cls, store: Keystore) -> Outbox:
        path = store.path[: -len(SUFFIX)] + ".outbox.json"
        try:
            with open(path, "rb") as fh:
                data = json.loads(fh.read(_MAX_FILE + 1).decode("utf-8"))
            entries = [OutboxEntry(Transfer.decode(bytes.fromhex(e["tx"])), float(e["created"]), bool(e["submitted"]),
                                   str(e.get("last_error", ""))) for e in data["entries"]]
        except FileNotFoundError:
            return cls(path)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, ConsensusError) as exc:
            raise WalletError("bad-outbox", f"{path} is damaged ({exc}); move it aside to go on") from None
        return cls(path, entries)

    def __iter__(self) -> Iterator[OutboxEntry]:
        return iter(self.entries)

    def add(self, tx: Transfer, now: float) -> OutboxEntry:
        entry = OutboxEntry(tx, now)
        self.entries.append(entry)
        self.save()
        return entry

    def remove(self, hashes: set[bytes]) -> None:
        if hashes:
            self.entries = [e for e in self.entries if e.hash not in hashes]
            self.save()

    def save(self) -> None:
        write_json_atomic(self.path, {"entries": [e.to_json() for e in self.entries]}, mode=0o600)
