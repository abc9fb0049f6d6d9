"""The SIEM publisher: vigil's ``alerts`` topic fanned out to per-format topics and direct forwarders.

It consumes ``alerts`` in a consumer group (``vigil-siem`` by default) and hands each batch to every output: the
format topics (``alerts.ocsf``, ``alerts.ecs``, ``alerts.cef`` by default, each topic with its own format)
and the optional Splunk HEC and syslog forwarders. Offsets are committed only after every output has
acknowledged the batch, so a crash, a stop or an output that stays down re-reads the batch instead of
losing it (at-least-once: an output may see an alert twice; every format carries the alert id). An output
that is unavailable is retried with backoff, and nothing further is read meanwhile (Kafka holds the
backlog). Alerts an output refuses for good, and messages that are not alerts, go to the dead-letter topic
with the reason.

All outputs of one publisher move together: while one is down, the others get nothing newer either. To keep
a SIEM's outage from holding up another destination, run one publisher per destination, each with its own
consumer group (``--group-id``).

Updates of an alert (same id, higher count) are rendered as updates by :mod:`vigil.siem.formats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

import orjson
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from vigil import kafka, metrics
from vigil.alert import Alert
from vigil.config import Settings
from vigil.siem.outputs import (
    FAILURES,
    FORWARDED,
    RETRIES,
    KafkaTopicOutput,
    Output,
    OutputUnavailable,
    RenderedAlert,
)

log = logging.getLogger(__name__)

COMPONENT = "siem-publisher"
GROUP_ID = "vigil-siem"
#: Format topics (without the prefix) and their formats when nothing else is configured.
DEFAULT_TOPIC_FORMATS = {"alerts.ocsf": "ocsf", "alerts.ecs": "ecs", "alerts.cef": "cef"}


class SiemPublisher:
    """Forwards the alerts topic to ``topic_formats`` (topic name without prefix → format) and ``forwarders``."""

    def __init__(self, settings: Settings, topic_formats: dict[str, str] | None = None,
                 forwarders: Sequence[Output] = (), *, group_id: str = GROUP_ID, batch_size: int = 500,
                 backoff_first_s: float = 0.5, backoff_max_s: float = 30.0) -> None:
        self._settings = settings
        self._topic_formats = DEFAULT_TOPIC_FORMATS if topic_formats is None else topic_formats
        self._source = settings.topic("alerts")
        self._producer = kafka.producer(settings)
        self._consumer = kafka.consumer(settings, self._source, group_id=group_id, max_poll_records=batch_size)
        topics = [KafkaTopicOutput(self._producer, settings.topic(t), f) for t, f in self._topic_formats.items()]
        self._outputs: list[Output] = [*topics, *forwarders]
        self._formats = {output.format_name for output in self._outputs}
        self._dead_letters = kafka.DeadLetters(settings, COMPONENT)
        self._backoff_first_s, self._backoff_max_s = backoff_first_s, backoff_max_s

    async def run(self, stop: asyncio.Event) -> None:
        """Forward until ``stop`` is set. A batch still being retried then is left uncommitted for next time."""
        await kafka.ensure_topics(self._settings, ["alerts", "deadletter", *self._topic_formats])
        await self._producer.start()
        try:
            for output in self._outputs:
                await output.start()
            await self._consumer.start()
            log.info("siem publisher started", extra={"source": self._source,
                                                      "outputs": [o.name for o in self._outputs]})
            while not stop.is_set():
                fetched = await self._consumer.getmany(timeout_ms=1000)
                if fetched and not await self._forward(fetched, stop):
                    break
                await self._report_lag()
        finally:
            await self._consumer.stop()
            for output in self._outputs:
                await output.close()
            await self._producer.stop()
        log.info("siem publisher stopped")

    async def _forward(self, fetched: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event) -> bool:
        """Deliver one fetched batch everywhere, then commit it. False if stopped before it was delivered."""
        alerts: list[RenderedAlert] = []
        for messages in fetched.values():
            for message in messages:
                item = await self._decode(message)
                if item is not None:
                    alerts.append(item)
        if alerts:  # all outputs at once: each waits for its own acknowledgements, not for the others'
            delivered = await asyncio.gather(*(self._deliver(output, alerts, stop) for output in self._outputs))
            if not all(delivered):
                return False
        try:
            await self._consumer.commit({tp: messages[-1].offset + 1 for tp, messages in fetched.items()})
        except KafkaError as exc:  # e.g. the partitions moved: their new owner forwards them again
            metrics.KAFKA_ERRORS.labels(COMPONENT, type(exc).__name__).inc()
            log.warning("commit failed; the batch will be forwarded again", extra={"error": str(exc)})
        return True

    async def _decode(self, message: ConsumerRecord) -> RenderedAlert | None:
        value = message.value or b""
        metrics.RECEIVED.labels(COMPONENT, "alerts").inc()
        try:
            doc = orjson.loads(value)
            if not isinstance(doc, dict):
                raise ValueError(f"alert is a JSON {type(doc).__name__}, not an object")
            alert = Alert.from_dict(doc)
        except (ValueError, TypeError) as exc:
            await self._dead_letters.send(self._producer, "alerts", "invalid_alert", str(exc), value)
            return None
        try:  # a field of the wrong type (a string count…) passes Alert's constructor but not rendering
            return RenderedAlert.render(alert, self._formats)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            await self._dead_letters.send(self._producer, "alerts", "unrenderable_alert", detail, value)
            return None

    async def _deliver(self, output: Output, alerts: list[RenderedAlert], stop: asyncio.Event) -> bool:
        """Send until the output takes the batch, backing off while it is unavailable; False if stopped."""
        delay = self._backoff_first_s
        while True:
            try:
                refused = await output.send(alerts)
                break
            except OutputUnavailable as exc:
                FAILURES.labels(output.name, exc.reason).inc()
                log.warning("output unavailable, retrying", extra={"output": output.name, "reason": exc.reason,
                                                                   "detail": exc.detail, "retry_in_s": delay})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            if stop.is_set():
                return False
            RETRIES.labels(output.name).inc()
            delay = min(delay * 2, self._backoff_max_s)
        for item in refused:
            FAILURES.labels(output.name, item.reason).inc()
            log.error("output refused an alert; dead-lettered", extra={"output": output.name, "reason": item.reason,
                                                                      "alert_id": item.alert.id})
            await self._dead_letters.send(self._producer, output.name, item.reason, item.detail, item.alert.to_json())
        FORWARDED.labels(output.name).inc(len(alerts) - len(refused))
        return True

    async def _report_lag(self) -> None:
        kafka.report_lag(COMPONENT, await kafka.assigned_offsets(self._consumer), [self._source])


async def run_publisher(settings: Settings, topic_formats: dict[str, str] | None = None,
                        forwarders: Sequence[Output] = (), stop: asyncio.Event | None = None,
                        group_id: str = GROUP_ID) -> None:
    """Run the publisher until ``stop`` is set (by default: until SIGTERM or SIGINT)."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    await SiemPublisher(settings, topic_formats, forwarders, group_id=group_id).run(stop)
