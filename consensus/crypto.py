"""Keys, signatures and addresses.

* Keys are Ed25519. Keys are made and messages signed with ``cryptography`` (OpenSSL);
  signatures are verified with PyNaCl (libsodium), which ``bench/bench_core.py`` measured to
  be faster, and whose stricter checks (canonical S, no small-order keys) are the single
  consensus definition of a valid signature: every node verifies with the same library.
* Every signed message is ``SHA-256(encode([domain, chain_id, payload]))``: the domain keeps a
  transfer signature from being read as a commitment, and the chain id keeps a transaction
  from being replayed on another chain.
* An address is the first 20 bytes of SHA-256 of the public key, written in bech32m with the
  prefix ``pn`` (BIP-350). Its checksum detects any one mistyped character and any four.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NewType

import nacl.bindings
import nacl.exceptions
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consensus.encoding import encode
from consensus.errors import ConsensusError

Address = NewType("Address", bytes)
PublicKey = NewType("PublicKey", bytes)
Signature = NewType("Signature", bytes)

ADDRESS_LEN = 20
PUBKEY_LEN = 32
SIG_LEN = 64
ADDRESS_HRP = "pn"


class BadAddress(ConsensusError):
    """Text that is not a valid PoNAS address."""


def signing_digest(domain: str, chain_id: str, payload: object) -> bytes:
    """The 32 bytes that are actually signed for ``payload`` in ``domain`` on ``chain_id``."""
    return hashlib.sha256(encode([domain, chain_id, payload])).digest()  # type: ignore[list-item]


def verify(public_key: bytes, digest: bytes, signature: bytes) -> bool:
    """True if ``signature`` is a valid Ed25519 signature of ``digest`` by ``public_key``."""
    if len(public_key) != PUBKEY_LEN or len(signature) != SIG_LEN:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + digest, public_key)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False


_pools: dict[int, ThreadPoolExecutor] = {}


def verify_many(items: Sequence[tuple[bytes, bytes, bytes]], threads: int = 2) -> list[bool]:
    """Verify ``(public_key, digest, signature)`` triples, on ``threads`` threads.

    libsodium runs without the GIL, so two threads use both cores of a small machine.
    """
    if threads <= 1 or len(items) < 64:
        return [verify(*item) for item in items]
    pool = _pools.get(threads)
    if pool is None:
        pool = _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sigcheck")
    step = (len(items) + threads - 1) // threads
    chunks = [items[i : i + step] for i in range(0, len(items), step)]
    results: list[bool] = []
    for part in pool.map(lambda chunk: [verify(*it) for it in chunk], chunks):
        results.extend(part)
    return results


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """An Ed25519 signing key (the 32-byte seed)."""

    seed: bytes

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(os.urandom(32))

    @classmethod
    def from_hex(cls, text: str) -> PrivateKey:
        try:
            seed = bytes.fromhex(text.strip())
        except ValueError:
            raise ConsensusError("bad-key", "a private key is 64 hex digits") from None
        if len(seed) != 32:
            raise ConsensusError("bad-key", "a private key is 64 hex digits")
        return cls(seed)

    def _key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def public_key(self) -> PublicKey:
        raw = self._key().public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return PublicKey(raw)

    @property
    def address(self) -> Address:
        return address_of(self.public_key)

    def sign(self, digest: bytes) -> Signature:
        return Signature(self._key().sign(digest))

    def __repr__(self) -> str:  # never print the secret
        return f"PrivateKey(address={format_address(self.address)})"


_DERIVED_KEY_TAG = b"ponas/commit-key/v1"


def derived_key(key: PrivateKey, index: int) -> PrivateKey:
    """Key number ``index`` derived from ``key`` (0 is ``key`` itself): the seed is
    ``sha256(tag || key.seed || index as 4 bytes)``. A miner that commits under several keys
    derives them, so a restart finds the same keys and whoever holds ``key`` can name them."""
    if not 0 <= index < 1 << 32:
        raise ValueError(f"key index {index} outside 0..2**32-1")
    if index == 0:
        return key
    return PrivateKey(hashlib.sha256(_DERIVED_KEY_TAG + key.seed + index.to_bytes(4, "big")).digest())


def key_from_json(data: object, where: str = "key file") -> PrivateKey:
    """The key in a parsed key file ``{"type": "ed25519", "seed": HEX, ...}`` (the format
    of node, beacon, demo and miner key files); ``bad-key-file`` otherwise."""
    if not isinstance(data, dict) or data.get("type") != "ed25519" or not isinstance(data.get("seed"), str):
        raise ConsensusError("bad-key-file", f"{where} is not a PoNAS key file")
    try:
        return PrivateKey.from_hex(data["seed"])
    except ConsensusError as exc:
        raise ConsensusError("bad-key-file", f"{where}: {exc.detail}") from None


def address_of(public_key: bytes) -> Address:
    return Address(hashlib.sha256(public_key).digest()[:ADDRESS_LEN])


# --- bech32m (BIP-350), for addresses --------------------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32M_CONST = 0x2BC830A3


def _polymod(values: Iterable[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convertbits(data: Iterable[int], frombits: int, tobits: int, pad: bool) -> list[int] | None:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        return None
    return out


def format_address(address: bytes, hrp: str = ADDRESS_HRP) -> str:
    """Human-readable form of a 20-byte address: ``pn1...``."""
    if len(address) != ADDRESS_LEN:
        raise BadAddress("bad-address", f"an address is {ADDRESS_LEN} bytes")
    data = _convertbits(address, 8, 5, True)
    assert data is not None
    polymod = _polymod(_hrp_expand(hrp) + data + [0] * 6) ^ _BECH32M_CONST
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


def parse_address(text: str, hrp: str = ADDRESS_HRP) -> Address:
    """Parse ``pn1...``; raises :class:`BadAddress` (``bad-address``, ``bad-checksum``)."""
    if not isinstance(text, str):
        raise BadAddress("bad-address", "an address is text")
    text = text.strip()
    if text.lower() != text and text.upper() != text:
        raise BadAddress("bad-address", "mixed case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or text[:pos] != hrp:
        raise BadAddress("bad-address", f"an address starts with {hrp}1")
    if len(text) > 90 or any(c not in _CHARSET for c in text[pos + 1 :]):
        raise BadAddress("bad-address", "characters outside the bech32 alphabet")
    data = [_CHARSET.find(c) for c in text[pos + 1 :]]
    if len(data) < 7:
        raise BadAddress("bad-address", "too short")
    if _polymod(_hrp_expand(hrp) + data) != _BECH32M_CONST:
        raise BadAddress("bad-checksum", "the checksum does not match: a character is mistyped")
    decoded = _convertbits(data[:-6], 5, 8, False)
    if decoded is None or len(decoded) != ADDRESS_LEN:
        raise BadAddress("bad-address", f"an address holds {ADDRESS_LEN} bytes")
    return Address(bytes(decoded))
