"""The pool protocol's messages (docs/pool-protocol.md): a hello proves the payout address for
this challenge, chain and pool only (a pool that relays another pool's challenge gets a hello
the other refuses, and a member given the pool's key refuses a challenge of another pool);
malformed frames, hellos and shares get their reason."""

from __future__ import annotations

import json

import pytest

from consensus.crypto import format_address
from pool import protocol as P
from tests.builders import keys

K, OTHER, POOL, RELAY = keys(4, seed=77)
NONCE = bytes(range(32))


def hello(**changes: object) -> dict[str, object]:
    data = P.decode(P.make_hello(K, "ponas-test", NONCE, "rig1", 2.5, pool=POOL.public_key))
    data.update(changes)
    return data


def test_hello_proves_the_address_for_this_challenge() -> None:
    got = P.parse_hello(hello(), "ponas-test", NONCE, POOL.public_key)
    assert got.address == K.address and got.worker == "rig1" and got.throughput == 2.5
    assert got.member == f"{format_address(K.address)}.rig1"


@pytest.mark.parametrize(("data", "chain", "nonce", "reason"), [
    (hello(), "ponas-test", bytes(32), "bad-signature"),  # replayed against another challenge
    (hello(), "other-chain", NONCE, "bad-signature"),  # another chain
    (hello(worker="rig2"), "ponas-test", NONCE, "bad-signature"),  # the worker is signed too
    (hello(address=format_address(OTHER.address)), "ponas-test", NONCE, "wrong-address"),  # someone else's address
    (hello(pubkey=OTHER.public_key.hex()), "ponas-test", NONCE, "wrong-address"),
    (hello(address="pn1nope"), "ponas-test", NONCE, "bad-hello"),
    (hello(worker="a b"), "ponas-test", NONCE, "bad-hello"),
    (hello(worker="x" * 33), "ponas-test", NONCE, "bad-hello"),
    (hello(signature="00"), "ponas-test", NONCE, "bad-hello"),
    (hello(version=1), "ponas-test", NONCE, "bad-hello"),  # a member of the protocol before the pool key
    (hello(throughput=-1), "ponas-test", NONCE, "bad-hello"),
])
def test_bad_hellos(data: dict[str, object], chain: str, nonce: bytes, reason: str) -> None:
    with pytest.raises(P.ProtocolError) as err:
        P.parse_hello(data, chain, nonce, POOL.public_key)
    assert err.value.reason == reason


def test_a_hello_for_one_pool_is_refused_by_another() -> None:
    """A malicious pool (RELAY) hands its members the challenge of an honest pool (POOL), to
    sign in their name there and get them banned. The hello signs the pool's key: the member
    signs the key the challenge names; if RELAY puts its own key there, POOL refuses the hello
    (``bad-signature``); if it keeps POOL's key, a member given its pool's key (``pool join
    --pool-key``) refuses the challenge (``wrong-pool``)."""
    relayed = {"type": "challenge", "nonce": NONCE.hex(), "chain_id": "ponas-test",
               "pool": {"key": RELAY.public_key.hex()}}
    signed = P.decode(P.make_hello(K, "ponas-test", NONCE, "rig1", pool=P.challenge_pool_key(relayed)))
    with pytest.raises(P.ProtocolError) as err:
        P.parse_hello(signed, "ponas-test", NONCE, POOL.public_key)  # forwarded to the honest pool
    assert err.value.reason == "bad-signature"
    honest = {**relayed, "pool": {"key": POOL.public_key.hex()}}
    with pytest.raises(P.ProtocolError) as err:
        P.challenge_pool_key(honest, expected=RELAY.public_key)  # the member joined RELAY, and knows its key
    assert err.value.reason == "wrong-pool"
    assert P.challenge_pool_key(honest, expected=POOL.public_key) == POOL.public_key
    for bad in ({**relayed, "pool": {}}, {**relayed, "pool": {"key": "zz"}}, {**relayed, "pool": "x"}):
        with pytest.raises(P.ProtocolError) as err:
            P.challenge_pool_key(bad)
        assert err.value.reason == "bad-message"


def test_frames_and_shares() -> None:
    for frame, reason in [("{", "bad-message"), ("[1]", "bad-message"), ('{"type": 5}', "bad-message"),
                          ("[" * 100_000 + "]" * 100_000, "bad-message"),  # the decode fuzz's crash: RecursionError
                          ("x" * (P.MAX_FRAME + 1), "too-large")]:
        with pytest.raises(P.ProtocolError) as err:
            P.decode(frame)
        assert err.value.reason == reason
    share = {"type": "share", "id": 1, "job": 3, "genotype": "|g|", "seed": 7, "validation": 200,
             "weights_hash": "ab" * 32, "seconds": 0.5}
    got = P.parse_share(json.loads(json.dumps(share)))
    assert (got.id, got.job, got.seed, got.validation, got.weights_hash) == (1, 3, 7, 200, bytes([0xab]) * 32)
    for change in [{"seed": -1}, {"seed": 2**64}, {"validation": "200"}, {"weights_hash": "ab"}, {"genotype": ""},
                   {"id": True}, {"seconds": "fast"}]:
        with pytest.raises(P.ProtocolError) as err:
            P.parse_share({**share, **change})
        assert err.value.reason == "bad-share", change
    assert P.parse_weights({"id": 4, "weights": "aGk="}) == (4, b"hi")
    with pytest.raises(P.ProtocolError):
        P.parse_weights({"id": 4, "weights": "!!"})


def test_a_malformed_propose_is_a_bad_message() -> None:
    """A member takes ``propose`` only as 1 to 16 genotype strings under a job number; a manager
    that sends anything else (a flood, a non-string, no job) is refused, not trained."""
    g = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert P.parse_propose({"type": "propose", "job": 3, "genotypes": [g]}) == (3, [g])
    for bad in ({"job": 3, "genotypes": []}, {"job": 3, "genotypes": [g] * (P.MAX_PROPOSALS + 1)},
                {"job": 3, "genotypes": [7]}, {"job": 3, "genotypes": ["x" * 1000]}, {"job": 3, "genotypes": g},
                {"genotypes": [g]}, {"job": -1, "genotypes": [g]}):
        with pytest.raises(P.ProtocolError) as err:
            P.parse_propose({"type": "propose", **bad})
        assert err.value.reason == "bad-message"
