"""The pool manager's LevelDB store: every accepted share, bans, payouts and blocks won.

Keys (one prefix byte each; integers 8-byte big-endian so iteration follows their order):

| key                  | value                                                            |
|----------------------|------------------------------------------------------------------|
| ``M``                | ``[schema, chain_id, next_share_seq]`` (a floor: see below)       |
| ``s`` + seq          | a share ``[address, worker, weight, height, genotype, seed, validation]`` |
| ``d`` + digest       | empty: a training ``(genotype, seed)`` credited once whose share is gone (pruned or voided; 16-byte BLAKE2b) |
| ``x`` + address      | ``[reason, time]``: a banned address                              |
| ``p`` + address      | total paid to the address by the pool's won blocks (base units)   |
| ``b`` + height       | a block won ``[hash, time, [[address, amount], ...], status]``    |

Each change is one synced batch, so a restarted manager has every share and payout it
acknowledged (a share is acknowledged to the member only after its batch is written).

The hot path writes keys in order: a batch of new shares is ``s`` keys above every stored one
and nothing else, so LevelDB's compactions of them are trivial moves of whole files. (Schema 2
also wrote each share's ``d`` key, random by construction, and the next ``seq`` in ``M``: the
background compactions of those random keys took about a third of a core for a third of a
second every few seconds at 7,000 shares/s, and on two cores that was the tail of the
acknowledgement latency, ``bench/bench_pool.py``.) A stored share's training counts as credited
by the share itself (a set of their keys in memory, built on open); its ``d`` key is written
when the share leaves, in the batch that deletes it (prune, void), so a training the pool
credited once is never credited again, however old, at about 20 bytes per training and
without holding old ones in memory. ``M`` is rewritten by every batch that deletes shares, so
on open the next ``seq`` is past both ``M`` and the last stored share: a number is never
given to two shares. Schemas 1 and 2 are upgraded in place on open (the schema number only:
their ``d`` keys, if any, mean the same).

Shares older than every future PPLNS window are pruned (:meth:`PoolStore.prune`, the manager
does it as rounds open), so the store and a restart's replay stay as small as the window.

A won block is ``pending`` until the node shows it canonical under ``CONFIRM_DEPTH`` blocks
(``confirmed``) or off the canonical chain that deep (``orphaned``); an orphaned block's payouts
leave the paid totals, and come back if a reorganisation makes it canonical again. Blocks of
schema 1 read as ``pending``.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import plyvel

from consensus.encoding import decode, encode, encode_checked
from consensus.types import Payout

SCHEMA = 3


class StoreError(RuntimeError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


#: Blocks on top of a won block (itself included) before its status is final, as Bitcoin's six.
CONFIRM_DEPTH = 6
BLOCK_STATUSES = ("pending", "confirmed", "orphaned")


class WonBlock(NamedTuple):
    height: int
    hash: bytes
    when: int
    payouts: list[Payout]
    status: str


@dataclass(frozen=True, slots=True)
class StoredShare:
    seq: int
    address: bytes
    worker: str
    weight: int
    height: int
    genotype: str
    seed: int
    validation: int


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def _won(height: int, value: bytes) -> WonBlock:
    fields = decode(value)
    status = fields[3] if len(fields) > 3 else "pending"  # schema 1 kept no status
    return WonBlock(height, fields[0], fields[1], [Payout(a, n) for a, n in fields[2]], status)


@functools.lru_cache(maxsize=1 << 14)
def _credited_key(genotype: str, seed: int) -> bytes:
    """A training's ``d`` key. Remembered for the latest trainings: a share's key is needed for
    its duplicate check (on the event loop) and its credited mark (in the group commit's
    thread), so it is computed once, not twice (``genotype`` a str, ``seed`` an int in
    ``0..2**64-1``, as :func:`pool.protocol.parse_share` checks)."""
    return b"d" + hashlib.blake2b(encode_checked([genotype, seed]), digest_size=16).digest()


class _Bloom:
    """A Bloom filter over credited-training keys (``_credited_key``: their 16 hash bytes give
    the bit positions): a miss is certain, so a new training's duplicate check costs no read of
    the store; 2 MiB, about 1% false positives at 1.7 million trainings (then the store decides)."""

    def __init__(self, bits: int = 1 << 24, k: int = 7) -> None:
        self.bits, self.k = bits, k
        self.array = bytearray(bits // 8)

    def _positions(self, key: bytes) -> list[int]:
        # the key's two little-endian 64-bit halves (double hashing): h1 + i * h2
        h1, h2 = int.from_bytes(key[1:9], "little"), int.from_bytes(key[9:17], "little") | 1
        bits = self.bits
        return [(h1 + i * h2) % bits for i in range(self.k)]

    def add(self, key: bytes) -> None:
        array = self.array
        for i in self._positions(key):
            array[i >> 3] |= 1 << (i & 7)

    def __contains__(self, key: bytes) -> bool:
        array = self.array
        for i in self._positions(key):
            if not array[i >> 3] >> (i & 7) & 1:
                return False  # checked for every share: most are new, and stop at the first bit
        return True


class PoolStore:
    def __init__(self, path: str, chain_id: str) -> None:
        os.makedirs(path, exist_ok=True)
        try:
            self.db = plyvel.DB(path, create_if_missing=True, paranoid_checks=True)
        except plyvel.IOError as exc:
            reason = "datadir-locked" if "lock" in str(exc).lower() else "db-io"
            raise StoreError(reason, f"{path}: {exc}") from None
        meta = self.db.get(b"M")
        self.chain_id = chain_id
        if meta is None:
            self.next_seq = 1
            self.db.put(b"M", encode([SCHEMA, chain_id, 1]), sync=True)
        else:
            schema, stored_chain, self.next_seq = decode(meta)
            if schema not in (1, 2, SCHEMA) or stored_chain != chain_id:
                self.db.close()
                raise StoreError("wrong-chain", f"{path} holds pool data of chain {stored_chain} (schema {schema})")
            with self.db.iterator(prefix=b"s", reverse=True, include_value=False) as it:
                last = next(it, None)
            if last is not None:  # M is a floor: the shares written since it are past it
                self.next_seq = max(self.next_seq, int.from_bytes(last[1:], "big") + 1)
            if schema != SCHEMA:  # 1 and 2: their shares and d keys mean the same in 3
                self.db.put(b"M", self._meta(), sync=True)
        with self.db.iterator(prefix=b"x") as it:
            self._bans: dict[bytes, str] = {key[1:]: str(decode(value)[0]) for key, value in it}
        self._credited = _Bloom()  # the d keys: trainings whose shares are gone
        with self.db.iterator(prefix=b"d", include_value=False) as it:
            for key in it:
                self._credited.add(key)
        # the stored shares' trainings (their d keys are written when they leave)
        self._stored: set[bytes] = {_credited_key(s.genotype, s.seed) for s in self.shares()}

    def _meta(self) -> bytes:
        return encode([SCHEMA, self.chain_id, self.next_seq])

    def close(self) -> None:
        if not self.db.closed:
            self.db.close()

    # --- shares ------------------------------------------------------------------------------

    def add_share(self, address: bytes, worker: str, weight: int, height: int, genotype: str, seed: int,
                  validation: int) -> StoredShare:
        """Store one share now (one synced batch)."""
        share = self.stage_share(address, worker, weight, height, genotype, seed, validation)
        self.commit_shares([share])
        return share

    def stage_share(self, address: bytes, worker: str, weight: int, height: int, genotype: str, seed: int,
                    validation: int) -> StoredShare:
        """A share numbered (its ``seq`` taken) but not written yet: :meth:`commit_shares` writes
        a group of them in one synced batch (group commit: one fsync for many shares)."""
        share = StoredShare(self.next_seq, address, worker, weight, height, genotype, seed, validation)
        self.next_seq = share.seq + 1
        return share

    def commit_shares(self, shares: list[StoredShare]) -> None:
        """Write staged shares, in order, in one synced batch of ``s`` keys only (in order, above
        every stored one). Safe to call from another thread than the one that staged them
        (LevelDB is thread-safe; the set of stored trainings is changed under the GIL)."""
        if not shares:
            return
        with self.db.write_batch(sync=True) as wb:
            for share in shares:  # fields typed by stage_share: no type walk (encode_checked)
                wb.put(b"s" + _u64(share.seq), encode_checked([share.address, share.worker, share.weight, share.height,
                                                                share.genotype, share.seed, share.validation]))
        stored = self._stored
        for share in shares:  # once written
            stored.add(_credited_key(share.genotype, share.seed))

    def credited(self, genotype: str, seed: int) -> bool:
        """Whether a share of this training was ever accepted (pruned or voided ones included):
        a stored share's, or a ``d`` key (a training the filter has never seen is not read)."""
        key = _credited_key(genotype, seed)
        return key in self._stored or (key in self._credited and self.db.get(key) is not None)

    def _delete_shares(self, doomed: list[tuple[bytes, bytes]]) -> None:
        """Delete shares (``s`` key, stored value) in one synced batch with their trainings'
        ``d`` keys and ``M``; then their marks move from the stored set to the filter (added
        first: a concurrent check never misses)."""
        if not doomed:
            return
        keys = []
        with self.db.write_batch(sync=True) as wb:
            for skey, value in doomed:
                fields = decode(value)
                key = _credited_key(fields[4], fields[5])
                keys.append(key)
                wb.delete(skey)
                wb.put(key, b"")
            wb.put(b"M", self._meta())
        for key in keys:
            self._credited.add(key)
        for key in keys:
            self._stored.discard(key)

    def shares(self, reverse: bool = False) -> Iterator[StoredShare]:
        with self.db.iterator(prefix=b"s", reverse=reverse) as it:
            for key, value in it:
                a, w, weight, height, g, seed, v = decode(value)
                yield StoredShare(int.from_bytes(key[1:], "big"), a, w, weight, height, g, seed, v)

    def void(self, address: bytes) -> int:
        """Delete every share of ``address`` (a banned member's shares are never paid; their
        trainings stay :meth:`credited`)."""
        with self.db.iterator(prefix=b"s") as it:
            doomed = [(key, value) for key, value in it if decode(value)[0] == address]
        self._delete_shares(doomed)
        return len(doomed)

    def void_share(self, seq: int) -> bool:
        """Delete one share (its member did not show its weights when asked; its training stays
        :meth:`credited`); False if gone."""
        key = b"s" + _u64(seq)
        value = self.db.get(key)
        if value is None:
            return False
        self._delete_shares([(key, value)])
        return True

    def prune(self, keep_from_seq: int) -> int:
        """Forget shares older than ``keep_from_seq`` (outside every future PPLNS window; their
        trainings stay :meth:`credited`); returns how many."""
        doomed = []
        with self.db.iterator(prefix=b"s") as it:
            for key, value in it:
                if int.from_bytes(key[1:], "big") >= keep_from_seq:
                    break
                doomed.append((key, value))
        self._delete_shares(doomed)
        return len(doomed)

    # --- bans, payouts, blocks ---------------------------------------------------------------

    def ban(self, address: bytes, reason: str, when: float) -> None:
        self.db.put(b"x" + address, encode([reason, int(when)]), sync=True)
        self._bans[address] = reason

    def banned(self, address: bytes) -> str | None:
        """Why ``address`` is banned, or None (kept in memory too: checked for every share)."""
        return self._bans.get(address)

    def bans(self) -> dict[bytes, str]:
        return dict(self._bans)

    def record_block(self, height: int, block_hash: bytes, when: float, payouts: list[Payout]) -> None:
        """A block the pool won (``pending``): its payouts are added to each address's paid
        total, once."""
        if self.db.get(b"b" + _u64(height)) is not None:
            return
        with self.db.write_batch(sync=True) as wb:
            wb.put(b"b" + _u64(height), encode([block_hash, int(when), [[p.address, p.amount] for p in payouts],
                                                "pending"]))
            for p in payouts:
                wb.put(b"p" + p.address, encode(self.paid(p.address) + p.amount))

    def set_block_status(self, height: int, status: str) -> None:
        """Move a won block to ``status``; entering or leaving ``orphaned`` takes its payouts out
        of the paid totals or puts them back, in the same batch."""
        if status not in BLOCK_STATUSES:
            raise StoreError("bad-status", f"a block's status is one of {', '.join(BLOCK_STATUSES)}, not {status!r}")
        value = self.db.get(b"b" + _u64(height))
        if value is None:
            raise StoreError("no-block", f"the pool won no block at height {height}")
        block = _won(height, value)
        if block.status == status:
            return
        sign = -1 if status == "orphaned" else 1 if block.status == "orphaned" else 0
        with self.db.write_batch(sync=True) as wb:
            wb.put(b"b" + _u64(height), encode([block.hash, block.when, [[p.address, p.amount] for p in block.payouts],
                                                status]))
            for p in block.payouts if sign else ():
                wb.put(b"p" + p.address, encode(self.paid(p.address) + sign * p.amount))

    def paid(self, address: bytes) -> int:
        value = self.db.get(b"p" + address)
        return 0 if value is None else int(decode(value))

    def blocks(self) -> list[WonBlock]:
        """The blocks won, by height."""
        with self.db.iterator(prefix=b"b") as it:
            return [_won(int.from_bytes(key[1:], "big"), value) for key, value in it]
