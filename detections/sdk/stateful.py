"""Detections whose matches span several events (thresholds and sequences).

They never hold state themselves: the engine hands each one the JSON-able *slot* it keeps for
a state key (a pod, a group) and stores what comes back, so the same detection runs on a dict in
``vigil replay`` and on a checkpointed Faust table in the stream workers. ``observe`` is pure and cheap and
says whether an event can advance the detection at all; only then does the engine touch the store.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vigil.alert import Alert
from vigil.detections.sdk.declarations import Detection
from vigil.detections.sdk.templates import FindingFields, event_namespace
from vigil.event import Event

#: Evidence kept per window or per sequence step: enough to point an analyst at the events, bounded so a
#: noisy key cannot grow its state.
MAX_MARKS = 10


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
        "ns": event_namespace(event),
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
        values = FindingFields({key: value for mark_ in marks for key, value in mark_["x"].items()})
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
