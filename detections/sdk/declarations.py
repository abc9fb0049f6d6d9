"""The catalogue metadata every kind of detection declares (id, title, severity, MITRE techniques, the event kinds
it looks at, templates, examples, parameters, prefilter), checked when the detection file loads, and the alert
every kind builds from it."""

from __future__ import annotations

import inspect
import re
import string
from abc import ABC
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Any

from vigil.alert import SEVERITIES, Alert
from vigil.detections.sdk.errors import DetectionError
from vigil.detections.sdk.examples import Example, Scenario
from vigil.detections.sdk.params import NamespaceSettings, param_value
from vigil.detections.sdk.prefilters import Declared, Prefilter
from vigil.detections.sdk.templates import event_namespace
from vigil.event import Event

_ID = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
_MITRE = re.compile(r"^T\d{4}(\.\d{3})?$")

#: Namespaces whose resolved settings a detection keeps (a cache: beyond it, it starts over).
MAX_NAMESPACES = 4096


@dataclass(frozen=True, kw_only=True)
class Detection(ABC):
    """Catalogue metadata shared by every kind of detection, validated when the detection file loads."""

    id: str
    title: str
    description: str
    severity: str
    kinds: frozenset[str]
    mitre: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    false_positives: tuple[str, ...] = ()
    #: The alert's title (default: ``title``) and dedup key: ``str.format`` templates over the alert's fields.
    alert_title: str = ""
    dedup: str = "{cluster}/{namespace}/{pod}/{user}"
    #: Hits with the same dedup key within this many seconds update one alert instead of raising another.
    dedup_period_s: float = 600.0
    examples: tuple[Example | Scenario, ...] = ()
    #: Parameters the logic reads, with their defaults (bool, number, string or list of strings); a detection
    #: that declares any gets them as the second argument of ``match`` and ``context``.
    params: Mapping[str, Any] = field(default_factory=dict)
    #: Settings of the namespaces that differ, from the tuning file (see :class:`NamespaceSettings`).
    namespace_settings: tuple[NamespaceSettings, ...] = ()
    #: The prefilter (see :class:`Prefilter`): the only values of these event fields the logic can match.
    actions: Declared = ()
    resources: Declared = ()
    subresources: Declared = ()
    exe_names: Declared = ()
    protocols: Declared = ()
    remote_classes: Declared = ()
    remote_ports: Declared = ()
    codes: Declared = ()
    paths: Declared = ()
    #: The prefilter of each of ``kinds``, from the prefilter fields above.
    prefilter_by_kind: dict[str, Prefilter] = field(init=False, repr=False, compare=False)
    #: Resolved settings by namespace name: resolving globs for every event would cost more than the logic.
    _by_namespace: dict[str, NamespaceSettings] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_namespace", {})
        object.__setattr__(self, "namespace_settings", tuple(self.namespace_settings))
        object.__setattr__(self, "params", MappingProxyType({
            name: param_value(self.id, name, value, value) for name, value in dict(self.params).items()
        }))
        for settings in self.namespace_settings:
            settings.check(self)
        for name in ("kinds", "mitre", "tags", "references", "false_positives", "examples"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise DetectionError(f"{name} must be a list, not the string {value!r}")
            object.__setattr__(self, name, frozenset(value) if name == "kinds" else tuple(value))
        if not _ID.match(self.id):
            raise DetectionError(f"id {self.id!r} must be dotted lowercase words, e.g. 'k8s.exec_into_pod'")
        if not self.title or not self.description:
            raise DetectionError(f"{self.id}: title and description are required")
        if self.severity not in SEVERITIES:
            raise DetectionError(f"{self.id}: severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        if not self.kinds:
            raise DetectionError(f"{self.id}: kinds must name at least one event kind")
        object.__setattr__(self, "prefilter_by_kind", Prefilter.declared_by(self, self.id))
        for technique in self.mitre:
            if not _MITRE.match(technique):
                raise DetectionError(f"{self.id}: MITRE technique {technique!r} must look like T1609 or T1611.001")
        if self.dedup_period_s < 0:
            raise DetectionError(f"{self.id}: dedup_period_s must not be negative")
        for name in ("alert_title", "dedup"):
            try:
                list(string.Formatter().parse(getattr(self, name)))
            except ValueError as exc:
                raise DetectionError(f"{self.id}: {name} is not a valid template: {exc}") from None

    def prefilters(self, kind: str) -> tuple[Prefilter, ...]:
        """The prefilters under which an event of ``kind`` can reach this detection's logic (any of them)."""
        return (self.prefilter_by_kind[kind],)

    def catalogue_entry(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "mitre": list(self.mitre),
            "kinds": sorted(self.kinds),
            "tags": list(self.tags),
            "description": self.description,
            "references": list(self.references),
            "false_positives": list(self.false_positives),
            "dedup_period_s": self.dedup_period_s,
            "examples": len(self.examples),
            "prefilter": {
                kind: {name: sorted(getattr(p, name)) for name in p.fields}
                for kind in sorted(self.kinds) for p in self.prefilters(kind) if p.fields
            },
            "params": {name: list(v) if isinstance(v, tuple) else v for name, v in self.params.items()},
        }

    def settings_for(self, namespace: str) -> NamespaceSettings:
        """The settings for events of ``namespace``: the configured entry naming it exactly, else the first whose
        pattern matches, else the detection's own (parameters always complete, defaults filled in)."""
        settings = self._by_namespace.get(namespace)
        if settings is None:
            settings = self._resolve(namespace)
            if len(self._by_namespace) >= MAX_NAMESPACES:
                self._by_namespace.clear()
            self._by_namespace[namespace] = settings
        return settings

    def _resolve(self, namespace: str) -> NamespaceSettings:
        configured = next((s for s in self.namespace_settings if s.pattern == namespace), None)
        if configured is None:
            configured = next((s for s in self.namespace_settings if fnmatchcase(namespace, s.pattern)), None)
        if configured is None:
            return NamespaceSettings(pattern="*", params=self.params)
        return replace(configured, params=MappingProxyType({**self.params, **configured.params}))

    def judge_of(self, match: Callable[..., bool]) -> Callable[[Event], bool]:
        """``match`` as one call on an event, with the params of the event's namespace when the detection declares
        any: the engine asks this of every event a prefilter lets through, and most are refused, so the call is
        what an ask costs."""
        if not self.params:
            return match
        resolved, settings_for = self._by_namespace, self.settings_for

        def judge(event: Event) -> bool:
            namespace = event.k8s.namespace or event.target.namespace  # event_namespace, inlined
            settings = resolved.get(namespace)
            return match(event, (settings or settings_for(namespace)).params)

        return judge

    def severity_for(self, namespace: str) -> str:
        return self.settings_for(namespace).severity or self.severity

    def _takes_params(self, name: str) -> None:
        """A detection with parameters calls ``name`` with (event, params): say so at load, not at the first event."""
        function = getattr(self, name)
        if function is None or not self.params:
            return
        try:
            inspect.signature(function).bind(None, None)
        except TypeError:
            raise DetectionError(
                f"{self.id}: {name} must take (event, params) because the detection declares params"
            ) from None
        except ValueError:  # a builtin without a signature: let the first call tell
            return

    def build_alert(self, events: Sequence[Event], context: Mapping[str, Any], title: str, dedup_key: str) -> Alert:
        """An alert about ``events`` (the evidence, in order): Kubernetes context comes from the first event
        that has it, the alert time from the last, so a sequence alert is dated when it completed."""
        first, last = events[0], events[-1]
        namespace = next((n for e in events if (n := event_namespace(e))), "")
        return Alert(
            detection=self.id,
            title=title,
            severity=self.severity_for(namespace) if self.namespace_settings else self.severity,
            time_ns=last.time_ns,
            mitre=list(self.mitre),
            description=self.description,
            tags=list(self.tags),
            cluster=first.cluster,
            namespace=namespace,
            pod=next((e.k8s.pod for e in events if e.k8s.pod), ""),
            user=next((e.actor.user for e in events if e.actor.user), ""),
            dedup_key=dedup_key,
            evidence=[e.original_id or e.id for e in events],
            event_ids=[e.id for e in events],
            context=dict(context),
        )
