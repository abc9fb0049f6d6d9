"""Per-deployment tuning of the detections, from configuration rather than code: ``detections.toml``.

Detection files say what is suspicious everywhere; a deployment says what is normal *here* (the CI
service account that execs into pods, the namespace where developers debug) without forking a file::

    [engine]
    allowed_lateness_s = 30        # how far behind the newest event time an event may arrive
    max_state_keys = 100000        # bound on the keys windowed and sequence detections keep

    [detections."k8s.exec_into_pod"]
    severity = "medium"            # also: enabled, dedup, dedup_period_s, alert_title,
    dedup_period_s = 3600          #       threshold, window_s, window (thresholds), max_span_s (sequences)
    exceptions = [
        { namespace = "dev-*" },
        { user = ["system:serviceaccount:ci:*"], pod = "runner-*" },
    ]

    [detections."k8s.image_registry_not_allowed".params]         # parameters the detection declares
    allowed_registries = ["registry.example.com", "ghcr.io/acme"]

    [detections."k8s.image_registry_not_allowed".namespaces."prod-*"]
    severity = "high"              # per namespace (exact name, or a glob): severity, params, and for
    params = { allowed_registries = ["registry.example.com"] }   # thresholds: threshold, window_s

    [[health]]                     # a threshold on a container metric, configured without code
    name = "fork-rate"             # (see vigil.detections.health)
    metric = "fork"
    threshold = 200
    per = "1m"
    severity = "medium"
    namespaces = ["prod-*"]

An exception is a table of event fields to ``fnmatch`` patterns (a list means any of them); an event that
matches every field of one exception is not given to the detection, so it neither raises an alert nor
advances a window or sequence. Overrides go through the detection's own validation: a bad value disables
nothing silently, it refuses the file with the detection id and field named. Namespace settings apply to an
event by its namespace: an entry naming it exactly wins, else the first pattern (in file order) that matches;
their params are merged over the detection-wide ones.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from fnmatch import translate
from pathlib import Path
from typing import Any

from vigil.detections.health import HealthRule, parse_health_rules
from vigil.detections.sdk import Detection, DetectionError
from vigil.detections.sdk.params import NAMESPACE_OVERRIDES, NamespaceSettings, configured_params
from vigil.event import Event

#: Detection fields a deployment may override.
OVERRIDABLE = frozenset(
    {"severity", "dedup", "dedup_period_s", "alert_title", "threshold", "window_s", "window", "max_span_s"}
)

#: Event fields exceptions may match, by the names analysts see in alerts.
FIELDS: dict[str, Callable[[Event], str | list[str]]] = {
    "cluster": lambda e: e.cluster,
    "node": lambda e: e.node,
    "source": lambda e: e.source,
    "kind": lambda e: e.kind,
    "namespace": lambda e: e.k8s.namespace or e.target.namespace,
    "pod": lambda e: e.k8s.pod,
    "container": lambda e: e.k8s.container_name,
    "image": lambda e: e.k8s.image,
    "service_account": lambda e: e.k8s.service_account,
    "user": lambda e: e.actor.user,
    "groups": lambda e: e.actor.groups,
    "user_agent": lambda e: e.actor.user_agent,
    "source_ips": lambda e: e.actor.source_ips,
    "exe": lambda e: e.actor.exe,
    "parent_exe": lambda e: e.actor.parent_exe,
    "verb": lambda e: e.action,
    "resource": lambda e: e.target.resource,
    "subresource": lambda e: e.target.subresource,
    "name": lambda e: e.target.name,
    "path": lambda e: e.target.path,
    "address": lambda e: e.target.address,
}
_LABEL_PREFIX = "labels."


class TuningError(ValueError):
    """A tuning file the engine cannot apply; the message names the file, detection and field."""


@dataclass(frozen=True, slots=True)
class EventException:
    """Every listed field must match one of its patterns for the event to be excepted."""

    patterns: tuple[tuple[str, re.Pattern[str]], ...]

    def matches(self, event: Event) -> bool:
        return all(_field_matches(event, name, pattern) for name, pattern in self.patterns)


def _field_matches(event: Event, name: str, pattern: re.Pattern[str]) -> bool:
    if name.startswith(_LABEL_PREFIX):
        value: str | list[str] = event.k8s.labels.get(name[len(_LABEL_PREFIX) :], "")
    else:
        value = FIELDS[name](event)
    if isinstance(value, list):
        return any(pattern.match(item) for item in value)
    return pattern.match(value) is not None


@dataclass(frozen=True, slots=True)
class DetectionTuning:
    enabled: bool = True
    overrides: Mapping[str, Any] = field(default_factory=dict)
    exceptions: tuple[EventException, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    namespaces: tuple[NamespaceSettings, ...] = ()

    def excepts(self, event: Event) -> bool:
        return any(exception.matches(event) for exception in self.exceptions)


@dataclass(frozen=True, slots=True)
class Tuning:
    """The parsed tuning file: engine bounds and per-detection settings (absent ids keep their defaults)."""

    allowed_lateness_s: float = 30.0
    max_state_keys: int = 100_000
    detections: Mapping[str, DetectionTuning] = field(default_factory=dict)
    #: Thresholds on container metrics declared in ``[[health]]`` (built into detections by vigil.detections.health).
    health: tuple[HealthRule, ...] = ()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None) -> Tuning:
        """The tuning in ``path`` (settings ``detections.config``, ``$VIGIL_DETECTIONS_CONFIG``); none without one."""
        if not path:
            return cls()
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise TuningError(f"cannot read detections config {path}: {exc}") from exc
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: Mapping[str, Any], origin: str = "detections config") -> Tuning:
        unknown = set(data) - {"engine", "detections", "health"}
        if unknown:
            raise TuningError(
                f"{origin}: unknown sections {sorted(unknown)}; expected [engine], [detections] and [[health]]"
            )
        engine = _table(data.get("engine", {}), f"{origin}: [engine]")
        limits = {"allowed_lateness_s": float, "max_state_keys": int}
        if unknown := set(engine) - set(limits):
            raise TuningError(f"{origin}: [engine] knows only {sorted(limits)}, not {sorted(unknown)}")
        try:
            bounds = {name: limits[name](value) for name, value in engine.items()}
        except (TypeError, ValueError) as exc:
            raise TuningError(f"{origin}: [engine]: {exc}") from None
        detections = {
            detection_id: _detection_tuning(_table(table, f"{origin}: [detections.{detection_id}]"), detection_id)
            for detection_id, table in _table(data.get("detections", {}), f"{origin}: [detections]").items()
        }
        try:
            health = parse_health_rules(data.get("health", []))
        except ValueError as exc:
            raise TuningError(f"{origin}: {exc}") from None
        return cls(**bounds, detections=detections, health=health)

    def apply(self, detection: Detection) -> Detection | None:
        """The detection as configured here, ``None`` when it is disabled; raises DetectionError on a bad
        override (the detection's own validation runs on the new values)."""
        tuning = self.detections.get(detection.id)
        if tuning is None:
            return detection
        if not tuning.enabled:
            return None
        names = {f.name for f in fields(detection)}
        unknown = set(tuning.overrides) - names
        if unknown:
            raise DetectionError(f"{detection.id}: cannot override {sorted(unknown)} on a {type(detection).__name__}")
        changes = dict(tuning.overrides)
        if tuning.params:
            changes["params"] = configured_params(detection, tuning.params)
        if tuning.namespaces:
            changes["namespace_settings"] = tuning.namespaces
        return replace(detection, **changes) if changes else detection

    def exceptions_for(self, detection_id: str) -> DetectionTuning | None:
        tuning = self.detections.get(detection_id)
        return tuning if tuning is not None and tuning.exceptions else None


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TuningError(f"{where} must be a table")
    return value


def _detection_tuning(table: dict[str, Any], detection_id: str) -> DetectionTuning:
    where = f"[detections.{detection_id!r}]"
    unknown = set(table) - OVERRIDABLE - {"enabled", "exceptions", "params", "namespaces"}
    if unknown:
        raise TuningError(f"{where}: unknown settings {sorted(unknown)}")
    params = _table(table.get("params", {}), f"{where}: params")
    namespaces = tuple(
        _namespace_settings(pattern, _table(entry, f"{where}: namespaces.{pattern!r}"), where)
        for pattern, entry in _table(table.get("namespaces", {}), f"{where}: namespaces").items()
    )
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise TuningError(f"{where}: enabled must be true or false")
    exceptions = table.get("exceptions", [])
    if not isinstance(exceptions, list):
        raise TuningError(f"{where}: exceptions must be a list of tables")
    overrides = {name: value for name, value in table.items() if name in OVERRIDABLE}
    exception_list = tuple(_exception(entry, where) for entry in exceptions)
    return DetectionTuning(enabled, overrides, exception_list, params, namespaces)


def _namespace_settings(pattern: str, entry: dict[str, Any], where: str) -> NamespaceSettings:
    """One ``namespaces."<pattern>"`` table; its values are checked against the detection when it is applied."""
    where = f"{where}: namespaces.{pattern!r}"
    unknown = set(entry) - {"params", *NAMESPACE_OVERRIDES}
    if unknown:
        raise TuningError(f"{where}: unknown settings {sorted(unknown)}; a namespace sets params, "
                          f"{', '.join(NAMESPACE_OVERRIDES)}")
    settings = {name: entry[name] for name in NAMESPACE_OVERRIDES if name in entry}
    return NamespaceSettings(pattern=pattern, params=_table(entry.get("params", {}), f"{where}: params"), **settings)


def _exception(entry: Any, where: str) -> EventException:
    if not isinstance(entry, dict) or not entry:
        raise TuningError(f"{where}: each exception must be a table of field = pattern(s)")
    patterns = []
    for name, value in entry.items():
        if name not in FIELDS and not name.startswith(_LABEL_PREFIX):
            known = ", ".join(sorted(FIELDS))
            raise TuningError(f"{where}: exceptions cannot match {name!r}; fields: {known}, labels.*")
        globs = value if isinstance(value, list) else [value]
        if not globs or not all(isinstance(glob, str) for glob in globs):
            raise TuningError(f"{where}: exception field {name!r} needs a pattern or a list of patterns")
        patterns.append((name, re.compile("|".join(f"(?:{translate(glob)})" for glob in globs))))
    return EventException(tuple(patterns))
