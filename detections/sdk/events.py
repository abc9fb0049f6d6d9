"""Detections of one event: :class:`EventDetection` judges one event at a time (a Panther rule, a plain Sigma
rule, a Falco rule)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vigil.alert import Alert
from vigil.detections.sdk.declarations import Detection
from vigil.detections.sdk.templates import TemplateFields, event_namespace
from vigil.event import Event

if TYPE_CHECKING:  # annotations only: thresholds judge their events with this module's matched_context
    from vigil.detections.sdk.thresholds import ThresholdDetection


@dataclass(frozen=True, kw_only=True)
class EventDetection(Detection):
    """A detection decided by one event: ``match`` says whether it fires, ``context`` adds what an analyst
    needs to triage (image, the offending setting) to the alert, and the title and dedup key are
    ``str.format`` templates over :func:`template_fields`, the alert context and the detection's own context
    keys, which win (lists join with ", ")."""

    match: Callable[..., bool]
    context: Callable[..., dict[str, Any]] | None = None
    #: ``match`` as one call on an event (see :meth:`Detection.judge_of`).
    judge: Callable[[Event], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._takes_params("match")
        self._takes_params("context")
        object.__setattr__(self, "judge", self.judge_of(self.match))

    def evaluate(self, event: Event) -> list[Alert]:
        """The alert this event raises, if any. Exceptions are isolated by the engine."""
        hit = self.hit(event)
        return [self.alert(hit)] if hit is not None else []

    def hit(self, event: Event) -> Hit | None:
        """The event as a match with the detection's own context and the dedup key, ``None`` when it does not
        match. The engine builds the alert only when the dedup key opens a new one: a repeat only updates the
        open alert, and needs neither the alert nor the rest of its context."""
        return self.matched(event) if self.judge(event) else None

    def matched(self, event: Event) -> Hit:
        """The hit of an event :attr:`judge` accepted (the engine judges first: most events are refused)."""
        fields = TemplateFields(event, own_context(self, event))
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


def matched_context(detection: EventDetection | ThresholdDetection, event: Event) -> dict[str, Any] | None:
    """What the detection's ``context`` adds for an event its ``match`` accepts ({} without a context), ``None``
    for an event it refuses; both get the params resolved for the event's namespace when the detection has any."""
    return own_context(detection, event) if detection.judge(event) else None


def own_context(detection: EventDetection | ThresholdDetection, event: Event) -> dict[str, Any]:
    """What the detection's ``context`` adds for an event it matched ({} without a context)."""
    if detection.context is None:
        return {}
    if detection.params:
        return detection.context(event, detection.settings_for(event_namespace(event)).params)
    return detection.context(event)
