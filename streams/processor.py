"""The stream step, free of any transport: raw Kafka messages in; events, alerts and dead letters out.

A raw message holds a JSON array of one source's records sharing a key (see :mod:`vigil.kafka`). Its
records go through the one record runner (:mod:`vigil.detections.runner`): normalized by their source into the
envelope and run through the detection engine; refused records become dead letters. The Faust agent in
:mod:`vigil.streams.app` only moves bytes in and out of this class, which keeps the processing testable without a
broker. Event time moves windows and sequences forward; :meth:`StreamProcessor.advance` decides what the watermark
has passed (absences) and is called on a timer, because an absence is raised by time passing, not by a message.

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
from vigil.detections.runner import RecordRunner
from vigil.sources.source import get_source

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
    """What one raw message turned into: events batches (same key; one, unless the events outgrew a Kafka
    message), alerts, and dead-letter records."""

    events: list[bytes] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    deadletters: list[bytes] = field(default_factory=list)


class StreamProcessor:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.engine = engine
        self._max_message_bytes = settings.kafka.max_message_bytes
        self._runner = RecordRunner(engine, cluster=settings.cluster, node=settings.node,
                                    max_record_bytes=settings.collector.max_event_bytes)
        self._dead_letters = kafka.DeadLetters(settings, COMPONENT)
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
            out.deadletters.append(self._dead_letters.build(message.source, "bad_message", str(exc), message.value))
            return out
        result = self._runner.run_records(source, records, message.ingest_ns)
        out.deadletters = [self._dead_letters.build(message.source, r.reason, r.detail, r.raw) for r in result.refused]
        if result.events:
            out.alerts = result.alerts
            out.events = kafka.encode_batches(result.events, self._max_message_bytes)
            self._latency.observe(max(0.0, (time.time_ns() - message.ingest_ns) / 1e9))
        return out
