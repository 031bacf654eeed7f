"""A miner that commits under several keys, against a real node (regtest: 4 commitments per key;
the node checks models with the no-proof verifier, the miner trains for real).

Proves: ``commit_keys`` is the given key plus distinct keys derived deterministically from it,
and refuses counts outside 1..64; with 3 keys a solo miner that has more results than one key's
bound commits past it: the node admits every commitment, each key's sequence numbers run 0, 1, ...
within the bound, more than one key is used, and the miner still wins its blocks; a node that
answers ``too-many-commitments`` for one key (as after a restart) makes the driver go on with
the next key instead of giving up the result.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from consensus.crypto import PrivateKey, format_address
from nodeclient import NodeRejected
from pool.driver import MAX_COMMIT_KEYS, commit_keys
from pool.miner import Miner
from tests.builders import keys
from tests.framework.nodes import start_node, wait_for
from tests.framework.noproof import noproof_engine
from tests.ponas_builders import ponas_params

OWNER = keys(1, seed=77)[0]


def test_commit_keys_are_derived_deterministically() -> None:
    a = commit_keys(OWNER, 4)
    assert a[0] == OWNER and len({k.public_key for k in a}) == 4
    assert commit_keys(OWNER, 4) == a and commit_keys(OWNER, 2) == a[:2]
    assert commit_keys(PrivateKey.generate(), 2)[1] not in a
    assert len(commit_keys(OWNER, MAX_COMMIT_KEYS)) == MAX_COMMIT_KEYS
    for bad in (0, -1, MAX_COMMIT_KEYS + 1):
        with pytest.raises(ValueError):
            commit_keys(OWNER, bad)


async def test_three_commit_keys_commit_past_one_keys_bound(tmp_path: Path) -> None:
    params = replace(ponas_params(), genesis_time=int(time.time()))
    bound = params.ponas.max_commitments_per_key
    node = await start_node(tmp_path, "n0", params, closer=True, engine=noproof_engine(params))
    miner = Miner(f"http://127.0.0.1:{node.api_port}", format_address(OWNER.address), "random", key=OWNER,
                  token=node.token, rng=random.Random(5), report=lambda s: None, commit_keys=3)
    driver = miner.manager.driver
    pubs = [bytes(k.public_key) for k in commit_keys(OWNER, 3)]
    assert [bytes(k.public_key) for k in driver.keys] == pubs
    log: list[tuple[int, int, int]] = []  # (height, key, seq) of every admitted commitment, in order
    accept = driver._accept_commit

    def record(st: Any, entry: Any, ack: Any) -> None:
        log.append((st.info.height, pubs.index(bytes(entry.commitment.miner)), entry.commitment.seq))
        accept(st, entry, ack)

    driver._accept_commit = record  # type: ignore[method-assign]

    def keys_used(height: int) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for h, k, seq in log:
            if h == height:
                out[k].append(seq)
        return out

    stop = asyncio.Event()
    task = asyncio.create_task(miner.run(stop))
    try:
        await wait_for(lambda: any(len(keys_used(h)) > 1 for h, _k, _s in log), 120,
                       "a round with commitments under two keys", 0.25)
        height = next(h for h, _k, _s in log if len(keys_used(h)) > 1)
        by_key = keys_used(height)
        assert sum(len(s) for s in by_key.values()) > bound
        for seq_list in by_key.values():
            assert seq_list == list(range(len(seq_list))) and len(seq_list) <= bound
        assert by_key[0] == list(range(bound))  # key 0 filled first
        await wait_for(lambda: node.chain.height >= height, 60, "the round's block")
        block = node.chain.get_block(node.chain.hash_at(height))
        assert block is not None and block.proof is not None
        assert block.coinbase.payouts[0].address == OWNER.address
        assert bytes(block.proof.commitment.miner) in pubs

        # the node refuses key 0 once: the driver goes on with key 1 for the same result
        client = driver._client
        assert client is not None
        post = client.post
        refused: list[int] = []  # len(log) when the refusal was answered

        async def refusing(path: str, body: Any) -> Any:
            if path == "/api/v1/commitments" and not refused:
                refused.append(len(log))
                raise NodeRejected("too-many-commitments", "this key is full", 409)
            return await post(path, body)

        client.post = refusing  # type: ignore[method-assign]
        await wait_for(lambda: bool(refused) and len(log) > refused[0], 90, "a commitment after the refusal", 0.25)
        h, k, seq = log[refused[0]]
        assert k == 1 and seq == 0  # the refused result went to the next key
        await wait_for(lambda: any(hh > h for hh, _k, _s in log), 90, "the next round's commitments", 0.25)
        assert keys_used(h + 1)[0][:1] == [0]  # a new round starts every key afresh
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await node.stop()
