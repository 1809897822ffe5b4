"""The running API against the OpenAPI document it serves, fuzzed with schemathesis.

The schema is loaded from the API's own `GET /openapi.json`, so a broken route fails here too.
Every operation gets property-based requests (valid and invalid); then a stateful run follows
the document's links (create -> read, update, delete, history). Each response must not be a 5xx
and must conform to the document: a documented status code, its content type, its body schema;
and a request the document forbids must be refused. About 1,400 requests per engine, under a minute.

Operations are parametrized here rather than with `schemathesis.pytest.from_fixture`, which sets
`Function._nodeid`, an attribute pytest 9.2 no longer has (schemathesis 4.32.5).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from chalicelib.api import openapi
from chalicelib.api.currency import SYMBOL_PATTERN
from currencies_local.pipeline import LocalPipeline

# No 5xx; each response as documented; and what the document forbids, the API refuses (4xx).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Per operation, generation mode and engine.
EXAMPLES_PER_OPERATION = 100
SCENARIOS = 40
STEPS_PER_SCENARIO = 8
# No other test writes symbols starting with Y: what the fuzzer creates cannot disturb them.
OWN_LETTER = "Y"


@pytest.fixture(scope="module")
def api_schema(pipeline: LocalPipeline) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{pipeline.api_url}/openapi.json", timeout=10)


@pytest.fixture(scope="module")
def traffic() -> Iterator[Counter[tuple[str, int]]]:
    """(operation, status) of every request schemathesis sent, summarised with `-s`."""
    counts: Counter[tuple[str, int]] = Counter()
    yield counts
    print(f"\nschemathesis sent {counts.total()} requests:")
    for (label, status), count in sorted(counts.items()):
        print(f"  {label:32} {status}  {count}")


def confine(case: schemathesis.Case) -> None:
    """Give every valid symbol of the request our letter, keeping its case; invalid ones stay as generated."""

    def own(value: object) -> object:
        if isinstance(value, str) and re.fullmatch(SYMBOL_PATTERN, value):
            return (OWN_LETTER if value[0].isupper() else OWN_LETTER.lower()) + value[1:]
        return value

    if case.path_parameters and "symbol" in case.path_parameters:
        case.path_parameters["symbol"] = own(case.path_parameters["symbol"])
    if isinstance(case.body, dict) and "symbol" in case.body:
        case.body["symbol"] = own(case.body["symbol"])


def test_the_document_covers_every_route(pipeline: LocalPipeline) -> None:
    served = requests.get(f"{pipeline.api_url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.headers["Content-Type"] == "application/json"
    document = served.json()
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item if method != "parameters"
    }
    routes = {(path, method) for path, methods in sys.modules["app"].app.routes.items() for method in methods}
    assert documented == routes
    assert document == openapi.document()


# From the generator, so each operation is its own test; the run sends what the API serves.
# Negative cases exist only where there is a parameter or a body to get wrong.
RUNS = [
    pytest.param(operation["operationId"], mode, id=f"{operation['operationId']}-{mode.value}")
    for item in openapi.document()["paths"].values()
    for operation in item.values()
    if isinstance(operation, dict)
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE or "parameters" in item or "requestBody" in operation
]


@pytest.mark.parametrize(("operation_id", "mode"), RUNS)
def test_every_operation_conforms(
    api_schema: schemathesis.BaseSchema, operation_id: str, mode: GenerationMode, traffic: Counter[tuple[str, int]]
) -> None:
    """Requests the document allows (positive) and forbids (negative), one operation at a time."""
    operation = api_schema.find_operation_by_id(operation_id)

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=EXAMPLES_PER_OPERATION, suppress_health_check=list(HealthCheck))
    def send(case: schemathesis.Case) -> None:
        confine(case)
        response = case.call(timeout=10)
        traffic[(f"{mode.value} {operation.label}", response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)

    send()


def test_linked_operations_conform(
    pipeline: LocalPipeline, api_schema: schemathesis.BaseSchema, traffic: Counter[tuple[str, int]]
) -> None:
    base_url = pipeline.api_url

    class Links(api_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            """Every scenario starts without our symbols, so that replaying it gets the same answers."""
            for rate in requests.get(f"{base_url}/currency", timeout=10).json()["currencies"]:
                if rate["symbol"].startswith(OWN_LETTER):
                    requests.delete(f"{base_url}/currency/{rate['symbol']}", timeout=10).raise_for_status()

        def before_call(self, case: schemathesis.Case) -> None:
            confine(case)

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
            super().after_call(response, case)
            traffic[(f"stateful {case.operation.label}", response.status_code)] += 1

        def validate_response(self, response: schemathesis.Response, case: schemathesis.Case, **kwargs: object) -> None:
            case.validate_response(response, checks=CHECKS)

    before = traffic.copy()
    Links.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS_PER_SCENARIO,
            suppress_health_check=list(HealthCheck),
        )
    )
    followed = traffic - before
    # A random symbol is almost never one that exists: 200s here come from following the links.
    for label in ("GET /currency/{symbol}", "DELETE /currency/{symbol}"):
        assert followed[(f"stateful {label}", 200)], (label, followed)
