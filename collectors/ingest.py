"""From payloads of one source to Kafka messages: records to ``raw.<source>``, refusals to the dead-letter topic.

The webhook and the file tailer differ only in where payloads come from; both hand them here, so a
record is validated, keyed, counted and dead-lettered the same way whichever way it arrived.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from vigil import kafka, metrics
from vigil.collectors.shipper import KafkaShipper, Message, pack
from vigil.config import Settings
from vigil.sources.source import Rejected, Source


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    rejected: list[Rejected] = field(default_factory=list)


class SourceIngest:
    def __init__(self, source: Source, settings: Settings, shipper: KafkaShipper, component: str) -> None:
        self.source = source
        self._settings = settings
        self._shipper = shipper
        self._component = component
        self._topic = settings.topic(f"raw.{source.name}")
        self._dead_letters = kafka.DeadLetters(settings, component)

    async def ingest(self, payloads: Iterable[bytes]) -> IngestResult:
        """Validate, key and ship payloads; returns once everything is durable (acked or spooled).

        Raises :class:`vigil.collectors.shipper.SpoolFull` when nothing could be kept: the caller must refuse the
        input so its sender retries.
        """
        result = IngestResult()
        records: list[tuple[str, bytes]] = []
        cluster, max_bytes = self._settings.cluster, self._settings.collector.max_event_bytes
        for payload in payloads:
            for item in self.source.split(payload, max_bytes):
                if isinstance(item, Rejected):
                    result.rejected.append(item)
                else:
                    records.append((self.source.key(item, cluster), orjson.dumps(item)))
        messages = pack(self._topic, records, self._settings.kafka.max_message_bytes)
        messages += [self._deadletter(r) for r in result.rejected]
        await self._shipper.ship(messages)
        result.accepted = len(records)
        metrics.RECEIVED.labels(self._component, self.source.name).inc(len(records) + len(result.rejected))
        return result

    async def refuse(self, rejected: Rejected) -> None:
        """Dead-letter input refused before it could be split into records (e.g. an oversized request)."""
        await self._shipper.ship([self._deadletter(rejected)])

    def _deadletter(self, rejected: Rejected) -> Message:
        value = self._dead_letters.build(self.source.name, rejected.reason, rejected.detail, rejected.raw)
        return Message(self._dead_letters.topic, rejected.reason, value)
