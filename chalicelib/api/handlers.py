"""The REST API's behaviour; `app.py` only routes requests here.

Every error leaves as `{"error": CODE, "message": TEXT}`: client mistakes are 4xx,
and Chalice's own error responses (415, 405, 500) are rewritten to the same shape
by `normalise_errors`, so clients parse one format.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from chalice import Response
from chalice.app import Request

from chalicelib.api.currency import ClientError, CurrencyRate, format_rate, parse_body, parse_rate, parse_symbol
from chalicelib.api.history import HistoryReader, parse_history_params, parse_moment
from chalicelib.api.store import RateStore, StoredRate, UnreadableItem
from chalicelib.observability import metrics
from chalicelib.sinks.base import EngineUnavailable

log = logging.getLogger(__name__)

# The original example's curl sends JSON with no Content-Type, which curl labels
# application/x-www-form-urlencoded; the body is parsed as JSON whatever the label.
ACCEPTED_CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain"]

_CHALICE_ERROR_CODES = {
    "UnsupportedMediaType": "unsupported_media_type",
    "MethodNotAllowedError": "method_not_allowed",
    "BadRequestError": "bad_request",
    "NotFoundError": "not_found",
    "InternalServerError": "internal_error",
}


def create_or_update(request: Request, store: RateStore) -> Response:
    return _handle(lambda: _put(store, _body(request, required={"symbol", "rate"}, allowed={"symbol", "rate"})))


def update(request: Request, store: RateStore, symbol: str) -> Response:
    def run() -> Response:
        path_symbol = parse_symbol(symbol)
        body = _body(request, required={"rate"}, allowed={"symbol", "rate"})
        if "symbol" in body and parse_symbol(body["symbol"]) != path_symbol:
            raise ClientError(
                "symbol_mismatch", f"body symbol {body['symbol']!r} differs from the path's {path_symbol!r}"
            )
        return _put(store, {"symbol": path_symbol, "rate": body["rate"]})

    return _handle(run)


def delete(store: RateStore, symbol: str) -> Response:
    def run() -> Response:
        removed = store.delete(parse_symbol(symbol))
        if removed is None:
            raise _not_found(symbol)
        if isinstance(removed, UnreadableItem):  # another writer left it without a readable rate
            return _json(200, {"symbol": removed.symbol, "deleted": True})
        return _json(200, {**_view(removed), "deleted": True})

    return _handle(run)


def read(request: Request, store: RateStore, history: Callable[[], HistoryReader], symbol: str) -> Response:
    def run() -> Response:
        params = dict(request.query_params or {})
        if params:
            unknown = sorted(set(params) - {"at"})
            if unknown:
                raise ClientError("unknown_parameter", f"unknown query parameter(s) {unknown}; allowed: at")
            at = parse_moment(params["at"], "at")
            return _json(200, history().rate_at(parse_symbol(symbol), at))
        stored = store.get(parse_symbol(symbol))
        if stored is None:
            raise _not_found(symbol)
        return _json(200, _view(stored))

    return _handle(run, request)


def history(request: Request, reader: Callable[[], HistoryReader], symbol: str) -> Response:
    def run() -> Response:
        query = parse_history_params(parse_symbol(symbol), dict(request.query_params or {}))
        return _json(200, reader().history(query))

    return _handle(run, request)


def read_all(store: RateStore) -> Response:
    return _handle(lambda: _json(200, {"currencies": [_view(rate) for rate in store.list()]}))


def normalise_errors(request: Request, get_response: Callable[[Request], Response]) -> Response:
    """HTTP middleware: time and count every request, and give Chalice's errors our shape."""
    started = time.perf_counter()
    response = get_response(request)
    route = (request.context or {}).get("resourcePath", "unknown")
    metrics.API_LATENCY.labels(route, request.method).observe(time.perf_counter() - started)
    metrics.API_REQUESTS.labels(route, request.method, f"{response.status_code // 100}xx").inc()
    if response.status_code >= 400 and isinstance(response.body, dict) and "Code" in response.body:
        code = _CHALICE_ERROR_CODES.get(response.body["Code"], "error")
        response.body = {"error": code, "message": response.body.get("Message", "")}
    return response


def _put(store: RateStore, body: dict[str, Any]) -> Response:
    stored, created = store.put(CurrencyRate(parse_symbol(body["symbol"]), parse_rate(body["rate"])))
    return _json(201 if created else 200, _view(stored))


def _body(request: Request, *, required: set[str], allowed: set[str]) -> dict[str, Any]:
    return parse_body(request.raw_body, required=required, allowed=allowed)


def _handle(run: Callable[[], Response], request: Request | None = None) -> Response:
    try:
        return run()
    except ClientError as error:
        return _json(error.status, {"error": error.code, "message": error.message})
    except EngineUnavailable as error:
        # The detail (engine URL, secret ARN, status) is for operators: callers get only what they can act on.
        request_id = _request_id(request)
        log.warning("search engine unavailable", extra={"error": str(error), "api_request_id": request_id})
        message = "the search engine cannot answer now; retry later"
        if request_id:
            message += f" (request id {request_id})"
        return _json(503, {"error": "search_unavailable", "message": message})


def _request_id(request: Request | None) -> str | None:
    """API Gateway's request id (what the caller sees in x-amzn-RequestId), else the Lambda's."""
    if request is None:
        return None
    request_id = (request.context or {}).get("requestId")
    if request_id:
        return str(request_id)
    lambda_context = getattr(request, "lambda_context", None)
    return getattr(lambda_context, "aws_request_id", None)


def _not_found(symbol: str) -> ClientError:
    return ClientError("not_found", f"no rate for {parse_symbol(symbol)}", status=404)


def _view(rate: StoredRate) -> dict[str, Any]:
    return {
        "symbol": rate.symbol,
        "rate": format_rate(rate.rate),
        "revision": rate.revision,
        "updated_at": rate.updated_at,
    }


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(body=json.dumps(body), status_code=status, headers={"Content-Type": "application/json"})
