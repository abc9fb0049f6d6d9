"""Collectors' reports of their own losses, as records and as events: the pure side of ``collector.health``.

An alert over a window in which a source it depends on lost records must say so (the engine's
``coverage_degraded``): silence may be blindness. A health record says who lost what: one per (source, node) with
``dropped`` (records lost between ``since_ns`` and ``time_ns``) and ``reasons`` (the same count by cause:
``kernel_ring_full``, ``spool_full``, ``kafka_refused`` ...). It travels on ``raw.<source>`` like the source's own
records, and each source's normalizer maps it with :func:`health_event`, so no stage of the pipeline needs to know
about it. The collectors count and ship them (:class:`vigil.collectors.health.HealthReporter`).
"""

from __future__ import annotations

from typing import Any

from vigil.event import Actor, Event, Outcome, Target, event_id, now_ns
from vigil.sources.source import RecordRejected

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
