"""The pool protocol's messages (docs/pool-protocol.md): a hello proves the payout address for
this challenge and chain only; malformed frames, hellos and shares get their reason."""

from __future__ import annotations

import json

import pytest

from consensus.crypto import format_address
from pool import protocol as P
from tests.builders import keys

K, OTHER = keys(2, seed=77)
NONCE = bytes(range(32))


def hello(**changes: object) -> dict[str, object]:
    data = P.decode(P.make_hello(K, "ponas-test", NONCE, "rig1", 2.5))
    data.update(changes)
    return data


def test_hello_proves_the_address_for_this_challenge() -> None:
    got = P.parse_hello(hello(), "ponas-test", NONCE)
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
    (hello(version=2), "ponas-test", NONCE, "bad-hello"),
    (hello(throughput=-1), "ponas-test", NONCE, "bad-hello"),
])
def test_bad_hellos(data: dict[str, object], chain: str, nonce: bytes, reason: str) -> None:
    with pytest.raises(P.ProtocolError) as err:
        P.parse_hello(data, chain, nonce)
    assert err.value.reason == reason


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
