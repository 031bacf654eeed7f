"""The backup closer (round protocol v2): a second closer named in the genesis, with the
beacon's hash chain of round keys and a signing key of its own, replaces a silent beacon.

What it proves:

* a genesis without a backup encodes and hashes as before the backup existed (the reference
  chain of the paper's tables keeps its genesis), and a genesis that writes the field at its
  default is not canonical;
* the backup does not close at the deadline; it closes an attempt (with that attempt's key)
  once the beacon has been silent for ``closer_timeout`` seconds, and signs the round's reveal
  set for a beacon that closed and then went silent; a node refuses a backup's close or set
  before that (``backup-too-early``), and a beacon's close stamped after the takeover
  (``closer-timed-out``);
* on a real network of two nodes on 127.0.0.1 whose beacon never runs, the backup closes the
  round, signs its reveal set, and both nodes take the same block.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from consensus.chain import genesis_block
from consensus.engines.ponas.rounds import check_close, commitment_for, make_close, make_reveal_set, round_seal
from consensus.errors import DecodeError, InvalidRound
from consensus.params import PonasParams, preset_params
from consensus.types import RevealEntry, RoundClose
from node.mempool import Mempool
from node.rounds import AnnounceKind, RoundService
from p2p import messages as M
from tests.builders import GENESIS_TIME, keys
from tests.framework.nodes import NodeNetwork, wait_for
from tests.framework.noproof import noproof_engine, open_noproof_chain
from tests.framework.peer import FakePeer
from tests.ponas_builders import (
    BACKUP,
    BEACON,
    BEACON_CHAIN,
    GENOTYPES,
    close_round,
    noproof_entry,
    ponas_params,
    reveal,
    reveal_set_for,
)

PARAMS = ponas_params(backup_pubkey=BACKUP.public_key)
PP = PARAMS.ponas
MINERS = keys(2, seed=88)


def test_a_genesis_without_a_backup_hashes_as_before() -> None:
    from bench.paper.build_table import PAPER_GENESIS_TIME

    paper = preset_params("devnet", task="mnist1d", genesis_time=PAPER_GENESIS_TIME)
    # the reference chain of bench/paper's mnist1d tables (their meta files name this genesis;
    # it changed with the devnet test set's size, 5,000 -> 20,000, not with the backup field)
    assert genesis_block(paper).header.hash().hex().startswith("020caa3940bedf1d")
    named = replace(paper, ponas=replace(paper.ponas, backup_pubkey=BACKUP.public_key))
    assert genesis_block(named).header.hash() != genesis_block(paper).header.hash()
    assert PonasParams.from_value(named.ponas.to_value()) == named.ponas
    assert len(named.ponas.to_value()) == len(paper.ponas.to_value()) + 1
    with pytest.raises(DecodeError) as exc:
        PonasParams.from_value(paper.ponas.to_value() + [bytes(32)])
    assert exc.value.reason == "non-canonical"


def backup_close(chain: object, entries: list, stamp: int, key_index: int = 1,  # type: ignore[type-arg]
                 signer: object = BACKUP) -> tuple[RoundClose, list]:  # type: ignore[type-arg]
    tip = chain.tip  # type: ignore[attr-defined]
    close, commitments = close_round(PARAMS, tip, entries, key_index=key_index, timestamp=stamp)
    close = make_close(signer, PARAMS.chain_id, height=close.height, task_id=close.task_id,  # type: ignore[arg-type]
                       parent=close.parent, test_key=BEACON_CHAIN.key(key_index), key_index=key_index,
                       commitments=commitments, timestamp=stamp)
    return close, commitments


def test_the_backup_closes_only_for_a_silent_beacon(tmp_path: Path) -> None:
    deadline = GENESIS_TIME + PP.commit_window  # round 1's commit deadline on the chain's timeline
    takeover = deadline + PP.closer_timeout
    with open_noproof_chain(tmp_path / "b", PARAMS, clock=lambda: float(deadline)) as cb, \
            open_noproof_chain(tmp_path / "n", PARAMS, clock=lambda: float(deadline)) as cn:
        backup = RoundService(cb, Mempool(PARAMS.chain_id, cb.account), float(GENESIS_TIME), closer=(BACKUP, BEACON_CHAIN))
        node = RoundService(cn, Mempool(PARAMS.chain_id, cn.account), float(GENESIS_TIME))
        entries = [noproof_entry(PARAMS, cb.tip, cb.accounts, k, GENOTYPES[i], seed=i) for i, k in enumerate(MINERS)]
        for e in entries:
            c = commitment_for(e.block.header, e.key, PARAMS.chain_id)
            assert backup.add_commitment(c, GENESIS_TIME + 1) and node.add_commitment(c, GENESIS_TIME + 1)
        assert backup.tick(float(deadline + 1)) == [] and backup.round.close is None  # the beacon's turn
        assert backup.tick(float(takeover - 1)) == []
        out = backup.tick(float(takeover))
        assert [a.kind for a in out] == [AnnounceKind.CLOSE]
        close = out[0].close
        assert close is not None and close.closer == BACKUP.public_key and close.key_index == 1
        assert close.test_key == BEACON_CHAIN.key(1)  # the attempt's key, from the same hash chain

        def refused(reason: str, c: object, commitments: object, at: float) -> None:
            with pytest.raises(InvalidRound) as err:
                node.add_close(c, commitments, at)  # type: ignore[arg-type]
            assert err.value.reason == reason, (reason, err.value)

        # a backup's close before the takeover; a beacon's close stamped after it
        refused("backup-too-early", *backup_close(cn, entries, deadline + 5), float(deadline + 6))
        refused("closer-timed-out", *backup_close(cn, entries, takeover + 1, signer=BEACON), float(takeover + 1))
        with pytest.raises(InvalidRound) as err:  # the bound a syncing node checks, in the block's seal
            check_close(backup_close(cn, entries, GENESIS_TIME + 5)[0], PARAMS.chain_id, PP, prev_key=BEACON_CHAIN.anchor,
                        prev_key_index=0, prev_time=GENESIS_TIME)
        assert err.value.reason == "backup-too-early"
        assert node.add_close(close, out[0].commitments, float(takeover))
        # the backup signs the reveal set of its own close at the window's end
        blocks = [reveal(e, close, list(out[0].commitments), 150 + i) for i, e in enumerate(entries)]
        for b, e in zip(blocks, entries):
            backup.add_candidate(b, e.weights, float(takeover + 1))
        end = float(close.timestamp + PP.reveal_window)
        sets = [a.reveal_set for a in backup.tick(end) if a.kind is AnnounceKind.REVEAL_SET]
        assert len(sets) == 1 and sets[0] is not None and len(sets[0].entries) == 2
        assert node.add_reveal_set(sets[0], end)


def test_the_backup_signs_the_reveal_set_of_a_beacon_that_went_silent(tmp_path: Path) -> None:
    now = float(GENESIS_TIME + 21)
    with open_noproof_chain(tmp_path / "b", PARAMS, clock=lambda: now) as cb, \
            open_noproof_chain(tmp_path / "n", PARAMS, clock=lambda: now) as cn:
        backup = RoundService(cb, Mempool(PARAMS.chain_id, cb.account), now, closer=(BACKUP, BEACON_CHAIN))
        node = RoundService(cn, Mempool(PARAMS.chain_id, cn.account), now)
        entry = noproof_entry(PARAMS, cb.tip, cb.accounts, MINERS[0], GENOTYPES[0], seed=1)
        close, commitments = close_round(PARAMS, cb.tip, [entry], timestamp=int(now))  # the beacon closes...
        for r in (backup, node):
            assert r.add_close(close, commitments, now)
            r.add_candidate(reveal(entry, close, commitments, 150), entry.weights, now + 1)
        end = float(close.timestamp + PP.reveal_window)
        # ... and sends no reveal set: the backup waits closer_timeout, then signs one
        assert not [a for a in backup.tick(end) if a.kind is AnnounceKind.REVEAL_SET]
        node.tick(end + PP.closer_timeout + 1)
        assert node.round.reveal_set is None and node.chain.height == 0  # it waits for the backup
        early = make_reveal_set(BACKUP, PARAMS.chain_id, close, [RevealEntry(bytes(32), 1, 0)], int(end))
        with pytest.raises(InvalidRound) as err:
            node.add_reveal_set(early, end + 1)
        assert err.value.reason == "backup-too-early"
        out = backup.tick(end + PP.closer_timeout)
        sets = [a.reveal_set for a in out if a.kind is AnnounceKind.REVEAL_SET]
        assert len(sets) == 1 and sets[0] is not None and sets[0].closer == BACKUP.public_key
        assert node.add_reveal_set(sets[0], end + PP.closer_timeout + 1)
        assert node.round.reveal_set == sets[0] and not node.disputes
        # (the beacon's own set, had it come, would have been taken just the same)
        assert reveal_set_for(PARAMS, close, []).closer == BEACON.public_key


async def test_a_network_whose_beacon_never_runs_still_mines(tmp_path: Path) -> None:
    params = replace(ponas_params(commit_window=3, reveal_window=2, closer_timeout=3, backup_pubkey=BACKUP.public_key),
                     genesis_time=int(time.time()))
    pp = params.ponas
    async with NodeNetwork(tmp_path, params, 2, backup=1, engine=noproof_engine) as net:
        n0, n1 = net.nodes
        genesis = n0.chain.tip
        entry = noproof_entry(params, genesis, n0.chain.accounts, MINERS[1], GENOTYPES[1], seed=3)
        async with await FakePeer.connect(n0) as miner:
            await miner.send_and_expect(M.CommitmentMsg(commitment_for(entry.block.header, entry.key, params.chain_id)))
            msg = await miner.wait_for_message(M.CloseMsg, timeout=pp.commit_window + pp.closer_timeout + 10)
            assert msg.close.closer == BACKUP.public_key
            assert msg.close.timestamp >= params.genesis_time + pp.commit_window + pp.closer_timeout
            commitments = list(msg.commitments)
            header = replace(entry.block.header, round_close=msg.close.hash(), score=150)
            block = replace(entry.block, header=header, proof=round_seal(msg.close, commitments, 0, entry.salt))
            await miner.send_and_expect(M.BlockMsg(block, entry.weights, True))
            await wait_for(lambda: n0.chain.height == 1 == n1.chain.height, pp.reveal_window + 15,
                           "the round's block on both nodes")
        assert n0.chain.tip_hash == n1.chain.tip_hash == block.header.hash()
        assert n0.rounds is not None and not [d for d in n0.rounds.disputes if d["kind"] == "no-reveal-set"]
