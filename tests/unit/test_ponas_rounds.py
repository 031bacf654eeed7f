"""Round rules without the model: commitments are signed and bounded per key, the closer's
collection admits only timely commitments of its round, closes are checked against the
beacon's hash chain and the expected signer, a candidate must carry a commitment the close
includes and open it (v2: the commitment hides the whole header but its score behind a salt
derived from the miner's key, and the seal's salt opens it: one commitment, one candidate), and
the selection rule orders candidates by score, then a tiebreak nobody can steer (a hash of the
test key and the commitment: not the closer's order), then block hash, and fork weight agrees
with it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from consensus.beacon import BeaconChain
from consensus.engines.ponas.rounds import (
    BUILTIN_TASK,
    CommitmentSet,
    check_candidate,
    check_close,
    commitment_for,
    commitment_salt,
    fork_weight,
    make_close,
    round_seal,
    seal_tiebreak,
    sealed_digest,
    select_winner,
    tiebreak,
)
from consensus.errors import InvalidBlock, InvalidRound
from consensus.params import preset_params
from consensus.types import Block, Coinbase, Header
from tests.builders import keys

K = keys(6)
BEACON_KEY = K[5]
CHAIN = BeaconChain.create(length=50, seed=b"\x42" * 32)
PARAMS = preset_params("regtest", beacon_pubkey=BEACON_KEY.public_key, beacon_anchor=CHAIN.anchor, genesis_time=0, task="digits")
PP = PARAMS.ponas
CID = PARAMS.chain_id
PARENT = b"\x11" * 32
NB = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"


def header(miner: int, score: int = 0, genotype: str = NB, seed: int = 0) -> Header:
    return Header(
        version=1, height=1, parent=PARENT, timestamp=100, engine="ponas", txs_root=bytes([miner]) * 32,
        state_root=bytes(32), payouts_root=bytes(32), round_close=bytes(32), task_id=BUILTIN_TASK,
        genotype=genotype, weights_hash=bytes([miner + 1]) * 32, seed=seed, score=score, bits=0, nonce=0, extra=b"",
    )


def round_with(miners: list[int]) -> tuple[list, object]:  # type: ignore[type-arg]
    commitments = [commitment_for(header(m), K[m], CID) for m in miners]
    close = make_close(
        BEACON_KEY, CID, height=1, task_id=BUILTIN_TASK, parent=PARENT, test_key=CHAIN.key(1), key_index=1,
        commitments=commitments,
    )
    return commitments, close


def candidate(commitments: list, close, i: int, score: int = 5, **changes: object) -> Block:  # type: ignore[no-untyped-def,type-arg]
    """Miner ``i``'s candidate (``commitments[i]``); ``changes`` alter its header after the
    commitment (a candidate other than the one committed)."""
    h = replace(header(i), round_close=close.hash(), score=score, **changes)  # type: ignore[arg-type]
    return Block(h, Coinbase(1, ()), (), round_seal(close, commitments, i, commitment_salt(K[i], header(i), CID)))


def test_valid_candidate_passes_and_returns_its_commitment() -> None:
    commitments, close = round_with([0, 1, 2])
    check_close(close, CID, PP, prev_key=CHAIN.anchor, prev_key_index=0)
    for i in range(3):
        assert check_candidate(candidate(commitments, close, i), CID, PP) == commitments[i]


def test_candidate_table() -> None:
    commitments, close = round_with([0, 1, 2])
    outsider = commitment_for(header(3), K[3], CID)
    cases = {
        "commitment-not-in-close": Block(
            replace(header(3), round_close=close.hash()), Coinbase(1, ()), (), replace(round_seal(close, [outsider], 0, commitment_salt(K[3], header(3), CID)), close=close)
        ),
        "header-mismatch": candidate(commitments, close, 1, genotype="|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"),
        "bad-round-close": replace(candidate(commitments, close, 0), header=replace(header(0), round_close=b"\x01" * 32)),
        "no-commitment": replace(candidate(commitments, close, 0), proof=None),
    }
    cases["header-mismatch "] = candidate(commitments, close, 2, seed=99)
    # the whole candidate is committed: its timestamp, extra, payouts and transactions too
    # (one commitment cannot be revealed as many variants: each would be scored and relayed)
    cases["header-mismatch  "] = candidate(commitments, close, 2, timestamp=101)
    cases["header-mismatch   "] = candidate(commitments, close, 2, extra=b"variant")
    cases["header-mismatch    "] = candidate(commitments, close, 2, payouts_root=b"\x07" * 32)
    cases["header-mismatch     "] = candidate(commitments, close, 2, txs_root=b"\x07" * 32)
    good = candidate(commitments, close, 2)
    cases["header-mismatch      "] = replace(good, proof=replace(good.proof, salt=b"\x00" * 32))  # type: ignore[arg-type]
    wrong_index = candidate(commitments, close, 1)
    cases["commitment-not-in-close "] = replace(wrong_index, proof=replace(wrong_index.proof, index=2))  # type: ignore[arg-type]
    for reason, block in cases.items():
        with pytest.raises(InvalidBlock) as err:
            check_candidate(block, CID, PP)
        assert err.value.reason == reason.strip(), reason


def test_more_commitments_than_allowed() -> None:
    too_far = commitment_for(header(0), K[0], CID, seq=PP.max_commitments_per_key)
    close = make_close(BEACON_KEY, CID, height=1, task_id=BUILTIN_TASK, parent=PARENT, test_key=CHAIN.key(1), key_index=1, commitments=[too_far])
    block = Block(replace(header(0), round_close=close.hash()), Coinbase(1, ()), (),
                  round_seal(close, [too_far], 0, commitment_salt(K[0], header(0), CID)))
    with pytest.raises(InvalidBlock) as err:
        check_candidate(block, CID, PP)
    assert err.value.reason == "too-many-commitments"


def test_commitment_set_rules() -> None:
    s = CommitmentSet(1, PARENT, BUILTIN_TASK, deadline=10.0, chain_id=CID, params=PP)
    for seq in range(PP.max_commitments_per_key):
        assert s.add(commitment_for(header(0, seed=seq), K[0], CID, seq=seq), now=1.0)
    c0 = s.items[0]
    assert s.add(c0, now=2.0) is False  # the same commitment twice is ignored
    expect = {
        "too-many-commitments": (commitment_for(header(0, seed=77), K[0], CID, seq=PP.max_commitments_per_key), 1.0),
        "duplicate-seq": (commitment_for(header(0, seed=78), K[0], CID, seq=0), 1.0),
        "commit-too-late": (commitment_for(header(1), K[1], CID), 10.5),
        "commit-wrong-round": (replace(commitment_for(header(1), K[1], CID), height=2), 1.0),
        "bad-commitment-sig": (replace(commitment_for(header(1), K[1], CID), miner=K[2].public_key), 1.0),
    }
    for reason, (c, now) in expect.items():
        with pytest.raises(InvalidRound) as err:
            s.add(c, now)
        assert err.value.reason == reason
    assert s.add(commitment_for(header(1), K[1], CID), now=9.9)
    assert len(s.items) == PP.max_commitments_per_key + 1


def test_close_checks() -> None:
    commitments, close = round_with([0])
    check_close(close, CID, PP, prev_key=CHAIN.anchor, prev_key_index=0)
    # a retry takes the next key; the check walks back over the skipped one
    retry = make_close(BEACON_KEY, CID, height=1, task_id=BUILTIN_TASK, parent=PARENT, test_key=CHAIN.key(2), key_index=2, commitments=commitments)
    check_close(retry, CID, PP, prev_key=CHAIN.anchor, prev_key_index=0)
    check_close(retry, CID, PP, prev_key=CHAIN.key(1), prev_key_index=1)
    bad = {
        "bad-test-key": make_close(BEACON_KEY, CID, height=1, task_id=BUILTIN_TASK, parent=PARENT, test_key=b"\x09" * 32, key_index=1, commitments=commitments),
        "wrong-closer": make_close(K[0], CID, height=1, task_id=BUILTIN_TASK, parent=PARENT, test_key=CHAIN.key(1), key_index=1, commitments=commitments),
        "bad-close-sig": replace(close, commitments_count=5),
    }
    for reason, c in bad.items():
        with pytest.raises(InvalidRound) as err:
            check_close(c, CID, PP, prev_key=CHAIN.anchor, prev_key_index=0)
        assert err.value.reason == reason
    with pytest.raises(InvalidRound) as err:  # a key from the past is refused
        check_close(close, CID, PP, prev_key=CHAIN.key(1), prev_key_index=1)
    assert err.value.reason == "bad-test-key"


def test_a_close_skips_only_the_keys_retries_could_have_used() -> None:
    """Attack: the closer chooses the test key (v1 accepted any of the next 10,000 keys, and
    over 200 keys two models swapped winners). A close may skip a key only for each retry that
    fitted in the time since the previous close: one commit and one reveal window each."""
    commitments, _close = round_with([0])
    c, r = PP.commit_window, PP.reveal_window
    prev = 1000

    def close_at(index: int, timestamp: int):  # type: ignore[no-untyped-def]
        return make_close(BEACON_KEY, CID, height=1, task_id=BUILTIN_TASK, parent=PARENT, test_key=CHAIN.key(index),
                          key_index=index, commitments=commitments, timestamp=timestamp)

    check_close(close_at(1, prev + c), CID, PP, prev_key=CHAIN.anchor, prev_key_index=0, prev_time=prev)
    for index, timestamp, ok in ((2, prev + c, False), (2, prev + c + (c + r) - 1, False), (2, prev + 2 * c + r, True),
                                 (3, prev + 2 * c + r, False), (3, prev + 3 * c + 2 * r, True), (40, prev + 3 * c, False)):
        if ok:
            check_close(close_at(index, timestamp), CID, PP, prev_key=CHAIN.anchor, prev_key_index=0, prev_time=prev)
            continue
        with pytest.raises(InvalidRound) as err:
            check_close(close_at(index, timestamp), CID, PP, prev_key=CHAIN.anchor, prev_key_index=0, prev_time=prev)
        assert err.value.reason == "key-skipped", (index, timestamp)


def test_requester_closes_a_posted_task() -> None:
    task = b"\x07" * 32
    c = make_close(K[4], CID, height=1, task_id=task, parent=PARENT, test_key=b"\x01" * 32, key_index=1, commitments=[])
    check_close(c, CID, PP, prev_key=CHAIN.anchor, prev_key_index=0, requester=K[4].public_key)
    with pytest.raises(InvalidRound):
        check_close(c, CID, PP, prev_key=CHAIN.anchor, prev_key_index=0, requester=K[3].public_key)


def test_a_commitment_hides_the_candidate() -> None:
    """Attack: copying during the commit window. What is gossiped before the close is a salted
    digest: no genotype, seed, weights hash or payouts in it, and without the miner's key the
    salt (so the digest of a guessed header) cannot be computed."""
    h = replace(header(0, genotype=NB, seed=123456789), txs_root=b"\x5c" * 32, payouts_root=b"\x6d" * 32)
    c = commitment_for(h, K[0], CID)
    raw = c.encode()
    for secret in (NB.encode(), h.weights_hash, h.txs_root, h.payouts_root, (123456789).to_bytes(4, "big")):
        assert secret not in raw
    assert c.sealed == sealed_digest(h, commitment_salt(K[0], h, CID), CID)
    # a copier who knows the header but not the key's salt gets another digest
    assert sealed_digest(h, commitment_salt(K[1], h, CID), CID) != c.sealed
    assert sealed_digest(h, bytes(32), CID) != c.sealed
    # the salt is bound to the key and the header; the digest to the chain
    assert commitment_salt(K[0], replace(h, seed=1), CID) != commitment_salt(K[0], h, CID)
    assert sealed_digest(h, commitment_salt(K[0], h, CID), "other-chain") != c.sealed
    with pytest.raises(InvalidRound) as err:
        sealed_digest(h, b"short", CID)
    assert err.value.reason == "bad-salt"


def test_selection_rule() -> None:
    commitments, close = round_with([0, 1, 2])
    a = candidate(commitments, close, 0, score=50)
    b = candidate(commitments, close, 1, score=70)
    c = candidate(commitments, close, 2, score=70)
    tb, tc = seal_tiebreak(b.proof), seal_tiebreak(c.proof)
    assert tb != tc and tb == tiebreak(close.test_key, commitments[1].hash())
    first, second = (b, c) if tb < tc else (c, b)
    assert select_winner([a, b, c]) is first  # best score, then the lower tiebreak
    assert select_winner([c, a]) is c
    assert select_winner([]) is None
    # the closer's order of the commitments does not decide a tie: reversed, the same winner
    rev = list(reversed(commitments))
    close2 = make_close(BEACON_KEY, CID, height=1, task_id=BUILTIN_TASK, parent=PARENT, test_key=CHAIN.key(1),
                        key_index=1, commitments=rev)
    b2 = Block(replace(b.header, round_close=close2.hash()), b.coinbase, (), round_seal(close2, rev, 1, b.proof.salt))  # type: ignore[union-attr]
    c2 = Block(replace(c.header, round_close=close2.hash()), c.coinbase, (), round_seal(close2, rev, 0, c.proof.salt))  # type: ignore[union-attr]
    assert check_candidate(b2, CID, PP) and check_candidate(c2, CID, PP)
    assert select_winner([b2, c2]).header.genotype == first.header.genotype  # type: ignore[union-attr]
    assert select_winner([b2, c2]).header.txs_root == first.header.txs_root  # type: ignore[union-attr]
    # another test key (another attempt) draws the tie afresh, from data nobody chose
    assert tiebreak(CHAIN.key(2), commitments[1].hash()) != tb
    # fork weight agrees with the selection rule among siblings, and length beats any score
    assert fork_weight(first.header, min(tb, tc)) > fork_weight(second.header, max(tb, tc)) > fork_weight(a.header, 0)
    assert 2 * fork_weight(replace(a.header, score=0), 9) > fork_weight(b.header, 0) + fork_weight(a.header, 0) - (1 << 64)


def test_a_full_round_keeps_the_funded_keys() -> None:
    """Attack 6 of the review: commitments from fresh keys (free) filled a round past what a
    close can carry. A round holds at most ``cap`` commitments; when full, a key with more coins
    on the parent state than the poorest admitted key takes that key's newest place, and one
    with no more is refused (``round-full``). A close may not hold more than
    ``MAX_ROUND_COMMITMENTS`` (``close-too-large``)."""
    from consensus.engines.ponas.rounds import MAX_ROUND_COMMITMENTS

    flood = keys(8, seed=91)
    rich, richer = keys(2, seed=92)
    stakes = {rich.public_key: 5, richer.public_key: 9}
    s = CommitmentSet(1, PARENT, BUILTIN_TASK, deadline=10.0, chain_id=CID, params=PP,
                      stake=lambda miner: stakes.get(miner, 0), cap=5)
    spam = [commitment_for(header(0, seed=i), k, CID) for i, k in enumerate(flood)]
    for c in spam[:5]:
        assert s.add(c, now=1.0)
    with pytest.raises(InvalidRound) as err:  # full of empty keys: another empty key is refused
        s.add(spam[5], now=1.0)
    assert err.value.reason == "round-full"
    mine = commitment_for(header(1, seed=50), rich, CID)
    assert s.add(mine, now=2.0)  # a funded key takes the newest empty key's place
    assert len(s) == 5 and spam[4] not in s.items and mine in s.items and s.index(mine) == 4
    theirs = commitment_for(header(2, seed=51), richer, CID)
    assert s.add(theirs, now=2.0) and spam[3] not in s.items
    # a second commitment of the funded key displaces another empty one, never a funded one
    assert s.add(commitment_for(header(1, seed=52), rich, CID, seq=1), now=2.0)
    assert [c.miner for c in s.items][:2] == [flood[0].public_key, flood[1].public_key] and len(s) == 5
    assert {rich.public_key, richer.public_key} <= {c.miner for c in s.items}
    # the close: bounded in consensus
    close = make_close(BEACON_KEY, CID, height=1, task_id=BUILTIN_TASK, parent=PARENT, test_key=CHAIN.key(1),
                       key_index=1, commitments=s.items)
    check_close(close, CID, PP, prev_key=CHAIN.anchor, prev_key_index=0)
    signed = make_close(BEACON_KEY, CID, height=1, task_id=BUILTIN_TASK, parent=PARENT, test_key=CHAIN.key(1),
                        key_index=1, commitments=[])
    signed = replace(signed, commitments_count=MAX_ROUND_COMMITMENTS + 1)
    signed = replace(signed, signature=BEACON_KEY.sign(signed.digest(CID)))
    with pytest.raises(InvalidRound) as err:
        check_close(signed, CID, PP, prev_key=CHAIN.anchor, prev_key_index=0)
    assert err.value.reason == "close-too-large"


def test_keys_without_a_coin_share_the_free_places() -> None:
    """Keys cost nothing: a round gives keys holding less than one coin on its parent state
    ``MAX_FREE_COMMITMENTS`` places in all (``free-places-full`` beyond), so a flood of fresh
    keys takes no more, and can make every node score no more false claims than that; a funded
    key still commits, and in a full round takes a free key's place."""
    from consensus.engines.ponas.rounds import FUNDED_BALANCE, MAX_FREE_COMMITMENTS

    flood = keys(MAX_FREE_COMMITMENTS + 2, seed=93)
    funded, dust = keys(2, seed=94)
    stakes = {funded.public_key: FUNDED_BALANCE, dust.public_key: FUNDED_BALANCE - 1}
    s = CommitmentSet(1, PARENT, BUILTIN_TASK, deadline=10.0, chain_id=CID, params=PP,
                      stake=lambda miner: stakes.get(miner, 0), cap=MAX_FREE_COMMITMENTS + 1)
    spam = [commitment_for(header(0, seed=i), k, CID) for i, k in enumerate(flood)]
    for c in spam[:MAX_FREE_COMMITMENTS]:
        assert s.add(c, now=1.0)
    for c in (spam[MAX_FREE_COMMITMENTS], commitment_for(header(1, seed=1), dust, CID)):  # a coin less is free
        with pytest.raises(InvalidRound) as err:
            s.add(c, now=1.0)
        assert err.value.reason == "free-places-full"
    assert s.add(commitment_for(header(2, seed=2), funded, CID), now=1.0)  # the last place: funded
    assert s.add(commitment_for(header(2, seed=3), funded, CID, seq=1), now=1.0)  # full: evicts a free one
    assert len(s) == MAX_FREE_COMMITMENTS + 1 and spam[MAX_FREE_COMMITMENTS - 1] not in s.items
    assert s.is_free(flood[0].public_key) and not s.is_free(funded.public_key)
    unstaked = CommitmentSet(1, PARENT, BUILTIN_TASK, deadline=10.0, chain_id=CID, params=PP)
    assert not unstaked.is_free(flood[0].public_key)  # without a view of the state, no free places to count
