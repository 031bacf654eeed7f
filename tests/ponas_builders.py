"""Builders for rounds of the ``ponas`` engine: with real training (regtest recipe), or, for
tests that are not about the model, with arbitrary weight bytes that only the no-proof verifier
(:mod:`tests.framework.noproof`) accepts."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from consensus.beacon import BeaconChain
from consensus.chain import block_template
from consensus.crypto import PrivateKey
from consensus.engines.ponas.rounds import (
    BUILTIN_TASK,
    CommitmentSet,
    commitment_for,
    commitment_salt,
    make_close,
    make_reveal_set,
    round_seal,
    sealed_digest,
)
from consensus.params import ChainParams, preset_params
from consensus.state import Account
from consensus.types import COIN, Block, Header, Payout, RevealEntry, RevealSet, RoundClose
from tests.builders import GENESIS_TIME, keys

BEACON = keys(1, seed=99)[0]
BEACON_CHAIN = BeaconChain.create(length=64, seed=b"\x5a" * 32)
#: The backup closer of chains that name one (``ponas_params(backup_pubkey=BACKUP.public_key)``):
#: the same hash chain of round keys, a signing key of its own.
BACKUP = keys(1, seed=98)[0]

GENOTYPES = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_1x1~2|",
    "|avg_pool_3x3~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|avg_pool_3x3~2|",
]


def ponas_params(funded: Sequence[PrivateKey] = (), **ponas_changes: object) -> ChainParams:
    params = preset_params(
        "regtest", engine="ponas", chain_id="ponas-test", prefunds={k.address: 1000 * COIN for k in funded},
        beacon_pubkey=BEACON.public_key, beacon_anchor=BEACON_CHAIN.anchor, genesis_time=GENESIS_TIME,
        task="digits",  # trains in the test process (a mnist1d chain pins the kernels: tests run it in children)
    )
    return replace(params, ponas=replace(params.ponas, **ponas_changes)) if ponas_changes else params


@dataclass
class Entry:
    """One miner's candidate in the making."""

    key: PrivateKey
    block: Block  # unsealed: no close, no score yet
    weights: bytes
    chain_id: str = "ponas-test"

    @property
    def salt(self) -> bytes:
        """The salt that opens this entry's commitments."""
        return commitment_salt(self.key, self.block.header, self.chain_id)


def trained_entry(
    params: ChainParams, parent: Header, accounts: dict[bytes, Account], key: PrivateKey, genotype: str, seed: int,
    train_data: object = None,
) -> Entry:
    from consensus.engines.ponas.recipe import PRESETS
    from consensus.engines.ponas.train import train

    _model, weights = train(params.ponas.space, genotype, PRESETS[params.ponas.recipe], seed, train_data)  # type: ignore[arg-type]
    return entry_with_weights(params, parent, accounts, key, genotype, seed, weights)


def noproof_entry(
    params: ChainParams, parent: Header, accounts: dict[bytes, Account], key: PrivateKey, genotype: str, seed: int,
    weights: bytes | None = None,
) -> Entry:
    """A candidate in the making without training: ``weights`` are arbitrary small bytes (by
    default derived from the genotype and seed, so distinct candidates differ). Only the
    no-proof verifier accepts it; reveal it with any claimed score."""
    if weights is None:
        weights = hashlib.sha256(f"{genotype}/{seed}".encode()).digest() * 4
    return entry_with_weights(params, parent, accounts, key, genotype, seed, weights)


def entry_with_weights(
    params: ChainParams, parent: Header, accounts: dict[bytes, Account], key: PrivateKey, genotype: str, seed: int,
    weights: bytes,
) -> Entry:
    """The unsealed candidate paying ``key`` that commits to ``weights``."""
    block = block_template(
        parent, accounts, params, timestamp=parent.timestamp + 20, payouts=[Payout(key.address, 0)],
        task_id=BUILTIN_TASK, genotype=genotype, weights_hash=hashlib.sha256(weights).digest(), seed=seed,
    )
    return Entry(key, block, weights, params.chain_id)


def close_round(params: ChainParams, parent: Header, entries: Sequence[Entry], key_index: int = 1,
                timestamp: int | None = None) -> tuple[RoundClose, list]:  # type: ignore[type-arg]
    """The beacon's close of the round on ``parent`` with the entries' commitments, stamped
    (by default) as the entries are, 20 s after the parent: past the commit deadline of a
    regtest round on the chain's timeline."""
    collected = CommitmentSet(parent.height + 1, parent.hash(), BUILTIN_TASK, deadline=1e18, chain_id=params.chain_id, params=params.ponas)
    for e in entries:
        collected.add(commitment_for(e.block.header, e.key, params.chain_id), now=0)
    close = make_close(
        BEACON, params.chain_id, height=parent.height + 1, task_id=BUILTIN_TASK, parent=parent.hash(),
        test_key=BEACON_CHAIN.key(key_index), key_index=key_index, commitments=collected.items,
        timestamp=parent.timestamp + 20 if timestamp is None else timestamp,
    )
    return close, collected.items


def reveal(entry: Entry, close: RoundClose, commitments: list, score: int) -> Block:  # type: ignore[type-arg]
    sealed = sealed_digest(entry.block.header, entry.salt, entry.chain_id)
    index = next(i for i, c in enumerate(commitments) if c.miner == entry.key.public_key and c.sealed == sealed)
    header = replace(entry.block.header, round_close=close.hash(), score=score)
    return replace(entry.block, header=header, proof=round_seal(close, commitments, index, entry.salt))


def reveal_set_for(params: ChainParams, close: RoundClose, blocks: Sequence[Block], timestamp: int | None = None) -> RevealSet:
    """The beacon's reveal set of ``close`` listing ``blocks`` (sealed candidates of it), stamped
    (by default) at the end of the reveal window."""
    entries = [RevealEntry(b.header.hash(), b.header.score, b.proof.index) for b in blocks if b.proof is not None]
    stamp = close.timestamp + params.ponas.reveal_window if timestamp is None else timestamp
    return make_reveal_set(BEACON, params.chain_id, close, entries, stamp)


def honest_score(params: ChainParams, entry: Entry, close: RoundClose) -> int:
    from consensus.engines.ponas.verify import Verifier

    return Verifier(params.ponas).evaluate(entry.weights, entry.block.header.genotype, entry.block.header.weights_hash, close.test_key)


__all__ = ["BEACON", "BEACON_CHAIN", "BACKUP", "GENOTYPES", "ponas_params", "trained_entry", "noproof_entry", "entry_with_weights", "close_round", "reveal", "reveal_set_for", "honest_score", "keys"]
