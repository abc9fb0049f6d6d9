"""The one path from a source's records to events, refusals and alerts: split, normalize, detect.

The stream processor (records from a ``raw.<source>`` message), ``vigil replay`` (payloads read from files) and
the detection example harness (a detection's example records) all run records through :class:`RecordRunner`, so
a record is refused, stamped and detected on in the same way whichever of them reads it.

One error policy: a record that is not a JSON object is refused as ``wrong_kind``; a normalizer that refuses a
record (:class:`~vigil.sources.source.RecordRejected`) refuses it with its reason; a normalizer that raises
anything else met input it did not expect, and the record is refused as ``normalize_failed`` with the exception
in the detail, so one odd record never stops a worker or a replay. Refusals are returned, never dropped: the
caller dead-letters them (the stream processor) or reports them (replay, the harness).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from vigil.alert import Alert
from vigil.detections.engine import Engine, describe_exception
from vigil.event import Event
from vigil.sources.source import RecordRejected, Rejected, Source

#: Called with each event before the engine sees it (the harness moves examples to scenario time there).
EventHook = Callable[[Event], None]


@dataclass(slots=True)
class RunResult:
    """What some records turned into: events (in order), the alerts they raised, and the records refused."""

    events: list[Event] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    refused: list[Rejected] = field(default_factory=list)

    @property
    def records(self) -> int:
        return len(self.events) + len(self.refused)


class RecordRunner:
    """Runs one source's payloads or records through the normalizer and ``engine`` (with no engine, records are
    only normalized: the Sigma importer checks its synthesized examples that way).

    The engine's state is not committed here: the caller commits once per batch it considers done (a Kafka
    batch, a replayed payload), because every state write of a stream worker is a changelog message.
    """

    def __init__(self, engine: Engine | None, *, cluster: str, node: str, max_record_bytes: int,
                 before_detect: EventHook | None = None) -> None:
        self.engine = engine
        self._cluster = cluster
        self._node = node
        self._max_record_bytes = max_record_bytes
        self._before_detect = before_detect

    def run_payload(self, source: Source, payload: bytes) -> RunResult:
        """Split one payload (a log line, an HTTP body, a whole file) into records and run them."""
        try:
            split = list(source.split(payload, self._max_record_bytes))
        except Exception as exc:  # a splitter bug met by odd input: refuse the payload, keep running
            return RunResult(refused=[Rejected("split_failed", describe_exception(exc), payload)])
        records = [item for item in split if not isinstance(item, Rejected)]
        result = self.run_records(source, records)
        result.refused[:0] = [item for item in split if isinstance(item, Rejected)]
        return result

    def run_records(self, source: Source, records: Iterable[Any], ingest_ns: int = 0) -> RunResult:
        """Normalize and detect on records already split (a ``raw.<source>`` message's array); ``ingest_ns``, when
        given, stamps the events with the time the collector shipped them."""
        result = RunResult()
        events, refused, alerts = result.events, result.refused, result.alerts
        process = self.engine.process if self.engine is not None else _no_detections
        before_detect = self._before_detect
        for record in records:
            event = self.normalize(source, record)
            if type(event) is Rejected:
                refused.append(event)
                continue
            if ingest_ns:
                event.ingest_ns = ingest_ns
            events.append(event)
            if before_detect is not None:
                before_detect(event)
            raised = process(event)
            if raised:
                alerts.extend(raised)
        return result

    def normalize(self, source: Source, record: Any) -> Event | Rejected:
        """The record's event, or its refusal under the module's error policy."""
        if type(record) is not dict:
            return Rejected("wrong_kind", f"record is a JSON {type(record).__name__}, not an object", _raw(record))
        try:
            return source.normalize(record, self._cluster, self._node)
        except RecordRejected as exc:
            return Rejected(exc.reason, exc.detail, _raw(record))
        except Exception as exc:  # a normalizer bug met by odd input: refuse the record, keep running
            return Rejected("normalize_failed", describe_exception(exc), _raw(record))


def _raw(record: Any) -> bytes:
    return orjson.dumps(record)


def _no_detections(event: Event) -> list[Alert]:
    return []
