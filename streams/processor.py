"""The stream step, free of any transport: raw Kafka messages in; events, alerts and dead letters out.

A raw message holds a JSON array of one source's records sharing a key (see :mod:`vigil.kafka`). Each
record is normalized by its source (``vigil.sources.source``) into the envelope and run through the
detection engine. The Faust agent in :mod:`vigil.streams.app` only moves bytes in and out of this class, which
keeps the processing testable without a broker and lets other runners reuse it. Event time moves windows and
sequences forward; :meth:`StreamProcessor.advance` decides what the watermark has passed (absences) and is
called on a timer, because an absence is raised by time passing, not by a message.

Messages are processed in batches (what the worker took from Kafka in one go): the engine's state is written
once per key per batch, not once per message, because every write of a Faust table is a changelog message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from vigil import kafka, metrics
from vigil.alert import Alert
from vigil.config import Settings
from vigil.detections.engine import Engine
from vigil.event import Event
from vigil.sources.source import RecordRejected, Source, get_source

log = logging.getLogger(__name__)

COMPONENT = "stream-worker"


@dataclass(slots=True)
class RawMessage:
    """One message of a ``raw.<source>`` topic: the source it came from, its value, and when the collector
    shipped it (its Kafka timestamp, ns)."""

    source: str
    value: bytes
    ingest_ns: int


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
        self._latency = metrics.LATENCY.labels("collect_to_detect")

    def process(self, source_name: str, value: bytes, ingest_ns: int) -> ProcessedMessage:
        """One message on its own, its state committed: ``ingest_ns`` is its Kafka timestamp."""
        return self.process_batch([RawMessage(source_name, value, ingest_ns)])[0]

    def process_batch(self, messages: Sequence[RawMessage]) -> list[ProcessedMessage]:
        """Each message's output, in order, with the engine's state committed once for the whole batch."""
        processed = [self._process(message) for message in messages]
        self.engine.commit()
        return processed

    def advance(self) -> list[Alert]:
        """Alerts decided by the engine's watermark since the last call (absences), expired state dropped."""
        return self.engine.advance()

    def _process(self, message: RawMessage) -> ProcessedMessage:
        out = ProcessedMessage()
        try:
            source = get_source(message.source)
            records = kafka.decode_batch(message.value)
        except (ValueError, orjson.JSONDecodeError) as exc:
            out.deadletters.append(self._deadletter(message.source, "bad_message", str(exc), message.value))
            return out
        events = self._normalize(source, message, records, out)
        if events:
            engine_process = self.engine.process
            for event in events:
                alerts = engine_process(event)
                if alerts:
                    out.alerts.extend(alerts)
            out.events = orjson.dumps(events)
            self._latency.observe(max(0.0, (time.time_ns() - message.ingest_ns) / 1e9))
        return out

    def _normalize(self, source: Source, message: RawMessage, records: list, out: ProcessedMessage) -> list[Event]:
        """The message's records as events stamped with its ingest time; refused records go to ``out``."""
        events = []
        normalize = source.normalize
        cluster, node, ingest_ns = self._settings.cluster, self._settings.node, message.ingest_ns
        for record in records:
            try:
                if type(record) is not dict:
                    raise RecordRejected("wrong_kind", f"record is a JSON {type(record).__name__}, not an object")
                event = normalize(record, cluster, node)
            except RecordRejected as exc:
                out.deadletters.append(self._deadletter(message.source, exc.reason, exc.detail, orjson.dumps(record)))
                continue
            event.ingest_ns = ingest_ns
            events.append(event)
        return events

    def _deadletter(self, source: str, reason: str, detail: str, raw: bytes) -> bytes:
        metrics.REJECTED.labels(COMPONENT, source, reason).inc()
        metrics.DEADLETTERED.labels(COMPONENT).inc()
        return kafka.deadletter_record(COMPONENT, source, reason, detail, raw)
