"""The state transition: accounts, transfers, fees, subsidy and roots.

Validation follows a fixed order, cheap checks first (after ethereum/execution-specs):
header against parent, then the engine's seal, then the body's shape and roots, then each
transaction against the state, then the coinbase, and last the state root. Every rejection
raises :class:`InvalidBlock` or :class:`InvalidTransaction` with a stable reason code.

The functions are pure: the caller passes the parent's accounts (any mapping), the clock and
the engine, and gets back the accounts the block changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from consensus.codec import Codec
from consensus.crypto import address_of, verify_many
from consensus.errors import InvalidBlock, InvalidTransaction
from consensus.merkle import merkle_root
from consensus.params import ChainParams
from consensus.types import MAX_AMOUNT, Block, Coinbase, Header, Transfer

HEADER_VERSION = 1
MAX_PAYOUTS = 4_000  # P2Pool's bound on coinbase outputs


@dataclass(frozen=True, slots=True)
class Account(Codec):
    balance: int
    nonce: int


EMPTY_ACCOUNT = Account(0, 0)


def account_leaf(address: bytes, account: Account) -> bytes:
    return hashlib.sha256(address + account.balance.to_bytes(8, "big") + account.nonce.to_bytes(8, "big")).digest()


def state_root(accounts: Mapping[bytes, Account]) -> bytes:
    """Merkle root over every non-empty account, in address order."""
    return merkle_root(
        [account_leaf(a, accounts[a]) for a in sorted(accounts) if accounts[a] != EMPTY_ACCOUNT]
    )


class Overlay:
    """Accounts of a parent state plus the changes made on top of it, for one block."""

    __slots__ = ("base", "changes")

    def __init__(self, base: Mapping[bytes, Account]) -> None:
        self.base = base
        self.changes: dict[bytes, Account] = {}

    def get(self, address: bytes) -> Account:
        found = self.changes.get(address)
        if found is not None:
            return found
        return self.base.get(address, EMPTY_ACCOUNT)

    def set(self, address: bytes, account: Account) -> None:
        self.changes[address] = account

    def merged(self) -> dict[bytes, Account]:
        out = dict(self.base)
        out.update(self.changes)
        return out


def check_transfer_shape(tx: Transfer) -> None:
    """Context-free checks of a transfer (the signature is checked separately, in batches)."""
    if tx.amount <= 0:
        raise InvalidTransaction("bad-amount", "amount must be positive")
    if tx.amount + tx.fee > MAX_AMOUNT:
        raise InvalidTransaction("amount-overflow", "amount plus fee overflows")
    if address_of(tx.sender) == tx.recipient:
        raise InvalidTransaction("self-transfer", "sender and recipient are the same account")


def check_signatures(
    txs: Iterable[Transfer], chain_id: str, verified: set[bytes] | None = None, threads: int = 2
) -> None:
    """Raise ``bad-signature`` if any transfer is not signed by its sender for ``chain_id``.

    ``verified`` holds hashes of transfers already checked (a signature cache, as in Bitcoin
    Core's mempool); they are skipped.
    """
    todo = [tx for tx in txs if verified is None or tx.hash() not in verified]
    results = verify_many([(tx.sender, tx.digest(chain_id), tx.signature) for tx in todo], threads)
    for tx, ok in zip(todo, results, strict=True):
        if not ok:
            raise InvalidTransaction("bad-signature", f"transfer {tx.hash().hex()[:16]}")


def apply_transfer(state: Overlay, tx: Transfer) -> int:
    """Apply one transfer whose shape and signature are already checked; returns its fee."""
    sender = address_of(tx.sender)
    account = state.get(sender)
    if tx.nonce != account.nonce:
        raise InvalidTransaction("bad-nonce", f"nonce {tx.nonce}, account expects {account.nonce}")
    cost = tx.amount + tx.fee
    if cost > account.balance:
        raise InvalidTransaction("insufficient-funds", f"needs {cost}, has {account.balance}")
    state.set(sender, Account(account.balance - cost, account.nonce + 1))
    receiver = state.get(tx.recipient)
    if receiver.balance + tx.amount > MAX_AMOUNT:
        raise InvalidTransaction("amount-overflow", "recipient balance overflows")
    state.set(tx.recipient, Account(receiver.balance + tx.amount, receiver.nonce))
    return tx.fee


def check_coinbase(coinbase: Coinbase, allowed: int) -> None:
    """The coinbase rules that need no state: at most ``MAX_PAYOUTS`` payouts, none of zero,
    paying at most ``allowed`` (the subsidy and the block's fees)."""
    if len(coinbase.payouts) > MAX_PAYOUTS:
        raise InvalidBlock("bad-cb-length", f"more than {MAX_PAYOUTS} payouts")
    if any(p.amount <= 0 for p in coinbase.payouts):
        raise InvalidBlock("bad-cb-payout", "a payout of zero")
    if coinbase.total > allowed:
        raise InvalidBlock("bad-cb-amount", f"coinbase pays {coinbase.total}, allowed {allowed}")


def apply_coinbase(state: Overlay, coinbase: Coinbase, allowed: int) -> None:
    check_coinbase(coinbase, allowed)
    for payout in coinbase.payouts:
        account = state.get(payout.address)
        if account.balance + payout.amount > MAX_AMOUNT:
            raise InvalidBlock("amount-overflow", "payout overflows a balance")
        state.set(payout.address, Account(account.balance + payout.amount, account.nonce))


class ChainView(Protocol):
    """What the rules may read of the chain around a block: headers and blocks of its own
    branch, and content-addressed model weights."""

    def get_header(self, block_hash: bytes) -> Header | None: ...

    def get_block(self, block_hash: bytes) -> Block | None: ...

    def ancestor(self, header: Header, height: int) -> Header: ...

    def get_weights(self, weights_hash: bytes) -> bytes | None: ...


def validate_header(header: Header, parent: Header, params: ChainParams, now: int) -> None:
    """Header rules that need only the parent and the clock."""
    if header.version != HEADER_VERSION:
        raise InvalidBlock("bad-version", f"version {header.version}")
    if header.engine != params.engine:
        raise InvalidBlock("bad-engine", f"engine {header.engine!r}, chain uses {params.engine!r}")
    if header.parent != parent.hash():
        raise InvalidBlock("bad-prevblk", "parent hash does not match")
    if header.height != parent.height + 1:
        raise InvalidBlock("bad-height", f"height {header.height} after {parent.height}")
    if header.timestamp <= parent.timestamp:
        raise InvalidBlock("time-too-old", "timestamp not after the parent's")
    if header.timestamp > now + params.max_future_secs:
        raise InvalidBlock("time-too-new", "timestamp too far in the future")


def validate_body(block: Block, params: ChainParams, size: int | None = None) -> list[bytes]:
    """Body rules that need no state: sizes, duplicates, the roots in the header and the
    coinbase's bound (subsidy plus the fees of the block's transfers).

    ``size`` is the block's encoded length if the caller has it. Returns the transaction
    hashes (coinbase first), which the caller may reuse.
    """
    header = block.header
    if len(block.txs) > params.max_block_txs:
        raise InvalidBlock("bad-blk-length", f"{len(block.txs)} transactions")
    if (len(block.encode()) if size is None else size) > params.max_block_bytes:
        raise InvalidBlock("bad-blk-size", "block too large")
    if block.coinbase.height != header.height:
        raise InvalidBlock("bad-cb-height", "coinbase height differs from the header's")
    hashes = block.tx_hashes()
    if len(set(hashes)) != len(hashes):
        raise InvalidBlock("bad-txns-duplicate", "a transaction appears twice")
    if merkle_root(hashes) != header.txs_root:
        raise InvalidBlock("bad-txs-root", "txs root does not match the body")
    if block.coinbase.payouts_root() != header.payouts_root:
        raise InvalidBlock("bad-payouts-root", "payouts root does not match the coinbase")
    for tx in block.txs:
        try:
            check_transfer_shape(tx)
        except InvalidTransaction as exc:
            raise InvalidBlock(exc.reason, exc.detail) from None
    # here too, not only in the state transition: a side block is stored after these checks
    # (one paying 1,000 times the subsidy was stored)
    check_coinbase(block.coinbase, params.subsidy(header.height) + sum(tx.fee for tx in block.txs))
    return hashes


def apply_body(
    accounts: Mapping[bytes, Account],
    block: Block,
    params: ChainParams,
    verified: set[bytes] | None = None,
) -> dict[bytes, Account]:
    """Apply transactions and coinbase to the parent's ``accounts``; check the state root.

    Returns the accounts the block changed (new values).
    """
    try:
        check_signatures(block.txs, params.chain_id, verified)
    except InvalidTransaction as exc:
        raise InvalidBlock(exc.reason, exc.detail) from None
    state = Overlay(accounts)
    fees = 0
    for tx in block.txs:
        try:
            fees += apply_transfer(state, tx)
        except InvalidTransaction as exc:
            raise InvalidBlock(exc.reason, exc.detail) from None
    apply_coinbase(state, block.coinbase, params.subsidy(block.header.height) + fees)
    root = _root_after(accounts, state.changes)
    if root != block.header.state_root:
        raise InvalidBlock("bad-state-root", "state root does not match the accounts")
    return state.changes


def _root_after(accounts: Mapping[bytes, Account], changes: Mapping[bytes, Account]) -> bytes:
    merged = dict(accounts)
    merged.update(changes)
    return state_root(merged)


def compute_state_root(accounts: Mapping[bytes, Account], block: Block, params: ChainParams) -> bytes:
    """The state root a block with this body would have on top of ``accounts`` (for miners)."""
    state = Overlay(accounts)
    fees = sum(apply_transfer(state, tx) for tx in block.txs)
    apply_coinbase(state, block.coinbase, params.subsidy(block.header.height) + fees)
    return _root_after(accounts, state.changes)


def genesis_accounts(params: ChainParams) -> dict[bytes, Account]:
    return {p.address: Account(p.amount, 0) for p in params.prefunds}
