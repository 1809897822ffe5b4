"""The Pushgateway's HTTP API: replace a group, delete a group, read every group.

Each call takes an explicit timeout: a Lambda must never wait on an unreachable
gateway longer than it can afford. Writes go through prometheus-client; reading uses
the gateway's JSON API (`GET /api/v1/metrics`), which gives each group's families
and its `push_time_seconds`.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, delete_from_gateway, push_to_gateway

JOB = "currencies"
"""The `job` of every group this project pushes; `function` and `instance` complete the grouping key."""


@dataclass(frozen=True)
class Group:
    """One group as the gateway holds it: its grouping labels, last push time and metric families."""

    labels: dict[str, str]
    push_time: float
    families: dict[str, dict[str, Any]]
    """Family name -> the gateway's JSON for it (`type`, `help`, `metrics`)."""

    @property
    def key(self) -> dict[str, str]:
        """The grouping key without `job` (what push and delete take)."""
        return {name: value for name, value in self.labels.items() if name != "job"}


class Pushgateway:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def replace(self, key: dict[str, str], registry: CollectorRegistry, timeout_s: float) -> None:
        """PUT: the group becomes exactly this registry's samples (so pushing again never double counts)."""
        push_to_gateway(self.url, job=JOB, registry=registry, grouping_key=key, timeout=timeout_s)

    def delete(self, key: dict[str, str], timeout_s: float) -> None:
        delete_from_gateway(self.url, job=JOB, grouping_key=key, timeout=timeout_s)

    def groups(self, timeout_s: float) -> list[Group]:
        """Every group of this project's job."""
        with urllib.request.urlopen(f"{self.url}/api/v1/metrics", timeout=timeout_s) as response:
            payload = json.load(response)
        return [group for group in map(_group, payload.get("data") or []) if group.labels.get("job") == JOB]


def _group(entry: dict[str, Any]) -> Group:
    families = {name: family for name, family in entry.items() if isinstance(family, dict) and "metrics" in family}
    push_time = families.pop("push_time_seconds", {"metrics": [{"value": "0"}]})
    families.pop("push_failure_time_seconds", None)
    return Group(
        labels=dict(entry.get("labels") or {}),
        push_time=float(push_time["metrics"][0]["value"]),
        families=families,
    )
