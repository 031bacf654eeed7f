"""The API's OpenAPI 3 document (docs/api.md in machine-readable form)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _get(summary: str, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": params or [],
                    "responses": {"200": {"description": "OK", "content": {"application/json": {}}},
                                  "400": {"description": "bad input", "content": {"application/json": {"schema": _ERROR}}},
                                  "404": {"description": "not found", "content": {"application/json": {"schema": _ERROR}}}}}}


def _post(summary: str, body: dict[str, Any], open_: bool = False) -> dict[str, Any]:
    return {"post": {"summary": summary, "security": [] if open_ else [{"cookie": []}],
                     "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                     "responses": {"202": {"description": "accepted"},
                                   "400": {"description": "invalid, with a reason code",
                                           "content": {"application/json": {"schema": _ERROR}}},
                                   "401": {"description": "no token"}, "403": {"description": "wrong token"}}}}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


_HEX = {"type": "string", "pattern": "^[0-9a-f]*$"}

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
        "/api/v1/blocks": _get("canonical blocks", [
            {"name": "from", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}]),
        "/api/v1/blocks/{ref}": _get("a block by height or hash", [_path_param("ref", "height or block hash")]),
        "/api/v1/blocks/{ref}/weights": _get("a block's model weights (base64)", [_path_param("ref", "height or hash")]),
        "/api/v1/tx/{hash}": _get("a transaction, confirmed or pending", [_path_param("hash", "transaction hash")]),
        "/api/v1/accounts/{address}": _get("balance and nonce", [_path_param("address", "pn1… address")]),
        "/api/v1/accounts/{address}/history": _get("the address's transactions, newest first, and its pending ones", [
            _path_param("address", "pn1… address"),
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
                "weights_hash": _HEX, "seed": {"type": "integer", "minimum": 0}}}),
        "/api/v1/commitments": _post("submit a signed commitment", {
            "type": "object", "required": ["commitment"], "properties": {"commitment": _HEX}}),
        "/api/v1/candidates": _post("submit a candidate block with its weights", {
            "type": "object", "required": ["block", "weights"], "properties": {
                "block": _HEX, "weights": {"type": "string", "format": "byte"}}}),
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
    },
}
