"""The signed reveal set (round protocol v2), on the no-proof verifier and LevelDB chains,
driven sans-I/O with a fake clock.

What it proves:

* the closer's reveal set fixes which candidates count: two nodes that received different
  candidates in time (one got a better candidate the closer did not list, the other missed one
  the closer listed) take the same block: the listed one is fetched from the peers, the
  unlisted one is refused (``not-in-reveal-set``) and shown as a dispute where it was seen in
  time;
* once a round is decided by its set, another block of it is refused (``not-in-reveal-set``,
  ``not-round-winner``) at once, not only a reveal window later (attacks 3 and 4), unless a
  close signed by the closer names it;
* a reveal set that breaks a rule is refused with its reason; a second, different set for the
  same close (the closer equivocating) is not taken and is a dispute;
* a listed candidate nobody can supply stalls nobody: it is given up ``closer_timeout`` seconds
  after the set came (a dispute) and the next listed candidate wins;
* lazy verification: candidates are scored in claim order, one at a time, only while one may
  still win (an honest round costs one scoring); a false claim costs its miner's key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from consensus.engines.ponas.rounds import commitment_for, make_reveal_set
from consensus.errors import InvalidRound
from consensus.types import RevealSet
from node.actions import Broadcast, Send
from node.core import NodeCore
from node.mempool import Mempool
from node.metrics import Metrics
from node.rounds import Announce, AnnounceKind, RoundService
from p2p import messages as M
from tests.builders import GENESIS_TIME, keys
from tests.framework.noproof import open_noproof_chain
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
PP = PARAMS.ponas
MINERS = keys(5, seed=77)


def settle(rounds: RoundService, now: float) -> list[Announce]:
    """Tick until the round waits on nothing this test does not send: retrains are carried out
    at once (the no-proof verifier's full verdict). The announces, in order."""
    seen: list[Announce] = []
    for _ in range(10):
        out = rounds.tick(now)
        seen += out
        retrains = [a for a in out if a.kind is AnnounceKind.RETRAIN]
        if not retrains:
            return seen
        for a in retrains:
            assert a.block is not None
            rounds.on_retrained(a.block.header.hash(), rounds.engine.work_verdict(a.block, a.weights))
    return seen


def _round(chain: Any, n: int) -> tuple[list[Any], Any, list[Any]]:
    entries = [noproof_entry(PARAMS, chain.tip, chain.accounts, MINERS[i], GENOTYPES[i % len(GENOTYPES)], seed=i)
               for i in range(n)]
    close, commitments = close_round(PARAMS, chain.tip, entries, timestamp=GENESIS_TIME + 21)
    return entries, close, commitments


T0 = float(GENESIS_TIME + 21)  # the close (stamped then) has come


@contextlib.contextmanager
def closed_round(tmp_path: Path, n: int, *, closed: bool = True) -> Iterator[tuple[Any, ...]]:
    """A node's chain, round service and core (no closer key) with round 1 of ``n`` entries
    closed by the beacon (``closed``): (chain, rounds, core, entries, close, commitments)."""
    with open_noproof_chain(tmp_path / "b", PARAMS, clock=lambda: T0) as chain:
        rounds = RoundService(chain, Mempool(PARAMS.chain_id, chain.account), T0)
        core = NodeCore(PARAMS, chain, rounds.mempool, rounds, Metrics(), T0)
        entries, close, commitments = _round(chain, n)
        if closed:
            assert rounds.add_close(close, commitments, T0)
        yield chain, rounds, core, entries, close, commitments


def test_the_reveal_set_decides_the_round_the_same_on_every_node(tmp_path: Path) -> None:
    t0 = float(GENESIS_TIME + 21)
    with open_noproof_chain(tmp_path / "a", PARAMS, clock=lambda: t0) as ca, \
            open_noproof_chain(tmp_path / "b", PARAMS, clock=lambda: t0) as cb:
        closer = RoundService(ca, Mempool(PARAMS.chain_id, ca.account), t0, closer=(BEACON, BEACON_CHAIN))
        node = RoundService(cb, Mempool(PARAMS.chain_id, cb.account), t0)
        entries, close, commitments = _round(ca, 3)
        for r in (closer, node):
            assert r.add_close(close, commitments, t0)
        c1, c2, late = (reveal(e, close, commitments, s) for e, s in zip(entries, (150, 160, 190)))
        end = float(close.timestamp + PP.reveal_window)
        # the closer gets c1 and c2 in time, and the best claim only after the window's end
        closer.add_candidate(c1, entries[0].weights, t0 + 1)
        closer.add_candidate(c2, entries[1].weights, t0 + 1)
        # the other node got c1 and the best claim well in time, and missed c2
        node.add_candidate(c1, entries[0].weights, t0 + 1)
        node.add_candidate(late, entries[2].weights, t0 + 1)
        closer.add_candidate(late, entries[2].weights, end + 0.5)  # taken, but after the window's end
        out = settle(closer, end + 0.5)
        sets = [a.reveal_set for a in out if a.kind is AnnounceKind.REVEAL_SET]
        assert len(sets) == 1 and sets[0] is not None
        rs = sets[0]
        assert {e.block_hash for e in rs.entries} == {c1.header.hash(), c2.header.hash()}
        assert [a.kind for a in out if a.kind is AnnounceKind.BLOCK] == [AnnounceKind.BLOCK]
        assert ca.tip_hash == c2.header.hash()  # not the late, better claim

        # the node: the set lists c2, which it lacks, and leaves out the best claim it saw
        assert node.add_reveal_set(rs, end + 0.2)
        assert [d["kind"] for d in node.disputes] == ["left-out-candidate"]
        out = settle(node, end + 0.3)
        fetch = [a for a in out if a.kind is AnnounceKind.FETCH]
        assert len(fetch) == 1 and fetch[0].hashes == (c2.header.hash(),) and cb.height == 0
        assert not [a for a in settle(node, end + 0.5) if a.kind is AnnounceKind.FETCH]  # asked once per FETCH_EVERY
        node.add_candidate(c2, entries[1].weights, end + 1)  # a peer answers with it
        out = settle(node, end + 1)
        assert [a.kind for a in out if a.kind is AnnounceKind.BLOCK] == [AnnounceKind.BLOCK]
        assert cb.tip_hash == ca.tip_hash == c2.header.hash()


def test_once_decided_a_round_takes_no_other_block(tmp_path: Path) -> None:
    with closed_round(tmp_path, 4) as (chain, rounds, core, entries, close, commitments):
        low, best, top, held = (reveal(e, close, commitments, s) for e, s in zip(entries, (150, 160, 170, 190)))
        end = float(close.timestamp + PP.reveal_window)
        # a block of the round sent as a block after the window, before the set: a candidate
        # (held, relayed as a candidate, scored when its claim may win)
        core.relay.connected("other")
        out = core.on_block("peer", low, entries[0].weights, end + 0.1)
        assert [type(a) for a in out] == [Broadcast] and low.header.hash() in rounds.round.held
        assert isinstance(out[0], Broadcast) and isinstance(out[0].msg, M.BlockMsg) and out[0].msg.candidate
        rounds.admit_candidate(low, entries[0].weights, rounds.evaluate_candidate(low, entries[0].weights))
        rounds.add_candidate(best, entries[1].weights, T0 + 2)
        # the set lists top too, which never reaches this node: given up after closer_timeout
        assert rounds.add_reveal_set(reveal_set_for(PARAMS, close, [low, best, top]), end + 0.2)
        settle(rounds, end + 0.3)
        assert chain.height == 0  # it waits for top
        settle(rounds, end + 0.3 + PP.closer_timeout + 0.1)
        assert chain.tip_hash == best.header.hash()
        assert [d["kind"] for d in rounds.disputes] == ["listed-candidate-unavailable"]
        # at once (not a reveal window later): the held-back, better sibling, and the listed
        # loser, sent as blocks, are refused, with no blame on the relayer
        for block, e, reason in ((held, entries[3], "not-in-reveal-set"), (low, entries[0], "not-round-winner")):
            assert core.on_message("peer", M.BlockMsg(block, e.weights, False), end + PP.closer_timeout + 1) == []
            assert core.metrics.rejects.labels("p2p", reason)._value.get() == 1
        assert chain.tip_hash == best.header.hash() and chain.height == 1
        # a close signed by the closer that names the held-back sibling as parent changes
        # nothing: the closer cannot make a node take what its own reveal set left out
        named, _ = close_round(PARAMS, held.header, [], key_index=2, timestamp=int(end) + 30)
        core.on_message("peer", M.CloseMsg(named, ()), end + 30)
        assert core.on_message("peer", M.BlockMsg(held, entries[3].weights, False), end + 31) == []
        assert core.metrics.rejects.labels("p2p", "not-in-reveal-set")._value.get() == 2
        # but a listed candidate ranked above the block taken, which this node gave up while
        # the others had it, is taken once a close names it (to its verification: not refused)
        named, _ = close_round(PARAMS, top.header, [], key_index=2, timestamp=int(end) + 31)
        core.on_message("peer", M.CloseMsg(named, ()), end + 31)
        out = core.on_block("peer", top, entries[2].weights, end + 32)
        assert [type(a).__name__ for a in out] == ["Verify"]


def test_a_reveal_set_that_breaks_a_rule_is_refused(tmp_path: Path) -> None:
    with closed_round(tmp_path, 2, closed=False) as (chain, rounds, core, entries, close, commitments):
        blocks = [reveal(e, close, commitments, 150 + i) for i, e in enumerate(entries)]
        end = close.timestamp + PP.reveal_window

        def refused(reason: str, rs: Any, at: float = end + 1) -> None:
            with pytest.raises(InvalidRound) as err:
                rounds.add_reveal_set(rs, at)
            assert err.value.reason == reason, (reason, err.value)

        def signed(entries: Any, stamp: int = end) -> RevealSet:  # in the order given
            draft = RevealSet(close.height, close.hash(), tuple(entries), stamp, BEACON.public_key, bytes(64))
            return replace(draft, signature=BEACON.sign(draft.digest(PARAMS.chain_id)))

        good = reveal_set_for(PARAMS, close, blocks)
        refused("reveal-set-unknown-close", good)  # before its close
        assert rounds.add_close(close, commitments, T0)
        e0, e1 = good.entries
        refused("wrong-closer", make_reveal_set(MINERS[0], PARAMS.chain_id, close, [e0], end))
        refused("bad-reveal-set-sig", replace(good, signature=bytes(64)))
        refused("bad-reveal-set", signed([e1, e0]))  # out of order
        refused("bad-reveal-set", signed([e0, replace(e1, index=0)]))  # two candidates of one commitment
        refused("bad-reveal-set", signed([replace(e1, index=2)]))  # a commitment the close does not hold
        refused("reveal-set-too-early", reveal_set_for(PARAMS, close, blocks, timestamp=end - 1))  # a window cut short
        refused("reveal-set-in-future", reveal_set_for(PARAMS, close, blocks, timestamp=end + 30))
        refused("reveal-set-wrong-close", replace(signed([e0]), height=2))
        refused("reveal-set-unknown-close", replace(signed([e0]), close=bytes(32)))
        assert rounds.add_reveal_set(good, end + 1)
        # the closer equivocates: a second set for the same close is not taken, and is a dispute
        other = reveal_set_for(PARAMS, close, blocks[:1])
        assert not rounds.add_reveal_set(other, end + 1)
        assert rounds.round.reveal_set == good and [d["kind"] for d in rounds.disputes] == ["two-reveal-sets"]
        assert rounds.info(end + 1)["reveal_set"]["entries"] == 2


def test_a_listed_candidate_nobody_has_is_given_up_after_closer_timeout(tmp_path: Path) -> None:
    with closed_round(tmp_path, 2) as (chain, rounds, core, entries, close, commitments):
        held = reveal(entries[0], close, commitments, 190)  # listed by the closer, sent to nobody
        honest = reveal(entries[1], close, commitments, 150)
        rounds.add_candidate(honest, entries[1].weights, T0 + 1)
        end = float(close.timestamp + PP.reveal_window)
        assert rounds.add_reveal_set(reveal_set_for(PARAMS, close, [held, honest]), end)
        fetches = [a for a in settle(rounds, end) if a.kind is AnnounceKind.FETCH]
        assert fetches and fetches[0].hashes == (held.header.hash(),) and chain.height == 0
        assert not [a for a in settle(rounds, end + PP.closer_timeout) if a.kind is AnnounceKind.BLOCK]  # still waits
        settle(rounds, end + PP.closer_timeout + 1)  # given up: the next listed candidate wins
        assert chain.tip_hash == honest.header.hash()
        assert [d["kind"] for d in rounds.disputes] == ["listed-candidate-unavailable"]


def test_a_node_serves_a_listed_candidate_to_a_peer_that_lacks_it(tmp_path: Path) -> None:
    """Scored or only held (lazy verification), a round's candidate is served as a candidate."""
    with closed_round(tmp_path, 2) as (chain, rounds, core, entries, close, commitments):
        scored, held = (reveal(e, close, commitments, 150 + i) for i, e in enumerate(entries))
        rounds.add_candidate(scored, entries[0].weights, T0 + 1)
        relayed = core.on_message("other", M.BlockMsg(held, entries[1].weights, True), T0 + 1)  # held, relayed
        assert [type(a) for a in relayed] == [Broadcast] and held.header.hash() in rounds.round.held
        unknown = bytes(32)
        out = core.on_message("peer", M.GetBlocks((scored.header.hash(), held.header.hash(), unknown)), T0 + 2)
        assert all(isinstance(a, Send) for a in out)
        sent = [a.msg for a in out if isinstance(a, Send)]
        assert [type(m) for m in sent] == [M.BlockMsg, M.BlockMsg, M.NotFound]
        for m, block in zip(sent, (scored, held)):
            assert isinstance(m, M.BlockMsg) and m.candidate and m.block == block


def test_candidates_are_scored_in_claim_order_and_only_while_one_may_win(tmp_path: Path) -> None:
    """Lazy verification: held candidates are not scored during the window; once the reveal set
    has come, the listed ones are scored best claim first, one at a time; once one is scored and
    stands, a lower claim is never scored (an honest round costs one scoring); a false best
    claim is refused (its miner penalised) and the next is scored; when the one standing fails
    its retrain, the next claim is scored after all; an unlisted candidate never is."""
    with closed_round(tmp_path, 5) as (chain, rounds, core, entries, close, commitments):
        blocks = [reveal(e, close, commitments, s) for e, s in zip(entries, (150, 160, 170, 180, 190))]
        for b, e in zip(blocks, entries):
            assert rounds.check_candidate(b, T0 + 1) is None
            rounds.hold_candidate(b, e.weights, "peer")
        end = float(close.timestamp + PP.reveal_window)
        assert rounds.next_evaluation(T0 + 1) is None and rounds.next_evaluation(end) is None  # no set yet
        # the set lists all but 160 and the best claim (190, which reached the closer late)
        assert rounds.add_reveal_set(reveal_set_for(PARAMS, close, [blocks[0], blocks[2], blocks[3]]), end)
        scored: list[int] = []

        def score_next(ok: bool = True) -> None:
            held = rounds.next_evaluation(end)
            assert held is not None
            block, weights, origin = held
            assert origin == "peer" and rounds.next_evaluation(end) is None  # one at a time
            scored.append(block.header.score)
            rounds.evaluated(block)
            if ok:
                rounds.admit_candidate(block, weights, rounds.evaluate_candidate(block, weights))
            else:
                rounds.reject_candidate(block, "bad-score")

        score_next(ok=False)  # the best listed claim (180) is false: refused, its key penalised
        score_next()  # then 170, which stands
        assert rounds.next_evaluation(end) is None and scored == [180, 170]  # 150 cannot win
        rounds.on_retrained(blocks[2].header.hash(), None, "retrain-mismatch")  # 170 fails its retrain
        assert rounds.round.candidates[blocks[2].header.hash()].failed is not None
        score_next()
        assert scored == [180, 170, 150] and rounds.next_evaluation(end) is None  # never 160 nor 190
        settle(rounds, end)
        assert chain.tip_hash == blocks[0].header.hash()
        nxt = noproof_entry(PARAMS, chain.tip, chain.accounts, MINERS[3], GENOTYPES[0], seed=9)  # round 2
        with pytest.raises(InvalidRound) as err:  # the false claim's key pays
            rounds.add_commitment(commitment_for(nxt.block.header, MINERS[3], PARAMS.chain_id), end)
        assert err.value.reason == "penalised-miner"


def test_without_a_reveal_set_a_late_sibling_is_final(tmp_path: Path) -> None:
    """A round whose closer sends no reveal set is decided on the node's own view after the
    wait (a dispute, ``no-reveal-set``); a sibling of its block pushed a reveal window after the
    round ended is refused (``round-final``), unless a close signed by the closer names it."""
    with closed_round(tmp_path, 2) as (chain, rounds, core, entries, close, commitments):
        shown, held = (reveal(e, close, commitments, s) for e, s in zip(entries, (150, 190)))
        rounds.add_candidate(shown, entries[0].weights, T0 + 1)
        end = float(close.timestamp + PP.reveal_window)
        settle(rounds, end + PP.closer_timeout - 1)
        assert chain.height == 0  # it waits for the set
        settle(rounds, end + PP.closer_timeout)
        assert chain.tip_hash == shown.header.hash() and [d["kind"] for d in rounds.disputes] == ["no-reveal-set"]
        at = end + PP.closer_timeout + 1  # past close + 2 reveal windows
        assert core.on_message("peer", M.BlockMsg(held, entries[1].weights, False), at) == []
        assert core.metrics.rejects.labels("p2p", "round-final")._value.get() == 1
        named, _ = close_round(PARAMS, held.header, [], key_index=2, timestamp=int(at))
        core.on_message("peer", M.CloseMsg(named, ()), at)
        assert [type(a).__name__ for a in core.on_block("peer", held, entries[1].weights, at)] == ["Verify"]


def test_a_reveal_entry_that_misstates_its_block_is_passed_over_as_the_closers_fault(tmp_path: Path) -> None:
    """The closer lists a candidate with a claim its block does not make (here: above it, to put
    it first): the node does not take the set's word for the block's score. The candidate is
    passed over (``reveal-entry-mismatch``, a dispute with the closer, not the miner's fault: its
    key is not barred) and the next listed candidate that holds is the round's block."""
    with closed_round(tmp_path, 2) as (chain, rounds, core, entries, close, commitments):
        c0, c1 = (reveal(e, close, commitments, s) for e, s in zip(entries, (150, 160)))
        end = float(close.timestamp + PP.reveal_window)
        rounds.add_candidate(c0, entries[0].weights, T0 + 1)
        rounds.add_candidate(c1, entries[1].weights, T0 + 1)
        honest = reveal_set_for(PARAMS, close, [c0, c1])
        e0, e1 = honest.entries
        lying = make_reveal_set(BEACON, PARAMS.chain_id, close, [replace(e0, score=999), e1], int(end))
        assert rounds.add_reveal_set(lying, end + 0.5)
        out = settle(rounds, end + 0.5)
        assert [a.kind for a in out if a.kind is AnnounceKind.BLOCK] == [AnnounceKind.BLOCK]
        assert chain.tip_hash == c1.header.hash()
        assert [d["kind"] for d in rounds.disputes] == ["reveal-entry-mismatch"]
        assert rounds.disputes[0]["candidate"] == c0.header.hash().hex()
        assert MINERS[0].public_key not in rounds._penalised  # the closer misstated it, not its miner
