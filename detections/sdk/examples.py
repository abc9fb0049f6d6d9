"""A detection's own examples, as raw source records: ``vigil detections test`` normalizes them through the real
source and checks positives fire and negatives stay quiet. Multi-step detections are tested with :class:`Scenario`
examples: records from several sources with event times, fed in the order given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
