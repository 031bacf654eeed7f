"""The round service's liveness: a round whose commit deadline passes with no commitment is
given a fresh window on every node (same height, parent and beacon key) instead of staying in
"closing" for ever, so a miner that comes late can still commit and the closer then closes."""

from __future__ import annotations

from pathlib import Path

from consensus.engines.ponas.rounds import commitment_for
from node.generate import open_chain
from node.mempool import Mempool
from node.rounds import RoundService
from tests.builders import GENESIS_TIME, keys
from tests.ponas_builders import BEACON, BEACON_CHAIN, ponas_params, trained_entry

PARAMS = ponas_params()


def test_empty_round_gets_a_fresh_window(tmp_path: Path) -> None:
    now = float(GENESIS_TIME + 5)
    with open_chain(str(tmp_path / "n"), PARAMS, clock=lambda: now) as chain:
        rounds = RoundService(chain, Mempool(PARAMS.chain_id, chain.account), now, closer=(BEACON, BEACON_CHAIN))
        first_deadline = rounds.round.deadline
        now = first_deadline + 30  # nobody committed
        assert rounds.tick(now) == []
        assert rounds.phase(now) == "commit" and rounds.round.deadline == now + PARAMS.ponas.commit_window
        assert rounds.round.attempt == 0
        entry = trained_entry(PARAMS, chain.tip, chain.accounts, keys(1, seed=3)[0], "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|skip_connect~2|", 1)
        assert rounds.add_commitment(commitment_for(entry.block.header, entry.key, PARAMS.chain_id), now + 1)
        now = rounds.round.deadline
        announced = rounds.tick(now)
        assert [a.kind for a in announced] == ["close"]
        assert announced[0].close is not None and announced[0].close.key_index == 1  # no key was skipped
