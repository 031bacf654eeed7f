"""What the wallet does against a node, as async functions over :class:`~nodeclient.NodeClient`.

The CLI (:mod:`wallet.cli`) is a thin layer over these; tests call them directly too.

Sending is split so that nothing signed is ever lost: :func:`prepare_send` asks the node for
the chain id, the account's next nonce and a fee, and refuses what cannot succeed (a transfer
beyond the available funds, a fee below the node's minimum) before any password is asked;
:func:`sign_and_keep` signs and writes the transfer to the outbox; :func:`submit` posts it.
If the node is unreachable at that moment the transfer stays in the outbox and
:func:`resend` posts it later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from consensus.crypto import Address, address_of, format_address
from consensus.types import Transfer
from nodeclient import NodeClient, NodeRejected, NodeUnavailable
from wallet.errors import WalletError
from wallet.keystore import Outbox, OutboxEntry, Unlocked

__all__ = ["AccountView", "SendPlan", "account_views", "prepare_send", "sign_and_keep", "submit", "wait_confirmed",
           "resend", "history", "tx_status"]

#: A node answer for a transfer already known to it: the submission did what it should.
_ALREADY = {"txn-already-in-mempool", "txn-already-known"}


@dataclass(frozen=True, slots=True)
class AccountView:
    address: Address
    balance: int
    nonce: int
    pending_nonce: int
    pending_out: int  # amount + fee of this address's transfers waiting in the node's mempool
    pending_in: int


def _int(data: Any, name: str) -> int:
    value = data.get(name) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        raise NodeUnavailable("bad-answer", f"the node's answer has no integer {name!r}")
    return value


async def account_views(client: NodeClient, addresses: Sequence[Address]) -> list[AccountView]:
    """Balance, nonces and pending totals of each address, from one node."""
    out = []
    for address in addresses:
        text = format_address(address)
        acc = await client.get(f"/api/v1/accounts/{text}")
        hist = await client.get(f"/api/v1/accounts/{text}/history?limit=1")
        pending = hist.get("pending", []) if isinstance(hist, dict) else []
        if not isinstance(pending, list):
            raise NodeUnavailable("bad-answer", "history.pending is not a list")
        out_sum = sum(p["amount"] + p["fee"] for p in pending if isinstance(p, dict) and p.get("direction") == "out")
        in_sum = sum(p["amount"] for p in pending if isinstance(p, dict) and p.get("direction") == "in")
        out.append(AccountView(address, _int(acc, "balance"), _int(acc, "nonce"), _int(acc, "pending_nonce"), out_sum, in_sum))
    return out


@dataclass(frozen=True, slots=True)
class SendPlan:
    """Everything needed to sign: checked against the node, no secret involved."""

    chain_id: str
    sender: Address
    recipient: Address
    amount: int
    fee: int
    nonce: int
    available: int


def _unsent(outbox: Outbox, sender: Address, nonce_floor: int) -> list[OutboxEntry]:
    """Outbox transfers of ``sender`` the node has not confirmed (nonce not yet used)."""
    return [e for e in outbox if address_of(e.tx.sender) == sender and e.tx.nonce >= nonce_floor]


async def prepare_send(
    client: NodeClient,
    addresses: Sequence[Address],
    outbox: Outbox,
    recipient: Address,
    amount: int,
    fee: int | None = None,
    sender: Address | None = None,
) -> SendPlan:
    """Choose the sender (``sender``, or the first address that can pay), the nonce (after the
    node's pending ones and the outbox's) and the fee (``fee``, or the node's suggestion).

    Raises :class:`WalletError` ``insufficient-funds`` or ``fee-too-low`` before anything is
    signed, and ``not-mine`` for a ``sender`` outside the wallet."""
    if sender is not None and sender not in addresses:
        raise WalletError("not-mine", f"{format_address(sender)} is not an address of this wallet")
    status = await client.get("/api/v1/status")
    chain_id = status.get("chain_id") if isinstance(status, dict) else None
    if not isinstance(chain_id, str):
        raise NodeUnavailable("bad-answer", "the node's status has no chain_id")
    fees = await client.get("/api/v1/fees")
    minimum, suggested = _int(fees, "minimum"), _int(fees, "suggested")
    fee = suggested if fee is None else fee
    if fee < minimum:
        raise WalletError("fee-too-low", f"fee {fee} is below the node's minimum {minimum} (base units)")
    candidates = [sender] if sender is not None else list(addresses)
    views = await account_views(client, candidates)
    best: tuple[int, AccountView] | None = None
    for view in views:
        unsent = _unsent(outbox, view.address, view.pending_nonce)
        available = view.balance - view.pending_out - sum(e.tx.amount + e.tx.fee for e in unsent)
        if amount + fee <= available:
            nonce = max([view.pending_nonce] + [e.tx.nonce + 1 for e in unsent])
            return SendPlan(chain_id, view.address, recipient, amount, fee, nonce, available)
        if best is None or available > best[0]:
            best = (available, view)
    have = best[0] if best else 0
    raise WalletError("insufficient-funds", f"sending {amount} + fee {fee} needs {amount + fee} base units; "
                      f"{'the address has' if sender else 'the richest address has'} {max(have, 0)} available")


def sign_and_keep(plan: SendPlan, unlocked: Unlocked, outbox: Outbox, now: float | None = None) -> OutboxEntry:
    """Sign the planned transfer for the plan's chain and keep it in the outbox (on disk)."""
    key = unlocked.key_for(plan.sender)
    tx = Transfer.create(key, plan.recipient, plan.amount, plan.fee, plan.nonce, plan.chain_id)
    return outbox.add(tx, time.time() if now is None else now)


async def submit(client: NodeClient, outbox: Outbox, entry: OutboxEntry) -> str:
    """Post a kept transfer. Returns ``"submitted"`` (or ``"known"``); a refusal removes it
    from the outbox and raises :class:`NodeRejected`; an unreachable node leaves it kept and
    raises :class:`NodeUnavailable`."""
    try:
        await client.post("/api/v1/transactions", {"tx": entry.tx.encode().hex()})
        result = "submitted"
    except NodeRejected as exc:
        if exc.reason not in _ALREADY:
            outbox.remove({entry.hash})
            raise
        result = "known"
    except NodeUnavailable as exc:
        entry.last_error = exc.reason
        outbox.save()
        raise
    entry.submitted, entry.last_error = True, ""
    outbox.save()
    return result


async def tx_status(client: NodeClient, tx_hash: bytes) -> dict[str, Any] | None:
    """The node's view of a transaction (``status`` confirmed or pending), None if unknown."""
    try:
        found = await client.get(f"/api/v1/tx/{tx_hash.hex()}")
    except NodeRejected as exc:
        if exc.reason == "not-found":
            return None
        raise
    if not isinstance(found, dict):
        raise NodeUnavailable("bad-answer", "the transaction answer is not an object")
    return found


async def wait_confirmed(
    client: NodeClient, tx_hash: bytes, timeout: float, progress: Callable[[float, int | None], None] | None = None,
    poll: float = 0.5,
) -> dict[str, Any]:
    """Poll until the transaction is in a canonical block; returns the node's answer. Raises
    ``wait-timeout`` after ``timeout`` seconds, ``unknown-tx`` if the node drops it."""
    start = time.monotonic()
    while True:
        found = await tx_status(client, tx_hash)
        if found is None:
            raise WalletError("unknown-tx", f"the node no longer knows {tx_hash.hex()} (dropped from its mempool?)")
        if found.get("status") == "confirmed":
            return found
        elapsed = time.monotonic() - start
        if elapsed > timeout:
            raise WalletError("wait-timeout", f"{tx_hash.hex()} not in a block after {timeout:.0f}s; it is still pending")
        if progress is not None:
            status = await client.get("/api/v1/status")
            progress(elapsed, status.get("height") if isinstance(status, dict) else None)
        await asyncio.sleep(poll)


async def resend(client: NodeClient, outbox: Outbox) -> list[tuple[OutboxEntry, str]]:
    """Bring the outbox up to date with the node: confirmed transfers leave it, pending ones
    are marked submitted, unknown ones are posted again. Returns (entry, what happened)."""
    results: list[tuple[OutboxEntry, str]] = []
    done: set[bytes] = set()
    for entry in sorted(outbox.entries, key=lambda e: (e.tx.sender, e.tx.nonce)):
        found = await tx_status(client, entry.hash)
        if found is not None and found.get("status") == "confirmed":
            done.add(entry.hash)
            results.append((entry, "confirmed"))
            continue
        if found is not None:
            entry.submitted = True
            results.append((entry, "pending"))
            continue
        try:
            results.append((entry, await submit(client, outbox, entry)))
        except NodeRejected as exc:
            results.append((entry, f"dropped: {exc.reason}"))
    outbox.remove(done)
    outbox.save()
    return results


async def history(client: NodeClient, addresses: Sequence[Address], limit: int) -> list[dict[str, Any]]:
    """Pending and confirmed history items of every address, newest first, each with the
    ``address`` it belongs to (a transfer between two of the wallet's addresses shows twice)."""
    items: list[dict[str, Any]] = []
    for address in addresses:
        text = format_address(address)
        data = await client.get(f"/api/v1/accounts/{text}/history?limit={limit}")
        if not isinstance(data, dict) or not isinstance(data.get("items"), list) or not isinstance(data.get("pending"), list):
            raise NodeUnavailable("bad-answer", "the history answer lacks items or pending")
        for item in data["pending"] + data["items"]:
            if isinstance(item, dict):
                items.append({**item, "address": text})
    items.sort(key=lambda i: (i.get("height") is not None, -(i.get("height") or 0), -(i.get("position") or 0)))
    return items[:limit] if len(addresses) > 1 else items

