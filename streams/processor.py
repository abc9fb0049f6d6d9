"""The stream step, free of any transport: one raw Kafka message in; events, alerts and dead letters out.

A raw message holds a JSON array of one source's records sharing a key (see :mod:`vigil.kafka`). Each
record is normalized by its source (``collectors.source``) into the envelope and run through the
detection engine. The Faust agent in :mod:`streams.app` only moves bytes in and out of this class, which
keeps the processing testable without a broker and lets other runners reuse it. Event time moves windows and
sequences forward; :meth:`StreamProcessor.advance` decides what the watermark has passed (absences) and is
called on a timer, because an absence is raised by time passing, not by a message.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import orjson

from collectors.source import RecordRejected, get_source
from detections.engine import Engine
from vigil import kafka, metrics
from vigil.alert import Alert
from vigil.config import Settings
from vigil.event import Event

log = logging.getLogger(__name__)

COMPONENT = "stream-worker"


@dataclass(slots=True)
class ProcessedMessage:
    """What one raw message turned into: an events batch (same key), alerts, and dead-letter records."""

    events: bytes | None = None
    alerts: list[Alert] = field(default_factory=list)
    deadletters: list[bytes] = field(default_factory=list)


class StreamProcessor:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self._settings = settings
        self.engine = engine

    def process(self, source_name: str, value: bytes, ingest_ns: int) -> ProcessedMessage:
        """``ingest_ns`` is when the collector shipped the message (its Kafka timestamp)."""
        out = ProcessedMessage()
        try:
            source = get_source(source_name)
            records = kafka.decode_batch(value)
        except (ValueError, orjson.JSONDecodeError) as exc:
            out.deadletters.append(self._deadletter(source_name, "bad_message", str(exc), value))
            return out
        events = []
        cluster, node = self._settings.cluster, self._settings.node
        for record in records:
            try:
                if not isinstance(record, dict):
                    raise RecordRejected("wrong_kind", f"record is a JSON {type(record).__name__}, not an object")
                event = source.normalize(record, cluster, node)
                event.ingest_ns = ingest_ns
            except RecordRejected as exc:
                out.deadletters.append(self._deadletter(source_name, exc.reason, exc.detail, orjson.dumps(record)))
                continue
            events.append(event)
            out.alerts.extend(self.engine.process(event))
        self.engine.commit()
        if events:
            out.events = orjson.dumps(events)
            _observe(events)
        return out

    def advance(self) -> list[Alert]:
        """Alerts decided by the engine's watermark since the last call (absences), expired state dropped."""
        return self.engine.advance()

    def _deadletter(self, source: str, reason: str, detail: str, raw: bytes) -> bytes:
        metrics.REJECTED.labels(COMPONENT, source, reason).inc()
        metrics.DEADLETTERED.labels(COMPONENT).inc()
        return kafka.deadletter_record(COMPONENT, source, reason, detail, raw)


def _observe(events: list[Event]) -> None:
    metrics.LATENCY.labels("collect_to_detect").observe(max(0.0, (time.time_ns() - events[-1].ingest_ns) / 1e9))
