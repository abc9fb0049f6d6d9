"""Collectors' reports of their own losses: ``collector.health`` records, from counting to the envelope.

An alert over a window in which a source it depends on lost records must say so (the engine's
``coverage_degraded``, see :mod:`detections.engine`): silence may be blindness. The records say who lost
what: one per (source, node) with ``dropped`` (records lost between ``since_ns`` and ``time_ns``) and
``reasons`` (the same count by cause: ``kernel_ring_full``, ``spool_full``, ``kafka_refused`` ...).

Every collector counts its losses in a :class:`HealthReporter`, which ships a record as soon as a loss is
counted (at most once per ``interval_s``) to *every* partition of ``raw.<source>``: only the worker owning
a partition sees what arrives on it, and every worker must learn of the loss (while Kafka is unreachable the
partitions are taken from :data:`vigil.kafka.TOPICS`, the counts vigil creates topics with). Nothing is sent while
nothing is lost, so a healthy collector costs nothing. The record travels like the source's own records
and each source's normalizer maps it with :func:`health_event`, so no stage of the pipeline needs to know
about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from collectors.shipper import KafkaShipper, Message, SpoolFull
from collectors.source import RecordRejected
from vigil import kafka
from vigil.config import Settings
from vigil.event import Actor, Event, Outcome, Target, event_id, now_ns

log = logging.getLogger(__name__)

#: The ``kind`` that marks a record as a collector's health report, whichever source's topic carries it.
HEALTH_RECORD_KIND = "vigil.collector.health"
#: The envelope kind of a health report (the engine's ``HEALTH_KIND``).
HEALTH_EVENT_KIND = "collector.health"


def is_health_record(record: dict[str, Any]) -> bool:
    return record.get("kind") == HEALTH_RECORD_KIND


def check_health_record(record: dict[str, Any]) -> tuple[int, int, int]:
    """``(dropped, since_ns, time_ns)`` of a health record; raises RecordRejected when one is not usable."""
    dropped, since_ns, time_ns = record.get("dropped"), record.get("since_ns"), record.get("time_ns")
    if type(time_ns) is not int or time_ns <= 0:
        raise RecordRejected("missing_field", f"health time_ns must be a positive integer, got {time_ns!r}")
    if type(since_ns) is not int or not 0 < since_ns <= time_ns:
        raise RecordRejected("missing_field", f"health since_ns must be positive and <= time_ns, got {since_ns!r}")
    if type(dropped) is not int or dropped < 0:
        raise RecordRejected("missing_field", f"health dropped must be a non-negative integer, got {dropped!r}")
    return dropped, since_ns, time_ns


def health_event(record: dict[str, Any], source: str, cluster: str, node: str) -> Event:
    """The ``collector.health`` Event of a health record found on ``raw.<source>`` (``raw`` keeps the record).

    Its id depends only on the record, so the copies sent to every partition are one event downstream.
    """
    dropped, since_ns, time_ns = check_health_record(record)
    node = record["node"] if isinstance(record.get("node"), str) else node
    component = record["component"] if isinstance(record.get("component"), str) else ""
    return Event(
        id=event_id(source, HEALTH_EVENT_KIND, node, component, str(since_ns), str(time_ns), str(dropped)),
        time_ns=time_ns,
        source=source,
        kind=HEALTH_EVENT_KIND,
        action="dropped" if dropped else "healthy",
        original_id=f"{component}:{since_ns}:{time_ns}",
        ingest_ns=now_ns(),
        cluster=cluster,
        node=node,
        actor=Actor(),
        target=Target(name=component),
        outcome=Outcome(result="failure" if dropped else "success", code=dropped),
        raw=record,
    )


def health_key(cluster: str) -> str:
    """The Kafka key of a health record: :attr:`Event.correlation_key` of an event without pod or user."""
    return f"{cluster}/~"


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
            default = kafka.TOPICS.get(f"raw.{record['source']}", 1)
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
