"""Health thresholds an operator declares in ``detections.toml`` instead of writing a detection file.

Runtime monitoring is configured per metric: "more than 200 forks a minute in a production container",
"more than 500 processes in one container". Each ``[[health]]`` table becomes a
:class:`~vigil.detections.sdk.ThresholdDetection` with the id ``health.<name>``, grouped per container, which the
engine loads beside the library (so it is tuned, deduplicated and stored like any other detection)::

    [[health]]
    name = "fork-rate"         # lowercase letters, digits, - and _; the detection id is health.fork_rate
    metric = "fork"            # one of METRICS
    threshold = 200            # fires when the window's measure reaches it
    per = "1m"                 # the window: seconds, or a number with s, m or h
    severity = "medium"        # default "medium"
    namespaces = ["prod-*"]    # fnmatch patterns; default every namespace
    window = "tumbling"        # or "sliding"

Metrics come from the eBPF sensor's per-container aggregation (``container.syscalls``: its ``activity.counts``
are summed over the window, ``activity.processes`` is a level whose maximum counts) or, for sensors without it
(Tetragon, Falco), from counting events of one kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from vigil.alert import SEVERITIES
from vigil.detections.sdk import WINDOWS, ThresholdDetection
from vigil.event import Event


@dataclass(frozen=True, slots=True)
class Metric:
    """What a health threshold measures: events of ``kind``, each counting 1 or carrying a ``value``."""

    kind: str
    unit: str
    value: Callable[[Event], float | None] | None = None
    aggregate: str = "sum"


def _sensor_count(name: str) -> Callable[[Event], float | None]:
    """One of the sensor's per-interval counters (``activity.counts.<name>``), None when the record lacks it."""

    def value(event: Event) -> float | None:
        count = event.activity.counts.get(name)
        return count if type(count) is int and count >= 0 else None

    return value


def _pids(event: Event) -> float | None:
    """``pids.current`` of the container's cgroup; -1 (unknown) and absent are no measure."""
    pids = event.activity.processes
    return pids if pids >= 0 else None


_PROFILE = "container.syscalls"

#: Metric name -> what it measures.
METRICS: dict[str, Metric] = {
    "processes": Metric(_PROFILE, "processes", _pids, "max"),
    "syscalls": Metric(_PROFILE, "system calls", _sensor_count("syscalls")),
    "fork": Metric(_PROFILE, "forks", _sensor_count("fork")),
    "exec": Metric(_PROFILE, "execs", _sensor_count("exec")),
    "open": Metric(_PROFILE, "file opens", _sensor_count("open")),
    "connect": Metric(_PROFILE, "outbound connections", _sensor_count("connect")),
    "exec_events": Metric("process.exec", "execs"),
    "open_events": Metric("file.open", "file opens"),
    "connect_events": Metric("net.connect", "outbound connections"),
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smh]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
_FIELDS = {"name", "metric", "threshold", "per", "severity", "namespaces", "window"}


@dataclass(frozen=True, slots=True)
class HealthRule:
    """One ``[[health]]`` table, checked."""

    name: str
    metric: str
    threshold: float
    per_s: float
    severity: str = "medium"
    namespaces: tuple[str, ...] = ()
    window: str = "tumbling"

    @property
    def detection_id(self) -> str:
        return f"health.{self.name.replace('-', '_')}"


def parse_health_rules(entries: Any) -> tuple[HealthRule, ...]:
    """The ``[[health]]`` array of tables; raises ValueError naming the table (by position and name) and field."""
    if not isinstance(entries, list):
        raise ValueError("[[health]] must be an array of tables ([[health]] headers)")
    rules = []
    for position, entry in enumerate(entries, 1):
        rules.append(_rule(entry, position))
    ids = [rule.detection_id for rule in rules]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"[[health]]: names must be unique, {', '.join(duplicates)} is declared more than once")
    return tuple(rules)


def _rule(entry: Any, position: int) -> HealthRule:
    where = f"[[health]] #{position}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a table")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where}: name must be lowercase letters, digits, '-' and '_', got {name!r}")
    where = f"{where} ({name!r})"
    if unknown := set(entry) - _FIELDS:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}; fields: {', '.join(sorted(_FIELDS))}")
    metric = entry.get("metric")
    if metric not in METRICS:
        raise ValueError(f"{where}: metric must be one of {', '.join(METRICS)}, got {metric!r}")
    threshold = entry.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold <= 0:
        raise ValueError(f"{where}: threshold must be a positive number, got {threshold!r}")
    if METRICS[metric].value is None and (not isinstance(threshold, int) or threshold < 1):
        raise ValueError(f"{where}: threshold of {metric} counts events: a whole number of at least 1")
    severity = entry.get("severity", "medium")
    if severity not in SEVERITIES:
        raise ValueError(f"{where}: severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    namespaces = entry.get("namespaces", [])
    if not isinstance(namespaces, list) or not all(isinstance(n, str) and n for n in namespaces):
        raise ValueError(f"{where}: namespaces must be a list of namespace names or patterns")
    window = entry.get("window", "tumbling")
    if window not in WINDOWS:
        raise ValueError(f"{where}: window must be one of {', '.join(WINDOWS)}, got {window!r}")
    return HealthRule(name=name, metric=metric, threshold=threshold, per_s=_seconds(entry.get("per"), where),
                      severity=severity, namespaces=tuple(namespaces), window=window)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"{where}: per must be a positive duration such as 30, '30s', '1m' or '1h', got {value!r}")
    return float(match[1]) * _UNITS[match[2]]


def container_group(event: Event) -> str:
    """``cluster/namespace/pod/container`` for an enriched event, ``cluster/container id`` otherwise, "" for
    events outside containers: health is measured per container. Within the pod's key, so on one partition."""
    k8s = event.k8s
    if k8s.pod:
        return f"{event.cluster}/{k8s.namespace}/{k8s.pod}/{k8s.container_name or k8s.container_id}"
    return f"{event.cluster}/{k8s.container_id}" if k8s.container_id else ""


def _in_namespaces(patterns: tuple[str, ...]) -> Callable[[Event], bool]:
    if not patterns:
        return lambda event: bool(event.k8s.container_id or event.k8s.pod)
    return lambda event: any(fnmatchcase(event.k8s.namespace, pattern) for pattern in patterns)


def _container_context(metric: str) -> Callable[[Event], dict[str, Any]]:
    def context(event: Event) -> dict[str, Any]:
        k8s = event.k8s
        return {"metric": metric, "container": k8s.container_name or k8s.container_id, "image": k8s.image}

    return context


def health_detection(rule: HealthRule) -> ThresholdDetection:
    """The threshold detection ``rule`` declares."""
    metric = METRICS[rule.metric]
    per = f"{rule.per_s:g} s"
    measured = "at most" if metric.aggregate == "max" else "in total"
    scope = f" in namespaces {', '.join(rule.namespaces)}" if rule.namespaces else ""
    measure = "{value:g}" if metric.value is not None else "{count}"
    return ThresholdDetection(
        id=rule.detection_id,
        title=f"Health threshold {rule.name}: {metric.unit} per container",
        alert_title=f"{{namespace}}/{{pod}} {{container}}: {measure} {metric.unit} within {per} "
                    f"(threshold {rule.threshold:g})",
        description=(
            f"Configured in detections.toml ([[health]] {rule.name!r}): a container{scope} reached {rule.threshold:g} "
            f"{metric.unit} ({rule.metric}, {measured}) within {per}."
        ),
        severity=rule.severity,
        tags=("health", "threshold", "configured"),
        false_positives=("A workload whose normal load is above the configured threshold: raise it for its "
                         "namespace.",),
        kinds=[metric.kind],
        match=_in_namespaces(rule.namespaces),
        group=container_group,
        context=_container_context(rule.metric),
        value=metric.value,
        aggregate=metric.aggregate,
        threshold=rule.threshold,
        window_s=rule.per_s,
        window=rule.window,
        dedup="{group}",
    )


def health_detections(rules: Iterable[HealthRule]) -> Mapping[str, ThresholdDetection]:
    """The detections of ``rules`` by a pseudo-path naming their origin (as the engine keys detection files)."""
    return {f"<detections.toml [[health]] {rule.name}>": health_detection(rule) for rule in rules}
