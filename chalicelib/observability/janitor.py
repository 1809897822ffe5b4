"""Retiring the Pushgateway groups of Lambda containers that went away.

The gateway never forgets a group, and Lambda recycles containers all day, so one
group per container would grow without bound. The janitor (a scheduled function)
folds every group idle longer than a bound into its function's `retired` group and
deletes it. Retired values are renamed `currencies_retired_*`, so the ordinary
`currencies_*` series simply end (rate() over them stays exact) while
`sum(currencies_x_total) + sum(currencies_retired_x_total)` stays the exact all-time total.

A fold is PUT before the deletes; a group whose delete failed is remembered in the
retired group (`currencies_retired_pending_delete`, with its push time), so the next
run deletes it without folding it twice.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from chalicelib.observability import metrics
from chalicelib.observability.pushgateway import Group, Pushgateway

log = logging.getLogger(__name__)

RETIRED = "retired"
QUEUES = "queues"
"""The instance of the group holding the janitor's queue-depth samples (replaced on every run)."""
PENDING_DELETE = "currencies_retired_pending_delete"
_PREFIX = "currencies_"
_RETIRED_PREFIX = "currencies_retired_"
_GROUPING = ("job", "function", "instance")

Labels = tuple[tuple[str, str], ...]


@dataclass
class Histogram:
    buckets: dict[str, float] = field(default_factory=dict)
    count: float = 0.0
    sum: float = 0.0


@dataclass
class RetiredTotals:
    """The content of one function's retired group: counters and histograms summed over retired containers."""

    help: dict[str, str] = field(default_factory=dict)
    counters: dict[str, dict[Labels, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    histograms: dict[str, dict[Labels, Histogram]] = field(default_factory=lambda: defaultdict(dict))
    pending_delete: dict[str, float] = field(default_factory=dict)
    """Instance -> push time of groups already folded whose delete is not confirmed."""

    def add(self, group: Group, *, renamed: bool) -> None:
        """Add a group's counters and histograms (renamed to the retired family names unless already so)."""
        for name, family in group.families.items():
            if name == PENDING_DELETE:
                self.pending_delete.update(
                    (m["labels"]["retired_instance"], float(m["value"])) for m in family["metrics"]
                )
                continue
            kind = family.get("type")
            if kind not in ("COUNTER", "HISTOGRAM") or not name.startswith(_PREFIX):
                continue
            target = _retired_name(name) if renamed else name
            self.help.setdefault(target, family.get("help", ""))
            for sample in family["metrics"]:
                labels = _own_labels(sample["labels"])
                if kind == "COUNTER":
                    self.counters[target][labels] += float(sample["value"])
                    continue
                into = self.histograms[target].setdefault(labels, Histogram())
                for bound, value in sample["buckets"].items():
                    into.buckets[bound] = into.buckets.get(bound, 0.0) + float(value)
                into.count += float(sample["count"])
                into.sum += float(sample["sum"])

    def collector(self) -> Collector:
        return _TotalsCollector(self)


@dataclass(frozen=True)
class Plan:
    """What one run does for one function: the retired group to PUT (if changed) and the groups to delete."""

    function: str
    totals: RetiredTotals
    folded: list[Group]
    delete: list[Group]
    changed: bool


def plan(groups: Iterable[Group], *, now: float, idle_after_s: float) -> list[Plan]:
    """Decide, per function, which idle groups to fold into the retired totals and delete (pure)."""
    by_function: dict[str, list[Group]] = defaultdict(list)
    for group in groups:
        by_function[group.labels.get("function", "")].append(group)
    plans = []
    for function, members in sorted(by_function.items()):
        totals = RetiredTotals()
        for group in members:
            if group.labels.get("instance") == RETIRED:
                totals.add(group, renamed=False)
        live = {g.labels.get("instance", ""): g for g in members if g.labels.get("instance") not in (RETIRED, QUEUES)}
        changed = False
        for instance in list(totals.pending_delete):
            if instance not in live:  # its delete went through after all
                del totals.pending_delete[instance]
                changed = True
        folded, delete = [], []
        for instance, group in sorted(live.items()):
            if instance in totals.pending_delete:
                if group.push_time != totals.pending_delete[instance]:
                    log.error(
                        "a retired container pushed again; its counts since retirement are not folded",
                        extra={"function": function, "instance": instance},
                    )
                delete.append(group)
            elif now - group.push_time > idle_after_s:
                totals.add(group, renamed=True)
                totals.pending_delete[instance] = group.push_time
                folded.append(group)
                delete.append(group)
                changed = True
        if changed or delete:
            plans.append(Plan(function, totals, folded, delete, changed))
    return plans


def retire_idle_groups(gateway: Pushgateway, *, now: float, idle_after_s: float, timeout_s: float) -> int:
    """One janitor run: fold and delete idle groups; returns how many groups were retired."""
    retired = 0
    failed: list[Exception] = []
    for step in plan(gateway.groups(timeout_s), now=now, idle_after_s=idle_after_s):
        key = {"function": step.function, "instance": RETIRED}
        if step.changed:
            try:
                gateway.replace(key, _registry(step.totals.collector()), timeout_s)
            except Exception as error:  # nothing of this function deleted; the others still go ahead
                log.error("could not write the retired totals", extra={"function": step.function, "error": repr(error)})
                failed.append(error)
                continue
        deleted = set()
        for group in step.delete:
            try:
                gateway.delete(group.key, timeout_s)
            except Exception as error:  # remembered as pending: deleted next run, not folded twice
                log.error("could not delete a retired group", extra={"group": group.labels, "error": repr(error)})
            else:
                deleted.add(group.labels.get("instance"))
        metrics.METRICS_GROUPS_RETIRED.inc(len(step.folded))
        retired += len(step.folded)
        if deleted:
            for instance in deleted:
                step.totals.pending_delete.pop(instance, None)
            try:
                gateway.replace(key, _registry(step.totals.collector()), timeout_s)
            except Exception as error:  # the next run drops the pending entries of groups that are gone
                log.warning("could not clear pending deletes", extra={"error": repr(error)})
    if failed:
        raise failed[0]
    return retired


def tidy(
    gateway: Pushgateway,
    *,
    function: str,
    idle_after_s: float,
    sample_queues: Callable[[], Mapping[str, int]],
    timeout_s: float,
    now: Callable[[], float] = time.time,
) -> int:
    """The scheduled run: publish queue depths, then retire idle groups. Raises if the gateway failed,
    so the failure shows in the function's error metrics; returns how many groups were retired."""
    sample_queues()
    try:
        push_queue_depths(gateway, function, timeout_s)
    finally:  # retiring does not depend on the depths having been pushed
        retired = retire_idle_groups(gateway, now=now(), idle_after_s=idle_after_s, timeout_s=timeout_s)
    log.info("metrics janitor run", extra={"groups_retired": retired})
    return retired


def push_queue_depths(gateway: Pushgateway, function: str, timeout_s: float) -> None:
    """Replace the function's `queues` group with the sampled depths (one group, never one per container)."""
    families = [family for family in metrics.REGISTRY.collect() if family.name == "currencies_queue_messages"]
    gateway.replace({"function": function, "instance": QUEUES}, _registry(_Families(families)), timeout_s)


def _retired_name(name: str) -> str:
    return _RETIRED_PREFIX + name[len(_PREFIX) :]


def _own_labels(labels: dict[str, str]) -> Labels:
    return tuple(sorted((k, v) for k, v in labels.items() if k not in _GROUPING))


def _bucket_order(bound: str) -> float:
    return float("inf") if bound == "+Inf" else float(bound)


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


class _TotalsCollector(Collector):
    def __init__(self, totals: RetiredTotals) -> None:
        self._totals = totals

    def collect(self) -> Iterable[Metric]:
        totals = self._totals
        for name, samples in sorted(totals.counters.items()):
            family: Any = CounterMetricFamily(
                name.removesuffix("_total"), totals.help.get(name, ""), labels=_label_names(samples)
            )
            for labels, value in sorted(samples.items()):
                family.add_metric([v for _, v in labels], value)
            yield family
        for name, histograms in sorted(totals.histograms.items()):
            family = HistogramMetricFamily(name, totals.help.get(name, ""), labels=_label_names(histograms))
            for labels, histogram in sorted(histograms.items()):
                buckets = sorted(histogram.buckets.items(), key=lambda item: _bucket_order(item[0]))
                family.add_metric([v for _, v in labels], buckets, histogram.sum)
            yield family
        pending = GaugeMetricFamily(
            PENDING_DELETE,
            "Retired groups (by instance) already folded here whose delete is not yet confirmed; value: push time.",
            labels=["retired_instance"],
        )
        for instance, push_time in sorted(totals.pending_delete.items()):
            pending.add_metric([instance], push_time)
        yield pending


def _label_names(samples: Mapping[Labels, Any]) -> list[str]:
    first = next(iter(samples), ())
    return [name for name, _ in first]


def _registry(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
