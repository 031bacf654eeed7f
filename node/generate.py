"""Local block production on a datadir, without a network (like Bitcoin's
``generatetoaddress`` on regtest): used by ``ponas chain generate``, the demo and tests.

For ``pow`` chains it grinds nonces; for ``ponas`` chains it plays whole rounds with local
miners and the beacon's key (:func:`generate_ponas_round`)."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from consensus.beacon import BeaconChain
from consensus.chain import block_template
from consensus.crypto import PrivateKey
from consensus.engines.pow import solve
from consensus.errors import ConsensusError
from consensus.params import ChainParams
from consensus.types import Block, Payout, RevealEntry, Transfer
from node.chain import Chain, ImportResult
from node.storage.kv import open_datadir


@contextmanager
def open_chain(datadir: str, params: ChainParams, clock: Callable[[], float] = time.time) -> Iterator[Chain]:
    """Open (or create) ``datadir`` for ``params``, yield its chain, always close it."""
    from consensus.chain import genesis_block

    genesis_hash = genesis_block(params).header.hash()
    dd = open_datadir(datadir, params.chain_id, genesis_hash)
    try:
        yield Chain(dd.kv, params, clock=clock)
    finally:
        dd.close()


def make_pow_block(chain: Chain, address: bytes, txs: Sequence[Transfer] = (), timestamp: int | None = None) -> Block:
    """A sealed pow block on the chain's tip paying subsidy and fees to ``address``."""
    if chain.params.engine != "pow":
        raise ConsensusError("wrong-engine", f"this chain uses the {chain.params.engine} engine")
    parent = chain.tip
    ts = max(int(chain.clock()), parent.timestamp + 1) if timestamp is None else timestamp
    bits = chain.engine.next_work(parent, chain)["bits"]
    block = block_template(parent, chain.accounts, chain.params, timestamp=ts, payouts=[Payout(address, 0)], txs=txs, bits=bits)
    return replace(block, header=solve(block.header))


def generate(
    chain: Chain,
    count: int,
    address: bytes,
    txs: Sequence[Transfer] = (),
    progress: Callable[[ImportResult, Block], None] | None = None,
) -> list[ImportResult]:
    """Mine and import ``count`` pow blocks; ``txs`` go into the first one."""
    results = []
    for i in range(count):
        block = make_pow_block(chain, address, txs if i == 0 else ())
        result = chain.import_block(block)
        results.append(result)
        if progress:
            progress(result, block)
    return results


@dataclass(frozen=True, slots=True)
class Candidate:
    miner: bytes  # payout address
    genotype: str
    seed: int
    validation: int  # the miner's own validation score (out of the validation split)
    score: int  # correct predictions on the round's test set
    block_hash: bytes


@dataclass(frozen=True, slots=True)
class RoundResult:
    height: int
    candidates: tuple[Candidate, ...]
    winner: Candidate
    seconds: float


def generate_ponas_round(
    chain: Chain,
    beacon_key: PrivateKey,
    beacon_chain: BeaconChain,
    addresses: Sequence[bytes],
    trainings: int,
    rng: random.Random,
    txs: Sequence[Transfer] = (),
    progress: Callable[[str], None] | None = None,
) -> RoundResult:
    """One whole round of the ``ponas`` protocol on a local chain, without a network.

    Each address is a local miner: it trains ``trainings`` random architectures with the
    task's pinned recipe, commits to its best on validation, the beacon closes the round with
    its next key, every miner reveals its score on the round's test set, and every candidate
    is imported; fork choice keeps the best. ``txs`` go into every candidate.
    """
    from consensus.engines.ponas.engine import PonasEngine
    from consensus.engines.ponas.rounds import (
        BUILTIN_TASK,
        CommitmentSet,
        commitment_for,
        commitment_salt,
        make_close,
        round_seal,
    )
    from consensus.engines.ponas.train import train_for_task

    started = time.monotonic()
    engine = chain.engine
    if not isinstance(engine, PonasEngine):
        raise ConsensusError("wrong-engine", f"this chain uses the {chain.params.engine} engine")
    if beacon_key.public_key != chain.params.ponas.beacon_pubkey:
        raise ConsensusError("wrong-beacon", "this beacon key is not the genesis file's beacon")
    verifier = engine.verifier
    parent = chain.tip
    prev_key, prev_index = engine.previous_key(parent, chain)
    ts = max(int(chain.clock()), parent.timestamp + 1)
    epoch = chain.params.ponas.task_epoch(parent.height + 1) or 0  # digits: no epochs
    drafts = []
    for n, address in enumerate(addresses):
        best: tuple[int, str, int, bytes] | None = None
        for t in range(trainings):
            genotype = verifier.space.sample(rng)
            seed = rng.getrandbits(32)
            if progress:
                progress(f"round {parent.height + 1}: miner {n + 1}/{len(addresses)} trains {t + 1}/{trainings} {genotype}")
            trained = train_for_task(verifier.space.name, genotype, verifier.recipe, seed, data=verifier.data,
                                     epoch=epoch)
            val, weights = trained.validation_correct, trained.weights
            if best is None or val > best[0]:
                best = (val, genotype, seed, weights)
        assert best is not None
        val, genotype, seed, weights = best
        block = block_template(
            parent, chain.accounts, chain.params, timestamp=ts, payouts=[Payout(address, 0)], txs=txs,
            task_id=BUILTIN_TASK, genotype=genotype, weights_hash=hashlib.sha256(weights).digest(), seed=seed,
        )
        drafts.append((PrivateKey(hashlib.sha256(b"local-miner" + address).digest()), address, val, block, weights))
    collected = CommitmentSet(
        parent.height + 1, parent.hash(), BUILTIN_TASK, deadline=float("inf"), chain_id=chain.params.chain_id,
        params=chain.params.ponas,
    )
    for key, _a, _v, block, _w in drafts:
        collected.add(commitment_for(block.header, key, chain.params.chain_id), now=0)
    key_index = prev_index + 1
    close = make_close(
        beacon_key, chain.params.chain_id, height=parent.height + 1, task_id=BUILTIN_TASK, parent=parent.hash(),
        test_key=beacon_chain.key(key_index), key_index=key_index, commitments=collected.items,
    )
    if progress:
        progress(f"round {parent.height + 1}: closed with {len(collected.items)} commitments; verifying")
    results = []
    for i, (key, address, val, block, weights) in enumerate(drafts):
        score = verifier.evaluate(weights, block.header.genotype, block.header.weights_hash, close.test_key,
                                  parent.height + 1)
        header = replace(block.header, round_close=close.hash(), score=score)
        sealed = replace(block, header=header, proof=round_seal(close, collected.items, i, commitment_salt(key, block.header, chain.params.chain_id)))
        chain.import_block(sealed, weights)
        results.append(Candidate(address, header.genotype, header.seed, val, score, header.hash()))
    winner = next(c for c in results if c.block_hash == chain.tip_hash)
    # what the round was, for the explorer's round page (as a node's round service records it):
    # every candidate was scored here, the best is the tip; no reveal set was signed (no network)
    from node.rounds import Standing, round_record

    standings = [Standing(RevealEntry(c.block_hash, c.score, i), "winner" if c is winner else "scored", c.score)
                 for i, c in enumerate(results)]
    chain.put_round_record(parent.height + 1, round_record(
        parent.height + 1, parent.hash(), status="decided", source="generate", attempt=0, close=close,
        commitments=collected.items, seen={}, reveal_set=None, standings=standings, winner=winner.block_hash,
        at=chain.clock()))
    return RoundResult(parent.height + 1, tuple(results), winner, time.monotonic() - started)
