"""The alerts of every detection's positive examples, raised the way the pipeline raises them.

Each positive example (a record, or a scenario's records on the scenario's clock) runs through its real source
and the record runner into an engine holding only its detection, as ``vigil detections test`` does; the
renderings are then checked on real alerts of every detection rather than on one hand-made alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import orjson

from vigil.alert import Alert
from vigil.detections.engine import LIBRARY, Engine, load_detections
from vigil.detections.harness import SCENARIO_START_NS
from vigil.detections.runner import EventHook, RecordRunner
from vigil.detections.sdk import Detection, Example, Scenario
from vigil.event import Event
from vigil.sources.source import get_source

_MAX_RECORD_BYTES = 1 << 24


@dataclass(frozen=True, slots=True)
class ExampleAlert:
    detection: str
    example: str
    alert: Alert

    @property
    def label(self) -> str:
        return f"{self.detection}[{self.example}]"


@cache
def positive_example_alerts() -> tuple[ExampleAlert, ...]:
    """Every alert that the library's positive examples raise, in library order."""
    detections, errors = load_detections([LIBRARY])
    if errors:
        raise RuntimeError(f"the detection library does not load: {errors}")
    found = []
    for detection in detections.values():
        for index, example in enumerate(detection.examples):
            if example.fires:
                name = example.name or f"#{index}"
                found += [ExampleAlert(detection.id, name, a) for a in _alerts(detection, example)]
    return tuple(found)


def _alerts(detection: Detection, example: Example | Scenario) -> list[Alert]:
    if isinstance(example, Example):
        records = [(example.source, example.record, None)]
    else:
        records = [(e.source, e.record, SCENARIO_START_NS + int(e.at_s * 1e9)) for e in example.events]
    engine = Engine([detection], raise_errors=True)
    alerts: list[Alert] = []
    for source_name, record, time_ns in records:
        runner = RecordRunner(engine, cluster="example-cluster", node="example-node",
                              max_record_bytes=_MAX_RECORD_BYTES, before_detect=_at(time_ns))
        alerts += runner.run_payload(get_source(source_name), orjson.dumps(record)).alerts
    return alerts + engine.flush()


def _at(time_ns: int | None) -> EventHook:
    """Moves each event of a scenario to its time on the scenario's clock."""

    def move(event: Event) -> None:
        if time_ns is not None:
            event.time_ns = time_ns

    return move
