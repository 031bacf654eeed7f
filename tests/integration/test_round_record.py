"""A round's record (what the explorer's round page shows), on the no-proof verifier.

What it proves:

* a node that decides a round writes its record (``GET /api/v1/rounds/H``): the close, the
  commitments in the close's order with when this node saw each, the reveal set, and the
  leaderboard in the protocol's order with each candidate's fate: the winner (with this node's
  score), a candidate refused by its model step (with its reason, left out of the reveal set),
  a claim relayed by a peer below the winner that was never scored; the record is the same
  after the node restarts (it is in the datadir, not only in memory);
* the round in progress answers at its height, live;
* a round the node did not follow (its block imported without the round service) answers
  with what its block carries (``source: block``);
* the protocol decides the record and the service writes it: the round service's tick
  returns it with the round's block, the core turns it into a ``StoreRound`` action; a round
  whose block came from elsewhere (the tip moved under it) is recorded too;
* a record is bounded: at most :data:`node.rounds.MAX_RECORD_ITEMS` commitments and candidates.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consensus.crypto import format_address
from consensus.engines.ponas.rounds import commitment_for
from consensus.errors import InvalidBlock
from consensus.types import ZERO_SIG, Commitment, RevealEntry
from node.actions import Retrain, StoreRound
from node.core import NodeCore
from node.mempool import Mempool
from node.metrics import Metrics
from node.rounds import MAX_RECORD_ITEMS, RoundService, Standing, round_record
from node.service import Node
from p2p import messages as M
from tests.builders import GENESIS_TIME, keys
from tests.framework.nodes import start_node, wait_for
from tests.framework.noproof import noproof_engine, open_noproof_chain
from tests.framework.peer import FakePeer
from tests.ponas_builders import GENOTYPES, close_round, noproof_entry, ponas_params, reveal, reveal_set_for

PARAMS = ponas_params()
PP = PARAMS.ponas
MINERS = keys(3, seed=51)


async def get(node: Node, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{node.api_port}{path}") as r:
            return r.status, await r.json()


async def test_a_decided_round_is_recorded_and_survives_a_restart(tmp_path: Path) -> None:
    clock = [float(GENESIS_TIME + 1)]

    async def started() -> Node:
        return await start_node(tmp_path, "n0", PARAMS, closer=True, engine=noproof_engine(PARAMS),
                                clock=lambda: clock[0], tick=0.02)

    node = await started()
    try:
        assert node.rounds is not None
        entries = [noproof_entry(PARAMS, node.chain.tip, node.chain.accounts, k, GENOTYPES[i], seed=i)
                   for i, k in enumerate(MINERS)]
        for e in entries:
            await node.submit_commitment(commitment_for(e.block.header, e.key, PARAMS.chain_id))
        status, live = await get(node, "/api/v1/rounds/1")
        assert status == 200 and live["status"] == "in-progress" and live["phase"] == "commit"
        assert live["commitments"]["count"] == 3 and live["close"] is None and live["candidates"] == []
        clock[0] = node.rounds.round.deadline + 0.5
        await wait_for(lambda: node.rounds is not None and node.rounds.round.close is not None, 5, "the close")
        close, commitments = node.rounds.round.close, node.rounds.round.ordered
        assert close is not None
        winner, refused, relayed = (reveal(e, close, commitments, s) for e, s in zip(entries, (170, 190, 150)))
        assert await node.submit_candidate(winner, entries[0].weights) == 170
        with pytest.raises(InvalidBlock) as refusal:  # not the committed weights: its model step refuses it
            await node.submit_candidate(refused, entries[2].weights)
        assert refusal.value.reason == "bad-weights-hash"
        async with await FakePeer.connect(node) as peer:
            await peer.send(M.BlockMsg(relayed, entries[2].weights, True))
            await wait_for(lambda: node.rounds is not None and relayed.header.hash() in node.rounds.round.held, 5,
                           "the relayed candidate held")
        clock[0] = float(close.timestamp + PP.reveal_window + 1)
        await wait_for(lambda: node.chain.height == 1, 10, "the round's block")
        status, record = await get(node, "/api/v1/rounds/1")
        assert status == 200
    finally:
        await node.stop()

    assert (record["height"], record["status"], record["source"], record["attempt"]) == (1, "decided", "node", 0)
    assert record["winner"] == winner.header.hash().hex() and record["canonical"]
    assert record["close"]["hash"] == close.hash().hex() and record["close"]["commitments_count"] == 3
    assert [(c["index"], c["miner"], c["hash"]) for c in record["commitments"]["items"]] == [
        (i, format_address(MINERS[i].address), c.hash().hex()) for i, c in enumerate(commitments)]  # as they came
    assert all(c["seen"] == GENESIS_TIME + 1 for c in record["commitments"]["items"])  # the test's clock
    assert [(c["rank"], c["block"], c["claimed"], c["score"], c["status"], c["reason"], c["listed"], c["known"])
            for c in record["candidates"]] == [
        (1, refused.header.hash().hex(), 190, None, "refused", "bad-weights-hash", False, False),
        (2, winner.header.hash().hex(), 170, 170, "winner", None, True, True),
        (3, relayed.header.hash().hex(), 150, None, "not-scored", None, True, False)]
    listed = {(e["block"], e["score"], e["index"]) for e in record["reveal_set"]["entries"]}
    assert listed == {(winner.header.hash().hex(), 170, 0), (relayed.header.hash().hex(), 150, 2)}
    assert record["test_set_size"] == PP.test_set_size

    node = await started()  # restarted: the record is in the datadir
    try:
        status, again = await get(node, "/api/v1/rounds/1")
        assert status == 200 and again == record
        status, live = await get(node, "/api/v1/rounds/2")
        assert status == 200 and live["status"] == "in-progress" and live["height"] == 2
    finally:
        await node.stop()


async def test_a_round_the_node_did_not_follow_answers_from_its_block(tmp_path: Path) -> None:
    with open_noproof_chain(tmp_path / "n0", PARAMS, clock=time.time) as chain:
        entries = [noproof_entry(PARAMS, chain.tip, chain.accounts, k, GENOTYPES[i], seed=i)
                   for i, k in enumerate(MINERS[:2])]
        close, commitments = close_round(PARAMS, chain.tip, entries)
        block = reveal(entries[1], close, commitments, 120)
        chain.import_block(block, entries[1].weights)
    node = await start_node(tmp_path, "n0", PARAMS, engine=noproof_engine(PARAMS))
    try:
        status, record = await get(node, "/api/v1/rounds/1")
    finally:
        await node.stop()
    assert status == 200 and record["source"] == "block" and record["canonical"]
    assert record["winner"] == block.header.hash().hex() and record["reveal_set"] is None
    assert record["commitments"]["count"] == 2 and record["commitments"]["truncated"]
    assert [(c["index"], c["miner"]) for c in record["commitments"]["items"]] == [
        (1, format_address(MINERS[1].address))]
    assert [(c["status"], c["claimed"], c["index"], c["miner"]) for c in record["candidates"]] == [
        ("winner", 120, 1, format_address(MINERS[1].address))]


def test_the_protocol_returns_the_record_and_the_core_asks_to_store_it(tmp_path: Path) -> None:
    t0 = float(GENESIS_TIME + 21)
    with open_noproof_chain(tmp_path / "a", PARAMS, clock=lambda: t0) as chain, \
            open_noproof_chain(tmp_path / "b", PARAMS, clock=lambda: t0) as other:
        rounds = RoundService(chain, Mempool(PARAMS.chain_id, chain.account), t0)
        core = NodeCore(PARAMS, chain, rounds.mempool, rounds, Metrics(), t0)
        entries = [noproof_entry(PARAMS, chain.tip, chain.accounts, k, GENOTYPES[i], seed=i)
                   for i, k in enumerate(MINERS)]
        close, commitments = close_round(PARAMS, chain.tip, entries, timestamp=GENESIS_TIME + 21)
        assert rounds.add_close(close, commitments, t0)
        listed, best, left_out = (reveal(e, close, commitments, s) for e, s in zip(entries, (150, 160, 140)))
        for b, e in zip((listed, best, left_out), entries):
            rounds.add_candidate(b, e.weights, t0 + 1)
        end = float(close.timestamp + PP.reveal_window)
        assert rounds.add_reveal_set(reveal_set_for(PARAMS, close, [listed, best]), end)
        stored: list[StoreRound] = []
        for _ in range(5):  # the best's retrain (the no-proof verifier's), then the import
            actions = core.tick(end + 1)
            stored += [a for a in actions if isinstance(a, StoreRound)]
            for a in actions:
                if isinstance(a, Retrain):
                    core.on_retrained(a.block, rounds.engine.work_verdict(a.block, a.weights), "")
        assert chain.tip_hash == best.header.hash()
        assert len(stored) == 1 and stored[0].height == 1
        record = stored[0].record
        assert [(c["block"], c["status"], c["reason"]) for c in record["candidates"]] == [
            (best.header.hash().hex(), "winner", None), (listed.header.hash().hex(), "scored", None),
            (left_out.header.hash().hex(), "not-listed", "not-in-reveal-set")]

        # another node that followed the round but took its block from elsewhere records it too
        follower = RoundService(other, Mempool(PARAMS.chain_id, other.account), t0)
        assert follower.add_close(close, commitments, t0)
        other.import_block(best, entries[1].weights)
        announced = follower.tick(end + 1)
        records = [a.record for a in announced if a.record is not None]
        assert len(records) == 1 and records[0]["winner"] == best.header.hash().hex()
        assert [c["status"] for c in records[0]["candidates"]] == ["winner"]


def test_a_record_is_bounded() -> None:
    miner = keys(1, seed=52)[0].public_key
    many = [Commitment(1, bytes(32), bytes(32), i.to_bytes(32, "big"), 0, miner, ZERO_SIG)
            for i in range(MAX_RECORD_ITEMS + 10)]
    standings = [Standing(RevealEntry(i.to_bytes(32, "big"), i % 200, i), "not-scored")
                 for i in range(MAX_RECORD_ITEMS + 10)]
    record = round_record(1, bytes(32), status="decided", source="node", attempt=0, close=None, commitments=many,
                          seen={}, reveal_set=None, standings=standings, winner=None, at=0.0)
    assert record["commitments"]["count"] == MAX_RECORD_ITEMS + 10 and record["commitments"]["truncated"]
    assert len(record["commitments"]["items"]) == len(record["candidates"]) == MAX_RECORD_ITEMS
    assert record["candidates_truncated"] and record["candidates"][0]["claimed"] == 199  # the best claims kept
