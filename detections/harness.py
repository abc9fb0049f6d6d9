"""The example harness: runs each detection's own examples the way the pipeline would (``vigil detections test``).

Every example record goes through its real source and the one record runner (:mod:`vigil.detections.runner`)
into an engine of the detection's own; a scenario's events are moved to their ``at_s`` on the scenario's clock,
and at the end the watermark passes the last event, so absences are decided. A positive example must raise an
alert that serializes, a negative none; a detection must carry at least one of each. The harness also checks the
detection's declared prefilters against its logic: a prefilter that keeps from the detection an event its logic
matches would silently lose alerts in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import orjson

from vigil.detections.engine import Engine, describe_exception
from vigil.detections.runner import EventHook, RecordRunner
from vigil.detections.sdk import (
    PREFILTER_FIELDS,
    Detection,
    EventDetection,
    Example,
    Scenario,
    StatefulDetection,
    declared_value,
    event_path,
)
from vigil.event import Event
from vigil.sources.source import get_source

#: Time zero of scenarios: a scenario's ``at_s`` is seconds after this (2025-03-04T06:22:18Z).
SCENARIO_START_NS = 1_741_069_338 * 10**9
#: Example records are single records: the harness splits them with a generous limit.
_MAX_RECORD_BYTES = 1 << 24


@dataclass(frozen=True, slots=True)
class ExampleResult:
    example: str
    passed: bool
    reason: str = ""


class ExampleFailed(Exception):
    """Why an example failed, raised from inside the run (e.g. by the prefilter check) to end it."""


def check_examples(detection: Detection) -> list[ExampleResult]:
    """One result per example of ``detection``, plus a failure for a missing positive or negative example."""
    results = [_check_example(detection, index, example) for index, example in enumerate(detection.examples)]
    if not any(e.fires for e in detection.examples):
        results.append(ExampleResult("(examples)", False, "no positive example: add one the detection must fire on"))
    if all(e.fires for e in detection.examples):
        results.append(ExampleResult("(examples)", False, "no negative example: add one it must stay quiet on"))
    return results


def _check_example(detection: Detection, index: int, example: Example | Scenario) -> ExampleResult:
    name = example.name or f"#{index}"
    if isinstance(example, Example):
        records = [(example.source, example.record, None)]
    else:
        records = [(e.source, e.record, SCENARIO_START_NS + int(e.at_s * 1e9)) for e in example.events]
    try:
        engine = Engine([detection], raise_errors=True)
        alerts = []
        for source_name, record, time_ns in records:
            runner = RecordRunner(engine, cluster="example-cluster", node="example-node",
                                  max_record_bytes=_MAX_RECORD_BYTES, before_detect=_prepare(detection, time_ns))
            result = runner.run_payload(get_source(source_name), orjson.dumps(record))
            if result.refused:
                refused = result.refused[0]
                return ExampleResult(name, False, f"the source rejected the record: {refused.reason}: {refused.detail}")
            if not result.events:
                return ExampleResult(name, False, f"a {source_name} record normalized into no event")
            alerts.extend(result.alerts)
        alerts.extend(engine.flush())
        for alert in alerts:
            alert.to_json()
    except ExampleFailed as exc:
        return ExampleResult(name, False, str(exc))
    except Exception as exc:  # the harness reports any failure of the detection as a failed example
        return ExampleResult(name, False, f"raised {describe_exception(exc)}")
    if example.fires and not alerts:
        return ExampleResult(name, False, "expected an alert, got none")
    if not example.fires and alerts:
        return ExampleResult(name, False, f"expected no alert, got: {alerts[0].title}")
    return ExampleResult(name, True)


def _prepare(detection: Detection, time_ns: int | None) -> EventHook:
    """What happens to each example event before the engine sees it: moved to the scenario's clock, and checked
    against the detection's prefilters."""

    def prepare(event: Event) -> None:
        if time_ns is not None:
            event.time_ns = time_ns
        if _prefilter_hides(detection, event):
            declared = " or ".join(p.describe() for p in detection.prefilters(event.kind))
            raise ExampleFailed(
                f"its prefilter ({declared}) skips an event its logic matches: {_signature(event)}; "
                "declare that value too"
            )

    return prepare


def _prefilter_hides(detection: Detection, event: Event) -> bool:
    """Whether the detection's logic uses ``event`` although its prefilter keeps the event from it: a
    declaration that would silently lose matches in the engine."""
    if event.kind not in detection.kinds or any(p.admits(event) for p in detection.prefilters(event.kind)):
        return False
    if isinstance(detection, EventDetection):
        return bool(detection.evaluate(event))
    return isinstance(detection, StatefulDetection) and detection.observe(event) is not None


def _signature(event: Event) -> str:
    values = ", ".join(
        f"{name} {declared_value(name, attrgetter(path)(event))!r}" for name, path in PREFILTER_FIELDS.items()
    )
    return f"kind {event.kind!r}, {values}, path {event_path(event)!r}"
