"""What a detection file declares.

A detection is one file in ``detections/library`` that defines a module-level ``DETECTION``: its catalogue
metadata, the event kinds it looks at (the engine dispatches on them, so a detection costs nothing for
events of other kinds), its logic, and its own examples as raw source records (``vigil detections test``
normalizes them through the real source and checks positives fire and negatives stay quiet).

Three kinds of detection:

- :class:`EventDetection` judges one event at a time (a Panther rule, a plain Sigma rule, a Falco rule).
- :class:`ThresholdDetection` counts matching events, or distinct values of a field, per group over
  tumbling or sliding event-time windows (Panther's threshold, Sigma's ``event_count``/``value_count``).
- :class:`SequenceDetection` matches ordered steps within a maximum span, each step with its own kinds,
  sources, predicate and join key, optionally ending in an absence ("B did not follow A within N") that is
  decided when the engine's watermark passes (EQL's ``sequence by … with maxspan``, across sources).

The stateful two never hold state themselves: the engine hands each one the JSON-able *slot* it keeps for
a state key (a pod, a group) and stores what comes back, so the same detection runs on a dict in
``vigil replay`` and on a checkpointed Faust table in the stream workers. ``observe`` is pure and cheap and
says whether an event can advance the detection at all; only then does the engine touch the store.
Multi-step detections are tested with :class:`Scenario` examples: records from several sources with event
times, fed in the order given.

Prefilter: a detection (or a sequence step) may declare the only values of a few event fields its logic can
match, e.g. ``resources=["pods"], subresources=["exec", "attach"], actions=["create", "get"]``, ``exe_names=SHELLS``
or, for one of its kinds only, ``exe_names={"process.exec": SSH_CLIENTS}`` (see :class:`Prefilter`); the engine
then never asks it about other events. Most events match nothing, so asking only the detections that can match
is most of what keeps the engine fast.

Parameters: what is normal differs between namespaces (the registries a production namespace may pull from,
the binaries expected to be setuid), so a detection may declare ``params`` with their defaults; a deployment
sets them in ``detections.toml``, for all namespaces and per namespace, and the detection's ``match`` and
``context`` then receive them, resolved for the event's namespace, as a second argument. Severity, and the
threshold and window of a :class:`ThresholdDetection`, can be set per namespace the same way.
"""

from __future__ import annotations

import bisect
import inspect
import re
import string
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from operator import attrgetter, itemgetter
from types import MappingProxyType
from typing import Any

from vigil.alert import SEVERITIES, Alert
from vigil.event import Event

_ID = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
_MITRE = re.compile(r"^T\d{4}(\.\d{3})?$")


class DetectionError(ValueError):
    """A detection declared with metadata the engine cannot run or catalogue; the message names the field."""


@dataclass(frozen=True, kw_only=True)
class Example:
    """One raw source record and whether the detection must fire on it (Panther's unit tests, by example)."""

    name: str
    source: str
    record: dict[str, Any]
    fires: bool


@dataclass(frozen=True, kw_only=True)
class ScenarioEvent:
    """One raw record of a scenario, dated ``at_s`` seconds after the scenario's start (its event time)."""

    source: str
    record: dict[str, Any]
    at_s: float


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """Records from any sources in arrival order (which need not be event-time order, as in a real stream)
    and whether the detection must fire once the watermark has passed them all: how windows, sequences and
    absences are tested."""

    name: str
    events: tuple[ScenarioEvent, ...]
    fires: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(self.events))


#: Namespaces whose resolved settings a detection keeps (a cache: beyond it, it starts over).
MAX_NAMESPACES = 4096
#: Settings a namespace may change beyond parameters, and the kinds of detection that have them.
NAMESPACE_OVERRIDES = ("severity", "threshold", "window_s")


@dataclass(frozen=True, kw_only=True)
class NamespaceSettings:
    """What a deployment set for the namespaces matching ``pattern`` (an exact name, or an ``fnmatch`` glob
    such as ``prod-*``): parameters (merged over the detection's), and optionally the severity and, for a
    threshold, the threshold and window. ``None`` keeps the detection's own value."""

    pattern: str
    params: Mapping[str, Any] = field(default_factory=dict)
    severity: str | None = None
    threshold: float | None = None
    window_s: float | None = None

    def check(self, detection: Detection) -> None:
        """Raise DetectionError naming the namespace and field when ``detection`` cannot run with these."""
        where = f"{detection.id}: namespace {self.pattern!r}"
        if self.severity is not None and self.severity not in SEVERITIES:
            raise DetectionError(f"{where}: severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        for name in ("threshold", "window_s"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(detection, ThresholdDetection):
                raise DetectionError(f"{where}: {name} applies to threshold detections only")
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise DetectionError(f"{where}: {name} must be a positive number, got {value!r}")
        configured_params(detection, self.params, f": namespace {self.pattern!r}")


def configured_params(detection: Detection, params: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """The detection's parameters with ``params`` set over their defaults; raises DetectionError naming the
    parameter when it is not declared or has the wrong type."""
    prefix = f"{detection.id}{where}"
    for name, value in params.items():
        if name not in detection.params:
            raise DetectionError(f"{prefix}: unknown parameter {name!r}; {_declared(detection)}")
        _param_value(prefix, name, value, detection.params[name])
    return {**detection.params, **params}


def _declared(detection: Detection) -> str:
    return f"it declares {', '.join(sorted(detection.params))}" if detection.params else "it declares none"


def _param_value(detection_id: str, name: str, value: Any, default: Any) -> Any:
    """``value`` checked against the type of the parameter's ``default`` (lists become tuples: parameters are
    shared by every event and must not be changed by one)."""
    if isinstance(default, list | tuple):
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return tuple(value)
        expected = "a list of strings"
    elif isinstance(default, bool):
        if isinstance(value, bool):
            return value
        expected = "true or false"
    elif isinstance(default, int | float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        expected = "a number"
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
        expected = "a string"
    else:
        raise DetectionError(f"{detection_id}: parameter {name!r} must default to a bool, number, string or list")
    raise DetectionError(f"{detection_id}: parameter {name!r} must be {expected}, got {value!r}")


#: The event fields a prefilter can declare, by the event attribute each is read from.
PREFILTER_FIELDS: dict[str, str] = {
    "actions": "action",
    "resources": "target.resource",
    "subresources": "target.subresource",
    "exe_names": "actor.exe",
}
_READ_FIELD = {name: attrgetter(path) for name, path in PREFILTER_FIELDS.items()}


def declared_value(name: str, value: str) -> str:
    """The value a declaration of field ``name`` names for the event attribute's ``value``: the same, except
    that ``exe_names`` names basenames (``/usr/bin/curl`` is ``curl``)."""
    return value.rpartition("/")[2] if name == "exe_names" else value


#: How a detection or step declares a prefilter field: the values for all of its kinds, or a mapping from some of
#: its kinds to their values (a detection of execs and connections names the programs it runs on for execs only).
Declared = Collection[str] | Mapping[str, Collection[str]]


@dataclass(frozen=True, slots=True)
class Prefilter:
    """The values of event fields a detection (or a sequence step) can match at all, for one event kind, so the
    engine gives it only events that have them (Falco rules declare ``evt.type``, Panther rules their log
    types). Each field is a set of exact values, empty for any: ``actions`` (the verb of an API request, the
    action of a runtime event), ``resources`` and ``subresources`` (of the API object; ``""`` is the object
    itself, no subresource) and ``exe_names`` (basename of the executable). A declaration is a promise the logic
    never matches outside it (declare from the same constants the logic tests); ``vigil detections test`` fails
    a detection whose examples break it."""

    actions: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    subresources: frozenset[str] = frozenset()
    exe_names: frozenset[str] = frozenset()

    @classmethod
    def declared_by(cls, owner: Any, label: str) -> dict[str, Prefilter]:
        """The prefilter of each kind of a detection or step (``owner.kinds``) from its declaration fields."""
        by_kind: dict[str, dict[str, frozenset[str]]] = {kind: {} for kind in owner.kinds}
        for name in PREFILTER_FIELDS:
            declared = getattr(owner, name)
            per_kind = declared if isinstance(declared, Mapping) else dict.fromkeys(owner.kinds, declared)
            for kind, values in per_kind.items():
                if kind not in by_kind:
                    raise DetectionError(f"{label}: {name} declares kind {kind!r}, which is not one of its kinds")
                if isinstance(values, str) or not all(isinstance(item, str) for item in values):
                    raise DetectionError(f"{label}: {name} must be a list of strings (or of them by kind), "
                                         f"got {values!r}")
                by_kind[kind][name] = frozenset(values)
        return {kind: cls(**fields) for kind, fields in by_kind.items()}

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields this prefilter restricts (the others may have any value)."""
        return tuple(name for name in PREFILTER_FIELDS if getattr(self, name))

    def admits(self, event: Event) -> bool:
        return self.admits_values({name: declared_value(name, read(event)) for name, read in _READ_FIELD.items()})

    def admits_values(self, values: Mapping[str, str | None]) -> bool:
        """Whether an event with these field values can match (a field missing from ``values`` is unknown and
        admitted; ``None`` is a value no declaration names)."""
        return all(name not in values or values[name] in getattr(self, name) for name in self.fields)

    def describe(self) -> str:
        return ", ".join(f"{name}={sorted(getattr(self, name))}" for name in self.fields) or "any event"


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
    #: The prefilter of each of ``kinds``, from the four fields above.
    prefilter_by_kind: dict[str, Prefilter] = field(init=False, repr=False, compare=False)
    #: Resolved settings by namespace name: resolving globs for every event would cost more than the logic.
    _by_namespace: dict[str, NamespaceSettings] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_namespace", {})
        object.__setattr__(self, "namespace_settings", tuple(self.namespace_settings))
        object.__setattr__(self, "params", MappingProxyType({
            name: _param_value(self.id, name, value, value) for name, value in dict(self.params).items()
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
        namespace = next((n for e in events if (n := _namespace(e))), "")
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


@dataclass(frozen=True, kw_only=True)
class EventDetection(Detection):
    """A detection decided by one event: ``match`` says whether it fires, ``context`` adds what an analyst
    needs to triage (image, the offending setting) to the alert, and the title and dedup key are
    ``str.format`` templates over :func:`template_fields`, the alert context and the detection's own context
    keys, which win (lists join with ", ")."""

    match: Callable[..., bool]
    context: Callable[..., dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._takes_params("match")
        self._takes_params("context")

    def evaluate(self, event: Event) -> list[Alert]:
        """The alert this event raises, if any. Exceptions are isolated by the engine."""
        hit = self.hit(event)
        return [self.alert(hit)] if hit is not None else []

    def hit(self, event: Event) -> Hit | None:
        """The event as a match with the detection's own context and the dedup key, ``None`` when it does not
        match. The engine builds the alert only when the dedup key opens a new one: a repeat only updates the
        open alert, and needs neither the alert nor the rest of its context."""
        own_context = _matched_context(self, event)
        if own_context is None:
            return None
        fields = TemplateFields(event, own_context)
        return Hit(event, fields, self.dedup.format_map(fields))

    def alert(self, hit: Hit) -> Alert:
        """The alert a hit raises when it opens one."""
        title = (self.alert_title or self.title).format_map(hit.fields)
        return self.build_alert([hit.event], hit.fields.context, title, hit.dedup_key)


@dataclass(slots=True)
class Hit:
    """An event an :class:`EventDetection` matched, before it is an alert: the fields of its templates (and
    context) and the dedup key that decides whether it opens an alert."""

    event: Event
    fields: TemplateFields
    dedup_key: str


def _matched_context(detection: EventDetection | ThresholdDetection, event: Event) -> dict[str, Any] | None:
    """What the detection's ``context`` adds for an event its ``match`` accepts ({} without a context), ``None``
    for an event it refuses; both get the params resolved for the event's namespace when the detection has any."""
    if detection.params:
        params = detection.settings_for(_namespace(event)).params
        if not detection.match(event, params):
            return None
        return detection.context(event, params) if detection.context is not None else {}
    if not detection.match(event):
        return None
    return detection.context(event) if detection.context is not None else {}


def template_fields(event: Event) -> dict[str, Any]:
    """The fields every title and dedup template may use, whatever the event kind (empty when not known)."""
    return {
        "cluster": event.cluster,
        "namespace": _namespace(event),
        "pod": event.k8s.pod,
        "user": event.actor.user,
        "verb": event.action,
        "resource": event.target.resource,
        "subresource": event.target.subresource,
        "name": event.target.name,
        "source": event.source,
    }


def _template_value(value: Any) -> Any:
    """Lists read as ``a, b`` in titles and dedup keys, not as a Python repr."""
    return ", ".join(map(str, value)) if isinstance(value, list | tuple) else value


class TemplateFields:
    """The fields an alert's title and dedup templates read (the detection's own context keys win over
    :func:`template_fields`, which win over :func:`event_context`), each rendered for a template (lists as
    ``a, b``). Templates read two or three of the twenty-odd fields, and a repeat of an open alert renders only
    its dedup key, so the shared fields are gathered only when a template reads one of them."""

    __slots__ = ("_common", "_context", "_event", "_own")

    def __init__(self, event: Event, own_context: dict[str, Any]) -> None:
        self._event, self._own = event, own_context
        self._common: dict[str, Any] | None = None
        self._context: dict[str, Any] | None = None

    @property
    def context(self) -> dict[str, Any]:
        """The alert context: :func:`event_context` with the detection's own keys over it."""
        if self._context is None:
            self._context = {**event_context(self._event), **self._own}
        return self._context

    def __getitem__(self, key: str) -> Any:
        if key in self._own:
            return _template_value(self._own[key])
        if self._common is None:
            self._common = template_fields(self._event)
        if key in self._common:
            return _template_value(self._common[key])
        return _template_value(self.context[key])


def event_context(event: Event) -> dict[str, Any]:
    """The fields every alert context starts from: what was done to what, by whom from where, and how it ended."""
    target, actor = event.target, event.actor
    resource = f"{target.resource}/{target.subresource}" if target.subresource else target.resource
    context = {
        "verb" if event.kind == "k8s.api" else "action": event.action,
        "resource": resource,
        "api_group": target.api_group,
        "object": target.name,
        "path": target.path,
        "address": f"{target.address}:{target.port}" if target.address else "",
        "exe": actor.exe,
        "args": actor.args,
        "source_ips": actor.source_ips,
        "user_agent": actor.user_agent,
        "outcome": event.outcome.result,
        "code": event.outcome.code,
    }
    return {key: value for key, value in context.items() if value}


def container_label(event: Event) -> str:
    """How a runtime alert names the container: ``namespace/pod container``, or its short id when the node
    collector could not tell the pod."""
    k8s = event.k8s
    if k8s.pod:
        return f"{k8s.namespace}/{k8s.pod} {k8s.container_name}".rstrip()
    return f"container {k8s.container_id[:12]}" if k8s.container_id else "a container"


def _namespace(event: Event) -> str:
    return event.k8s.namespace or event.target.namespace


# --- Stateful detections ----------------------------------------------------------------------------------------

#: Evidence kept per window or per sequence step: enough to point an analyst at the events, bounded so a
#: noisy key cannot grow its state.
MAX_MARKS = 10

#: The event time of a mark, and of a sliding window's entry: what their lists are kept sorted by.
_mark_time = itemgetter("t")
_entry_time = itemgetter(0)


def mark(event: Event, context: Mapping[str, Any]) -> dict[str, Any]:
    """What state keeps of an event: when, which event (ids for evidence), where and by whom, and the
    context an alert will show. A few hundred bytes of JSON instead of the event with its raw record."""
    return {
        "t": event.time_ns,
        "id": event.id,
        "oid": event.original_id,
        "src": event.source,
        "node": event.node,
        "c": event.cluster,
        "ns": _namespace(event),
        "pod": event.k8s.pod,
        "u": event.actor.user,
        "x": dict(context),
    }


class Observation:
    """What ``observe`` found in an event: the state key the engine stores the detection's slot under,
    detection-specific detail (matched steps, group value), and the event's mark. The mark is built when
    ``update`` first reads it: most observations of a frequent step (every exec) change nothing and need none."""

    __slots__ = ("_context", "_mark", "detail", "event", "key")

    def __init__(self, key: str, event: Event, context: Callable[[], dict[str, Any]], detail: Any) -> None:
        self.key, self.event, self.detail = key, event, detail
        self._context = context
        self._mark: dict[str, Any] | None = None

    @property
    def mark(self) -> dict[str, Any]:
        if self._mark is None:
            self._mark = mark(self.event, self._context())
        return self._mark


@dataclass(slots=True)
class Finding:
    """An alert from a stateful detection with what the engine needs to say whether coverage was degraded:
    the sources it depends on (empty: any) and nodes its evidence came from, and the time span it covers."""

    alert: Alert
    sources: frozenset[str]
    nodes: frozenset[str]
    start_ns: int
    end_ns: int


#: What ``update`` returns for a slot the observation left as it was: the engine then writes nothing.
UNCHANGED: Any = object()


class _Fields(dict):
    """Template fields of a stateful alert, rendered as :class:`TemplateFields` renders them: a field no step
    provided reads as empty, not as a KeyError."""

    def __getitem__(self, key: str) -> Any:
        return _template_value(self.get(key, ""))


@dataclass(frozen=True, kw_only=True)
class StatefulDetection(Detection):
    """A detection whose matches span several events. The engine owns the state (see the module doc)."""

    @property
    @abstractmethod
    def horizon_ns(self) -> int:
        """How long after its latest event a slot can still matter: the window or the maximum span."""

    @abstractmethod
    def observe(self, event: Event) -> Observation | None:
        """Whether and how ``event`` can advance this detection; ``None`` for most events (no state touched)."""

    @abstractmethod
    def update(self, slot: Any, observation: Observation) -> tuple[Any, list[Finding]]:
        """The slot after ``observation`` (``None`` when nothing is left to keep, :data:`UNCHANGED` when the
        observation turned out not to matter) and what it completed."""

    @abstractmethod
    def on_watermark(self, key: str, slot: Any, watermark_ns: int) -> tuple[Any, list[Finding]]:
        """The slot of ``key`` once event time has reached ``watermark_ns``: expired parts dropped, absences
        decided."""

    @abstractmethod
    def deadline_ns(self, slot: Any) -> int:
        """The event time at which ``on_watermark`` next has something to do for this slot."""

    def finding(
        self, marks: Sequence[Mapping[str, Any]], context: dict[str, Any], fields: Mapping[str, Any],
        sources: frozenset[str], end_ns: int = 0,
    ) -> Finding:
        """A finding from the marks of its evidence, in order: Kubernetes context from the first mark that has
        it, the time from the last (a sequence is dated when it completed)."""
        first = marks[0]
        values = _Fields({key: value for mark_ in marks for key, value in mark_["x"].items()})
        values.update({
            "cluster": first["c"],
            "namespace": next((m["ns"] for m in marks if m["ns"]), ""),
            "pod": next((m["pod"] for m in marks if m["pod"]), ""),
            "user": next((m["u"] for m in marks if m["u"]), ""),
        })
        values.update(fields)
        alert = Alert(
            detection=self.id,
            title=(self.alert_title or self.title).format_map(values),
            severity=self.severity_for(values["namespace"]) if self.namespace_settings else self.severity,
            time_ns=marks[-1]["t"],
            mitre=list(self.mitre),
            description=self.description,
            tags=list(self.tags),
            cluster=values["cluster"],
            namespace=values["namespace"],
            pod=values["pod"],
            user=values["user"],
            dedup_key=self.dedup.format_map(values),
            evidence=[m["oid"] or m["id"] for m in marks],
            event_ids=[m["id"] for m in marks],
            context=context,
        )
        nodes = frozenset(m["node"] for m in marks if m["node"])
        return Finding(alert, sources, nodes, first["t"], max(end_ns, marks[-1]["t"]))


WINDOWS = ("tumbling", "sliding")


AGGREGATES = ("sum", "max")


@dataclass(frozen=True, kw_only=True)
class ThresholdDetection(StatefulDetection):
    """Fires when ``threshold`` matching events (or, with ``distinct``, distinct values of a field; or, with
    ``value``, the sum or maximum of a number the events carry) fall in one event-time window of ``window_s``
    seconds for one ``group``.

    ``tumbling`` windows are fixed, back to back (aligned on the epoch), and fire at most once each;
    ``sliding`` windows end at every event, so a burst straddling a tumbling boundary is still caught, and
    firing starts the count afresh. The group is also the state key: a group equal to the events'
    correlation key keeps the count on one partition (exact across workers); a group over another field (an
    identity) is counted per stream worker.

    ``value`` is for events that report a measure rather than one occurrence (a sensor's per-interval counts
    of forks or connections, a process count): ``aggregate="sum"`` adds them up over the window (a rate),
    ``"max"`` keeps the highest (a level). The threshold and window may differ per namespace
    (:class:`NamespaceSettings`); each window remembers the size it was opened with."""

    match: Callable[..., bool]
    group: Callable[[Event], str]
    threshold: float
    window_s: float
    window: str = "tumbling"
    distinct: Callable[[Event], str] | None = None
    value: Callable[[Event], float | None] | None = None
    aggregate: str = "sum"
    context: Callable[..., dict[str, Any]] | None = None
    dedup: str = "{group}"
    #: The longest window of any namespace, computed once: the engine asks for it with every state write.
    _horizon_ns: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        windows = [s.window_s for s in self.namespace_settings if s.window_s is not None]
        object.__setattr__(self, "_horizon_ns", int(max([self.window_s, *windows]) * 1e9))
        if self.value is None and (isinstance(self.threshold, bool) or self.threshold < 1):
            raise DetectionError(f"{self.id}: threshold must be at least 1")
        if self.value is not None and self.threshold <= 0:
            raise DetectionError(f"{self.id}: threshold must be positive")
        if self.window_s <= 0:
            raise DetectionError(f"{self.id}: window_s must be positive")
        if self.window not in WINDOWS:
            raise DetectionError(f"{self.id}: window {self.window!r} is not one of {', '.join(WINDOWS)}")
        if self.aggregate not in AGGREGATES:
            raise DetectionError(f"{self.id}: aggregate {self.aggregate!r} is not one of {', '.join(AGGREGATES)}")
        if self.value is not None and self.distinct is not None:
            raise DetectionError(f"{self.id}: a threshold counts distinct values or adds up a value, not both")
        self._takes_params("match")
        self._takes_params("context")

    @property
    def horizon_ns(self) -> int:
        """The longest window of any namespace: how long a slot can matter."""
        return self._horizon_ns

    def catalogue_entry(self) -> dict[str, Any]:
        entry = {**super().catalogue_entry(), "threshold": self.threshold, "window_s": self.window_s,
                 "window": self.window, "distinct": self.distinct is not None}
        if self.value is not None:
            entry["aggregate"] = self.aggregate
        return entry

    def observe(self, event: Event) -> Observation | None:
        own_context = _matched_context(self, event)
        if own_context is None:
            return None
        group = self.group(event)
        if not group:
            return None
        if self.distinct is not None:
            detail: Any = self.distinct(event)
            if not detail:
                return None
        elif self.value is not None:
            detail = self.value(event)
            if detail is None:
                return None
        else:
            detail = None
        return Observation(group, event, lambda: {**event_context(event), **own_context}, detail)

    def _limits(self, namespace: str) -> tuple[float, int]:
        """The threshold and window size (ns) for events of ``namespace``."""
        if not self.namespace_settings:
            return self.threshold, int(self.window_s * 1e9)
        settings = self.settings_for(namespace)
        threshold = settings.threshold if settings.threshold is not None else self.threshold
        return threshold, int((settings.window_s if settings.window_s is not None else self.window_s) * 1e9)

    def update(self, slot: Any, observation: Observation) -> tuple[Any, list[Finding]]:
        threshold, size = self._limits(_namespace(observation.event) if self.namespace_settings else "")
        if self.window == "sliding":
            return self._update_sliding(slot or {"o": [], "s": size}, observation, threshold)
        return self._update_tumbling(slot or {}, observation, threshold, size)

    def _reached(self, reached: float, detail: Any) -> float:
        """The window's measure after one more observation: a count, or the sum or maximum of values."""
        if self.value is None:
            return reached + 1
        return max(reached, detail) if self.aggregate == "max" else reached + detail

    def _update_tumbling(
        self, slot: dict[str, Any], observation: Observation, threshold: float, size: int
    ) -> tuple[Any, list[Finding]]:
        time_ns = observation.event.time_ns
        start = time_ns - time_ns % size
        window = slot.setdefault(str(start), {"n": 0, "v": [], "e": [], "f": False, "s": size})
        if window["f"]:
            return UNCHANGED, []
        window["n"] = self._reached(window["n"], observation.detail)
        if self.distinct is not None and observation.detail not in window["v"]:
            window["v"].append(observation.detail)
        if len(window["e"]) < MAX_MARKS:
            window["e"].append(observation.mark)
        reached = len(window["v"]) if self.distinct is not None else window["n"]
        if reached < threshold:
            return slot, []
        finding = self._finding(observation.key, window["e"], reached, window["v"], start, start + size, threshold)
        window.update(f=True, v=[], e=[])
        return slot, [finding]

    def _update_sliding(
        self, slot: dict[str, Any], observation: Observation, threshold: float
    ) -> tuple[Any, list[Finding]]:
        time_ns = observation.event.time_ns
        size = slot.get("s", self.horizon_ns)
        entries = [e for e in slot["o"] if e[0] > time_ns - size]
        if self.distinct is not None:
            entries = [e for e in entries if e[1] != observation.detail]
        bisect.insort(entries, [time_ns, observation.detail, observation.mark], key=_entry_time)
        reached: float = 0
        for entry in entries:
            reached = self._reached(reached, entry[1])
        if reached < threshold:
            slot["o"] = entries
            return slot, []
        marks = [e[2] for e in entries][:MAX_MARKS]
        values = [e[1] for e in entries] if self.distinct is not None else []
        finding = self._finding(observation.key, marks, reached, values, entries[0][0], entries[-1][0], threshold)
        return None, [finding]

    def _finding(
        self, group: str, marks: list[dict[str, Any]], reached: float, values: list[str], start_ns: int,
        end_ns: int, threshold: float,
    ) -> Finding:
        measure = {"value": reached, "aggregate": self.aggregate} if self.value is not None else {"count": reached}
        window_s = self._limits(marks[0]["ns"])[1] / 1e9
        counted = {"group": group, **measure, "threshold": threshold, "window_s": window_s}
        context = {**marks[0]["x"], **counted, "window": self.window}
        if values:
            context["distinct_values"] = values[:MAX_MARKS]
        found = self.finding(marks, context, counted, frozenset(m["src"] for m in marks), end_ns)
        found.start_ns = start_ns
        return found

    def on_watermark(self, key: str, slot: Any, watermark_ns: int) -> tuple[Any, list[Finding]]:
        """Windows expire by the size they were opened with (state from before windows recorded it, restored
        from a changelog, was opened with the detection's own window)."""
        if self.window == "sliding":
            size = slot.get("s", self.horizon_ns)
            slot["o"] = [e for e in slot["o"] if e[0] > watermark_ns - size]
            return (slot if slot["o"] else None), []
        kept = {
            start: window for start, window in slot.items()
            if int(start) + window.get("s", self.horizon_ns) > watermark_ns
        }
        return (kept or None), []

    def deadline_ns(self, slot: Any) -> int:
        if self.window == "sliding":
            return min(e[0] for e in slot["o"]) + slot.get("s", self.horizon_ns)
        return min(int(start) + window.get("s", self.horizon_ns) for start, window in slot.items())


def pod_key(event: Event) -> str:
    """``cluster/namespace/pod`` (the events' correlation key) when the event names its pod, else "": the
    default join key of sequence steps. Audit ``pods/exec``, pod writes and calls made with a pod-bound
    service-account token, and runtime events enriched with their pod, all carry it."""
    pod = event.k8s.pod
    return f"{event.cluster}/{event.k8s.namespace}/{pod}" if pod else ""


def container_key(event: Event) -> str:
    """``cluster/container id`` for runtime events (two events of one container), else "": a join key for
    sequences whose steps all come from runtime sensors, even without Kubernetes enrichment."""
    container = event.k8s.container_id
    return f"{event.cluster}/{container}" if container else ""


@dataclass(frozen=True, kw_only=True)
class Step:
    """One step of a sequence: which events are it, and the keys that tie it to the other steps.

    ``key`` returns the join key, which is also the state key ("" when the event cannot be joined): steps
    from different sources use different key functions that agree on a value, e.g. an audit ``pods/exec``
    and a runtime ``file.open`` both yield ``cluster/namespace/pod`` (:func:`pod_key`, the events' Kafka
    key, so the sequence's state lives on the partition the pod's events use). ``on`` optionally refines the
    join with a value all steps must share within that key (the path written, then executed). ``sources``
    limits the step to some sources (empty: any) and is what an absence depends on for coverage.
    ``absent`` (last step only) means the sequence fires when no such event follows within the span.

    ``out_of_order`` says whether the step's events may arrive before those of the step it follows (another
    source, delivered with another delay, such as a runtime event caused by a batched audit request): they are
    then kept until the earlier steps arrive. ``False`` is for a step from the same sensor stream as the step
    before it, whose events arrive in order: they only extend sequences already started and otherwise cost no
    state, which matters for frequent events such as every exec."""

    name: str
    kinds: frozenset[str]
    match: Callable[[Event], bool]
    key: Callable[[Event], str] = pod_key
    on: Callable[[Event], str] | None = None
    sources: frozenset[str] = frozenset()
    context: Callable[[Event], dict[str, Any]] | None = None
    absent: bool = False
    out_of_order: bool = True
    #: The step's prefilter (see :class:`Prefilter`): the only values of these event fields ``match`` can accept.
    actions: Declared = ()
    resources: Declared = ()
    subresources: Declared = ()
    exe_names: Declared = ()
    #: The prefilter of each of ``kinds``, from the four fields above.
    prefilter_by_kind: dict[str, Prefilter] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("kinds", "sources"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise DetectionError(f"step {self.name}: {name} must be a list, not the string {value!r}")
            object.__setattr__(self, name, frozenset(value))
        object.__setattr__(self, "prefilter_by_kind", Prefilter.declared_by(self, f"step {self.name}"))
        if not self.kinds:
            raise DetectionError(f"step {self.name}: kinds must name at least one event kind")

    def matches(self, event: Event) -> bool:
        return event.kind in self.kinds and (not self.sources or event.source in self.sources) and self.match(event)


#: Occurrences kept per step and join key (the latest ones): a process opening a file in a loop must not
#: grow a sequence's state.
MAX_OCCURRENCES = 8

#: Occurrences of a sequence's first step this close (event time) after the latest one kept add nothing.
FIRST_STEP_COALESCE_NS = 1_000_000_000


@dataclass(frozen=True, kw_only=True)
class SequenceDetection(StatefulDetection):
    """Ordered ``steps`` whose events share a join key and fall within ``max_span_s`` of the first.

    Events may arrive out of event-time order (an audit record batched by the API server arrives after the
    runtime events it caused): each step's recent occurrences are kept per join key and a sequence completes
    as soon as an ordered chain exists, whichever event arrived last. The state key is the steps' join key
    (see :class:`Step`). ``kinds`` is derived from the steps."""

    steps: tuple[Step, ...]
    max_span_s: float
    kinds: frozenset[str] = frozenset()
    #: Steps (with their index) by event kind, so an event is matched only against the steps of its kind.
    _steps_by_kind: dict[str, tuple[tuple[int, Step], ...]] = field(init=False, repr=False, compare=False)
    #: How many steps must be seen: all but a trailing absence.
    _present: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "kinds", frozenset().union(*(step.kinds for step in self.steps)))
        by_kind = {kind: tuple((i, s) for i, s in enumerate(self.steps) if kind in s.kinds) for kind in self.kinds}
        object.__setattr__(self, "_steps_by_kind", by_kind)
        object.__setattr__(self, "_present", len(self.steps) - self.steps[-1].absent)
        super().__post_init__()
        if len(self.steps) < 2:
            raise DetectionError(f"{self.id}: a sequence needs at least two steps")
        if any(step.absent for step in self.steps[:-1]) or self.steps[0].absent:
            raise DetectionError(f"{self.id}: only the last step (and not the first) may be an absence")
        if self.max_span_s <= 0:
            raise DetectionError(f"{self.id}: max_span_s must be positive")
        if self.params:
            raise DetectionError(f"{self.id}: sequences take no params (their steps' predicates take one event)")
        if any(prefilter.fields for prefilter in self.prefilter_by_kind.values()):
            raise DetectionError(f"{self.id}: a sequence declares its prefilter on its steps, each for its own events")

    @property
    def horizon_ns(self) -> int:
        return int(self.max_span_s * 1e9)

    def prefilters(self, kind: str) -> tuple[Prefilter, ...]:
        """An event reaches a sequence when the prefilter of any of its steps of the event's kind admits it."""
        return tuple(step.prefilter_by_kind[kind] for _, step in self._steps_by_kind.get(kind, ()))

    def catalogue_entry(self) -> dict[str, Any]:
        steps = [f"not {step.name}" if step.absent else step.name for step in self.steps]
        return {**super().catalogue_entry(), "max_span_s": self.max_span_s, "steps": steps}

    def observe(self, event: Event) -> Observation | None:
        """The steps this event is (with their ``on`` values). An event that is several steps counts for those
        that share the first one's key."""
        key = ""
        matched = []
        for index, step in self._steps_by_kind.get(event.kind, ()):
            if not step.matches(event):
                continue
            step_key = step.key(event)
            on = step.on(event) if step.on is not None else ""
            if not step_key or (key and step_key != key) or (step.on is not None and not on):
                continue
            key = step_key
            matched.append((index, on))
        if not matched:
            return None
        return Observation(key, event, lambda: self._context(event, matched), matched)

    def _context(self, event: Event, matched: list[tuple[int, str]]) -> dict[str, Any]:
        """What the mark of an event keeps for the alert: the context of each step it is."""
        context: dict[str, Any] = {}
        for index, _ in matched:
            step = self.steps[index]
            context.update(step.context(event) if step.context is not None else event_context(event))
        return context

    def update(self, slot: Any, observation: Observation) -> tuple[Any, list[Finding]]:
        time_ns = observation.event.time_ns
        detail = [(i, join) for i, join in observation.detail if self._may_keep(slot, i, join, time_ns)]
        if not detail:
            return UNCHANGED, []
        slot = slot or {}
        findings = []
        for index, join in detail:
            partial = slot.setdefault(join, [[] for _ in self.steps])
            occurrences = partial[index]
            bisect.insort(occurrences, observation.mark, key=_mark_time)
            del occurrences[:-MAX_OCCURRENCES]
            # Each step's occurrences are in time order: the newest are last, the expired first.
            oldest = max(step[-1]["t"] for step in partial if step) - self.horizon_ns
            for step in partial:
                expired = next((i for i, m in enumerate(step) if m["t"] >= oldest), len(step))
                del step[:expired]
            if self.steps[-1].absent:
                continue
            chain = self._chain(partial)
            if chain is not None:
                findings.append(self._finding(observation.key, join, chain))
                del slot[join]
        return (slot or None), findings

    def _may_keep(self, slot: Any, index: int, join: str, time_ns: int) -> bool:
        """Whether an occurrence of step ``index`` is worth keeping: for in-order steps only when the step
        before has an occurrence to extend; for the first step unless it repeats one kept less than
        :data:`FIRST_STEP_COALESCE_NS` before (a file written in a loop, a token read on every request), which
        would cost a state write per event and change no chain but one ending within that much of the span."""
        partial = slot.get(join) if slot else None
        if index == 0:
            return not partial or not partial[0] or not 0 <= time_ns - partial[0][-1]["t"] < FIRST_STEP_COALESCE_NS
        if self.steps[index].out_of_order:
            return True
        return bool(partial and partial[index - 1])

    def _chain(self, partial: list[list[dict[str, Any]]]) -> list[dict[str, Any]] | None:
        """The earliest ordered chain of the present steps within the span, if there is one."""
        if not all(partial[1 : self._present]):  # a step nothing happened for yet: no chain (the usual case)
            return None
        for first in partial[0]:
            chain = [first]
            for occurrences in partial[1 : self._present]:
                previous = chain[-1]
                following = next(
                    (m for m in occurrences if m["t"] >= previous["t"] and m["id"] != previous["id"]), None
                )
                if following is None or following["t"] - first["t"] > self.horizon_ns:
                    break
                chain.append(following)
            if len(chain) == self._present:
                return chain
        return None

    def _finding(self, key: str, on: str, chain: list[dict[str, Any]], deadline_ns: int = 0) -> Finding:
        steps = [
            {"step": step.name, "time_ns": m["t"], "source": m["src"], **m["x"]}
            for step, m in zip(self.steps, chain, strict=False)
        ]
        context: dict[str, Any] = {"join_key": key, "max_span_s": self.max_span_s, "steps": steps}
        if on:
            context["joined_on"] = on
        sources = frozenset(m["src"] for m in chain)
        if deadline_ns:
            absent = self.steps[-1]
            context["absent"] = {"step": absent.name, "until_ns": deadline_ns}
            # Silence depends on the sources that would have reported the absent step; undeclared: on any.
            sources = sources | absent.sources if absent.sources else frozenset()
        return self.finding(chain, context, {"join_key": key, "joined_on": on}, sources, deadline_ns)

    def on_watermark(self, key: str, slot: Any, watermark_ns: int) -> tuple[Any, list[Finding]]:
        findings = []
        for join in list(slot):
            partial = slot[join]
            if self.steps[-1].absent:
                findings.extend(self._decide_absence(key, slot, join, watermark_ns))
                if join not in slot:
                    continue
            for step in partial:
                step[:] = [m for m in step if m["t"] > watermark_ns - self.horizon_ns]
            if not any(partial[: self._present]):
                del slot[join]
        return (slot or None), findings

    def _decide_absence(self, key: str, slot: dict[str, Any], join: str, watermark_ns: int) -> list[Finding]:
        """Once the watermark passed the span of a complete chain: fire unless the absent step happened in it."""
        partial = slot[join]
        chain = self._chain(partial)
        if chain is None:
            return []
        deadline = chain[0]["t"] + self.horizon_ns
        if watermark_ns < deadline:
            return []
        del slot[join]
        if any(chain[-1]["t"] <= m["t"] <= deadline for m in partial[-1]):
            return []
        return [self._finding(key, join, chain, deadline)]

    def deadline_ns(self, slot: Any) -> int:
        """Occurrences are kept in time order: the first of each step is the oldest."""
        return min(step[0]["t"] for partial in slot.values() for step in partial if step) + self.horizon_ns
