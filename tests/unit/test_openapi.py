"""The OpenAPI document: committed as generated, a valid OpenAPI 3.1 document, and saying what the code does.

The schemas cannot express every rule (a rate's significant digits), so the promise checked here is
one-sided where it must be: whatever the code accepts, the document accepts; whatever the document
rejects, the code rejects; and what the API answers with matches the response schemas.
"""

from __future__ import annotations

import json
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from chalicelib.api import openapi
from chalicelib.api.currency import (
    MAX_RATE,
    MAX_SIGNIFICANT_DIGITS,
    MIN_EXPONENT,
    ClientError,
    format_rate,
    parse_body,
    parse_rate,
    parse_symbol,
)

COMMITTED = Path(__file__).parents[2] / "docs" / "openapi.json"
DOCUMENT = openapi.document()
# Numbers as decimals, so the schemas compare exactly the numbers the code sees.
SCHEMAS_EXACT = Draft202012Validator(
    {"$ref": "#/components/schemas/NewRate", **json.loads(openapi.render(), parse_float=Decimal)}
)


def schema_of(name: str) -> Draft202012Validator:
    """A validator for one component schema, its references resolved inside the document."""
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]})


def rate_is_valid(rate: Any) -> bool:
    """A JSON number as the exact decimal it spells (as parse_body reads it), not a rounded float."""
    with localcontext(prec=100):
        return SCHEMAS_EXACT.is_valid({"symbol": "EUR", "rate": rate})


def significant_digits(value: Decimal) -> int:
    """As the code counts them: trailing zeros do not count."""
    return len("".join(map(str, value.as_tuple().digits)).strip("0")) or 1


def code_accepts(check: Any, value: Any) -> bool:
    try:
        check(value)
    except ClientError:
        return False
    return True


def test_committed_document_is_the_generated_one() -> None:
    assert COMMITTED.read_text() == openapi.render(), (
        "run .venv/bin/python -m chalicelib.api.openapi > docs/openapi.json"
    )


def test_document_is_valid_openapi_3_1() -> None:
    validate(DOCUMENT, cls=OpenAPIV31SpecValidator)


def test_every_link_names_an_operation_and_its_parameters() -> None:
    def name(parameter: dict[str, Any]) -> str:
        if "$ref" in parameter:
            parameter = DOCUMENT["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
        return parameter["name"]

    parameters = {
        operation["operationId"]: {name(p) for p in path.get("parameters", []) + operation.get("parameters", [])}
        for path in DOCUMENT["paths"].values()
        for operation in path.values()
        if isinstance(operation, dict)
    }
    links = DOCUMENT["components"]["links"]
    assert links
    for link in links.values():
        assert set(link["parameters"]) <= parameters[link["operationId"]], link


# Decimals around every limit: the limits themselves, and up to 26 digits at exponents either side of them.
SMALLEST = Decimal(1).scaleb(MIN_EXPONENT)
decimals = st.one_of(
    st.sampled_from([SMALLEST, SMALLEST / 10, MAX_RATE - SMALLEST * 10**15, MAX_RATE, MAX_RATE * 10, Decimal(0)]),
    st.builds(
        lambda coefficient, exponent: Decimal(f"{coefficient}E{exponent}"),
        st.integers(-(10**3), 10**25),
        st.one_of(st.integers(-25, 5), st.sampled_from([MIN_EXPONENT, MIN_EXPONENT - 1])),
    ),
)
rate_texts = st.one_of(
    st.text(max_size=8), st.from_regex(r"[0-9]{0,20}(\.[0-9]{0,22})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)
)


@given(value=st.one_of(decimals, rate_texts, st.integers(), st.booleans(), st.none()))
def test_a_rate_the_code_accepts_is_valid_in_the_document(value: Any) -> None:
    if code_accepts(parse_rate, value):
        assert rate_is_valid(value), value


@given(value=decimals)
def test_numbers_the_document_rejects_are_rejected_by_the_code(value: Decimal) -> None:
    """The significant digits are the one rule of the code's that no schema keyword expresses."""
    if significant_digits(value) <= MAX_SIGNIFICANT_DIGITS:
        assert code_accepts(parse_rate, value) == rate_is_valid(value), value


@given(value=rate_texts)
def test_rate_texts_the_document_rejects_are_rejected_by_the_code(value: str) -> None:
    if not rate_is_valid(value):
        assert not code_accepts(parse_rate, value), value


@given(value=st.text(max_size=6))
def test_symbols_follow_the_documented_pattern(value: str) -> None:
    assert code_accepts(parse_symbol, value) == schema_of("NewRate").is_valid({"symbol": value, "rate": "1"})


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"symbol": "EUR", "rate": "1.08"}, True),
        ({"symbol": "eur", "rate": 1}, True),
        ({"symbol": "EUR"}, False),
        ({"symbol": "EUR", "rate": "1", "note": "x"}, False),
        ({"symbol": "EUR", "rate": "NaN"}, False),
        ({"symbol": "EUR", "rate": float(MAX_RATE)}, False),
        ({"symbol": "EUR", "rate": 1e-19}, False),
    ],
)
def test_new_rate_bodies_agree_with_the_parser(body: dict[str, Any], valid: bool) -> None:
    def parse(raw: bytes) -> None:
        fields = parse_body(raw, required={"symbol", "rate"}, allowed={"symbol", "rate"})
        parse_symbol(fields["symbol"])
        parse_rate(fields["rate"])

    assert schema_of("NewRate").is_valid(body) == valid == code_accepts(parse, json.dumps(body).encode())


@given(value=st.decimals(min_value=Decimal("1e-18"), max_value=MAX_RATE, allow_nan=False, allow_infinity=False))
def test_answered_rates_match_the_documented_form(value: Decimal) -> None:
    if code_accepts(parse_rate, value):
        assert schema_of("Rate").is_valid(
            {"symbol": parse_symbol("eur"), "rate": format_rate(parse_rate(value)), "revision": 1, "updated_at": 0}
        ), value
