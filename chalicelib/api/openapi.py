"""The REST API's OpenAPI 3.1 document, built from the rules the code enforces.

Generated rather than written by hand so that the contract cannot drift from the validation:
the symbol pattern, the rate's bounds and the history page sizes are the constants of
`chalicelib.api.currency` and `chalicelib.api.history`. `GET /openapi.json` serves `document()`;
`docs/openapi.json` is the committed copy, which tests/unit/test_openapi.py keeps equal to it.
Regenerate that copy after changing the API or its rules:

    .venv/bin/python -m chalicelib.api.openapi > docs/openapi.json
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from chalicelib.api.currency import (
    MAX_BODY_BYTES,
    MAX_RATE,
    MAX_SIGNIFICANT_DIGITS,
    MIN_EXPONENT,
    RATE_TEXT_PATTERN,
    SYMBOL_PATTERN,
)
from chalicelib.api.handlers import ACCEPTED_CONTENT_TYPES
from chalicelib.api.history import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_VERSION
from chalicelib.stream.changes import CHANGE_TYPES

OPENAPI_VERSION = "3.1.0"
# What the API answers with, whatever form the client sent: upper-case symbols and
# `chalicelib.api.currency.format_rate`'s plain decimals (the unit tests check both against the code).
CANONICAL_SYMBOL = "^[A-Z]{3}$"
CANONICAL_RATE = r"^(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$"

_JSON = "application/json"
_SYMBOL_LINK = {"symbol": "$response.body#/symbol"}

ERROR_CODE_PATTERN = "^[a-z_]+$"
"""Every error body's `error`: handlers' codes and API Gateway's own refusals (`access.GATEWAY_ERROR_CODES`)."""


def document() -> dict[str, Any]:
    """The whole OpenAPI document, as a JSON-ready dict."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "currencies",
            "version": "1",
            "description": (
                "Currency rates: each change is stored in DynamoDB and streamed into the search engine, "
                "which answers the history and point-in-time reads. Every error is "
                '`{"error": CODE, "message": TEXT}`; a method a path does not offer gets 405 in that shape.'
            ),
        },
        "paths": {
            "/currency": {"post": _create(), "get": _list()},
            "/currency/{symbol}": {
                "parameters": [_ref("parameters", "Symbol")],
                "get": _read(),
                "put": _update(),
                "delete": _delete(),
            },
            "/currency/{symbol}/history": {"parameters": [_ref("parameters", "Symbol")], "get": _history()},
            "/openapi.json": {"get": _self()},
        },
        "components": {
            "schemas": _schemas(),
            "parameters": {
                "Symbol": {
                    "name": "symbol",
                    "in": "path",
                    "required": True,
                    "description": "Three ASCII letters, either case (`eur` is `EUR`).",
                    "schema": {"type": "string", "pattern": _anchored(SYMBOL_PATTERN)},
                }
            },
            "responses": _error_responses(),
            "links": {
                name: {"operationId": operation, "parameters": _SYMBOL_LINK}
                for name, operation in [
                    ("ReadRate", "getCurrency"),
                    ("UpdateRate", "updateCurrency"),
                    ("DeleteRate", "deleteCurrency"),
                    ("RateHistory", "getCurrencyHistory"),
                ]
            },
        },
    }


def render() -> str:
    """The document as committed in docs/openapi.json."""
    return json.dumps(document(), indent=2) + "\n"


def _create() -> dict[str, Any]:
    return {
        "operationId": "createCurrency",
        "summary": "Set a symbol's rate, creating the symbol if it is new",
        "requestBody": _body("NewRate"),
        "responses": {
            "200": _rate_written("The symbol existed; its rate is replaced."),
            "201": _rate_written("The symbol is new."),
            **_errors("BadRequest", *_REFUSED_WRITES, "PayloadTooLarge", "UnsupportedMediaType"),
        },
    }


def _list() -> dict[str, Any]:
    return {
        "operationId": "listCurrencies",
        "summary": "Every current rate",
        "responses": {"200": _content("The current rates, from the table.", _ref("schemas", "RateList"))},
    }


def _read() -> dict[str, Any]:
    return {
        "operationId": "getCurrency",
        "summary": "A symbol's current rate, or with `at` the rate in force at that moment",
        "parameters": [
            {
                "name": "at",
                "in": "query",
                "description": (
                    "An ISO 8601 moment (UTC when it has no offset): answer from the events index with the "
                    "rate in force then. Without it the answer is the table's current rate."
                ),
                "schema": {"type": "string", "format": "date-time"},
            }
        ],
        "responses": {
            "200": _content(
                "The current rate (no `at`), or the rate in force at `at`.",
                {"oneOf": [_ref("schemas", "Rate"), _ref("schemas", "RateAt")]},
            ),
            **_errors("BadRequest", "NotFound", "SearchUnavailable"),
        },
    }


def _update() -> dict[str, Any]:
    return {
        "operationId": "updateCurrency",
        "summary": "Set the rate of the symbol in the path, creating the symbol if it is new",
        "requestBody": _body("RateChange"),
        "responses": {
            "200": _rate_written("The symbol existed; its rate is replaced."),
            "201": _rate_written("The symbol is new."),
            **_errors("BadRequest", *_REFUSED_WRITES, "PayloadTooLarge", "UnsupportedMediaType"),
        },
    }


def _delete() -> dict[str, Any]:
    return {
        "operationId": "deleteCurrency",
        "summary": "Remove a symbol (its history stays)",
        "responses": {
            "200": {
                **_content("The symbol is removed; the body shows the rate it had.", _ref("schemas", "DeletedRate")),
                "links": {name: _ref("links", name) for name in ("ReadRate", "RateHistory")},
            },
            **_errors("BadRequest", *_REFUSED_WRITES, "NotFound"),
        },
    }


def _history() -> dict[str, Any]:
    moment = {"type": "string", "format": "date-time"}
    return {
        "operationId": "getCurrencyHistory",
        "summary": "A symbol's changes, newest first, a page at a time",
        "parameters": [
            _query("from", "Only changes at or after this ISO 8601 moment (UTC when it has no offset).", moment),
            _query("to", "Only changes at or before this ISO 8601 moment; not before `from`.", moment),
            _query(
                "size",
                "Changes per page.",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
            ),
            _query("cursor", "The `next_cursor` of the previous page; opaque.", {"type": "string"}),
        ],
        "responses": {
            "200": _content("One page; an unknown symbol has an empty history.", _ref("schemas", "HistoryPage")),
            **_errors("BadRequest", "SearchUnavailable"),
        },
    }


def _self() -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["openapi", "info", "paths"],
        "properties": {"openapi": {"const": OPENAPI_VERSION}},
    }
    return {
        "operationId": "getOpenApiDocument",
        "summary": "This document",
        "responses": {"200": _content("The API's OpenAPI document.", schema)},
    }


def _schemas() -> dict[str, Any]:
    symbol = {"type": "string", "pattern": _anchored(SYMBOL_PATTERN), "description": "Three ASCII letters."}
    rate_in = {
        "description": (
            f"A positive decimal below {MAX_RATE:f} with at most {MAX_SIGNIFICANT_DIGITS} significant digits, "
            f"none below 1e{MIN_EXPONENT}; as a string to keep every digit (a JSON number is read as a decimal "
            "too, never as a binary float)."
        ),
        "oneOf": [
            {"type": "string", "pattern": _anchored(RATE_TEXT_PATTERN), "examples": ["1.08"]},
            {
                "type": "number",
                "exclusiveMinimum": 0,
                "exclusiveMaximum": int(MAX_RATE),
                "multipleOf": float(Decimal(1).scaleb(MIN_EXPONENT)),
            },
        ],
    }
    rate_out = {"type": "string", "pattern": CANONICAL_RATE, "description": "Plain decimal, no trailing zeros."}
    nullable_rate = {"oneOf": [rate_out, {"type": "null"}]}
    moment = {"type": "string", "format": "date-time"}
    rate_fields = {
        "symbol": {"type": "string", "pattern": CANONICAL_SYMBOL},
        "rate": rate_out,
        "revision": {"type": "integer", "minimum": 0, "description": "Writes of this symbol since it was created."},
        "updated_at": {"type": "integer", "minimum": 0, "description": "Last write, milliseconds since the epoch."},
    }
    return {
        "NewRate": _object({"symbol": symbol, "rate": rate_in}, required=["symbol", "rate"]),
        "RateChange": _object(
            {"symbol": {**symbol, "description": "Optional; when given, the path's symbol."}, "rate": rate_in},
            required=["rate"],
        ),
        "Rate": _object(rate_fields, required=list(rate_fields)),
        "RateList": _object(
            {"currencies": {"type": "array", "items": _ref("schemas", "Rate")}}, required=["currencies"]
        ),
        "DeletedRate": _object(
            {**rate_fields, "deleted": {"const": True}},
            required=["symbol", "deleted"],
            description="The removed rate; only `symbol` when the stored item had no readable rate.",
        ),
        "Change": _object(
            {
                "id": {"type": "string"},
                "type": {"enum": list(CHANGE_TYPES)},
                "rate": {**nullable_rate, "description": "null for a REMOVE."},
                "previous_rate": {**nullable_rate, "description": "null for an INSERT."},
                "version": {"type": "integer", "minimum": 0, "maximum": MAX_VERSION - 1},
                "occurred_at": moment,
            },
            required=["id", "type", "rate", "previous_rate", "version", "occurred_at"],
        ),
        "RateAt": _object(
            {
                "symbol": rate_fields["symbol"],
                "rate": rate_out,
                "at": moment,
                "since": {**moment, "description": "When the change that set this rate happened."},
                "change": _ref("schemas", "Change"),
            },
            required=["symbol", "rate", "at", "since", "change"],
        ),
        "HistoryPage": _object(
            {
                "symbol": rate_fields["symbol"],
                "changes": {"type": "array", "maxItems": MAX_PAGE_SIZE, "items": _ref("schemas", "Change")},
                "next_cursor": {
                    "oneOf": [{"type": "string"}, {"type": "null"}],
                    "description": "Pass as `cursor` for the next page; null on the last page.",
                },
            },
            required=["symbol", "changes", "next_cursor"],
        ),
        "Error": _object(
            {
                "error": {
                    "type": "string",
                    "pattern": ERROR_CODE_PATTERN,
                    "description": "Stable code, e.g. invalid_rate.",
                },
                "message": {"type": "string", "minLength": 1, "description": "What to change in the request."},
            },
            required=["error", "message"],
        ),
    }


# Every error response: its status and when it happens (the body is always an Error).
_ERRORS = {
    "BadRequest": ("400", "The request cannot be served as sent: an invalid symbol, rate, body or query parameter."),
    "NotFound": ("404", "No such rate (now, or at the moment asked)."),
    "PayloadTooLarge": ("413", f"The body exceeds {MAX_BODY_BYTES} bytes."),
    "UnsupportedMediaType": ("415", f"The Content-Type is none of {', '.join(ACCEPTED_CONTENT_TYPES)}."),
    "SearchUnavailable": ("503", "The search engine cannot answer now; retry later."),
    "Unauthenticated": (
        "401",
        "Refused by API Gateway before any handler ran: the stage wants a Cognito token for this call "
        "(`CURRENCIES_WRITE_AUTH=cognito`) and none valid was sent. `error` is `unauthorized`.",
    ),
    "Refused": (
        "403",
        "Refused by API Gateway before any handler ran: the stage wants a SigV4 signature (`iam`, the default) "
        "or an API key (`api_key`) for this call. `error` names why, e.g. `missing_authentication_token` "
        "(unsigned), `invalid_signature`, `access_denied` (the caller's IAM policy), `invalid_api_key`.",
    ),
}
_REFUSED_WRITES = ("Unauthenticated", "Refused")
"""Writes need what `CURRENCIES_WRITE_AUTH` says in deployed stages (reads too with `CURRENCIES_READ_AUTH=same`)."""


def _error_responses() -> dict[str, Any]:
    return {name: _content(description, _ref("schemas", "Error")) for name, (_, description) in _ERRORS.items()}


def _errors(*names: str) -> dict[str, Any]:
    return {_ERRORS[name][0]: _ref("responses", name) for name in names}


def _body(schema: str) -> dict[str, Any]:
    """JSON whatever the Content-Type says: the other accepted types carry the same JSON text."""
    as_text = {"type": "string", "contentMediaType": _JSON, "contentSchema": _ref("schemas", schema)}
    return {
        "required": True,
        "description": f"A JSON object of at most {MAX_BODY_BYTES} bytes.",
        "content": {
            media_type: {"schema": _ref("schemas", schema) if media_type == _JSON else as_text}
            for media_type in ACCEPTED_CONTENT_TYPES
        },
    }


def _rate_written(description: str) -> dict[str, Any]:
    links = {name: _ref("links", name) for name in ("ReadRate", "UpdateRate", "DeleteRate", "RateHistory")}
    return {**_content(description, _ref("schemas", "Rate")), "links": links}


def _content(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema}


def _object(properties: dict[str, Any], *, required: list[str], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if description:
        schema["description"] = description
    return {**schema, "additionalProperties": False}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _anchored(pattern: str) -> str:
    """JSON Schema patterns match anywhere; the code's are matched whole."""
    return f"^(?:{pattern})$"


if __name__ == "__main__":
    print(render(), end="")
