"""The node's REST API (aiohttp), its OpenAPI document and /metrics. See docs/api.md.

Bad input is answered with a 4xx and ``{"error": {"reason", "detail"}}``, never a 500; writes
need the bearer token from the datadir's cookie file.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consensus.amounts import format_amount
from consensus.crypto import BadAddress, address_of, format_address, parse_address
from consensus.errors import ConsensusError
from consensus.params import ChainParams
from consensus.types import Block, Commitment, Header, Payout, RevealEntry, Transfer
from node.chain import Chain, HistoryItem
from node.mempool import Mempool
from node.metrics import Metrics
from node.rounds import RoundService, Standing, round_record
from node.storage import StorageError
from node.storage.schema import ROLE_GENESIS

log = logging.getLogger("ponas.api")
MAX_BODY = 16 * 1024 * 1024  # a candidate with its weights (authenticated)
SMALL_BODY = 64 * 1024  # every other body: a transfer, a commitment
TEMPLATE_BODY = 1024 * 1024  # a template's payouts (up to 4,000 of them; authenticated)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.status, self.reason, self.detail = status, reason, detail


def error_response(status: int, reason: str, detail: str = "") -> web.Response:
    return web.json_response({"error": {"reason": reason, "detail": detail}}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.reason, exc.detail)
    except ConsensusError as exc:  # invalid input: decode errors and every rule's reason
        return error_response(400, exc.reason, exc.detail)
    except web.HTTPException as exc:
        if exc.status >= 400:
            reason = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(exc.status, "http-error")
            return error_response(exc.status, reason, exc.reason)
        raise
    except Exception:  # a bug: log it, answer 500 without internals
        log.exception("api handler failed", extra={"path": request.path})
        return error_response(500, "internal-error", "see the node's log")


def _hex(value: Any, name: str, length: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise ApiError(400, "bad-field", f"{name} must be a hex string")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise ApiError(400, "bad-field", f"{name} is not hex") from None
    if length is not None and len(data) != length:
        raise ApiError(400, "bad-field", f"{name} must be {length} bytes")
    return data


def _int(value: Any, name: str, low: int = 0, high: int = 2**63 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, "bad-field", f"{name} must be an integer in [{low}, {high}]")
    return value


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes superscripts (``²``) that ``int`` refuses."""
    return text.isascii() and text.isdigit()


def _address(value: Any) -> bytes:
    try:
        return parse_address(value)
    except BadAddress as exc:
        raise ApiError(400, exc.reason, exc.detail) from None


async def _body(request: web.Request, limit: int = SMALL_BODY) -> dict[str, Any]:
    """The request's JSON object, read up to ``limit`` bytes (``too-large``, 413, beyond: a
    transfer or a commitment is a few hundred bytes, and only an authenticated candidate
    carries weights), then parsed (``bad-json``)."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too-large", f"the body is {request.content_length} bytes; this call takes {limit}")
    raw = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        raw += chunk
        if len(raw) > limit:
            raise ApiError(413, "too-large", f"the body exceeds {limit} bytes")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "bad-json", "the body is not JSON") from None
    except RecursionError:  # nested deeper than the parser's stack: no request needs that
        raise ApiError(400, "bad-json", "the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad-json", "the body must be a JSON object")
    return data


def header_json(h: Header) -> dict[str, Any]:
    return {
        "version": h.version, "height": h.height, "parent": h.parent.hex(), "timestamp": h.timestamp,
        "engine": h.engine, "txs_root": h.txs_root.hex(), "state_root": h.state_root.hex(),
        "payouts_root": h.payouts_root.hex(), "round_close": h.round_close.hex(), "task_id": h.task_id.hex(),
        "genotype": h.genotype, "weights_hash": h.weights_hash.hex(), "seed": h.seed, "score": h.score,
        "bits": h.bits, "nonce": h.nonce, "extra": h.extra.hex(),
    }


def tx_json(tx: Transfer) -> dict[str, Any]:
    return {
        "hash": tx.hash().hex(), "from": format_address(address_of(tx.sender)), "to": format_address(tx.recipient),
        "amount": tx.amount, "fee": tx.fee, "nonce": tx.nonce, "amount_coins": format_amount(tx.amount),
    }


def block_json(block: Block, brief: bool = False, params: ChainParams | None = None) -> dict[str, Any]:
    """A block for the API; with the chain's ``params`` (a ponas chain) the score's scale:
    ``test_set_size`` (the score is correct answers out of it) and ``task_epoch`` (the task
    epoch of the round; null for the genesis and for a digits chain)."""
    h = block.header
    out: dict[str, Any] = {
        "height": h.height, "hash": h.hash().hex(), "timestamp": h.timestamp, "genotype": h.genotype,
        "score": h.score, "txs": len(block.txs),
        "payouts": [{"address": format_address(p.address), "amount": p.amount} for p in block.coinbase.payouts],
        "miner": format_address(address_of(block.proof.commitment.miner)) if block.proof else None,
    }
    if params is not None and params.engine == "ponas":
        out["test_set_size"] = params.ponas.test_set_size
        out["task_epoch"] = params.ponas.task_epoch(h.height) if h.height > 0 else None
    if brief:
        return out
    out["header"] = header_json(h)
    out["transactions"] = [tx_json(t) for t in block.txs]
    out["encoded"] = block.encode().hex()
    if block.proof is not None:
        close = block.proof.close
        out["round"] = {"close": close.hash().hex(), "key_index": close.key_index, "commitments": close.commitments_count,
                        "commitment_index": block.proof.index, "test_key": close.test_key.hex()}
    return out


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not _digits(text) or len(text) > 18 or not low <= int(text) <= high:
        raise ApiError(400, "bad-field", f"{name} must be an integer in [{low}, {high}]")
    return int(text)


def history_json(
    address: bytes, block: Block, item: HistoryItem, tip_height: int, prefunds: Sequence[Payout]
) -> dict[str, Any]:
    """One history entry from ``address``'s point of view; ``delta`` is the signed change of
    its balance."""
    h = block.header
    out: dict[str, Any] = {"height": h.height, "position": item.position, "block": h.hash().hex(),
                           "time": h.timestamp, "confirmations": tip_height - h.height + 1}
    if item.roles & ROLE_GENESIS:
        amount = sum(p.amount for p in prefunds if p.address == address)
        out.update(kind="genesis", hash=None, direction="in", amount=amount, fee=0, delta=amount,
                   **{"from": None, "to": format_address(address)})
    elif item.position == 0:
        amount = sum(p.amount for p in block.coinbase.payouts if p.address == address)
        out.update(kind="coinbase", hash=block.coinbase.hash().hex(), direction="in", amount=amount, fee=0,
                   delta=amount, **{"from": None, "to": format_address(address)})
    else:
        tx = block.txs[item.position - 1]
        out.update(_transfer_view(address, tx))
    out["delta_coins"] = format_amount(out["delta"])
    return out


def pending_json(address: bytes, tx: Transfer) -> dict[str, Any]:
    out: dict[str, Any] = {"height": None, "position": None, "block": None, "time": None, "confirmations": 0}
    out.update(_transfer_view(address, tx))
    out["delta_coins"] = format_amount(out["delta"])
    return out


def _transfer_view(address: bytes, tx: Transfer) -> dict[str, Any]:
    sender = address_of(tx.sender)  # a transfer to oneself is invalid: one direction or the other
    outgoing = sender == address
    delta = -(tx.amount + tx.fee) if outgoing else tx.amount
    return {"kind": "transfer", "hash": tx.hash().hex(), "direction": "out" if outgoing else "in", "from": format_address(sender),
            "to": format_address(tx.recipient), "amount": tx.amount, "fee": tx.fee, "nonce": tx.nonce, "delta": delta}


class NodeView(Protocol):
    """What the API needs of a node: its parts to read and the three ways to submit. The
    service implements it; the API never imports the service."""

    params: ChainParams
    chain: Chain
    mempool: Mempool
    rounds: RoundService | None
    metrics: Metrics
    token: str
    clock: Callable[[], float]

    def status(self) -> dict[str, Any]: ...

    def peers_info(self) -> list[dict[str, Any]]: ...

    def refresh_metrics(self) -> None: ...

    async def submit_tx(self, tx: Transfer) -> bytes: ...

    async def submit_commitment(self, c: Commitment) -> int: ...

    async def submit_candidate(self, block: Block, weights: bytes) -> int: ...


def make_app(node: NodeView) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_BODY)
    api = Api(node)
    r = app.router
    r.add_get("/api/v1/status", api.status)
    r.add_get("/api/v1/round", api.round)
    r.add_get("/api/v1/round/commitments", api.round_commitments)
    r.add_get("/api/v1/rounds/{height}", api.round_at)
    r.add_get("/api/v1/search", api.search)
    r.add_get("/api/v1/blocks", api.blocks)
    r.add_get("/api/v1/blocks/{ref}", api.block)
    r.add_get("/api/v1/blocks/{ref}/weights", api.weights)
    r.add_get("/api/v1/tx/{hash}", api.tx)
    r.add_get("/api/v1/accounts/{address}", api.account)
    r.add_get("/api/v1/accounts/{address}/history", api.history)
    r.add_get("/api/v1/fees", api.fees)
    r.add_get("/api/v1/mempool", api.mempool)
    r.add_get("/api/v1/peers", api.peers)
    r.add_post("/api/v1/transactions", api.post_tx)  # open: a signed transfer proves itself
    r.add_post("/api/v1/template", api.auth(api.post_template))
    r.add_post("/api/v1/commitments", api.auth(api.post_commitment))
    r.add_post("/api/v1/candidates", api.auth(api.post_candidate))
    r.add_get("/api/v1/openapi.json", api.openapi)
    r.add_get("/metrics", api.metrics)
    from node import explorer

    r.add_get("/", explorer.page)
    return app


class Api:
    def __init__(self, node: NodeView) -> None:
        self.node = node

    def auth(self, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            given = request.headers.get("Authorization", "")
            want = f"Bearer {self.node.token}"
            if not given:
                raise ApiError(401, "unauthorized", "send Authorization: Bearer TOKEN (the datadir's .cookie)")
            if not hmac.compare_digest(given.encode(), want.encode()):
                raise ApiError(403, "bad-token", "the token does not match the node's cookie")
            return await handler(request)

        return wrapped

    # --- reads ----------------------------------------------------------------------------

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.node.status())

    async def round(self, request: web.Request) -> web.Response:
        rounds = self.node.rounds
        if rounds is None:
            raise ApiError(404, "no-rounds", "this chain's engine has no rounds")
        return web.json_response(rounds.info(self.node.clock()))

    async def round_commitments(self, request: web.Request) -> web.Response:
        rounds = self.node.rounds
        if rounds is None:
            raise ApiError(404, "no-rounds", "this chain's engine has no rounds")
        r = rounds.round
        items = r.ordered if r.close is not None else r.commitments.items
        return web.json_response({"height": r.height, "closed": r.close is not None,
                                  "commitments": [c.encode().hex() for c in items]})

    async def round_at(self, request: web.Request) -> web.Response:
        """The record of round H (the round that produced block H): as this node stored it when
        the round was decided, the round in progress at its height, or, for a round this node
        did not follow (it synced the block), what the block carries."""
        rounds = self.node.rounds
        if rounds is None:
            raise ApiError(404, "no-rounds", "this chain's engine has no rounds")
        text = request.match_info["height"]
        if not _digits(text) or len(text) > 18:
            raise ApiError(400, "bad-field", "height must be an integer in [1, 10^18)")
        height, chain = int(text), self.node.chain
        current = rounds.round.height
        if height == current:
            record = rounds.record(self.node.clock())
        elif height == 0:
            raise ApiError(404, "not-found", "the genesis block is not made by a round")
        elif height > current:
            raise ApiError(404, "not-found", f"round {height} has not begun: the round in progress is {current}")
        else:
            record = chain.round_record(height) or self._round_from_block(height)
        winner = record.get("winner")
        record["canonical"] = winner is not None and chain.hash_at(height) == bytes.fromhex(winner)
        for cand in record.get("candidates", []):
            cand["known"] = chain.get_header(bytes.fromhex(cand["block"])) is not None
        record["test_set_size"] = self.node.params.ponas.test_set_size
        record["task_epoch"] = self.node.params.ponas.task_epoch(height)
        return web.json_response(record)

    def _round_from_block(self, height: int) -> dict[str, Any]:
        """A round this node has no record of (it synced the round's block, or ran an older
        version then): the canonical block's close, its commitment and its score."""
        block = self._find_block(str(height))
        proof = block.proof
        if proof is None:
            raise ApiError(404, "not-found", f"block {height} has no round seal")
        h = block.header.hash()
        record = round_record(
            height, block.header.parent, status="decided", source="block", attempt=0, close=proof.close,
            commitments=[], seen={}, reveal_set=None,
            standings=[Standing(RevealEntry(h, block.header.score, proof.index), "winner", block.header.score)],
            winner=h, at=float(block.header.timestamp))
        record["commitments"] = {"count": proof.close.commitments_count, "truncated": True, "items": [
            {"index": proof.index, "hash": proof.commitment.hash().hex(),
             "miner": format_address(address_of(proof.commitment.miner)), "key": proof.commitment.miner.hex(),
             "seq": proof.commitment.seq, "seen": None}]}
        record["candidates"][0]["miner"] = format_address(address_of(proof.commitment.miner))
        return record

    async def search(self, request: web.Request) -> web.Response:
        """What a query is: a height, a block or transaction hash, an address. Answers ``{query,
        kind, target}`` (kind ``block``, ``tx``, ``address`` or ``round``: the round in progress),
        404 ``not-found`` for a well-formed query that matches nothing, 400 ``bad-query`` for
        one that is none of these."""
        q = request.query.get("q", "").strip()
        what = "a height, a block or transaction hash (64 hex digits) or an address (pn1…)"
        if not q or len(q) > 128:
            raise ApiError(400, "bad-query", f"search for {what}")
        chain, out = self.node.chain, {"query": q}
        if _digits(q):
            height = int(q) if len(q) <= 18 else -1
            h = chain.hash_at(height)
            if h is not None:
                return web.json_response({**out, "kind": "block", "target": h.hex(), "height": height})
            rounds = self.node.rounds
            if rounds is not None and height == rounds.round.height:
                return web.json_response({**out, "kind": "round", "target": str(height), "height": height})
            raise ApiError(404, "not-found", f"no block at height {q}: the chain's height is {chain.height}")
        if len(q) == 64 and all(c in "0123456789abcdefABCDEF" for c in q):
            h = bytes.fromhex(q)
            header = chain.get_header(h)
            if header is not None and chain.get_block(h) is not None:
                return web.json_response({**out, "kind": "block", "target": h.hex(), "height": header.height})
            found = chain.find_tx(h)
            if found is not None:
                block_header = chain.get_header(found[0])
                return web.json_response({**out, "kind": "tx", "target": h.hex(), "block": found[0].hex(),
                                          "height": None if block_header is None else block_header.height})
            if self.node.mempool.get(h) is not None:
                return web.json_response({**out, "kind": "tx", "target": h.hex(), "block": None, "height": None})
            raise ApiError(404, "not-found", "no block or transaction has this hash")
        if q[:3].lower() == "pn1":
            try:
                address = parse_address(q)
            except BadAddress as exc:
                raise ApiError(400, "bad-query", f"not an address: {exc.detail}") from None
            return web.json_response({**out, "kind": "address", "target": format_address(address)})
        raise ApiError(400, "bad-query", f"search for {what}")

    def _find_block(self, ref: str) -> Block:
        chain = self.node.chain
        if _digits(ref) and len(ref) < 20:
            h = chain.hash_at(int(ref))
            if h is None:
                raise ApiError(404, "not-found", f"no block at height {ref}")
        else:
            h = _hex(ref, "block hash", 32)
        block = chain.get_block(h)
        if block is None:
            raise ApiError(404, "not-found", "no such block")
        return block

    async def blocks(self, request: web.Request) -> web.Response:
        chain = self.node.chain
        limit = min(_query_int(request, "limit", 20, 1, 10**18), 200)  # more than 200: 200
        start = _query_int(request, "from", 0, 0, 10**18) if "from" in request.query else None
        if start is None:
            heights = range(chain.height, max(-1, chain.height - limit), -1)
        else:
            heights = range(start, min(chain.height + 1, start + limit))
        out = []
        for height in heights:
            h = chain.hash_at(height)
            block = chain.get_block(h) if h else None
            if block is not None:
                out.append(block_json(block, brief=True, params=self.node.params))
        return web.json_response({"height": chain.height, "blocks": out})

    async def block(self, request: web.Request) -> web.Response:
        block = self._find_block(request.match_info["ref"])
        out = block_json(block, params=self.node.params)
        out["canonical"] = self.node.chain.is_canonical(block.header.hash())
        return web.json_response(out)

    async def weights(self, request: web.Request) -> web.Response:
        block = self._find_block(request.match_info["ref"])
        data = self.node.chain.get_weights(block.header.weights_hash)
        if data is None:
            raise ApiError(404, "not-found", "this block has no weights")
        return web.json_response({"weights": base64.b64encode(data).decode()})

    async def tx(self, request: web.Request) -> web.Response:
        h = _hex(request.match_info["hash"], "transaction hash", 32)
        chain = self.node.chain
        found = chain.find_tx(h)
        if found is not None:
            block_hash, position = found
            block = chain.get_block(block_hash)
            assert block is not None
            body: dict[str, Any] = {"hash": h.hex(), "block": block_hash.hex(), "height": block.header.height,
                                    "position": position, "status": "confirmed",
                                    "confirmations": chain.height - block.header.height + 1}
            if position == 0:
                body["coinbase"] = [{"address": format_address(p.address), "amount": p.amount} for p in block.coinbase.payouts]
            else:
                body["tx"] = tx_json(block.txs[position - 1])
            return web.json_response(body)
        pending = self.node.mempool.get(h)
        if pending is not None:
            return web.json_response({"hash": h.hex(), "status": "pending", "tx": tx_json(pending)})
        raise ApiError(404, "not-found", "no such transaction")

    async def account(self, request: web.Request) -> web.Response:
        address = _address(request.match_info["address"])
        acc = self.node.chain.account(address)
        return web.json_response({
            "address": format_address(address), "balance": acc.balance, "nonce": acc.nonce,
            "balance_coins": format_amount(acc.balance), "pending_nonce": self.node.mempool.pending_nonce(address),
        })

    async def history(self, request: web.Request) -> web.Response:
        """The address's canonical transactions, newest first, and its waiting ones."""
        address = _address(request.match_info["address"])
        chain = self.node.chain
        limit = _query_int(request, "limit", 50, 1, 500)
        before = request.query.get("before")
        cursor = None
        if before is not None:
            height, sep, position = before.partition(":")
            # the history key holds the height in 8 bytes and the position in 4
            if not sep or not _digits(height) or not _digits(position) or len(before) > 30 \
                    or int(height) >= 1 << 64 or int(position) >= 1 << 32:
                raise ApiError(400, "bad-field", "before is a cursor HEIGHT:POSITION from a previous answer")
            cursor = (int(height), int(position))
        items = chain.history(address, limit + 1, cursor)
        more = len(items) > limit
        items = items[:limit]
        blocks: dict[int, Block] = {}
        out = []
        for item in items:
            if item.height not in blocks:
                found = chain.get_block(chain.hash_at(item.height) or b"")
                if found is None:
                    raise StorageError("db-corrupt", f"history names height {item.height}, which has no block")
                blocks[item.height] = found
            out.append(history_json(address, blocks[item.height], item, chain.height, self.node.params.prefunds))
        pending = [pending_json(address, tx) for tx in self.node.mempool.involving(address)]
        nxt = f"{items[-1].height}:{items[-1].position}" if more else None
        return web.json_response({"address": format_address(address), "height": chain.height,
                                  "items": out, "pending": pending, "next": nxt})

    async def fees(self, request: web.Request) -> web.Response:
        return web.json_response(self.node.mempool.fee_estimate(self.node.params.max_block_txs))

    async def mempool(self, request: web.Request) -> web.Response:
        mp = self.node.mempool
        txs = sorted(mp.txs(), key=lambda t: -t.fee)
        fees = sorted(t.fee for t in txs)
        return web.json_response({"count": len(mp), "bytes": mp.size_bytes, "txs": [tx_json(t) for t in txs[:500]],
                                  "median_fee": fees[len(fees) // 2] if fees else 0})

    async def peers(self, request: web.Request) -> web.Response:
        return web.json_response(self.node.peers_info())

    async def openapi(self, request: web.Request) -> web.Response:
        from node.openapi import OPENAPI

        return web.json_response(OPENAPI)

    async def metrics(self, request: web.Request) -> web.Response:
        m = self.node.metrics
        self.node.refresh_metrics()
        return web.Response(body=generate_latest(m.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- writes ---------------------------------------------------------------------------

    async def post_tx(self, request: web.Request) -> web.Response:
        data = await _body(request)
        tx = Transfer.decode(_hex(data.get("tx"), "tx"))
        h = await self.node.submit_tx(tx)
        return web.json_response({"hash": h.hex()}, status=202)

    async def post_template(self, request: web.Request) -> web.Response:
        rounds = self.node.rounds
        if rounds is None:
            raise ApiError(404, "no-rounds", "this chain's engine has no rounds")
        data = await _body(request, TEMPLATE_BODY)
        payouts_in = data.get("payouts")
        if not isinstance(payouts_in, list) or not payouts_in or len(payouts_in) > 4000:
            raise ApiError(400, "bad-field", "payouts is a non-empty list of [address, amount]")
        payouts = []
        for item in payouts_in:
            if not isinstance(item, list) or len(item) != 2:
                raise ApiError(400, "bad-field", "each payout is [address, amount]")
            payouts.append(Payout(_address(item[0]), _int(item[1], "amount")))
        genotype = data.get("genotype")
        if not isinstance(genotype, str) or len(genotype) > 256:
            raise ApiError(400, "bad-field", "genotype is a string")
        block = rounds.template(payouts, genotype, _hex(data.get("weights_hash"), "weights_hash", 32),
                                _int(data.get("seed"), "seed", 0, 2**64 - 1), self.node.clock())
        return web.json_response({"block": block.encode().hex(), "header": header_json(block.header),
                                  "round": rounds.round.height})

    async def post_commitment(self, request: web.Request) -> web.Response:
        data = await _body(request)
        c = Commitment.decode(_hex(data.get("commitment"), "commitment"))
        index = await self.node.submit_commitment(c)
        return web.json_response({"hash": c.hash().hex(), "index": index}, status=202)

    async def post_candidate(self, request: web.Request) -> web.Response:
        data = await _body(request, MAX_BODY)
        weights_text = data.get("weights", "")
        if not isinstance(weights_text, str):
            raise ApiError(400, "bad-field", "weights is base64 text")
        try:
            weights = base64.b64decode(weights_text, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "bad-field", "weights is not base64") from None
        block = Block.decode(_hex(data.get("block"), "block"))
        score = await self.node.submit_candidate(block, weights)
        return web.json_response({"hash": block.header.hash().hex(), "score": score}, status=202)

