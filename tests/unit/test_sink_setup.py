"""Index set-up on a cold start: bounded by the invocation's deadline, and no template PUT when the engine has it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from chalicelib.sinks.base import EngineUnavailable
from chalicelib.sinks.indices import templates
from chalicelib.sinks.sink import SETUP_TIMEOUT_S, SearchSink


class FakeEngine:
    """An engine's templates and indices in memory, recording every call and its timeout."""

    name = "fake"

    def __init__(self) -> None:
        self.templates: dict[str, dict[str, Any]] = {}
        self.indices: set[str] = set()
        self.calls: list[tuple[str, str, float]] = []

    def index_template_meta(self, name: str, timeout_s: float) -> dict[str, Any] | None:
        self.calls.append(("get_template", name, timeout_s))
        template = self.templates.get(name)
        return None if template is None else template.get("_meta") or {}

    def put_index_template(self, name: str, body: dict[str, Any], timeout_s: float) -> None:
        self.calls.append(("put_template", name, timeout_s))
        self.templates[name] = body

    def index_exists(self, name: str, timeout_s: float) -> bool:
        self.calls.append(("exists", name, timeout_s))
        return name in self.indices

    def create_index(self, name: str, timeout_s: float) -> None:
        self.calls.append(("create", name, timeout_s))
        self.indices.add(name)

    def send_bulk(self, body: bytes, timeout_s: float) -> list[dict[str, Any]]:
        raise AssertionError("not used here")


def writes(engine: FakeEngine) -> list[tuple[str, str]]:
    return [(call, name) for call, name, _ in engine.calls if call in ("put_template", "create")]


def test_a_cold_start_creates_templates_and_indices_once() -> None:
    engine = FakeEngine()
    SearchSink(engine, "ev", "ra").ensure_indices()
    assert writes(engine) == [
        ("put_template", "ev-template"),
        ("put_template", "ra-template"),
        ("create", "ev"),
        ("create", "ra"),
    ]
    engine.calls.clear()
    SearchSink(engine, "ev", "ra").ensure_indices()  # the next container's cold start
    assert writes(engine) == []


def test_a_changed_template_is_put_again() -> None:
    engine = FakeEngine()
    SearchSink(engine, "ev", "ra").ensure_indices()
    stored = engine.templates["ev-template"]
    engine.templates["ev-template"] = {**stored, "_meta": {**stored["_meta"], "digest": "an older version"}}
    engine.calls.clear()
    SearchSink(engine, "ev", "ra").ensure_indices()
    assert writes(engine) == [("put_template", "ev-template")]
    assert {k: v for k, v in engine.templates["ev-template"].items() if k != "_meta"} == templates("ev", "ra")[
        "ev-template"
    ]


def test_every_set_up_call_is_bounded_by_the_deadline() -> None:
    engine = FakeEngine()
    now = [100.0]
    SearchSink(engine, "ev", "ra", clock=lambda: now[0]).ensure_indices(deadline=103.0)
    assert engine.calls
    assert all(timeout == 3.0 for _, _, timeout in engine.calls)
    engine = FakeEngine()
    SearchSink(engine, "ev", "ra").ensure_indices()
    assert all(timeout == SETUP_TIMEOUT_S for _, _, timeout in engine.calls)


def test_no_time_left_fails_the_set_up_and_the_write_is_retried_later() -> None:
    engine = FakeEngine()
    sink = SearchSink(engine, "ev", "ra", clock=lambda: 100.0)
    with pytest.raises(EngineUnavailable):
        sink.ensure_indices(deadline=100.05)
    actions: Sequence[Any] = [object(), object()]
    results = sink.write(actions, deadline=100.05)  # type: ignore[arg-type]
    assert [(r.status, r.error_type) for r in results] == [(503, "indices_not_ready")] * 2
    assert engine.calls == []
