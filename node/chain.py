"""The chain: block import, fork choice and reorgs over a key-value store.

Importing a block writes the block, its index entry, the account changes, its undo data, the
transaction and address history indexes and the new tip in one synced batch, so a crash leaves either the old chain
or the new one. A reorg to a heavier branch is computed wholly in memory first (disconnect to
the fork point with undo data, connect and fully validate each block of the new branch) and
then written as one batch; :class:`ImportResult` names the old and new canonical hashes.

The block index (headers) and the tip's accounts are held in memory, loaded at open.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from consensus.chain import check_block, connect_block, genesis_block
from consensus.crypto import address_of
from consensus.encoding import decode, encode
from consensus.engines import Engine, get_engine
from consensus.errors import InvalidBlock
from consensus.params import ChainParams
from consensus.state import Account, state_root
from consensus.types import Block, Header
from node.storage import KV, Batch, StorageError
from node.storage import schema as S

log = logging.getLogger("ponas.chain")


class Status(IntEnum):
    HEADER = 0  # header known and valid in context; no body yet
    DATA = 1  # body stored, header, seal and body shape valid
    VALID = 2  # fully validated (connected at least once)
    FAILED = 3  # invalid, or descends from an invalid block


@dataclass(slots=True)
class Entry:
    header: Header
    work: int
    status: Status

    def encode(self) -> bytes:
        return encode([int(self.status), self.work.to_bytes(32, "big"), self.header.to_value()])

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        status, work, header = decode(data)
        return cls(Header.from_value(header), int.from_bytes(work, "big"), Status(status))


class ImportStatus(StrEnum):
    CONNECTED = "connected"  # the block extends the tip
    REORG = "reorg"  # its branch outweighs the tip's: the canonical chain changed
    SIDE = "side"  # stored on a lighter branch
    DUPLICATE = "duplicate"  # already stored


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What importing a block did. ``connected`` and ``disconnected`` hold the blocks that
    joined and left the canonical chain, in order (py-evm's new and old canonical blocks)."""

    block_hash: bytes
    status: ImportStatus
    old_tip: bytes
    new_tip: bytes
    connected: tuple[Block, ...] = ()
    disconnected: tuple[Block, ...] = ()

    @property
    def changed_tip(self) -> bool:
        return self.status in (ImportStatus.CONNECTED, ImportStatus.REORG)


@dataclass(frozen=True, slots=True)
class Checked:
    """A block that passed the checks that need no state (header, seal, body) on arrival,
    made only by :meth:`Chain.check`; :meth:`Chain.import_checked` takes it without checking
    those again. ``connects``: at the time of the check it would join the canonical chain
    (extend the tip or outweigh it), so its import runs the engine's work check."""

    block: Block
    hash: bytes
    weights: bytes | None
    data: bytes
    tx_hashes: list[bytes]
    work: int
    connects: bool


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One entry of an address's history: the transaction at ``position`` of the canonical
    block at ``height`` (0: the coinbase, or a genesis prefund at height 0), with ``roles``
    the address played in it (bits of ``schema.ROLE_*``)."""

    height: int
    position: int
    roles: int


def _history_entries(block: Block) -> dict[bytes, int]:
    """The history index keys (and role bits) that connecting ``block`` writes."""
    height = block.header.height
    roles: dict[tuple[bytes, int], int] = {}
    for payout in block.coinbase.payouts:
        roles[(payout.address, 0)] = S.ROLE_PAYOUT
    for i, tx in enumerate(block.txs, start=1):  # a transfer to oneself is invalid
        roles[(address_of(tx.sender), i)] = S.ROLE_SENDER
        roles[(tx.recipient, i)] = S.ROLE_RECIPIENT
    return {S.history_key(address, height, position): r for (address, position), r in roles.items()}


@dataclass
class _Undo:
    entries: list[tuple[bytes, Account | None]] = field(default_factory=list)

    def encode(self) -> bytes:
        return encode([[a, None if v is None else [v.balance, v.nonce]] for a, v in self.entries])

    @classmethod
    def decode(cls, data: bytes) -> _Undo:
        return cls([(a, None if v is None else Account(*v)) for a, v in decode(data)])


class Chain:
    """A chain of one genesis over a store. Not thread-safe; the node calls it from one task."""

    def __init__(
        self,
        kv: KV,
        params: ChainParams,
        engine: Engine | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kv = kv
        self.params = params
        self.engine = engine or get_engine(params)
        self.clock = clock
        self.genesis = genesis_block(params)
        self.genesis_hash = self.genesis.header.hash()
        self.index: dict[bytes, Entry] = {}
        self.by_height: list[bytes] = []
        self.accounts: dict[bytes, Account] = {}
        self._open()

    # --- opening ---------------------------------------------------------------------------

    def _open(self) -> None:
        meta = self.kv.get(S.META)
        if meta is None:
            self._init_genesis()
        else:
            schema, chain_id, genesis = decode(meta)
            if schema != S.SCHEMA_VERSION:
                raise StorageError("wrong-schema", f"database schema {schema}, need {S.SCHEMA_VERSION}")
            if genesis != self.genesis_hash or chain_id != self.params.chain_id:
                raise StorageError("wrong-chain", f"database holds chain {chain_id} ({genesis.hex()[:16]})")
        for key, value in self.kv.iterate(S.INDEX):
            self.index[key[1:]] = Entry.decode(value)
        for key, value in self.kv.iterate(S.HEIGHT):
            height = int.from_bytes(key[1:], "big")
            if height != len(self.by_height):
                raise StorageError("db-corrupt", f"canonical height {height} missing its predecessor")
            self.by_height.append(value)
        for key, value in self.kv.iterate(S.ACCOUNT):
            self.accounts[key[1:]] = Account(*decode(value))
        tip = self.kv.get(S.TIP)
        if tip is None or not self.by_height or self.by_height[-1] != tip:
            raise StorageError("db-corrupt", "tip and canonical index disagree; restart with --reindex")

    def _init_genesis(self) -> None:
        block = self.genesis
        h = self.genesis_hash
        accounts = {p.address: Account(p.amount, 0) for p in self.params.prefunds}
        batch = Batch()
        batch.put(S.META, encode([S.SCHEMA_VERSION, self.params.chain_id, h]))
        batch.put(S.index_key(h), Entry(block.header, 0, Status.VALID).encode())
        batch.put(S.block_key(h), block.encode())
        batch.put(S.height_key(0), h)
        batch.put(S.TIP, h)
        for address, account in accounts.items():
            batch.put(S.account_key(address), encode([account.balance, account.nonce]))
            batch.put(S.history_key(address, 0, 0), encode(S.ROLE_GENESIS))
        self.kv.write(batch, sync=True)

    # --- reading ---------------------------------------------------------------------------

    @property
    def tip(self) -> Header:
        return self.index[self.by_height[-1]].header

    @property
    def tip_hash(self) -> bytes:
        return self.by_height[-1]

    @property
    def height(self) -> int:
        return len(self.by_height) - 1

    @property
    def tip_work(self) -> int:
        return self.index[self.tip_hash].work

    def get_header(self, block_hash: bytes) -> Header | None:
        entry = self.index.get(block_hash)
        return entry.header if entry else None

    def get_block(self, block_hash: bytes) -> Block | None:
        data = self.kv.get(S.block_key(block_hash))
        return Block.decode(data) if data is not None else None

    def get_weights(self, weights_hash: bytes) -> bytes | None:
        """Stored model weights by hash."""
        return self.kv.get(S.weights_key(weights_hash))

    def hash_at(self, height: int) -> bytes | None:
        return self.by_height[height] if 0 <= height < len(self.by_height) else None

    def is_canonical(self, block_hash: bytes) -> bool:
        entry = self.index.get(block_hash)
        return entry is not None and self.hash_at(entry.header.height) == block_hash

    def ancestor(self, header: Header, height: int) -> Header:
        """The ancestor of ``header`` at ``height`` on ``header``'s own branch."""
        if height > header.height or height < 0:
            raise ValueError(f"no ancestor at height {height}")
        while header.height > height:
            h = header.hash()
            if self.is_canonical(h):
                return self.index[self.by_height[height]].header
            header = self.index[header.parent].header
        return header

    def account(self, address: bytes) -> Account:
        return self.accounts.get(address, Account(0, 0))

    def find_tx(self, tx_hash: bytes) -> tuple[bytes, int] | None:
        data = self.kv.get(S.tx_key(tx_hash))
        if data is None:
            return None
        block_hash, position = decode(data)
        return block_hash, position

    def iter_canonical(self, start: int = 0) -> Iterator[Block]:
        for h in self.by_height[start:]:
            block = self.get_block(h)
            assert block is not None
            yield block

    def state_root(self) -> bytes:
        return state_root(self.accounts)

    def history(self, address: bytes, limit: int, before: tuple[int, int] | None = None) -> list[HistoryItem]:
        """The canonical transactions that touched ``address``, newest first: at most
        ``limit``, only those before ``before`` = (height, position) when given."""
        prefix = S.history_prefix(address)
        below = S.history_key(address, *before) if before is not None else None
        out: list[HistoryItem] = []
        for key, value in self.kv.iterate(prefix, reverse=True, below=below):
            if len(out) >= limit:
                break
            height, position = S.parse_history_key(key)
            out.append(HistoryItem(height, position, decode(value)))
        return out

    # --- round records ---------------------------------------------------------------------

    def put_round_record(self, height: int, record: dict[str, Any]) -> None:
        """Store what this node saw of round ``height`` (:func:`node.rounds.round_record`):
        a view for people, JSON, replacing an earlier record of the height."""
        batch = Batch()
        batch.put(S.round_key(height), json.dumps(record, separators=(",", ":")).encode())
        self.kv.write(batch, sync=True)

    def round_record(self, height: int) -> dict[str, Any] | None:
        """The stored record of round ``height``, if this node wrote one."""
        data = self.kv.get(S.round_key(height))
        if data is None:
            return None
        try:
            record = json.loads(data)
        except ValueError:
            raise StorageError("db-corrupt", f"the record of round {height} is not JSON") from None
        if not isinstance(record, dict):
            raise StorageError("db-corrupt", f"the record of round {height} is not an object")
        return record

    # --- importing -------------------------------------------------------------------------

    def import_block(
        self, block: Block, weights: bytes | None = None, verified: set[bytes] | None = None,
        verdict: object = None,
    ) -> ImportResult:
        """Validate and store ``block`` (with its model ``weights``, for ``ponas`` blocks):
        :meth:`check`, then :meth:`import_checked`. Connect it, store it on a side branch, or
        reorg. ``verdict``: the engine's work verdict, computed off the event loop (else the
        work check computes it here).

        Raises :class:`InvalidBlock` (``unknown-parent``, ``duplicate-invalid``, any rule's
        reason). Nothing is written for an invalid block except its ``FAILED`` mark; weights
        are stored, content-addressed, in the same batch as their block.
        """
        checked = self.check(block, weights)
        if isinstance(checked, ImportResult):
            return checked
        return self.import_checked(checked, verified, verdict)

    def check(self, block: Block, weights: bytes | None = None) -> Checked | ImportResult:
        """The arrival checks, once per block: known already (a ``duplicate`` result), a known
        and valid parent, the weights sent are the block's, then
        :func:`consensus.chain.check_block` (header, seal, body). A failure marks the block
        ``FAILED`` (except ``time-too-new``, which may pass later)."""
        header = block.header
        h = header.hash()
        known = self.index.get(h)
        if known is not None and known.status >= Status.DATA:
            if known.status == Status.FAILED:
                raise InvalidBlock("duplicate-invalid", "block was already found invalid")
            return ImportResult(h, ImportStatus.DUPLICATE, self.tip_hash, self.tip_hash)
        parent = self.index.get(header.parent)
        if parent is None:
            raise InvalidBlock("unknown-parent", f"parent {header.parent.hex()[:16]} is not known")
        if parent.status == Status.FAILED:
            self._mark_failed(h, header, parent.work)
            raise InvalidBlock("bad-prevblk", "parent is invalid")
        if weights is not None and hashlib.sha256(weights).digest() != header.weights_hash:
            raise InvalidBlock("bad-weights-hash", "the weights sent are not the block's")
        limit = self.params.ponas.max_weights_bytes
        if weights is not None and len(weights) > limit:  # before a side block is stored with them
            raise InvalidBlock("weights-too-large", f"{len(weights)} bytes of weights, the chain allows {limit}")
        data = block.encode()
        try:
            hashes = check_block(block, parent.header, self.params, self.engine, self, int(self.clock()), len(data))
        except InvalidBlock as exc:
            if exc.reason != "time-too-new":  # may become valid later; do not mark
                self._mark_failed(h, header, parent.work)
            raise
        work = parent.work + self.engine.block_work(block)
        return Checked(block, h, weights, data, hashes, work, header.parent == self.tip_hash or work > self.tip_work)

    def import_checked(
        self, checked: Checked, verified: set[bytes] | None = None, verdict: object = None
    ) -> ImportResult:
        """Store a :meth:`check`-ed block: connect it (the state transition and the engine's
        work check, with ``verdict`` when the caller computed it), reorg to its branch, or keep
        it on a side branch. The chain may have moved since the check; that is looked at again
        here, the header, seal and body are not."""
        block, h, weights = checked.block, checked.hash, checked.weights
        header = block.header
        old_tip = self.tip_hash
        known = self.index.get(h)
        if known is not None and known.status >= Status.DATA:  # came in another way meanwhile
            if known.status == Status.FAILED:
                raise InvalidBlock("duplicate-invalid", "block was already found invalid")
            return ImportResult(h, ImportStatus.DUPLICATE, old_tip, old_tip)
        if self.index[header.parent].status == Status.FAILED:
            self._mark_failed(h, header, checked.work)
            raise InvalidBlock("bad-prevblk", "parent is invalid")
        work = checked.work
        if header.parent == old_tip:
            try:
                changes = self._connect_state(block, self.accounts, verified, weights, verdict)
            except InvalidBlock:
                self._mark_failed(h, header, work)
                raise
            batch = Batch()
            self._connect(batch, block, h, self.accounts, changes, checked.tx_hashes)
            batch.put(S.index_key(h), Entry(header, work, Status.VALID).encode())
            batch.put(S.block_key(h), checked.data)
            self._put_weights(batch, block, weights)
            batch.put(S.TIP, h)
            self.kv.write(batch, sync=True)
            self.accounts.update(changes)
            self.by_height.append(h)
            self.index[h] = Entry(header, work, Status.VALID)
            return ImportResult(h, ImportStatus.CONNECTED, old_tip, h, connected=(block,))
        if work > self.tip_work:
            return self._reorg(checked, verified, verdict)
        batch = Batch()
        batch.put(S.index_key(h), Entry(header, work, Status.DATA).encode())
        batch.put(S.block_key(h), checked.data)
        self._put_weights(batch, block, weights)
        self.kv.write(batch, sync=True)
        self.index[h] = Entry(header, work, Status.DATA)
        log.info("side block stored", extra={"height": header.height, "hash": h.hex()[:16]})
        return ImportResult(h, ImportStatus.SIDE, old_tip, old_tip)

    @staticmethod
    def _put_weights(batch: Batch, block: Block, weights: bytes | None) -> None:
        if weights is not None:
            batch.put(S.weights_key(block.header.weights_hash), weights)

    def mark_failed(self, checked: Checked) -> None:
        """A checked block whose work verdict failed (computed off the event loop)."""
        self._mark_failed(checked.hash, checked.block.header, checked.work)

    def _mark_failed(self, h: bytes, header: Header, work: int) -> None:
        entry = Entry(header, work, Status.FAILED)
        batch = Batch()
        batch.put(S.index_key(h), entry.encode())
        self.kv.write(batch, sync=False)
        self.index[h] = entry

    def _connect(
        self,
        batch: Batch,
        block: Block,
        h: bytes,
        before: dict[bytes, Account],
        changes: dict[bytes, Account],
        tx_hashes: list[bytes],
    ) -> None:
        """Add to ``batch`` what connecting ``block`` on the state ``before`` writes."""
        undo = _Undo([(a, before.get(a)) for a in sorted(changes)])
        batch.put(S.undo_key(h), undo.encode())
        for address, account in changes.items():
            batch.put(S.account_key(address), encode([account.balance, account.nonce]))
        batch.put(S.height_key(block.header.height), h)
        for position, tx_hash in enumerate(tx_hashes):
            batch.put(S.tx_key(tx_hash), encode([h, position]))
        for key, roles in _history_entries(block).items():
            batch.put(key, encode(roles))

    def _connect_state(
        self, block: Block, accounts: dict[bytes, Account], verified: set[bytes] | None,
        weights: bytes | None = None, verdict: object = None,
    ) -> dict[bytes, Account]:
        """Transactions, state root and the engine's work check of a block whose header, seal
        and body already passed on arrival."""
        parent = self.index[block.header.parent].header
        return connect_block(block, parent, accounts, self.params, self.engine, self, verified,
                             weights=weights, verdict=verdict)

    def _reorg(self, checked: Checked, verified: set[bytes] | None, verdict: object) -> ImportResult:
        block, h, work = checked.block, checked.hash, checked.work
        old_tip = self.tip_hash
        # The new branch, from the fork point (exclusive) up to the new block.
        branch: list[bytes] = [h]
        cursor = block.header.parent
        while not self.is_canonical(cursor):
            branch.append(cursor)
            cursor = self.index[cursor].header.parent
        branch.reverse()
        fork_height = self.index[cursor].header.height
        disconnect = list(reversed(self.by_height[fork_height + 1 :]))
        accounts = dict(self.accounts)
        batch = Batch()
        gone: list[Block] = []
        for dh in disconnect:
            undo_data = self.kv.get(S.undo_key(dh))
            if undo_data is None:
                raise StorageError("db-corrupt", f"no undo data for {dh.hex()[:16]}")
            for address, previous in _Undo.decode(undo_data).entries:
                if previous is None:
                    accounts.pop(address, None)
                    batch.delete(S.account_key(address))
                else:
                    accounts[address] = previous
                    batch.put(S.account_key(address), encode([previous.balance, previous.nonce]))
            old_block = self.get_block(dh)
            assert old_block is not None
            gone.append(old_block)
            for tx_hash in old_block.tx_hashes():
                batch.delete(S.tx_key(tx_hash))
            for key in _history_entries(old_block):
                batch.delete(key)
            batch.delete(S.height_key(self.index[dh].header.height))
            batch.delete(S.undo_key(dh))
        entries: dict[bytes, Entry] = {}
        joined: list[Block] = []
        for bh in branch:
            b = block if bh == h else self.get_block(bh)
            assert b is not None
            joined.append(b)
            bwork = work if bh == h else self.index[bh].work
            try:
                if bh == h:
                    changes = self._connect_state(b, accounts, verified, checked.weights, verdict)
                else:  # stored on a side branch: its work is checked now, from the stored weights
                    changes = self._connect_state(b, accounts, verified)
            except InvalidBlock as exc:
                # The heavier branch is invalid: keep the old chain, mark the culprit and
                # the new block (which descends from it) as failed.
                self._mark_failed(bh, b.header, bwork)
                if bh != h:
                    self._mark_failed(h, block.header, work)
                log.warning("reorg aborted", extra={"reason": exc.reason, "hash": bh.hex()[:16]})
                raise
            self._connect(batch, b, bh, accounts, changes, b.tx_hashes())
            accounts.update(changes)
            entries[bh] = Entry(b.header, bwork, Status.VALID)
            batch.put(S.index_key(bh), entries[bh].encode())
        batch.put(S.block_key(h), checked.data)
        self._put_weights(batch, block, checked.weights)
        batch.put(S.TIP, h)
        self.kv.write(batch, sync=True)
        self.accounts = accounts
        del self.by_height[fork_height + 1 :]
        self.by_height.extend(branch)
        self.index.update(entries)
        log.info(
            "reorg",
            extra={"fork_height": fork_height, "disconnected": len(disconnect), "connected": len(branch)},
        )
        return ImportResult(h, ImportStatus.REORG, old_tip, h, connected=tuple(joined), disconnected=tuple(gone))
