"""A complete ``ponas`` round in-process: three miners commit, the beacon closes, they reveal,
every node-side rule runs, and the chain's tip is the best valid score (on the no-proof
verifier: the round's rules, not the model, are under test here). Then, with real training on
digits (regtest recipe) and the real verifier, a table of invalid candidates, each rejected
with its reason, including a model trained on the round's test data that passes evaluation
but fails the retrain check."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from pathlib import Path

import pytest

from consensus.chain import validate_block
from consensus.engines.ponas.engine import PonasEngine
from consensus.engines.ponas.rounds import make_close, round_seal, select_winner
from consensus.errors import InvalidBlock
from consensus.state import genesis_accounts
from consensus.types import Block, Header
from node.mempool import Mempool
from node.rounds import RoundService
from pool.rounds import parse_round
from tests.builders import Clock, keys
from tests.framework.chainview import MemoryView
from tests.framework.noproof import open_noproof_chain
from tests.ponas_builders import (
    BEACON,
    BEACON_CHAIN,
    GENOTYPES,
    close_round,
    honest_score,
    noproof_entry,
    ponas_params,
    reveal,
    trained_entry,
)

MINERS = keys(4, seed=7)
PARAMS = ponas_params(MINERS[:1])


def test_complete_round_selects_the_best_valid_score(tmp_path: Path) -> None:
    clock = Clock()
    with open_noproof_chain(tmp_path / "node", PARAMS, clock=clock) as chain:
        genesis = chain.tip
        entries = [noproof_entry(PARAMS, genesis, chain.accounts, MINERS[i], GENOTYPES[i], seed=i + 1) for i in range(3)]
        close, commitments = close_round(PARAMS, genesis, entries)
        candidates = [reveal(e, close, commitments, claimed) for e, claimed in zip(entries, (130, 170, 90))]
        scores = [c.header.score for c in candidates]
        assert len(set(scores)) > 1, f"the three architectures should score differently: {scores}"
        for candidate, entry in zip(candidates, entries):
            chain.import_block(candidate, entry.weights)
        best = max(range(3), key=lambda i: (scores[i], -i))
        assert select_winner(candidates) is candidates[best]
        assert chain.tip_hash == candidates[best].header.hash()
        assert chain.height == 1
        prefund = genesis_accounts(PARAMS).get(MINERS[best].address)
        assert chain.account(MINERS[best].address).balance == PARAMS.subsidy(1) + (prefund.balance if prefund else 0)
        for i in set(range(3)) - {best}:  # the losers' candidates are stored beside, not paid
            assert chain.account(MINERS[i].address).balance == 0 or i == 0
        assert chain.get_weights(candidates[best].header.weights_hash) == entries[best].weights
        tip = chain.tip_hash
    with open_noproof_chain(tmp_path / "node", PARAMS, clock=clock) as again:
        assert again.tip_hash == tip and again.state_root() == again.tip.state_root


@pytest.fixture(scope="module")
def round_kit():  # type: ignore[no-untyped-def]
    """One honest candidate and its round, shared by the table below."""
    from consensus.chain import genesis_block

    genesis = genesis_block(PARAMS).header
    accounts = genesis_accounts(PARAMS)
    honest = trained_entry(PARAMS, genesis, accounts, MINERS[1], GENOTYPES[0], seed=5)
    other = trained_entry(PARAMS, genesis, accounts, MINERS[2], GENOTYPES[1], seed=6)
    close, commitments = close_round(PARAMS, genesis, [honest, other])
    return genesis, accounts, honest, other, close, commitments


def check(block: Block, weights: bytes, genesis: Header, accounts, params=PARAMS) -> None:  # type: ignore[no-untyped-def]
    view = MemoryView(genesis, weights=[weights])
    validate_block(block, genesis, accounts, params, PonasEngine(params), view, int(Clock()()))


def test_honest_candidate_passes(round_kit) -> None:  # type: ignore[no-untyped-def]
    genesis, accounts, honest, _other, close, commitments = round_kit
    check(reveal(honest, close, commitments, honest_score(PARAMS, honest, close)), honest.weights, genesis, accounts)


def test_invalid_candidates(round_kit) -> None:  # type: ignore[no-untyped-def]
    genesis, accounts, honest, other, close, commitments = round_kit
    score = honest_score(PARAMS, honest, close)
    good = reveal(honest, close, commitments, score)
    cases: list[tuple[str, Block, bytes]] = []

    # a commitment the close does not include
    outsider = trained_entry(PARAMS, genesis, accounts, MINERS[3], GENOTYPES[2], seed=9)
    _close2, commitments2 = close_round(PARAMS, genesis, [outsider])
    stray = reveal(outsider, close, commitments2 + commitments, 0)
    cases.append(("commitment-not-in-close", stray, outsider.weights))
    # header differs from the commitment (another seed declared at reveal)
    cases.append(("header-mismatch", replace(good, header=replace(good.header, seed=6)), honest.weights))
    # claimed score beyond the tolerance
    cases.append(("bad-score", replace(good, header=replace(good.header, score=score + PARAMS.ponas.score_tolerance + 1)), honest.weights))
    # the weights of another genotype, committed under this one's name
    swapped = replace(honest, weights=other.weights, block=replace(
        honest.block, header=replace(honest.block.header, weights_hash=other.block.header.weights_hash)))
    c3, com3 = close_round(PARAMS, genesis, [swapped])
    cases.append(("bad-weights-shape", reveal(swapped, c3, com3, score), other.weights))
    # a close with a wrong key, and one signed by someone else
    for reason, bad_close in (
        ("bad-test-key", make_close(BEACON, PARAMS.chain_id, height=1, task_id=close.task_id, parent=close.parent,
                                    test_key=b"\x01" * 32, key_index=1, commitments=commitments)),
        ("wrong-closer", make_close(MINERS[0], PARAMS.chain_id, height=1, task_id=close.task_id, parent=close.parent,
                                    test_key=BEACON_CHAIN.key(1), key_index=1, commitments=commitments)),
    ):
        cases.append((reason, reveal(honest, bad_close, commitments, score), honest.weights))
    # more commitments from one key than allowed
    from consensus.engines.ponas.rounds import commitment_for

    over = commitment_for(honest.block.header, honest.key, PARAMS.chain_id, seq=PARAMS.ponas.max_commitments_per_key)
    c4 = make_close(BEACON, PARAMS.chain_id, height=1, task_id=close.task_id, parent=close.parent,
                    test_key=BEACON_CHAIN.key(1), key_index=1, commitments=[over])
    cases.append(("too-many-commitments", replace(good, header=replace(good.header, round_close=c4.hash()), proof=round_seal(c4, [over], 0, honest.salt)), honest.weights))
    # weights the node was never sent
    cases.append(("missing-weights", good, b""))

    for reason, block, weights in cases:
        view = MemoryView(genesis, weights=[weights] if weights else [])
        with pytest.raises(InvalidBlock) as err:
            validate_block(block, genesis, accounts, PARAMS, PonasEngine(PARAMS), view, int(Clock()()))
        assert err.value.reason == reason, (reason, err.value)


def test_weights_over_the_size_limit(round_kit) -> None:  # type: ignore[no-untyped-def]
    genesis, accounts, honest, _other, close, commitments = round_kit
    small = ponas_params(MINERS[:1], max_weights_bytes=len(honest.weights) - 1)
    block = reveal(honest, close, commitments, honest_score(PARAMS, honest, close))
    with pytest.raises(InvalidBlock) as err:
        check(block, honest.weights, genesis, accounts, small)
    assert err.value.reason == "weights-too-large"


def test_malformed_weights_are_rejected_not_crashed(round_kit) -> None:  # type: ignore[no-untyped-def]
    genesis, accounts, honest, _other, _close, _commitments = round_kit
    rng = random.Random(1234)
    print("fuzz seed 1234")
    w = honest.weights
    variants = [w[:n] for n in (0, 1, 7, 8, 9, 64, len(w) // 2, len(w) - 1)]
    variants += [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400))) for _ in range(20)]
    for _ in range(30):
        flipped = bytearray(w)
        pos = rng.randrange(min(len(w), 600))  # the JSON header and first tensors
        flipped[pos] ^= 1 << rng.randrange(8)
        variants.append(bytes(flipped))
    for bad in variants:
        entry = replace(honest, weights=bad, block=replace(
            honest.block, header=replace(honest.block.header, weights_hash=hashlib.sha256(bad).digest())))
        close, commitments = close_round(PARAMS, genesis, [entry])
        block = reveal(entry, close, commitments, 0)
        try:
            check(block, bad, genesis, accounts)
        except InvalidBlock as exc:
            if not bad:  # no bytes at all: the engine calls them missing, not malformed
                assert exc.reason == "missing-weights", exc
            else:
                assert exc.reason in {"bad-weights-format", "bad-weights-shape", "bad-weights-value", "bad-score"}, exc
        # a bit flip deep inside a float may leave valid weights that score the same: fine


def test_model_trained_on_the_test_data_fails_the_retrain_check(round_kit) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from consensus.engines.ponas.data import Dataset, digits_splits, round_test_set

    genesis, accounts, _honest, _other, _close, _commitments = round_kit
    test = round_test_set(BEACON_CHAIN.key(1), PARAMS.ponas.test_set_size)
    public = digits_splits().train
    # The cheat trains on the public data plus the round's test digits, weighted five times.
    leaked = Dataset(np.concatenate([public.x] + [test.x] * 5), np.concatenate([public.y] + [test.y] * 5), public.max_value)
    cheat = trained_entry(PARAMS, genesis, accounts, MINERS[3], GENOTYPES[0], seed=5, train_data=leaked)
    close, commitments = close_round(PARAMS, genesis, [cheat])
    claimed = honest_score(PARAMS, cheat, close)
    assert claimed > honest_score(PARAMS, _honest, close) + PARAMS.ponas.score_tolerance  # the leak pays off
    block = reveal(cheat, close, commitments, claimed)
    no_retrain = PonasEngine(PARAMS, retrain=False)
    view = MemoryView(genesis, weights=[cheat.weights])
    validate_block(block, genesis, accounts, PARAMS, no_retrain, view, int(Clock()()))  # evaluation alone passes
    with pytest.raises(InvalidBlock) as err:
        check(block, cheat.weights, genesis, accounts)
    assert err.value.reason == "retrain-mismatch"


def test_a_genotype_and_seed_already_in_the_task_epoch_earn_nothing_again(tmp_path: Path) -> None:
    """mnist1d (regtest: epochs of 4 rounds): in one task epoch the same data and the same
    (genotype, seed) give the same weights byte for byte, so a block repeating an ancestor's pair
    is a free copy and is refused with ``repeated-work``; another seed, or the next epoch (new
    data: new work), is accepted."""
    params = ponas_params(MINERS[:1], task="mnist1d", space="nb201-1d", recipe="mnist1d-regtest", score_tolerance=0,
                          train_size=320, validation_size=100, epoch_rounds=4)
    clock = Clock()
    with open_noproof_chain(tmp_path / "node", params, clock=clock) as chain:

        def mine(genotype: str, seed: int, miner: int = 0) -> Block:
            parent = chain.tip
            entry = noproof_entry(params, parent, chain.accounts, MINERS[miner], genotype, seed)
            close, commitments = close_round(params, parent, [entry], key_index=parent.height + 1)
            block = reveal(entry, close, commitments, 100)
            result = chain.import_block(block, entry.weights)
            assert result.status == "connected", (genotype, seed, result)
            return block

        mine(GENOTYPES[0], 7)  # height 1, epoch 0
        mine(GENOTYPES[1], 8)  # height 2
        parent = chain.tip
        copy = noproof_entry(params, parent, chain.accounts, MINERS[1], GENOTYPES[0], 7)
        close, commitments = close_round(params, parent, [copy], key_index=parent.height + 1)
        with pytest.raises(InvalidBlock) as err:
            chain.import_block(reveal(copy, close, commitments, 100), copy.weights)
        assert err.value.reason == "repeated-work" and chain.height == 2
        mine(GENOTYPES[0], 9, miner=1)  # the same cell with another seed is other work: height 3
        # the round object tells miners what not to commit: the pairs of this epoch's blocks
        rounds = RoundService(chain, Mempool(params.chain_id, chain.account), clock())
        assert sorted(map(tuple, rounds.info(clock())["spent"])) == sorted(
            [(GENOTYPES[0], 7), (GENOTYPES[1], 8), (GENOTYPES[0], 9)])
        assert parse_round(rounds.info(clock())).spent == {(GENOTYPES[0], 7), (GENOTYPES[1], 8), (GENOTYPES[0], 9)}
        mine(GENOTYPES[2], 1)  # height 4, the epoch's last round
        assert params.ponas.task_epoch(5) == 1
        assert RoundService(chain, Mempool(params.chain_id, chain.account), clock()).info(clock())["spent"] == []
        mine(GENOTYPES[0], 7)  # height 5: epoch 1, new data, so the pair is new work
        assert chain.height == 5
