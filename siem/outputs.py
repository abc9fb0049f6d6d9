"""Where alerts go: the output contract, the per-format Kafka topics, and the SIEM metrics.

Each alert is rendered once, into every format some output needs (:class:`RenderedAlert`); an alert that
cannot be rendered is refused before any output sees it. An output takes a batch of rendered alerts and
either delivers all of them, refuses some for good (a reason each, they go to the dead-letter topic), or
raises :class:`OutputUnavailable` when trying again later may work (receiver down, 5xx, 429, Kafka away).
Retrying with backoff is the publisher's job, in one place, so every output gets the same at-least-once
behaviour: offsets are committed only once every output has taken the batch, and a retried batch may
repeat alerts an output already had (SIEMs upsert by alert id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from prometheus_client import Counter

from vigil.alert import Alert
from vigil.siem.formats import RENDERERS

FORWARDED = Counter("vigil_siem_alerts_forwarded_total", "Alerts an output acknowledged", ["output"])
FAILURES = Counter("vigil_siem_failures_total",
                   "Delivery failures: attempts that will be retried, and alerts refused for good (dead-lettered)",
                   ["output", "reason"])
RETRIES = Counter("vigil_siem_retries_total", "Batches sent again after an output was unavailable", ["output"])


@dataclass(frozen=True, slots=True)
class RenderedAlert:
    """An alert and its documents, one per format an output needs (``ocsf``/``ecs`` JSON, ``cef`` text)."""

    alert: Alert
    documents: dict[str, bytes]

    @classmethod
    def render(cls, alert: Alert, format_names: set[str]) -> RenderedAlert:
        """Raises ValueError, TypeError, KeyError or AttributeError for a field of the wrong type."""
        return cls(alert, {name: RENDERERS[name](alert) for name in format_names})


def check_format(format_name: str) -> str:
    if format_name not in RENDERERS:
        raise ValueError(f"unknown SIEM format {format_name!r} (known: {', '.join(RENDERERS)})")
    return format_name


class OutputUnavailable(Exception):
    """The output cannot take alerts right now; the same batch is to be sent again later."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Refused:
    """An alert an output will never take (e.g. HEC answered 400 for it), with the reason."""

    alert: Alert
    reason: str
    detail: str


class Output(Protocol):
    name: str
    format_name: str  # the document of each RenderedAlert this output sends

    async def start(self) -> None: ...

    async def send(self, alerts: list[RenderedAlert]) -> list[Refused]:
        """Deliver ``alerts``; return the ones refused for good; raise OutputUnavailable to be retried."""
        ...

    async def close(self) -> None: ...


class KafkaTopicOutput:
    """One alert topic in one format (``alerts.ocsf``…), keyed by alert id so an alert's updates stay in order."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, format_name: str) -> None:
        self.name = f"kafka:{topic}"
        self.topic = topic
        self.format_name = check_format(format_name)
        self._producer = producer

    async def start(self) -> None:
        """The producer is shared and started by the publisher."""

    async def send(self, alerts: list[RenderedAlert]) -> list[Refused]:
        refused: list[Refused] = []
        try:
            pending = [(item.alert, await self._producer.send(self.topic, item.documents[self.format_name],
                                                              key=item.alert.id.encode()))
                       for item in alerts]
            for alert, future in pending:
                try:
                    await future
                except MessageSizeTooLargeError as exc:
                    refused.append(Refused(alert, "too_large", str(exc)))
        except KafkaError as exc:
            raise OutputUnavailable(type(exc).__name__, str(exc)) from exc
        return refused

    async def close(self) -> None:
        """The producer is shared and stopped by the publisher."""
