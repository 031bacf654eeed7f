"""The wallet's error: a stable ``reason`` for scripts and a ``detail`` for people."""

from __future__ import annotations


class WalletError(Exception):
    """Bad input or a damaged or locked wallet. Reasons (stable): ``bad-mnemonic``,
    ``bad-word-count``, ``bad-path``, ``bad-password``, ``no-password``, ``password-mismatch``,
    ``weak-password``, ``bad-keystore``, ``no-wallet``, ``wallet-exists``, ``bad-name``,
    ``bad-config``, ``no-node``, ``insufficient-funds``, ``not-mine``, ``bad-outbox``,
    ``unknown-tx``, ``wait-timeout``, ``wrong-chain``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)
