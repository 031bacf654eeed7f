"""The solo miner's decisions (pool/miner.py), without a node or an event loop.

Proves: the miner commits only inside the margin before the deadline (min(2 s, 20% of the
window)), only with an uncommitted result and never at or after the deadline; it accepts a
template only when it is for this round, declares exactly its result and pays only its
address; the candidate it builds from a real template, a real beacon close and real
commitments (real keys; one architecture really trained with the regtest recipe) passes
``check_candidate`` and the engine's whole block validation, score and retraining included;
candidates it cannot prove are refused with stable reasons (``not-in-close``,
``bad-commitments``, ``header-mismatch``, ``close-mismatch``); it reveals its best test score,
ties to the lower tiebreak; it parses the round object strictly and refuses a close whose
encoding contradicts its announced hash; node answers map to rejected (4xx, with the node's
reason) or unavailable (5xx, garbage); backoff doubles up to a cap; the key file the node
writes and the cookie token are read back; a mistyped address is ``bad-address``.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from consensus.chain import block_template, genesis_block, validate_block
from consensus.crypto import BadAddress, format_address
from consensus.engines.ponas.engine import PonasEngine
from consensus.engines.ponas.rounds import BUILTIN_TASK, check_candidate, commitment_for, commitment_salt, make_close
from consensus.errors import ConsensusError
from consensus.files import load_key_file
from consensus.state import genesis_accounts
from consensus.types import Block, Payout
from nodeclient import Backoff, NodeError, NodeRejected, NodeUnavailable, decode_answer, normalise_url, read_token
from pool.miner import Miner
from pool.rounds import (
    MinerError,
    RoundInfo,
    TrainResult,
    build_candidate,
    check_template,
    choose_reveal,
    commit_margin,
    parse_round,
    round_scores,
    should_commit,
    train_one,
)
from pool.search import SearchError
from tests.builders import Clock, keys
from tests.framework.chainview import MemoryView
from tests.ponas_builders import BEACON, BEACON_CHAIN, GENOTYPES, ponas_params

MINER, OTHER, STRANGER = keys(3, seed=41)
PARAMS = ponas_params()
CHAIN_ID = PARAMS.chain_id


# --- when to commit -------------------------------------------------------------------------


def test_commit_margin_is_two_seconds_or_a_fifth_of_the_window() -> None:
    assert commit_margin(8) == pytest.approx(1.6)
    assert commit_margin(45) == 2.0
    assert commit_margin(0) == 0.0


@pytest.mark.parametrize(
    ("now", "have_result", "committed", "expected", "why"),
    [
        (100.0, True, False, False, "a whole window ahead: keep searching"),
        (108.3, True, False, False, "just before the margin (deadline 110, margin 1.6)"),
        (108.4, True, False, True, "at the margin"),
        (109.9, True, False, True, "inside the margin"),
        (110.0, True, False, False, "at the deadline: too late"),
        (111.0, True, False, False, "after the deadline"),
        (109.0, False, False, False, "nothing trained yet"),
        (109.0, True, True, False, "this result is already committed (or no seq left)"),
    ],
)
def test_should_commit(now: float, have_result: bool, committed: bool, expected: bool, why: str) -> None:
    assert should_commit(now, deadline=110.0, window=8.0, have_result=have_result, committed=committed) is expected, why


# --- a real round ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kit() -> dict[str, Any]:
    """A trained result, its template on the genesis, our commitment among others, and the
    beacon's close of the round."""
    genesis = genesis_block(PARAMS).header
    accounts = genesis_accounts(PARAMS)
    result = train_one(PARAMS.ponas.space, PARAMS.ponas.recipe, GENOTYPES[0], seed=5)
    assert result.weights_hash == hashlib.sha256(result.weights).digest()
    assert 0 < result.validation <= 297

    def template(payee: bytes, genotype: str, weights_hash: bytes, seed: int) -> Block:
        return block_template(
            genesis, accounts, PARAMS, timestamp=genesis.timestamp + 20, payouts=[Payout(payee, 0)],
            task_id=BUILTIN_TASK, genotype=genotype, weights_hash=weights_hash, seed=seed,
        )

    ours = template(MINER.address, result.genotype, result.weights_hash, result.seed)
    theirs = template(OTHER.address, GENOTYPES[1], b"\x07" * 32, 9)
    mine = commitment_for(ours.header, MINER, CHAIN_ID, seq=0)
    commitments = [
        commitment_for(theirs.header, OTHER, CHAIN_ID, seq=0),
        mine,
        commitment_for(theirs.header, OTHER, CHAIN_ID, seq=1),
    ]
    close = make_close(
        BEACON, CHAIN_ID, height=1, task_id=BUILTIN_TASK, parent=genesis.hash(), test_key=BEACON_CHAIN.key(1),
        key_index=1, commitments=commitments, timestamp=genesis.timestamp + 30,
    )
    rnd = RoundInfo(
        height=1, parent=genesis.hash(), task_id=BUILTIN_TASK, space="nb201", recipe="regtest", phase="commit",
        opened=1000.0, deadline=1008.0, reveal_end=None, commitments=0, max_commitments_per_key=4,
        test_set_size=PARAMS.ponas.test_set_size, close=None,
    )
    return dict(genesis=genesis, accounts=accounts, result=result, ours=ours, theirs=theirs, mine=mine,
                commitments=commitments, close=close, rnd=rnd, salt=commitment_salt(MINER, ours.header, CHAIN_ID))


def test_candidate_from_template_close_and_commitments_is_valid(kit: dict[str, Any]) -> None:
    check_template(kit["ours"], kit["rnd"], kit["result"], [Payout(MINER.address, 0)])
    close = kit["close"]
    [score] = round_scores([kit["result"]], "nb201", close.test_key, PARAMS.ponas.test_set_size)
    assert 0 < score <= PARAMS.ponas.test_set_size
    candidate = build_candidate(kit["ours"], close, kit["commitments"], kit["mine"], kit["salt"], score, CHAIN_ID)
    assert candidate.header.round_close == close.hash() and candidate.header.score == score
    assert candidate.proof is not None and candidate.proof.index == 1
    assert check_candidate(candidate, CHAIN_ID, PARAMS.ponas) == kit["mine"]
    assert Block.decode(candidate.encode()) == candidate  # what goes on the wire, as hex
    # The whole block validation a node runs: seal, body, state, weights, score and retrain.
    engine = PonasEngine(PARAMS)
    view = MemoryView(kit["genesis"], weights=[kit["result"].weights])
    validate_block(candidate, kit["genesis"], kit["accounts"], PARAMS, engine, view, int(Clock()()))


def test_candidates_that_cannot_be_proved_are_refused(kit: dict[str, Any]) -> None:
    ours, close, commitments, mine, salt = kit["ours"], kit["close"], kit["commitments"], kit["mine"], kit["salt"]
    cases: list[tuple[str, Any]] = [
        # the close left our commitment out
        ("not-in-close", lambda: build_candidate(
            ours, make_close(BEACON, CHAIN_ID, height=1, task_id=BUILTIN_TASK, parent=close.parent,
                             test_key=close.test_key, key_index=1, commitments=[commitments[0]]),
            [commitments[0]], mine, salt, 10, CHAIN_ID)),
        # the node gave the commitments in another order than the close's
        ("bad-commitments", lambda: build_candidate(ours, close, commitments[::-1], mine, salt, 10, CHAIN_ID)),
        ("bad-commitments", lambda: build_candidate(ours, close, commitments[:2], mine, salt, 10, CHAIN_ID)),
        # our commitment binds another template (other payouts)
        ("header-mismatch", lambda: build_candidate(kit["theirs"], close, commitments, mine, salt, 10, CHAIN_ID)),
        # the right template, a wrong salt
        ("header-mismatch", lambda: build_candidate(ours, close, commitments, mine, bytes(32), 10, CHAIN_ID)),
        # a close for another parent
        ("close-mismatch", lambda: build_candidate(
            ours, replace(close, parent=b"\x01" * 32), commitments, mine, salt, 10, CHAIN_ID)),
    ]
    for reason, attempt in cases:
        with pytest.raises(MinerError) as err:
            attempt()
        assert err.value.reason == reason


def test_template_must_be_for_this_round_our_result_and_pay_what_we_asked(kit: dict[str, Any]) -> None:
    ours, rnd, result = kit["ours"], kit["rnd"], kit["result"]
    me = [Payout(MINER.address, 0)]
    check_template(ours, rnd, result, me)
    reward = ours.coinbase.payouts[0].amount
    bad = [
        (ours, rnd, replace(result, seed=result.seed + 1), me),  # another seed declared
        (ours, replace(rnd, height=2), result, me),  # the tip moved on
        (ours, rnd, result, [Payout(STRANGER.address, 0)]),  # the coinbase pays someone else
        (ours, rnd, result, [Payout(STRANGER.address, 1), Payout(MINER.address, 0)]),  # a payout left out
        (replace(ours, header=replace(ours.header, score=5)), rnd, result, me),  # not unsealed
    ]
    # a split: every amount as asked, the last (asked as 0) takes the rest
    split = replace(ours.coinbase, payouts=(Payout(STRANGER.address, 7), Payout(MINER.address, reward - 7)))
    two = replace(ours, coinbase=split, header=replace(ours.header, payouts_root=split.payouts_root()))
    check_template(two, rnd, result, [Payout(STRANGER.address, 7), Payout(MINER.address, 0)])
    bad.append((two, rnd, result, [Payout(STRANGER.address, 8), Payout(MINER.address, 0)]))
    for args in bad:
        with pytest.raises(MinerError) as err:
            check_template(*args)
        assert err.value.reason == "bad-template"


def test_reveal_the_best_test_score_then_the_lower_tiebreak() -> None:
    assert choose_reveal([(150, 3), (170, 5), (160, 0)]) == 1
    assert choose_reveal([(170, 5), (170, 2)]) == 1
    with pytest.raises(ValueError):
        choose_reveal([])


# --- the round object -----------------------------------------------------------------------


def round_json(kit: dict[str, Any], closed: bool) -> dict[str, Any]:
    close = kit["close"]
    return {
        "height": 1, "parent": close.parent.hex(), "task_id": close.task_id.hex(), "space": "nb201",
        "recipe": "regtest", "phase": "reveal" if closed else "commit", "opened": 1_700_000_000.0,
        "deadline": 1_700_000_008, "reveal_end": 1_700_000_034.0 if closed else None, "commitments": 3,
        "max_commitments_per_key": 4, "test_set_size": 200, "reward": 50 * 10**8,
        "close": {"hash": close.hash().hex(), "test_key": close.test_key.hex(), "key_index": 1,
                  "timestamp": close.timestamp, "commitments_count": 3, "encoded": close.encode().hex()}
        if closed else None,
    }


def test_parse_round_open_and_closed(kit: dict[str, Any]) -> None:
    rnd = parse_round(round_json(kit, closed=False))
    assert (rnd.height, rnd.phase, rnd.window, rnd.close) == (1, "commit", 8.0, None)
    closed = parse_round(round_json(kit, closed=True))
    assert closed.close is not None and closed.close.close == kit["close"]
    assert closed.close.test_key == BEACON_CHAIN.key(1)
    assert closed.ident != replace(closed, opened=closed.opened + 12, deadline=closed.deadline + 12).ident


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("deadline"),
        lambda d: d.update(height="1"),
        lambda d: d.update(parent="zz"),
        lambda d: d.update(task_id="00"),
        lambda d: d["close"].update(hash="00" * 32),  # the close's hash contradicts its encoding
        lambda d: d["close"].update(test_key="11" * 32),
        lambda d: d["close"].update(encoded="c0ffee"),
        lambda d: d.update(height=2),  # the close is for another height
    ],
)
def test_parse_round_refuses_malformed_rounds(kit: dict[str, Any], change: Any) -> None:
    data = round_json(kit, closed=True)
    change(data)
    with pytest.raises(MinerError) as err:
        parse_round(data)
    assert err.value.reason == "bad-answer"


# --- node answers, backoff, files -----------------------------------------------------------


def test_node_answers_map_to_rejected_or_unavailable() -> None:
    assert decode_answer("GET", "/api/v1/round", 200, '{"height": 3}') == {"height": 3}
    assert decode_answer("POST", "/api/v1/commitments", 202, '{"hash": "ab", "index": 0}')["index"] == 0
    body = json.dumps({"error": {"reason": "commit-too-late", "detail": "the deadline has passed"}})
    with pytest.raises(NodeRejected) as rejected:
        decode_answer("POST", "/api/v1/commitments", 400, body)
    assert (rejected.value.reason, rejected.value.status) == ("commit-too-late", 400)
    assert "deadline" in rejected.value.detail
    with pytest.raises(NodeRejected) as no_body:
        decode_answer("POST", "/api/v1/template", 404, "not here")
    assert no_body.value.reason == "http-404"
    for status, text in ((500, "boom"), (503, ""), (200, "<html>"), (302, "")):
        with pytest.raises(NodeUnavailable):
            decode_answer("GET", "/api/v1/round", status, text)


def test_backoff_doubles_up_to_a_cap_and_resets() -> None:
    b = Backoff(initial=0.5, maximum=4.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5


def test_key_file_written_by_the_node_is_read_back(tmp_path: Path) -> None:
    from node.keyfile import save_key  # the format's owner; pool reads it with plain json

    path = tmp_path / "miner.key"
    save_key(MINER, str(path))
    assert load_key_file(str(path)).seed == MINER.seed
    with pytest.raises(ConsensusError) as err:
        load_key_file(str(tmp_path / "missing.key"))
    assert err.value.reason == "no-key-file"
    (tmp_path / "bad.key").write_text('{"type": "rsa"}')
    with pytest.raises(ConsensusError) as err:
        load_key_file(str(tmp_path / "bad.key"))
    assert err.value.reason == "bad-key-file"


def test_token_from_cookie_file_or_environment(tmp_path: Path) -> None:
    cookie = tmp_path / ".cookie"
    cookie.write_text("s3cret\n")
    assert read_token(str(cookie), env={"PONAS_TOKEN": "other"}) == "s3cret"
    assert read_token(None, env={"PONAS_TOKEN": " envtoken "}) == "envtoken"
    assert read_token(None, env={}) is None
    with pytest.raises(NodeError) as err:
        read_token(str(tmp_path / "nope"))
    assert err.value.reason == "no-token-file"


def test_miner_refuses_a_bad_address_or_strategy() -> None:
    good = format_address(MINER.address)
    with pytest.raises(BadAddress) as err:
        Miner("http://127.0.0.1:1", "pn1notanaddress", rng=random.Random(1))
    assert err.value.reason == "bad-address"
    with pytest.raises(SearchError) as bad:
        Miner("http://127.0.0.1:1", good, strategy_name="annealing", rng=random.Random(1))
    assert bad.value.reason == "bad-strategy"
    miner = Miner("127.0.0.1:8545/", good.upper(), rng=random.Random(1), key=MINER)
    assert miner.address == MINER.address and miner.address_text == good
    assert miner.node_url == normalise_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"


def test_train_result_keeps_weights_out_of_its_repr(kit: dict[str, Any]) -> None:
    result: TrainResult = kit["result"]
    assert "weights=" not in repr(result) and result.genotype in repr(result)
