"""The round service and the node's round work, on the no-proof verifier (no model trains):

* liveness: a round whose commit deadline passes with no commitment is given a fresh window on
  every node (same height, parent and beacon key) instead of staying in "closing" for ever, so
  a miner that comes late can still commit and the closer then closes; a commitment that comes
  before its parent is kept for its round;
* the model steps run off the event loop: a candidate is scored in the node's evaluate thread,
  the round's best is retrained in its work thread, a relayed block is verified there too, and
  the import is handed the verdict; one retrain runs at a time, of the best candidate standing;
* the round shows its reward, and a template over it is refused."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from consensus.engines.ponas.engine import PonasEngine
from consensus.engines.ponas.rounds import BUILTIN_TASK, commitment_for, make_close
from consensus.engines.ponas.verify import Verdict
from consensus.errors import InvalidBlock, InvalidRound
from node.mempool import Mempool
from node.rounds import AnnounceKind, Candidate, RoundService
from node.service import Node, NodeConfig
from tests.builders import GENESIS_TIME, keys
from tests.framework.nodes import wait_for
from tests.framework.noproof import NoProofVerifier, open_noproof_chain
from tests.ponas_builders import (
    BEACON,
    BEACON_CHAIN,
    GENOTYPES,
    close_round,
    noproof_entry,
    ponas_params,
    reveal,
    reveal_set_for,
)

PARAMS = ponas_params()


class ThreadRecordingVerifier(NoProofVerifier):
    """The no-proof verifier, noting which thread scored (``evaluate``) or retrained
    (``retrain``) each candidate; with a ``gate``, scoring waits until the gate is set."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__(PARAMS.ponas)
        self.threads: list[tuple[str, str]] = []
        self.gate, self.entered = gate, threading.Event()

    def verify(self, weights: bytes, genotype: str, weights_hash: bytes, seed: int, claimed: int, test_key: bytes,
               retrain: bool, *, height: int | None = None) -> Verdict:
        self.threads.append(("retrain" if retrain else "evaluate", threading.current_thread().name))
        if self.gate is not None and not retrain:
            self.entered.set()
            self.gate.wait(30)
        return super().verify(weights, genotype, weights_hash, seed, claimed, test_key, retrain)


def recording_node(tmp_path: Path, name: str, clock: list[float], verifier: NoProofVerifier) -> Node:
    return Node(NodeConfig(str(tmp_path / name), tick=3600), PARAMS, clock=lambda: clock[0],
                engine=PonasEngine(PARAMS, verifier=verifier))


def test_empty_round_gets_a_fresh_window(tmp_path: Path) -> None:
    now = float(GENESIS_TIME + 5)
    with open_noproof_chain(tmp_path / "n", PARAMS, clock=lambda: now) as chain:
        rounds = RoundService(chain, Mempool(PARAMS.chain_id, chain.account), now, closer=(BEACON, BEACON_CHAIN))
        first_deadline = rounds.round.deadline
        now = first_deadline + 30  # nobody committed
        assert rounds.tick(now) == []
        assert rounds.phase(now) == "commit" and rounds.round.deadline == now + PARAMS.ponas.commit_window
        assert rounds.round.attempt == 0
        entry = noproof_entry(PARAMS, chain.tip, chain.accounts, keys(1, seed=3)[0], GENOTYPES[0], 1)
        assert rounds.add_commitment(commitment_for(entry.block.header, entry.key, PARAMS.chain_id), now + 1)
        now = rounds.round.deadline
        announced = rounds.tick(now)
        assert [a.kind for a in announced] == [AnnounceKind.CLOSE]
        assert announced[0].close is not None and announced[0].close.key_index == 1  # no key was skipped


def test_a_commitment_that_comes_before_its_parent_is_kept_for_its_round(tmp_path: Path) -> None:
    """A peer that connected block 1 first relays a round-2 commitment to a node that has not
    got block 1 yet: the node keeps it, admits it when round 2 opens there, and relays it."""
    k1, k2 = keys(2, seed=5)
    now = float(GENESIS_TIME + 1)
    with open_noproof_chain(tmp_path / "ahead", PARAMS, clock=lambda: now) as ahead, \
            open_noproof_chain(tmp_path / "late", PARAMS, clock=lambda: now) as late:
        entry1 = noproof_entry(PARAMS, ahead.tip, ahead.accounts, k1, GENOTYPES[0], 1)
        close, commitments = close_round(PARAMS, ahead.tip, [entry1])
        block1 = reveal(entry1, close, commitments, 150)
        now = float(max(close.timestamp + PARAMS.ponas.reveal_window, block1.header.timestamp) + 1)
        ahead.import_block(block1, entry1.weights)
        entry2 = noproof_entry(PARAMS, ahead.tip, ahead.accounts, k2, GENOTYPES[1], 2)
        early = commitment_for(entry2.block.header, k2, PARAMS.chain_id)

        rounds = RoundService(late, Mempool(PARAMS.chain_id, late.account), now)
        assert rounds.round.height == 1
        with pytest.raises(InvalidRound) as exc:
            rounds.add_commitment(early, now)
        assert exc.value.reason == "commit-wrong-round"
        assert rounds.keep_early(early)
        assert not rounds.keep_early(early)  # kept once
        # not kept: one for the open round, or for a round beyond the next
        far = replace(early, height=3)
        assert not rounds.keep_early(far)

        late.import_block(block1, entry1.weights)  # block 1 arrives; round 2 opens with it
        announced = rounds.tick(now)
        assert rounds.round.height == 2 and rounds.round.commitments.items == [early]
        assert [(a.kind, a.commitment) for a in announced] == [(AnnounceKind.COMMITMENT, early)]
        assert rounds.tick(now) == []  # relayed once


def _closed_round_with_candidate(node: Node, key: Any, genotype: str, seq: int, clock: list[float]) -> tuple[Any, ...]:
    """On a started node: an entry committed, the round closed over it (the clock moved to just
    after the entry's timestamp) and its candidate block: (entry, close, commitments, block)."""
    assert node.rounds is not None
    entry = noproof_entry(PARAMS, node.chain.tip, node.chain.accounts, key, genotype, seq)
    assert node.rounds.add_commitment(commitment_for(entry.block.header, key, PARAMS.chain_id), clock[0])
    close, commitments = close_round(PARAMS, node.chain.tip, [entry])
    clock[0] = float(entry.block.header.timestamp + 1)
    assert node.rounds.add_close(close, commitments, clock[0])
    return entry, close, commitments, reveal(entry, close, commitments, 170)


async def test_the_retrain_check_runs_off_the_event_loop(tmp_path: Path) -> None:
    """The round's best candidate is retrained in the node's worker thread while the reveal
    window is open, and the import at the window's end is handed that verdict: the event loop
    never trains. A block relayed by a peer is verified (retrained) there too before its
    import."""
    from p2p import messages as M

    k1 = keys(1, seed=6)[0]
    clock = [float(GENESIS_TIME + 1)]
    va, vb = ThreadRecordingVerifier(), ThreadRecordingVerifier()
    a, b = recording_node(tmp_path, "a", clock, va), recording_node(tmp_path, "b", clock, vb)
    await a.start()
    await b.start()
    try:
        assert a.rounds is not None and b.rounds is not None
        entry, close, commitments, block = _closed_round_with_candidate(a, k1, GENOTYPES[2], 3, clock)

        await a.submit_candidate(block, entry.weights)  # checks it, starts the retrain, answers
        cand = a.rounds.round.candidates[block.header.hash()]
        clock[0] = float(max(close.timestamp + PARAMS.ponas.reveal_window, entry.block.header.timestamp) + 1)
        assert a.rounds.add_reveal_set(reveal_set_for(PARAMS, close, [block]), clock[0])  # the closer lists it
        for _ in range(300):  # the retrain runs in the background; the round waits for it
            if cand.retrained is not None:
                break
            assert a.rounds.tick(clock[0]) == []  # the window is over, but the best is not retrained yet
            await asyncio.sleep(0.05)
        assert cand.retrained is not None and cand.retrained.retrained
        assert [a_.kind for a_ in a.rounds.tick(clock[0])] == [AnnounceKind.BLOCK]
        assert a.chain.tip_hash == block.header.hash()
        assert va.threads == [("evaluate", "evaluate_0"), ("retrain", "retrain_0")]  # once each, off the loop

        await b.on_message(object(), M.BlockMsg(block, entry.weights, False))  # type: ignore[arg-type]
        assert b.chain.tip_hash == block.header.hash()
        assert vb.threads == [("retrain", "retrain_0")]
    finally:
        await a.stop()
        await b.stop()


def _fake_candidates(rounds: RoundService, block: Any, scores: list[int]) -> list[Candidate]:
    """Candidates of the current round that differ only in their claimed score (the rank)."""
    out = []
    for score in scores:
        b = replace(block, header=replace(block.header, score=score))
        verdict = Verdict(b.header.weights_hash, b.header.genotype, b.header.seed, score, b"k" * 32, score, None, False)
        out.append(Candidate(b, b"w", verdict))
        rounds.round.candidates[b.header.hash()] = out[-1]
    return out


def test_one_retrain_at_a_time_and_the_round_end_waits_for_the_best(tmp_path: Path) -> None:
    """One retrain runs at a time, always of the best candidate still standing: a better one
    that comes meanwhile is retrained after it (no queue of superseded bests to cancel). At the
    window's end the round picks no block while its best waits for a retrain; a candidate whose
    retrain fails gives way to the next, and a round whose candidates all fail is retried."""
    now = float(GENESIS_TIME + 21)  # the close (stamped 20 s after the genesis) has come
    with open_noproof_chain(tmp_path / "n", PARAMS, clock=lambda: now) as chain:
        rounds = RoundService(chain, Mempool(PARAMS.chain_id, chain.account), now)
        entry = noproof_entry(PARAMS, chain.tip, chain.accounts, keys(1, seed=8)[0], GENOTYPES[0], 1)
        close, commitments = close_round(PARAMS, chain.tip, [entry])
        assert rounds.add_close(close, commitments, now)
        low, = _fake_candidates(rounds, entry.block, [10])
        first = rounds.next_retrain()
        assert first is not None and first.kind is AnnounceKind.RETRAIN and first.block == low.block
        high, = _fake_candidates(rounds, entry.block, [20])  # a better one while the first runs
        assert rounds.next_retrain() is None  # one at a time
        # (unsealed fakes: no reveal set can list them; the closer sends none, and after
        # closer_timeout the node selects among the candidates it holds, by the same rules)
        end = float(close.timestamp + PARAMS.ponas.reveal_window + PARAMS.ponas.closer_timeout + 1)
        assert rounds.tick(end) == []  # the best waits for its retrain: no block, no retry
        assert [d["kind"] for d in rounds.disputes] == ["no-reveal-set"]

        v = low.verdict
        rounds.on_retrained(low.block.header.hash(), replace(v, retrained_score=10, identical=True))
        assert low.retrained is not None
        again = rounds.tick(end)  # the first retrain is done: the best's starts
        assert [a.kind for a in again] == [AnnounceKind.RETRAIN] and again[0].block == high.block
        rounds.on_retrained(high.block.header.hash(), None, "retrain-mismatch")
        assert high.failed == "retrain-mismatch"
        # the next best (retrained already) is imported: a fake (no seal), so its import fails,
        # and the round, with no candidate left, is retried on the same parent with the next key
        assert rounds.tick(end) == [] and low.failed is not None
        assert rounds.round.close is None and rounds.round.attempt == 1


async def test_candidates_are_scored_off_the_event_loop(tmp_path: Path) -> None:
    """A candidate's model step (load and score its weights) runs in the node's evaluate thread:
    while it runs, the event loop goes on (here: the round ends and is retried). A candidate
    whose round ended meanwhile is refused with ``wrong-close`` and not added; the same
    candidate in its round is admitted once."""
    gate = threading.Event()
    verifier = ThreadRecordingVerifier(gate)
    clock = [float(GENESIS_TIME + 1)]
    node = recording_node(tmp_path, "n", clock, verifier)
    await node.start()
    try:
        assert node.rounds is not None
        entry, close, commitments, block = _closed_round_with_candidate(node, keys(1, seed=7)[0], GENOTYPES[1], 4, clock)

        submit = asyncio.ensure_future(node.submit_candidate(block, entry.weights))
        assert await asyncio.to_thread(verifier.entered.wait, 30)
        assert verifier.threads == [("evaluate", "evaluate_0")]
        # the loop is free while the weights are scored: the reveal window ends, no candidate yet
        clock[0] = float(max(close.timestamp + PARAMS.ponas.reveal_window, entry.block.header.timestamp) + 1)
        # the closer got no candidate in time: its reveal set is empty, and the round is retried
        assert node.rounds.add_reveal_set(reveal_set_for(PARAMS, close, []), clock[0])
        assert node.rounds.tick(clock[0]) == [] and node.rounds.round.close is None
        gate.set()
        with pytest.raises(InvalidBlock) as exc:
            await asyncio.wait_for(submit, 30)
        assert exc.value.reason == "wrong-close" and node.rounds.round.candidates == {}

        # the retry takes the next key: the first attempt's close is not taken again
        with pytest.raises(InvalidRound) as err:
            node.rounds.add_close(close, commitments, clock[0])
        assert err.value.reason == "wrong-key-index"
        # the candidate in the retry's round (its close, stamped a commit window after the
        # failed attempt's reveal end): admitted, once
        stamp = close.timestamp + PARAMS.ponas.reveal_window + PARAMS.ponas.commit_window
        close, commitments = close_round(PARAMS, node.chain.tip, [entry], key_index=2, timestamp=stamp)
        clock[0] = float(stamp)
        assert node.rounds.add_close(close, commitments, clock[0])
        block = reveal(entry, close, commitments, 170)
        assert await node.submit_candidate(block, entry.weights) == block.header.score
        assert await node.submit_candidate(block, entry.weights) == block.header.score
        assert list(node.rounds.round.candidates) == [block.header.hash()]
        assert verifier.threads[:2] == [("evaluate", "evaluate_0")] * 2  # the second submission found it admitted
    finally:
        gate.set()
        await node.stop()


def test_the_round_shows_its_reward_and_a_template_over_it_is_refused(tmp_path: Path) -> None:
    """``GET /round`` carries the reward (subsidy and the fees a template would take now), so a
    miner splits it and asks for one template; payouts over it (the fees changed meanwhile) are
    refused with ``stale-reward``, and a last payout of 0 takes what the others leave."""
    from consensus.types import COIN, Payout
    from tests.builders import transfer

    funded = keys(1, seed=9)[0]
    params = ponas_params([funded])
    now = float(GENESIS_TIME + 1)
    with open_noproof_chain(tmp_path / "n", params, clock=lambda: now) as chain:
        mempool = Mempool(params.chain_id, chain.account)
        rounds = RoundService(chain, mempool, now)
        subsidy = params.subsidy(1)
        assert rounds.info(now)["reward"] == subsidy
        mempool.add(transfer(params, funded, keys(2, seed=10)[1].address, COIN, 0, fee=7000))
        reward = rounds.info(now)["reward"]
        assert reward == subsidy + 7000
        a, b = keys(2, seed=11)
        block = rounds.template([Payout(a.address, reward // 2), Payout(b.address, 0)], "g", b"\1" * 32, 1, now)
        assert [p.amount for p in block.coinbase.payouts] == [reward // 2, reward - reward // 2]
        with pytest.raises(InvalidRound) as exc:
            rounds.template([Payout(a.address, reward + 1), Payout(b.address, 0)], "g", b"\1" * 32, 1, now)
        assert exc.value.reason == "stale-reward"


class ScoringVerifier(NoProofVerifier):
    """The no-proof verifier, except that a candidate's model scores ``score`` (not its claim)."""

    def __init__(self, score: int) -> None:
        super().__init__(PARAMS.ponas)
        self.score = score

    def verify(self, weights: bytes, genotype: str, weights_hash: bytes, seed: int, claimed: int, test_key: bytes,
               retrain: bool, *, height: int | None = None) -> Verdict:
        if claimed != self.score:
            raise InvalidBlock("bad-score", f"claimed {claimed}, the weights score {self.score}")
        return super().verify(weights, genotype, weights_hash, seed, claimed, test_key, retrain, height=height)


async def test_a_false_claim_is_scored_only_when_it_may_win_and_costs_its_miner(tmp_path: Path) -> None:
    """Lazy verification: a candidate from a peer passes the cheap checks, is relayed at once and
    held; once the reveal set has come the tick scores the best claim listed (in the evaluate
    thread), and a false claim is
    refused (``bad-score``, counted) with its miner's key barred from committing
    (``penalised-miner``). The relayer did not vouch for the model: it stays connected. A benign
    refusal (a candidate of a round that is not this node's) is only counted. (A miner's own
    submission through the API is scored at once: ``test_candidates_are_scored_off_the_event_loop``.)"""
    from node.rounds import PENALTY_ROUNDS
    from p2p import messages as M
    from tests.framework.peer import FakePeer, reject_count

    clock = [float(GENESIS_TIME + 1)]
    node = recording_node(tmp_path, "n", clock, ScoringVerifier(169))  # the honest score is 169, the claim 170
    await node.start()
    try:
        key = keys(1, seed=12)[0]
        entry, close, commitments, block = _closed_round_with_candidate(node, key, GENOTYPES[0], 5, clock)
        assert node.rounds is not None and node.core is not None
        liar = await FakePeer.connect(node)
        await liar.send_and_expect(M.BlockMsg(block, entry.weights, True))  # held: no score yet
        assert block.header.hash() in node.rounds.round.held and node.rounds.round.candidates == {}
        clock[0] = float(close.timestamp + PARAMS.ponas.reveal_window)  # the window ends; the closer lists it
        assert node.rounds.add_reveal_set(reveal_set_for(PARAMS, close, [block]), clock[0])
        await node._carry_out(node.core.tick(clock[0]))  # the tick scores it: the best claim listed
        await wait_for(lambda: reject_count(node, "bad-score") == 1, 10, "the false claim refused")
        assert node.rounds.round.candidates == {} and node.rounds.round.held == {}
        assert not await liar.wait_closed(0.5)  # kept: it did not vouch for the model
        assert node.rounds.penalised_until(key.public_key) == 1 + 1 + PENALTY_ROUNDS  # the miner's key pays
        assert block.proof is not None
        elsewhere = replace(block, proof=replace(block.proof, close=replace(close, timestamp=close.timestamp + 1)))
        late = await FakePeer.connect(node)  # a candidate of another close: a race between peers, no fault
        await late.send_and_expect(M.BlockMsg(elsewhere, entry.weights, True), reason="wrong-close", disconnected=False)
    finally:
        await node.stop()


def test_the_import_refuses_a_verdict_that_is_not_the_blocks(tmp_path: Path) -> None:
    """The work check takes a verdict computed elsewhere only if it names this block (weights,
    genotype, seed, claim, test key) and, under the retrain policy, was retrained: else
    ``bad-verdict``; the block's own retrained verdict imports it."""
    now = float(GENESIS_TIME + 1)
    with open_noproof_chain(tmp_path / "n", PARAMS, clock=lambda: now) as chain:
        entry = noproof_entry(PARAMS, chain.tip, chain.accounts, keys(1, seed=13)[0], GENOTYPES[0], 1)
        close, commitments = close_round(PARAMS, chain.tip, [entry])
        block = reveal(entry, close, commitments, 150)
        now = float(block.header.timestamp + 1)
        good = chain.engine.work_verdict(block, entry.weights)  # type: ignore[attr-defined]
        assert chain.import_block(block, entry.weights, verdict=good).status == "connected"
    for i, wrong in enumerate((replace(good, claimed=151), replace(good, seed=2), replace(good, retrained_score=None))):
        with open_noproof_chain(tmp_path / f"other{i}", PARAMS, clock=lambda: now) as other:
            with pytest.raises(InvalidBlock) as exc:
                other.import_block(block, entry.weights, verdict=wrong)
            assert exc.value.reason == "bad-verdict" and other.height == 0


def test_the_closer_takes_one_key_per_attempt_in_order_and_cannot_re_roll(tmp_path: Path) -> None:
    """Attacks on the close (protocol v2), each refused with its reason: a key other than this
    attempt's (a closer shopping for a test set), a close stamped before the commit deadline (a
    window cut short) or ahead of the clock, and a retry (a new key, another commitment order)
    sent while the reveal window runs, or after it with a valid candidate in hand: the reveals
    the closer dislikes are not thrown away. A retry after an empty window takes the next key."""
    pp = PARAMS.ponas
    now = float(GENESIS_TIME + 21)
    with open_noproof_chain(tmp_path / "n", PARAMS, clock=lambda: now) as chain:
        rounds = RoundService(chain, Mempool(PARAMS.chain_id, chain.account), now)
        tip = chain.tip
        entries = [noproof_entry(PARAMS, tip, chain.accounts, k, GENOTYPES[i], i) for i, k in enumerate(keys(2, seed=31))]

        def refused(reason: str, close: Any, commitments: Any, at: float) -> None:
            with pytest.raises(InvalidRound) as err:
                rounds.add_close(close, commitments, at)
            assert err.value.reason == reason, (reason, err.value)

        late = GENESIS_TIME + 200  # time enough for retries: check_close allows skipping keys, the round does not
        refused("wrong-key-index", *close_round(PARAMS, tip, entries, key_index=3, timestamp=late), late)
        refused("close-too-early", *close_round(PARAMS, tip, entries, timestamp=GENESIS_TIME + pp.commit_window - 3), now)
        refused("close-in-future", *close_round(PARAMS, tip, entries, timestamp=int(now) + 10), now)
        refused("key-skipped", *close_round(PARAMS, tip, entries, key_index=3, timestamp=int(now)), now)  # 2 fit in 21 s

        close, commitments = close_round(PARAMS, tip, entries, timestamp=int(now))
        assert rounds.add_close(close, commitments, now)
        assert rounds.round.close == close and rounds.round.attempt == 0
        # a re-roll mid-reveal: the next key, the commitments in another order
        retry_at = close.timestamp + pp.reveal_window + pp.commit_window
        refused("retry-too-early", *close_round(PARAMS, tip, entries[::-1], key_index=2, timestamp=int(now) + 1), now + 1)
        retry = close_round(PARAMS, tip, entries[::-1], key_index=2, timestamp=retry_at)
        cand = rounds.add_candidate(reveal(entries[0], close, commitments, 150), entries[0].weights, now + 1)
        assert cand.failed is None
        refused("retry-with-candidates", *retry, float(retry_at))
        assert rounds.round.close == close and list(rounds.round.candidates) == [cand.block.header.hash()]
        # with no valid candidate, the retry after the window is taken, with the next key only
        cand.failed = "retrain-mismatch"
        assert rounds.add_close(*retry, float(retry_at))
        assert rounds.round.close == retry[0] and rounds.round.attempt == 1 and rounds.round.candidates == {}


def test_a_failed_retrain_penalises_its_miner_and_no_retrain_runs_in_the_selection(tmp_path: Path) -> None:
    """Attack 8 of the review: test-trained candidates cost every node a retrain each, with no
    penalty, and the selection retrained on the event loop when the best failed its import.
    Now a candidate that fails its retrain bars its key from committing for ``PENALTY_ROUNDS``
    rounds (``penalised-miner``), and when the best fails its import the next best waits for
    its retrain (announced, off the loop) instead of being retrained inside the selection."""
    from node.rounds import PENALTY_ROUNDS

    now = float(GENESIS_TIME + 21)
    with open_noproof_chain(tmp_path / "n", PARAMS, clock=lambda: now) as chain:
        rounds = RoundService(chain, Mempool(PARAMS.chain_id, chain.account), now)
        cheat, other = keys(2, seed=41)
        tip = chain.tip
        entries = [noproof_entry(PARAMS, tip, chain.accounts, k, GENOTYPES[i], i) for i, k in enumerate((cheat, other))]
        close, commitments = close_round(PARAMS, tip, entries, timestamp=int(now))
        assert rounds.add_close(close, commitments, now)
        best = rounds.add_candidate(reveal(entries[0], close, commitments, 180), entries[0].weights, now)
        second = rounds.add_candidate(reveal(entries[1], close, commitments, 170), entries[1].weights, now)
        first = rounds.next_retrain()
        assert first is not None and first.block == best.block
        rounds.on_retrained(best.block.header.hash(), None, "retrain-mismatch")
        assert best.failed == "retrain-mismatch"
        # the next best is retrained next, off the loop; the window's end waits for it
        end = float(close.timestamp + PARAMS.ponas.reveal_window + 1)
        assert rounds.add_reveal_set(reveal_set_for(PARAMS, close, [best.block, second.block]), end)
        assert [a.kind for a in rounds.tick(end)] == [AnnounceKind.RETRAIN]
        assert rounds.tick(end) == [] and rounds.round.close == close  # no block, no retry yet
        # it fails its retrain too: with no candidate left, the round is retried
        rounds.on_retrained(second.block.header.hash(), None, "retrain-mismatch")
        out = rounds.tick(end)
        assert out == [] and rounds.round.close is None and rounds.round.attempt == 1
        # both keys failed a retrain: barred from committing, for PENALTY_ROUNDS rounds
        again = noproof_entry(PARAMS, tip, chain.accounts, cheat, GENOTYPES[2], 9)
        with pytest.raises(InvalidRound) as err:
            rounds.add_commitment(commitment_for(again.block.header, cheat, PARAMS.chain_id), end)
        assert err.value.reason == "penalised-miner" and str(1 + 1 + PENALTY_ROUNDS) in err.value.detail
        fresh = keys(1, seed=42)[0]
        ok = noproof_entry(PARAMS, tip, chain.accounts, fresh, GENOTYPES[2], 9)
        assert rounds.add_commitment(commitment_for(ok.block.header, fresh, PARAMS.chain_id), end)


def test_the_selection_never_retrains_on_the_event_loop(tmp_path: Path) -> None:
    """When the best candidate fails its import, the next one (not yet retrained) is not
    imported with a retrain inside the selection: the round waits and announces its retrain."""
    now = float(GENESIS_TIME + 21)
    with open_noproof_chain(tmp_path / "n", PARAMS, clock=lambda: now) as chain:
        rounds = RoundService(chain, Mempool(PARAMS.chain_id, chain.account), now)
        entry = noproof_entry(PARAMS, chain.tip, chain.accounts, keys(1, seed=8)[0], GENOTYPES[0], 1)
        close, commitments = close_round(PARAMS, chain.tip, [entry], timestamp=int(now))
        assert rounds.add_close(close, commitments, now)
        high, low = _fake_candidates(rounds, entry.block, [20, 10])  # unsealed fakes: every import fails
        v = high.verdict
        rounds.on_retrained(high.block.header.hash(), replace(v, retrained_score=20, identical=True))
        rounds._retraining = None
        end = float(close.timestamp + PARAMS.ponas.reveal_window + PARAMS.ponas.closer_timeout + 1)  # no reveal set
        out = rounds.tick(end)  # the best's import fails; the next waits for its retrain
        assert high.failed is not None and low.failed is None and low.retrained is None
        assert [a.kind for a in out] == [AnnounceKind.RETRAIN] and out[0].block == low.block
        assert rounds.round.close == close and chain.height == 0


def test_a_close_that_leaves_out_a_commitment_seen_in_time_is_a_dispute(tmp_path: Path) -> None:
    """The closer can still censor commitments (it signs the set). A node that admitted a
    commitment well before the close's timestamp and finds it left out records a dispute: in
    its log and in ``GET /round``'s ``disputes`` (kind, round, close, the commitment and its
    miner, how long before the close the node had it). One that came too late to judge is none."""
    from node.rounds import DISPUTE_MARGIN

    start = float(GENESIS_TIME + 1)
    with open_noproof_chain(tmp_path / "n", PARAMS, clock=lambda: start) as chain:
        rounds = RoundService(chain, Mempool(PARAMS.chain_id, chain.account), start)
        tip = chain.tip
        honest, censored, late = (noproof_entry(PARAMS, tip, chain.accounts, k, GENOTYPES[i], i)
                                  for i, k in enumerate(keys(3, seed=51)))
        stamp = GENESIS_TIME + PARAMS.ponas.commit_window
        assert rounds.add_commitment(commitment_for(honest.block.header, honest.key, PARAMS.chain_id), start)
        left_out = commitment_for(censored.block.header, censored.key, PARAMS.chain_id)
        assert rounds.add_commitment(left_out, start + 1)
        assert rounds.add_commitment(commitment_for(late.block.header, late.key, PARAMS.chain_id),
                                     stamp - DISPUTE_MARGIN / 2)  # just before the deadline: no judging it
        close, commitments = close_round(PARAMS, tip, [honest], timestamp=stamp)  # the closer keeps one
        assert rounds.add_close(close, commitments, float(stamp))
        disputes = rounds.info(float(stamp))["disputes"]
        assert disputes == [{
            "kind": "left-out-commitment", "height": 1, "attempt": 0, "close": close.hash().hex(), "key_index": 1,
            "commitment": left_out.hash().hex(), "miner": censored.key.public_key.hex(),
            "seen_before_close_s": round(stamp - (start + 1), 1),
        }]


def test_a_flood_of_fresh_keys_takes_the_free_places_only_and_a_funded_miner_still_commits(tmp_path: Path) -> None:
    """Attack 6: commitments from fresh keys (each a valid, signed commitment: keys are free).
    A node's round gives keys without a coin ``MAX_FREE_COMMITMENTS`` places; the flood takes
    them and the next fresh key is refused (``free-places-full``); a funded miner that comes
    after them is still admitted; a close that gives keys without a coin more places than that
    is refused (``too-many-free-commitments``); and a close over the round's bound of 4,096
    commitments fits in one message under the wire limits."""
    from consensus.engines.ponas.rounds import MAX_FREE_COMMITMENTS, MAX_ROUND_COMMITMENTS, make_commitment
    from p2p import messages as M
    from p2p.framing import MAX_FRAME

    funded = keys(1, seed=61)[0]
    params = ponas_params([funded])
    now = float(GENESIS_TIME + 1)
    with open_noproof_chain(tmp_path / "n", params, clock=lambda: now) as chain:
        rounds = RoundService(chain, Mempool(params.chain_id, chain.account), now)
        tip = chain.tip_hash
        flood = [make_commitment(k, params.chain_id, height=1, parent=tip, task_id=BUILTIN_TASK,
                                 sealed=i.to_bytes(32, "big"))
                 for i, k in enumerate(keys(MAX_ROUND_COMMITMENTS, seed=62))]
        for c in flood[:MAX_FREE_COMMITMENTS]:
            assert rounds.add_commitment(c, now)
        with pytest.raises(InvalidRound) as err:
            rounds.add_commitment(flood[MAX_FREE_COMMITMENTS], now)
        assert err.value.reason == "free-places-full"
        entry = noproof_entry(params, chain.tip, chain.accounts, funded, GENOTYPES[0], 1)
        honest = commitment_for(entry.block.header, funded, params.chain_id)
        assert rounds.add_commitment(honest, now)
        items = rounds.round.commitments.items
        assert len(items) == MAX_FREE_COMMITMENTS + 1 and items[-1] == honest
        # the closer may not hand the flood more free places than that
        greedy = flood[: MAX_FREE_COMMITMENTS + 1] + [honest]
        close = make_close(BEACON, params.chain_id, height=1, task_id=BUILTIN_TASK, parent=tip,
                           test_key=BEACON_CHAIN.key(1), key_index=1, commitments=greedy,
                           timestamp=GENESIS_TIME + params.ponas.commit_window)
        with pytest.raises(InvalidRound) as err:
            rounds.add_close(close, greedy, float(GENESIS_TIME + params.ponas.commit_window))
        assert err.value.reason == "too-many-free-commitments"
        full = make_close(BEACON, params.chain_id, height=1, task_id=BUILTIN_TASK, parent=tip,
                          test_key=BEACON_CHAIN.key(1), key_index=1, commitments=flood, timestamp=int(now))
        items = flood
        assert len(M.encode_message(M.CloseMsg(full, tuple(items)))) < MAX_FRAME
