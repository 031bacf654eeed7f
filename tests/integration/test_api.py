"""The REST API of a real node on 127.0.0.1: reads answer with the chain's data, writes need
the cookie token, and bad input (bad JSON, wrong types, unknown hashes, a missing or wrong
token, invalid transactions) is answered with its 4xx and reason code, never a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from consensus.crypto import format_address
from consensus.types import COIN
from node.service import Node
from tests.builders import keys, make_params, transfer
from tests.framework.nodes import start_node
from tests.framework.noproof import noproof_engine
from tests.ponas_builders import ponas_params

K = keys(3, seed=11)
PARAMS = ponas_params(K[:1])


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = await start_node(tmp_path, "n0", PARAMS, engine=noproof_engine(PARAMS))  # no model is under test here
    try:
        yield n
    finally:
        await n.stop()


async def call(node: Node, method: str, path: str, body: object = None, token: str | None = "good", raw: bytes | None = None):  # type: ignore[no-untyped-def]
    headers = {}
    if token == "good":
        headers["Authorization"] = f"Bearer {node.token}"
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with s.request(method, f"http://127.0.0.1:{node.api_port}{path}", data=data, headers=headers) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except json.JSONDecodeError:
                return r.status, text


async def test_reads(node: Node) -> None:
    status, st = await call(node, "GET", "/api/v1/status")
    assert status == 200 and st["height"] == 0 and st["chain_id"] == PARAMS.chain_id and "round" in st
    status, blk = await call(node, "GET", "/api/v1/blocks/0")
    assert status == 200 and blk["hash"] == st["tip"]
    status, same = await call(node, "GET", f"/api/v1/blocks/{st['tip']}")
    assert status == 200 and same["height"] == 0
    status, acc = await call(node, "GET", f"/api/v1/accounts/{format_address(K[0].address)}")
    assert status == 200 and acc["balance"] == 1000 * COIN and acc["nonce"] == 0
    status, rnd = await call(node, "GET", "/api/v1/round")
    assert status == 200 and rnd["height"] == 1 and rnd["phase"] in ("commit", "closing")
    status, doc = await call(node, "GET", "/api/v1/openapi.json")
    assert status == 200 and "/api/v1/transactions" in doc["paths"]
    status, text = await call(node, "GET", "/metrics")
    assert status == 200 and "ponas_height" in text
    status, page = await call(node, "GET", "/")
    assert status == 200 and "PoNAS explorer" in page


async def test_search_and_the_round_in_progress(node: Node) -> None:
    """The search says what a query is: a height (a block, or the round in progress), a block or
    transaction hash (a waiting one too), an address (written either case)."""
    _, st = await call(node, "GET", "/api/v1/status")
    status, out = await call(node, "GET", "/api/v1/search?q=0")
    assert status == 200 and (out["kind"], out["target"], out["height"]) == ("block", st["tip"], 0)
    status, out = await call(node, "GET", "/api/v1/search?q=%201%20")  # spaces around are cut
    assert status == 200 and (out["kind"], out["target"]) == ("round", "1")
    status, out = await call(node, "GET", f"/api/v1/search?q={st['tip'].upper()}")
    assert status == 200 and (out["kind"], out["target"]) == ("block", st["tip"])
    address = format_address(K[1].address)
    for q in (address, address.upper()):
        status, out = await call(node, "GET", f"/api/v1/search?q={q}")
        assert status == 200 and (out["kind"], out["target"]) == ("address", address)
    tx = transfer(PARAMS, K[0], K[1].address, COIN, 0)
    await call(node, "POST", "/api/v1/transactions", {"tx": tx.encode().hex()})
    status, out = await call(node, "GET", f"/api/v1/search?q={tx.hash().hex()}")
    assert status == 200 and (out["kind"], out["target"], out["block"]) == ("tx", tx.hash().hex(), None)
    status, rnd = await call(node, "GET", "/api/v1/rounds/1")
    assert status == 200 and (rnd["height"], rnd["status"], rnd["source"]) == (1, "in-progress", "node")
    assert rnd["phase"] in ("commit", "closing") and rnd["commitments"] == {"count": 0, "truncated": False, "items": []}
    assert rnd["winner"] is None and not rnd["canonical"] and rnd["test_set_size"] == PARAMS.ponas.test_set_size


async def test_a_chain_without_rounds_has_no_round_records(tmp_path: Path) -> None:
    pow_node = await start_node(tmp_path, "pow", make_params())
    try:
        status, out = await call(pow_node, "GET", "/api/v1/rounds/1")
        assert (status, out["error"]["reason"]) == (404, "no-rounds")
        status, out = await call(pow_node, "GET", "/api/v1/search?q=0")
        assert status == 200 and out["kind"] == "block"
    finally:
        await pow_node.stop()


async def test_transfer_accepted_then_in_mempool(node: Node) -> None:
    tx = transfer(PARAMS, K[0], K[1].address, 5 * COIN, 0)
    status, out = await call(node, "POST", "/api/v1/transactions", {"tx": tx.encode().hex()})
    assert status == 202 and out["hash"] == tx.hash().hex()
    status, got = await call(node, "GET", f"/api/v1/tx/{tx.hash().hex()}")
    assert status == 200 and got["status"] == "pending"
    status, mp = await call(node, "GET", "/api/v1/mempool")
    assert mp["count"] == 1
    status, acc = await call(node, "GET", f"/api/v1/accounts/{format_address(K[0].address)}")
    assert acc["pending_nonce"] == 1
    # both sides see it pending in their history; the sender also sees its genesis prefund
    status, h0 = await call(node, "GET", f"/api/v1/accounts/{format_address(K[0].address)}/history")
    assert status == 200 and [i["kind"] for i in h0["items"]] == ["genesis"] and h0["items"][0]["delta"] == 1000 * COIN
    assert [(p["direction"], p["delta"]) for p in h0["pending"]] == [("out", -(5 * COIN + 1000))]
    status, h1 = await call(node, "GET", f"/api/v1/accounts/{format_address(K[1].address)}/history")
    assert h1["items"] == [] and [(p["direction"], p["delta"], p["hash"]) for p in h1["pending"]] == [("in", 5 * COIN, tx.hash().hex())]
    assert h1["next"] is None


async def test_fee_estimate_and_minimum(node: Node) -> None:
    status, fees = await call(node, "GET", "/api/v1/fees")
    assert status == 200 and fees["minimum"] == fees["suggested"] == 1000 and fees["waiting"] == 0
    cheap = transfer(PARAMS, K[0], K[1].address, COIN, 0, fee=999)
    status, out = await call(node, "POST", "/api/v1/transactions", {"tx": cheap.encode().hex()})
    assert (status, out["error"]["reason"]) == (400, "min-fee-not-met")
    status, _ = await call(node, "POST", "/api/v1/transactions", {"tx": transfer(PARAMS, K[0], K[1].address, COIN, 0, fee=5000).encode().hex()})
    assert status == 202
    status, fees = await call(node, "GET", "/api/v1/fees")
    assert fees["waiting"] == 1 and fees["median"] == 5000 and fees["suggested"] == 1000  # one block holds them all


@pytest.mark.parametrize(
    ("method", "path", "body", "token", "raw", "status", "reason"),
    [
        ("POST", "/api/v1/commitments", {"commitment": "00"}, None, None, 401, "unauthorized"),
        ("POST", "/api/v1/commitments", {"commitment": "00"}, "wrong", None, 403, "bad-token"),
        ("POST", "/api/v1/template", {}, None, None, 401, "unauthorized"),
        ("POST", "/api/v1/transactions", {"tx": "c0"}, None, None, 400, "unknown-tag"),  # open: no token needed
        ("POST", "/api/v1/transactions", None, "good", b"{not json", 400, "bad-json"),
        ("POST", "/api/v1/transactions", [1, 2], "good", None, 400, "bad-json"),
        ("POST", "/api/v1/transactions", None, None, b"[" * 30_000 + b"]" * 30_000, 400, "bad-json"),  # was a 500
        # unauthenticated bodies are small (were up to 16 MiB); a deep nesting past the limit is too large
        ("POST", "/api/v1/transactions", None, None, b"[" * 100_000 + b"]" * 100_000, 413, "too-large"),
        ("POST", "/api/v1/transactions", None, None, b'{"tx": "' + b"00" * 40_000 + b'"}', 413, "too-large"),
        ("POST", "/api/v1/commitments", None, "good", b'{"commitment": "' + b"00" * 40_000 + b'"}', 413, "too-large"),
        ("POST", "/api/v1/transactions", {"tx": 5}, "good", None, 400, "bad-field"),
        ("POST", "/api/v1/transactions", {"tx": "zz"}, "good", None, 400, "bad-field"),
        ("POST", "/api/v1/transactions", {"tx": "c0"}, "good", None, 400, "unknown-tag"),
        ("POST", "/api/v1/transactions", {"tx": "9401"}, "good", None, 400, "truncated"),
        ("POST", "/api/v1/commitments", {"commitment": "93010203"}, "good", None, 400, "bad-shape"),
        ("POST", "/api/v1/candidates", {"block": "00", "weights": "!!"}, "good", None, 400, "bad-field"),
        ("POST", "/api/v1/candidates", {"block": "00", "weights": ""}, "good", None, 400, "bad-shape"),
        ("POST", "/api/v1/template", {"payouts": "x"}, "good", None, 400, "bad-field"),
        ("POST", "/api/v1/template", {"payouts": [["pn1bad", 0]], "genotype": "g", "weights_hash": "00" * 32, "seed": 1}, "good", None, 400, "bad-address"),
        ("GET", "/api/v1/blocks/99", None, None, None, 404, "not-found"),
        ("GET", "/api/v1/blocks/" + "ab" * 32, None, None, None, 404, "not-found"),
        ("GET", "/api/v1/blocks/xyz", None, None, None, 400, "bad-field"),
        ("GET", "/api/v1/blocks/%C2%B3", None, None, None, 400, "bad-field"),  # '³': isdigit, not int (the API fuzz's 500)
        ("GET", "/api/v1/blocks/%C2%B9/weights", None, None, None, 400, "bad-field"),
        ("GET", "/api/v1/tx/" + "cd" * 32, None, None, None, 404, "not-found"),
        ("GET", "/api/v1/tx/short", None, None, None, 400, "bad-field"),
        ("GET", "/api/v1/accounts/pn1qqqq", None, None, None, 400, "bad-address"),
        ("GET", "/api/v1/accounts/pn1qqqq/history", None, None, None, 400, "bad-address"),
        ("GET", f"/api/v1/accounts/{format_address(K[0].address)}/history?limit=0", None, None, None, 400, "bad-field"),
        ("GET", f"/api/v1/accounts/{format_address(K[0].address)}/history?limit=x", None, None, None, 400, "bad-field"),
        ("GET", f"/api/v1/accounts/{format_address(K[0].address)}/history?limit=%C2%B2", None, None, None, 400, "bad-field"),
        ("GET", f"/api/v1/accounts/{format_address(K[0].address)}/history?before=%C2%B2:0", None, None, None, 400, "bad-field"),
        ("GET", f"/api/v1/accounts/{format_address(K[0].address)}/history?before=1:%C2%B2", None, None, None, 400, "bad-field"),
        ("GET", f"/api/v1/accounts/{format_address(K[0].address)}/history?before=0:9164850590", None, None, None, 400, "bad-field"),  # the API fuzz's OverflowError
        ("GET", f"/api/v1/accounts/{format_address(K[0].address)}/history?before=18446744073709551616:0", None, None, None, 400, "bad-field"),
        ("GET", f"/api/v1/accounts/{format_address(K[0].address)}/history?before=3", None, None, None, 400, "bad-field"),
        ("GET", f"/api/v1/accounts/{format_address(K[0].address)}/history?before=a:b", None, None, None, 400, "bad-field"),
        ("GET", "/api/v1/blocks?limit=abc", None, None, None, 400, "bad-field"),
        ("GET", "/api/v1/blocks?from=-1", None, None, None, 400, "bad-field"),  # was clamped, against the document
        ("GET", "/api/v1/blocks?limit=0", None, None, None, 400, "bad-field"),
        ("GET", "/api/v1/nothing", None, None, None, 404, "not-found"),
        ("GET", "/api/v1/blocks/0/weights", None, None, None, 404, "not-found"),
        ("POST", "/api/v1/template", {"payouts": [["pn1bad", 0]], "genotype": "g", "weights_hash": "00" * 32, "seed": -1}, "good", None, 400, "bad-address"),
        ("POST", "/api/v1/template", {"payouts": [[1]], "genotype": "g", "weights_hash": "00" * 32, "seed": 1}, "good", None, 400, "bad-field"),
        ("POST", "/api/v1/candidates", {"block": "00", "weights": 7}, "good", None, 400, "bad-field"),
        ("POST", "/api/v1/commitments", {"commitment": None}, "good", None, 400, "bad-field"),
        # a round's record: the height is digits only, at most 18 of them; a round not begun is not found
        ("GET", "/api/v1/rounds/abc", None, None, None, 400, "bad-field"),
        ("GET", "/api/v1/rounds/-1", None, None, None, 400, "bad-field"),
        ("GET", "/api/v1/rounds/1.5", None, None, None, 400, "bad-field"),
        ("GET", "/api/v1/rounds/%C2%B3", None, None, None, 400, "bad-field"),
        ("GET", "/api/v1/rounds/" + "9" * 19, None, None, None, 400, "bad-field"),
        ("GET", "/api/v1/rounds/" + "9" * 300, None, None, None, 400, "bad-field"),
        ("GET", "/api/v1/rounds/0", None, None, None, 404, "not-found"),  # the genesis
        ("GET", "/api/v1/rounds/2", None, None, None, 404, "not-found"),  # after the round in progress
        ("GET", "/api/v1/rounds/" + "9" * 18, None, None, None, 404, "not-found"),
        # the search: what is none of a height, a hash or an address is a bad query; what is one, not found
        ("GET", "/api/v1/search", None, None, None, 400, "bad-query"),
        ("GET", "/api/v1/search?q=", None, None, None, 400, "bad-query"),
        ("GET", "/api/v1/search?q=%20%20", None, None, None, 400, "bad-query"),
        ("GET", "/api/v1/search?q=hello", None, None, None, 400, "bad-query"),
        ("GET", "/api/v1/search?q=-1", None, None, None, 400, "bad-query"),
        ("GET", "/api/v1/search?q=%C2%B3", None, None, None, 400, "bad-query"),
        ("GET", "/api/v1/search?q=" + "ab" * 31, None, None, None, 400, "bad-query"),  # 62 hex digits
        ("GET", "/api/v1/search?q=pn1qqqq", None, None, None, 400, "bad-query"),
        ("GET", "/api/v1/search?q=" + "x" * 1000, None, None, None, 400, "bad-query"),
        ("GET", "/api/v1/search?q=2", None, None, None, 404, "not-found"),
        ("GET", "/api/v1/search?q=" + "9" * 40, None, None, None, 404, "not-found"),
        ("GET", "/api/v1/search?q=" + "ab" * 32, None, None, None, 404, "not-found"),
    ],
)
async def test_bad_input(node: Node, method, path, body, token, raw, status, reason) -> None:  # type: ignore[no-untyped-def]
    got_status, out = await call(node, method, path, body, token, raw)
    assert got_status == status, out
    assert out["error"]["reason"] == reason, out


async def test_invalid_transfers_have_consensus_reasons(node: Node) -> None:
    cases = {
        "insufficient-funds": transfer(PARAMS, K[0], K[1].address, 2000 * COIN, 0),
        "bad-nonce": transfer(PARAMS, K[0], K[1].address, COIN, 3),
        "bad-signature": transfer(ponas_params(K[:1]).__class__.from_json({**PARAMS.to_json(), "chain_id": "other"}), K[0], K[1].address, COIN, 0),
    }
    for reason, tx in cases.items():
        status, out = await call(node, "POST", "/api/v1/transactions", {"tx": tx.encode().hex()})
        assert (status, out["error"]["reason"]) == (400, reason)
    weights = base64.b64encode(b"x").decode()
    status, out = await call(node, "POST", "/api/v1/candidates", {"block": "00", "weights": weights})
    assert status == 400


async def test_a_chunked_body_is_cut_at_the_limit(node: Node) -> None:
    """A body sent without a length (chunked) is read only up to the call's limit: a peer that
    streams megabytes at an open endpoint gets ``too-large`` after 64 KiB, not a 16 MiB buffer."""
    sent = [0]

    async def stream():  # type: ignore[no-untyped-def]
        for _ in range(256):  # 16 MiB, if nobody stopped reading
            sent[0] += 1
            yield b"[" * 65536

    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{node.api_port}/api/v1/transactions", data=stream()) as r:
            assert r.status == 413 and (await r.json())["error"]["reason"] == "too-large"
