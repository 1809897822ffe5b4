"""The currency-rate domain: what a valid symbol, rate and request body are.

Everything here is pure so the rules can be property-tested without any service.
Rates are `Decimal` end to end: a binary float would silently change the value
a client sent (and DynamoDB's resource API rejects floats anyway).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_BODY_BYTES = 4096
MAX_SIGNIFICANT_DIGITS = 18
# Bounds keep every accepted rate exact in DynamoDB and meaningful as a double in
# the search engine; 1e400 is finite as a Decimal but not a plausible rate.
MAX_RATE = Decimal("1e15")
MIN_EXPONENT = -18

# Python regexes matched whole (fullmatch); chalicelib.api.openapi anchors them for JSON Schema.
SYMBOL_PATTERN = r"[A-Za-z]{3}"
RATE_TEXT_PATTERN = r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?|\.[0-9]+"

_SYMBOL = re.compile(SYMBOL_PATTERN)
_RATE_TEXT = re.compile(RATE_TEXT_PATTERN)


class ClientError(ValueError):
    """A 4xx: the request cannot be served as sent; `code` is stable, `message` says how to fix it."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class CurrencyRate:
    symbol: str
    rate: Decimal


def parse_symbol(value: Any) -> str:
    """Three ASCII letters, returned upper-case (`eur` and `EUR` are one currency)."""
    if not isinstance(value, str) or not _SYMBOL.fullmatch(value):
        raise ClientError("invalid_symbol", f"symbol must be three ASCII letters such as 'EUR', got {_show(value)}")
    return value.upper()


def parse_rate(value: Any) -> Decimal:
    """A positive, finite decimal given as a JSON number or a string, in canonical form."""
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ClientError("invalid_rate", f"rate must be a number or a numeric string, got {_show(value)}")
    if isinstance(value, str) and not _RATE_TEXT.fullmatch(value):
        raise ClientError("invalid_rate", f"rate must be a plain positive decimal such as '1.08', got {_show(value)}")
    try:
        rate = Decimal(value)
    except InvalidOperation:
        raise ClientError("invalid_rate", f"rate is not a decimal number: {_show(value)}") from None
    if not rate.is_finite() or rate <= 0:
        raise ClientError("invalid_rate", f"rate must be positive and finite, got {_show(value)}")
    if rate >= MAX_RATE:
        raise ClientError("invalid_rate", f"rate must be below {MAX_RATE:f}, got {_show(value)}")
    digits, exponent = _significant(rate)
    if len(digits) > MAX_SIGNIFICANT_DIGITS:
        raise ClientError(
            "invalid_rate",
            f"rate has {len(digits)} significant digits; at most {MAX_SIGNIFICANT_DIGITS} are accepted",
        )
    if exponent < MIN_EXPONENT:
        raise ClientError("invalid_rate", f"rate must not have digits below 1e{MIN_EXPONENT}, got {_show(value)}")
    return canonical(rate)


def canonical(rate: Decimal) -> Decimal:
    """No trailing zeros and no positive exponent: 1.10 -> 1.1 and 1E+2 -> 100.

    Built from the digits, not with normalize(), which rounds to the context's 28 digits.
    """
    if rate.is_zero() or not rate.is_finite():
        return rate.normalize()  # exact for these: no digits to round
    digits, exponent = _significant(rate)
    if exponent > 0:
        digits, exponent = digits + (0,) * exponent, 0
    return Decimal((int(rate.is_signed()), digits, exponent))


def _significant(rate: Decimal) -> tuple[tuple[int, ...], int]:
    """A finite rate's coefficient without trailing zeros and its exponent, exactly (no context involved)."""
    _, digits, exponent = rate.as_tuple()
    assert isinstance(exponent, int), "only finite decimals have digits"
    kept = len(digits)
    while kept > 1 and digits[kept - 1] == 0:
        kept -= 1
    return digits[:kept], exponent + len(digits) - kept


def format_rate(rate: Decimal) -> str:
    """The canonical text of a rate: plain notation, no exponent, no trailing zeros."""
    return f"{canonical(rate):f}"


def parse_body(raw: bytes | None, *, required: set[str], allowed: set[str]) -> dict[str, Any]:
    """Decode a request body that must be a small JSON object with known fields only.

    Numbers become `Decimal` (never float) and NaN/Infinity literals are refused.
    """
    raw = raw or b""
    if len(raw) > MAX_BODY_BYTES:
        raise ClientError("body_too_large", f"body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}", status=413)
    if not raw.strip():
        raise ClientError("missing_body", 'send a JSON object such as {"symbol": "EUR", "rate": "1.08"}')
    try:
        body = json.loads(raw, parse_float=Decimal, parse_int=Decimal, parse_constant=_refuse_constant)
    except ClientError:
        raise
    except RecursionError:
        raise ClientError("malformed_json", "body is nested too deeply") from None
    except ArithmeticError:  # decimal.InvalidOperation: an exponent beyond any Decimal
        raise ClientError("invalid_number", "body holds a number too large or too small to represent") from None
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ClientError("malformed_json", f"body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ClientError("invalid_body", f"body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ClientError("unknown_field", f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    missing = sorted(required - set(body))
    if missing:
        raise ClientError("missing_field", f"missing field(s) {missing}")
    return body


def _refuse_constant(name: str) -> Any:
    raise ClientError("invalid_rate", f"{name} is not a valid number")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
