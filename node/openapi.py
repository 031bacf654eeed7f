"""The API's OpenAPI 3 document (docs/api.md in machine-readable form)."""

from __future__ import annotations

from typing import Any

from consensus.crypto import format_address

_ERROR = {"$ref": "#/components/schemas/Error"}


def _get(summary: str, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": params or [],
                    "responses": {"200": {"description": "OK", "content": {"application/json": {}}},
                                  "400": {"description": "bad input", "content": {"application/json": {"schema": _ERROR}}},
                                  "404": {"description": "not found", "content": {"application/json": {"schema": _ERROR}}}}}}


def _post(summary: str, body: dict[str, Any], open_: bool = False) -> dict[str, Any]:
    refused = {"content": {"application/json": {"schema": _ERROR}}}
    return {"post": {"summary": summary, "security": [] if open_ else [{"cookie": []}],
                     "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                     "responses": {"200": {"description": "done"}, "202": {"description": "accepted"},
                                   "400": {"description": "invalid, with a reason code", **refused},
                                   "401": {"description": "no token", **refused},
                                   "403": {"description": "wrong token", **refused},
                                   "404": {"description": "no-rounds: this chain's engine has no rounds", **refused},
                                   "413": {"description": "too-large: the body is over the limit", **refused}}}}


_HASH = {"type": "string", "pattern": "^[0-9a-f]{64}$", "example": "00" * 32}
#: an address (bech32m, ``pn1`` and 38 characters); the example is a well-formed one
_ADDRESS = {"type": "string", "pattern": "^pn1[02-9ac-hj-np-z]{38}$", "example": format_address(bytes(20))}
_HEX = {"type": "string", "pattern": "^([0-9a-f]{2})*$"}


def _path_param(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


_REF = {"type": "string", "pattern": "^([0-9]{1,18}|[0-9a-f]{64})$", "example": "0"}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "PoNAS chain node API", "version": "1",
             "description": "Read the chain, follow and take part in rounds, submit transfers. Writes other than "
                            "transfers need the bearer token from DATADIR/.cookie. Errors carry a stable reason code."},
    "components": {
        "securitySchemes": {"cookie": {"type": "http", "scheme": "bearer"}},
        "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "reason": {"type": "string"}, "detail": {"type": "string"}}, "required": ["reason"]}}}},
    },
    "paths": {
        "/api/v1/status": _get("height, tip, peers, round, mempool"),
        "/api/v1/round": _get("the round in progress"),
        "/api/v1/round/commitments": _get("the round's commitments (the close's order once closed)"),
        "/api/v1/rounds/{height}": _get(
            "the record of the round that produced block HEIGHT, or of the round in progress at its height: close, "
            "commitments, reveal set and leaderboard (400 bad-field: not an integer of at most 18 digits; 404 "
            "not-found: the genesis, or a round not begun; 404 no-rounds: a chain without rounds)",
            [_path_param("height", "block height (the round in progress: the tip's height plus one)",
                         {"type": "integer", "minimum": 1, "maximum": 10**18 - 1})]),
        "/api/v1/search": _get(
            "what a query is: {query, kind: block | tx | address | round, target, height?, block?} (400 bad-query: "
            "none of a height, a 64-hex-digit hash or a pn1 address; 404 not-found: well-formed, matches nothing)",
            [{"name": "q", "in": "query", "required": True, "schema": {"type": "string", "maxLength": 128},
              "description": "a height, a block or transaction hash, or an address"}]),
        "/api/v1/blocks": _get("canonical blocks", [
            {"name": "from", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1},
             "description": "at most 200 blocks are returned"}]),
        "/api/v1/blocks/{ref}": _get("a block by height or hash", [_path_param("ref", "height or block hash", _REF)]),
        "/api/v1/blocks/{ref}/weights": _get("a block's model weights (base64)",
                                             [_path_param("ref", "height or hash", _REF)]),
        "/api/v1/tx/{hash}": _get("a transaction, confirmed or pending", [_path_param("hash", "transaction hash", _HASH)]),
        "/api/v1/accounts/{address}": _get("balance and nonce", [_path_param("address", "pn1… address", _ADDRESS)]),
        "/api/v1/accounts/{address}/history": _get("the address's transactions, newest first, and its pending ones", [
            _path_param("address", "pn1… address", _ADDRESS),
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
            {"name": "before", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]+:[0-9]+$"},
             "description": "the cursor `next` of the previous page"}]),
        "/api/v1/fees": _get("the minimum relay fee and a suggested fee"),
        "/api/v1/mempool": _get("waiting transfers"),
        "/api/v1/peers": _get("connected peers"),
        "/api/v1/transactions": _post("submit a signed transfer (open: no token)", {
            "type": "object", "required": ["tx"], "properties": {"tx": _HEX}}, open_=True),
        "/api/v1/template": _post("an unsealed candidate block for the round", {
            "type": "object", "required": ["payouts", "genotype", "weights_hash", "seed"], "properties": {
                "payouts": {"type": "array", "items": {"type": "array"}}, "genotype": {"type": "string"},
                "weights_hash": _HASH, "seed": {"type": "integer", "minimum": 0}}}),
        "/api/v1/commitments": _post("submit a signed commitment", {
            "type": "object", "required": ["commitment"], "properties": {"commitment": _HEX}}),
        "/api/v1/candidates": _post("submit a candidate block with its weights", {
            "type": "object", "required": ["block", "weights"], "properties": {
                "block": _HEX, "weights": {"type": "string", "format": "byte"}}}),
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
    },
}
