"""Wallet keys: a BIP-39 mnemonic is the backup, SLIP-10 derives Ed25519 keys from it.

The mnemonic (12 to 24 English words, with a checksum; the ``mnemonic`` package) turns into a
64-byte seed by BIP-39's PBKDF2. SLIP-10 (the Ed25519 flavour of BIP-32: HMAC-SHA512, hardened
steps only) derives the key of account ``i`` at :data:`PATH` ``m/44'/7377'/0'/0'/i'``
(7377 is this project's coin type; it is not registered in SLIP-44). Import from the same
words therefore gives the same keys and addresses on any machine.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

from mnemonic import Mnemonic

from consensus.crypto import PrivateKey
from wallet.errors import WalletError

__all__ = ["COIN_TYPE", "PATH", "WORD_COUNTS", "new_mnemonic", "normalise_mnemonic", "seed_from_mnemonic",
           "slip10_master", "slip10_child", "derive_path", "derive_key"]

COIN_TYPE = 7377
HARDENED = 0x8000_0000
PATH = f"m/44'/{COIN_TYPE}'/0'/0'/i'"
WORD_COUNTS = {12: 128, 15: 160, 18: 192, 21: 224, 24: 256}  # words -> entropy bits

_WORDS = Mnemonic("english")


def new_mnemonic(words: int = 24) -> str:
    """Fresh words from the operating system's randomness."""
    if words not in WORD_COUNTS:
        raise WalletError("bad-word-count", f"{words} words; choose one of {sorted(WORD_COUNTS)}")
    return _WORDS.generate(strength=WORD_COUNTS[words])


def normalise_mnemonic(text: str) -> str:
    """Typed words -> the canonical phrase (NFKD, lower case, single spaces), checked: every
    word is in the list and the checksum holds. Raises :class:`~wallet.errors.WalletError` ``bad-mnemonic``."""
    words = unicodedata.normalize("NFKD", text).lower().split()
    if len(words) not in WORD_COUNTS:
        raise WalletError("bad-mnemonic", f"{len(words)} words; a mnemonic has 12, 15, 18, 21 or 24")
    unknown = [w for w in words if w not in _WORDS.wordlist]
    if unknown:
        raise WalletError("bad-mnemonic", f"not in the word list: {', '.join(unknown[:3])}")
    phrase = " ".join(words)
    if not _WORDS.check(phrase):
        raise WalletError("bad-mnemonic", "the checksum does not match: a word is wrong or out of order")
    return phrase


def seed_from_mnemonic(phrase: str, passphrase: str = "") -> bytes:
    """BIP-39: PBKDF2-HMAC-SHA512 of the phrase, 2048 rounds, salt "mnemonic" + passphrase."""
    return Mnemonic.to_seed(normalise_mnemonic(phrase), passphrase)


def slip10_master(seed: bytes) -> tuple[bytes, bytes]:
    """(private key, chain code) of the SLIP-10 Ed25519 master node."""
    digest = hmac.new(b"ed25519 seed", seed, hashlib.sha512).digest()
    return digest[:32], digest[32:]


def slip10_child(key: bytes, chain_code: bytes, index: int) -> tuple[bytes, bytes]:
    """The hardened child ``index`` (an integer >= 2**31) of a SLIP-10 Ed25519 node."""
    if not HARDENED <= index < 2**32:
        raise WalletError("bad-path", "Ed25519 derivation has hardened steps only")
    digest = hmac.new(chain_code, b"\x00" + key + index.to_bytes(4, "big"), hashlib.sha512).digest()
    return digest[:32], digest[32:]


def derive_path(seed: bytes, path: list[int]) -> tuple[bytes, bytes]:
    """The node at ``path`` (hardened indices) below the master of ``seed``."""
    key, chain_code = slip10_master(seed)
    for index in path:
        key, chain_code = slip10_child(key, chain_code, index)
    return key, chain_code


def derive_key(seed: bytes, account: int) -> PrivateKey:
    """The signing key of ``account`` (0, 1, ...) at :data:`PATH`."""
    if not 0 <= account < HARDENED:
        raise WalletError("bad-path", f"account {account} out of range")
    path = [44 | HARDENED, COIN_TYPE | HARDENED, HARDENED, HARDENED, account | HARDENED]
    key, _ = derive_path(seed, path)
    return PrivateKey(key)
