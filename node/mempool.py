"""The mempool: transfers waiting for a block.

Admission checks a transfer against the tip's state plus the sender's transfers already
waiting: shape, signature (checked once; the hashes of admitted transfers are the block
import's signature cache), nonce (the next one after the sender's pending ones; a transfer
with the same nonce replaces the waiting one only with a higher fee), and funds for all of the
sender's pending transfers. Block templates take transfers by fee, each sender's in nonce
order. The pool is bounded in count; when full the lowest-fee tail is evicted; entries expire.
After a block connects, its transfers leave the pool and those made invalid are dropped; after
a reorg, transfers of disconnected blocks come back.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from consensus.crypto import address_of
from consensus.errors import InvalidTransaction
from consensus.state import Account, check_transfer_shape
from consensus.types import Transfer
from node.chain import ImportResult


@dataclass(slots=True)
class _Entry:
    tx: Transfer
    hash: bytes
    size: int
    added: float


class Mempool:
    def __init__(
        self,
        chain_id: str,
        account: Callable[[bytes], Account],
        *,
        max_count: int = 5_000,
        expiry: float = 3 * 3600,
        min_fee: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.chain_id = chain_id
        self.min_fee = min_fee
        self.account = account
        self.max_count = max_count
        self.expiry = expiry
        self.clock = clock
        self.by_hash: dict[bytes, _Entry] = {}
        self.by_sender: dict[bytes, dict[int, _Entry]] = {}
        self.verified: set[bytes] = set()

    def __len__(self) -> int:
        return len(self.by_hash)

    @property
    def size_bytes(self) -> int:
        return sum(e.size for e in self.by_hash.values())

    def pending_nonce(self, address: bytes) -> int:
        pending = self.by_sender.get(address)
        base = self.account(address).nonce
        return max(pending) + 1 if pending else base

    def add(self, tx: Transfer, signature_checked: bool = False) -> bytes:
        """Admit ``tx``; returns its hash. Raises :class:`InvalidTransaction` with a reason.

        ``signature_checked``: the caller already verified this transfer's signature (it was
        in the pool before, or in a block), so it is not verified again."""
        h = tx.hash()
        if h in self.by_hash:
            raise InvalidTransaction("txn-already-in-mempool", "already waiting")
        check_transfer_shape(tx)
        if tx.fee < self.min_fee:
            raise InvalidTransaction("min-fee-not-met", f"fee {tx.fee}, this node relays from {self.min_fee}")
        sender = address_of(tx.sender)
        account = self.account(sender)
        pending = self.by_sender.get(sender, {})
        if tx.nonce < account.nonce:
            raise InvalidTransaction("bad-nonce", f"nonce {tx.nonce} already used (account at {account.nonce})")
        next_nonce = max(pending) + 1 if pending else account.nonce
        replaced = pending.get(tx.nonce)
        if replaced is None and tx.nonce != next_nonce:
            raise InvalidTransaction("bad-nonce", f"nonce {tx.nonce}, next is {next_nonce}")
        if replaced is not None and tx.fee <= replaced.tx.fee:
            raise InvalidTransaction("txn-mempool-conflict", "a waiting transfer has this nonce and a fee as high")
        spend = sum(e.tx.amount + e.tx.fee for n, e in pending.items() if n != tx.nonce)
        if spend + tx.amount + tx.fee > account.balance:
            raise InvalidTransaction("insufficient-funds", f"needs {spend + tx.amount + tx.fee}, has {account.balance}")
        if not signature_checked and not tx.has_valid_signature(self.chain_id):
            raise InvalidTransaction("bad-signature", "not signed by its sender for this chain")
        if replaced is not None:
            self._remove(replaced)
        if len(self.by_hash) >= self.max_count:
            worst = min(self.by_hash.values(), key=lambda e: (e.tx.fee, -e.added))
            if worst.tx.fee >= tx.fee:
                raise InvalidTransaction("mempool-full", "the mempool is full of transfers paying as much")
            self._remove_sender_from(worst)
        entry = _Entry(tx, h, len(tx.encode()), self.clock())
        self.by_hash[h] = entry
        self.by_sender.setdefault(sender, {})[tx.nonce] = entry
        self.verified.add(h)
        return h

    def _remove(self, entry: _Entry) -> None:
        self.by_hash.pop(entry.hash, None)
        self.verified.discard(entry.hash)
        sender = address_of(entry.tx.sender)
        pending = self.by_sender.get(sender)
        if pending is not None:
            pending.pop(entry.tx.nonce, None)
            if not pending:
                del self.by_sender[sender]

    def _remove_sender_from(self, entry: _Entry) -> None:
        """Remove ``entry`` and the same sender's later nonces (they could not be mined)."""
        sender = address_of(entry.tx.sender)
        for nonce, e in sorted(self.by_sender.get(sender, {}).items()):
            if nonce >= entry.tx.nonce:
                self._remove(e)

    def select(self, max_txs: int) -> list[Transfer]:
        """Transfers for a block: highest fee first, each sender's in nonce order."""
        queues = {s: [p[n] for n in sorted(p)] for s, p in self.by_sender.items()}
        heap = [(-q[0].tx.fee, q[0].added, s) for s, q in queues.items()]
        heapq.heapify(heap)
        out: list[Transfer] = []
        while heap and len(out) < max_txs:
            _fee, _added, sender = heapq.heappop(heap)
            queue = queues[sender]
            entry = queue.pop(0)
            out.append(entry.tx)
            if queue:
                heapq.heappush(heap, (-queue[0].tx.fee, queue[0].added, sender))
        return out

    def get(self, tx_hash: bytes) -> Transfer | None:
        entry = self.by_hash.get(tx_hash)
        return entry.tx if entry else None

    def txs(self) -> list[Transfer]:
        return [e.tx for e in self.by_hash.values()]

    def involving(self, address: bytes) -> list[Transfer]:
        """Waiting transfers from or to ``address``, oldest first."""
        entries = [e for e in self.by_hash.values() if e.tx.recipient == address or address_of(e.tx.sender) == address]
        return [e.tx for e in sorted(entries, key=lambda e: e.added)]

    def fee_estimate(self, block_txs: int) -> dict[str, int]:
        """A fee that gets a transfer into the next block if the pool does not grow: the
        minimum while the waiting transfers fit in one block, else one more than the fee of the
        last transfer that fits. ``median`` is the waiting transfers' median fee."""
        fees = sorted((e.tx.fee for e in self.by_hash.values()), reverse=True)
        suggested = self.min_fee if len(fees) < block_txs else max(self.min_fee, fees[block_txs - 1] + 1)
        return {"minimum": self.min_fee, "suggested": suggested,
                "median": fees[len(fees) // 2] if fees else self.min_fee, "waiting": len(fees), "block_txs": block_txs}

    def after_import(self, result: ImportResult) -> None:
        """The one update after an import that moved the tip (connected or reorg; nothing for
        a side block or a duplicate): the transfers of the blocks that joined the canonical
        chain leave, those of the blocks a reorg disconnected come back if still valid."""
        if result.changed_tip:
            self.update([tx for b in result.connected for tx in b.txs], [tx for b in result.disconnected for tx in b.txs])

    def update(self, connected_txs: Iterable[Transfer], disconnected_txs: Iterable[Transfer] = ()) -> None:
        """After the tip moved: drop what was mined or became invalid, re-add what a reorg
        disconnected (if still valid on the new tip)."""
        for tx in connected_txs:
            entry = self.by_hash.get(tx.hash())
            if entry is not None:
                self._remove(entry)
        survivors = [e.tx for e in sorted(self.by_hash.values(), key=lambda e: (e.tx.nonce, e.added))]
        returning = list(disconnected_txs)
        self.by_hash.clear()
        self.by_sender.clear()
        self.verified.clear()
        # Every one of these had its signature checked already: in the pool, or in its block.
        for tx in sorted(returning + survivors, key=lambda t: t.nonce):
            try:
                self.add(tx, signature_checked=True)
            except InvalidTransaction:
                pass

    def expire(self) -> int:
        cutoff = self.clock() - self.expiry
        old = [e for e in self.by_hash.values() if e.added < cutoff]
        for e in old:
            if e.hash in self.by_hash:
                self._remove_sender_from(e)
        return len(old)
