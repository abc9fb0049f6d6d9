"""Collectors' counting and shipping of their own losses, as ``collector.health`` records
(:mod:`vigil.sources.health` says what those are and how they become events).

Every collector counts its losses in a :class:`HealthReporter`, which ships a record as soon as a loss is
counted (at most once per ``interval_s``) to *every* partition of ``raw.<source>``: only the worker owning
a partition sees what arrives on it, and every worker must learn of the loss (while Kafka is unreachable the
partitions are taken from :func:`vigil.kafka.topic_partitions`, the counts vigil creates topics with). Nothing
is sent while nothing is lost, so a healthy collector costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from vigil import kafka
from vigil.collectors.shipper import KafkaShipper, Message, SpoolFull
from vigil.config import Settings
from vigil.event import now_ns
from vigil.sources.health import HEALTH_RECORD_KIND, health_key

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Losses:
    since_ns: int
    reasons: dict[str, int] = field(default_factory=dict)


class HealthReporter:
    """Counts one collector's losses per source and ships them as health records (see the module doc).

    :meth:`count` may be called from any thread (the eBPF sensor polls in its own).
    """

    def __init__(self, settings: Settings, shipper: KafkaShipper, component: str, interval_s: float = 1.0) -> None:
        self._settings = settings
        self._shipper = shipper
        self._component = component
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._losses: dict[str, _Losses] = {}
        self._raw_prefix = settings.topic("raw.")

    def count(self, source: str, dropped: int, reason: str) -> None:
        """Records of ``source`` lost for good, for ``reason``."""
        if dropped <= 0:
            return
        with self._lock:
            losses = self._losses.setdefault(source, _Losses(now_ns()))
            losses.reasons[reason] = losses.reasons.get(reason, 0) + dropped

    def count_lost_message(self, message: Message, reason: str) -> None:
        """A message lost for good: its records, if it was a source's, are that source's losses."""
        if not message.topic.startswith(self._raw_prefix):
            return
        try:
            records = orjson.loads(message.value)
        except orjson.JSONDecodeError:
            records = [None]
        self.count(message.topic.removeprefix(self._raw_prefix), len(records) if type(records) is list else 1, reason)

    def records(self, time_ns: int | None = None) -> list[dict[str, Any]]:
        """The health records of the losses counted so far, which are then forgotten (see :meth:`restore`)."""
        with self._lock:
            taken, self._losses = self._losses, {}
        time_ns = time_ns or now_ns()
        return [
            {"kind": HEALTH_RECORD_KIND, "source": source, "node": self._settings.node, "component": self._component,
             "dropped": sum(losses.reasons.values()), "reasons": losses.reasons,
             "since_ns": min(losses.since_ns, time_ns), "time_ns": time_ns}
            for source, losses in taken.items()
        ]

    def restore(self, records: list[dict[str, Any]]) -> None:
        """Count again the losses of records that could not be shipped, from their original start."""
        with self._lock:
            for record in records:
                losses = self._losses.setdefault(record["source"], _Losses(record["since_ns"]))
                losses.since_ns = min(losses.since_ns, record["since_ns"])
                for reason, dropped in record["reasons"].items():
                    losses.reasons[reason] = losses.reasons.get(reason, 0) + dropped

    async def report(self) -> None:
        """Ship the losses counted so far, one message per partition of each source's raw topic."""
        records = self.records()
        if not records:
            return
        messages: list[Message] = []
        for record in records:
            topic = self._settings.topic(f"raw.{record['source']}")
            value = b"[" + orjson.dumps(record) + b"]"
            default = kafka.topic_partitions(self._settings, f"raw.{record['source']}")
            partitions = await self._shipper.partitions(topic, default)
            messages += [Message(topic, health_key(self._settings.cluster), value, p) for p in partitions]
        try:
            await self._shipper.ship(messages)
        except SpoolFull:
            self.restore(records)  # reported with the next losses, from the same start
            return
        for record in records:
            log.warning("records lost", extra={"source": record["source"], "dropped": record["dropped"],
                                               "reasons": record["reasons"]})

    async def run(self, stop: asyncio.Event) -> None:
        """Report losses every ``interval_s`` until ``stop`` is set (and once more then); losses counted after
        that wait for the owner's last :meth:`report`."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)
            await self.report()
