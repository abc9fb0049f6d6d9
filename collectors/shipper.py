"""Delivery of collected records to Kafka that never loses data silently.

The shipper answers one question for its callers: "is this data safe yet?". :meth:`KafkaShipper.ship`
returns only once every message is either acknowledged by Kafka (acks=all, idempotent producer) or
fsynced into the on-disk spool; callers (the webhook's HTTP answer, the file tailer's checkpoint) act
on that. While the spool holds anything, new messages are appended behind it, so Kafka receives them
in the order they were collected once it is back. When even the spool is full, :class:`SpoolFull`
reaches the caller, which refuses the input (the apiserver retries; the tailer stops reading) and the
loss, if any, is counted.

A send that outlives its deadline is spooled, but still followed: when Kafka takes it after all (a partition
leader elected after the deadline, as when a broker of a cluster dies), the drain skips its spooled copy instead
of writing it a second time.

Records are packed per (topic, key) into one Kafka message holding a JSON array (see
:mod:`vigil.kafka`), bounded by the configured maximum message size.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from vigil import kafka, metrics
from vigil.collectors.spool import DiskSpool, Message, SpoolFull
from vigil.config import Settings
from vigil.kafka import RECORD_FRAMING_BYTES

log = logging.getLogger(__name__)

__all__ = ["RECORD_FRAMING_BYTES", "KafkaShipper", "Message", "SpoolFull", "pack"]


def pack(topic: str, records: Iterable[tuple[str, bytes]], max_bytes: int) -> list[Message]:
    """Group JSON-encoded records by key into JSON-array messages that Kafka accepts under ``max_bytes``.

    Records arrive already encoded, so packing is byte concatenation: no re-serialization.
    """
    groups: dict[str, list[bytes]] = defaultdict(list)
    for key, value in records:
        groups[key].append(value)
    messages: list[Message] = []
    for key, values in groups.items():
        room = max_bytes - RECORD_FRAMING_BYTES - len(key.encode())
        messages += [Message(topic, key, array) for array in kafka.json_arrays(values, room)]
    return messages


#: Errors that no retry can cure for that message. aiokafka's own ``retriable`` flag is no guide here: a send
#: that times out because Kafka is down (KafkaTimeoutError) is marked not retriable, yet must be spooled and
#: sent again, so everything else counts as "try again later".
#: How long the spool drain waits for sends still in flight past their deadline before sending their (spooled)
#: messages again: longer than a partition leader's failover (12-16 s measured on a 3-broker cluster here).
LATE_SETTLE_SECONDS = 30.0
#: The shortest request timeout the producer gets, whatever the delivery deadline (see _connect).
MIN_REQUEST_TIMEOUT_MS = 1_000

REFUSED_FOR_GOOD = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, CorruptRecordException)


def _settled(result: Any) -> Any:
    """A send's result: the metadata, the exception it failed with, or TimeoutError while still unsettled."""
    if not isinstance(result, asyncio.Future):
        return result
    if not result.done():
        return TimeoutError("not acknowledged before the delivery deadline")
    return result.exception() or result.result()


class Outcome(enum.Enum):
    ACKED = "acked"
    DELIVERED = "delivered"  # spooled after its deadline, then acknowledged by Kafka after all: not sent again
    RETRY = "retry"  # Kafka unreachable or busy: keep it (spool) and send again
    REFUSED = "refused"  # Kafka will never take it: counted as dropped


class KafkaShipper:
    """Sends messages to Kafka, spooling to disk in order while Kafka is unreachable."""

    DRAIN_BATCH = 500

    def __init__(self, settings: Settings, component: str, delivery_timeout_ms: int = 5_000) -> None:
        self._settings = settings
        self._component = component
        self._delivery_timeout_ms = delivery_timeout_ms
        self._spool = DiskSpool(settings.spool_dir / component, settings.collector.spool_max_bytes, component)
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._room = asyncio.Condition()
        self._max_queued = settings.collector.queue_max_bytes
        self._queued = 0
        self._drainer: asyncio.Task[None] | None = None
        self._closing = False
        self._loss_listeners: list[Callable[[Message, str], None]] = []
        # Sends still in flight past their deadline (their messages went to the spool), and the spooled messages
        # Kafka took after all: the drain skips those instead of writing them a second time.
        self._late: dict[asyncio.Future[Any], Message] = {}
        self._delivered_late: Counter[Message] = Counter()

    @property
    def spooled_bytes(self) -> int:
        return self._spool.bytes_pending

    def on_loss(self, listener: Callable[[Message, str], None]) -> None:
        """Have ``listener(message, reason)`` called for every message lost for good (collectors report it)."""
        self._loss_listeners.append(listener)

    async def partitions(self, topic: str, default: int) -> list[int]:
        """The partitions of ``topic`` as Kafka knows them, or ``range(default)`` while Kafka is unreachable."""
        if self._producer is not None:
            try:
                known = await asyncio.wait_for(self._producer.partitions_for(topic), self._delivery_timeout_ms / 1000)
            except (KafkaError, TimeoutError) as exc:
                self._kafka_failed(exc)
            else:
                if known:
                    return sorted(known)
        return list(range(default))

    async def start(self) -> None:
        """Connect if Kafka is there; if not, start in spool mode and keep trying in the background."""
        if self._spool or not await self._connect():
            self._start_drainer()

    async def close(self) -> None:
        self._closing = True
        if self._drainer:
            self._drainer.cancel()
            await asyncio.gather(self._drainer, return_exceptions=True)
        if self._producer:
            await self._producer.stop()
        self._spool.close()

    async def ship(self, messages: Sequence[Message]) -> None:
        """Return once all messages are acknowledged by Kafka or safely spooled; raise SpoolFull otherwise."""
        if not messages:
            return
        size = sum(len(m.value) for m in messages)
        async with self._room:
            # Bound what sits in memory; a single oversized call still passes when nothing else is queued.
            await self._room.wait_for(lambda: self._queued == 0 or self._queued + size <= self._max_queued)
            self._set_queued(size)
        try:
            if self._spool or self._producer is None:
                await self._spool_append(list(messages))
                return
            outcomes = await self._send(messages)
            retry = [m for m, outcome in zip(messages, outcomes, strict=True) if outcome is Outcome.RETRY]
            if retry:
                await self._spool_append(retry)
        finally:
            async with self._room:
                self._set_queued(-size)
                self._room.notify_all()

    async def _send(self, messages: Sequence[Message]) -> list[Outcome]:
        """Send and await acks; say for each message what became of it."""
        assert self._producer is not None
        deadline = self._delivery_timeout_ms / 1000
        results: list[Any] = []
        for message in messages:
            try:
                results.append(await asyncio.wait_for(self._producer.send(
                    message.topic, message.value, key=message.key.encode(), partition=message.partition), deadline))
            except (KafkaError, TimeoutError) as exc:
                results.append(exc)
                if not isinstance(exc, REFUSED_FOR_GOOD):
                    break  # Kafka is away: what follows is spooled unsent, in order
        # aiokafka retries a batch in flight for as long as the broker is away, so its future may not settle:
        # what is not acknowledged by the deadline is spooled, and the send is followed (_settle_late): Kafka may
        # still take it, e.g. once a new partition leader is elected.
        pending = [r for r in results if isinstance(r, asyncio.Future)]
        if pending:
            await asyncio.wait(pending, timeout=deadline)
        self._late.update((r, m) for r, m in zip(results, messages, strict=False)
                          if isinstance(r, asyncio.Future) and not r.done())
        results = [_settled(r) for r in results]
        outcomes = [self._outcome(message, result) for message, result in zip(messages, results, strict=False)]
        return outcomes + [Outcome.RETRY] * (len(messages) - len(outcomes))

    def _outcome(self, message: Message, result: Any) -> Outcome:
        if not isinstance(result, BaseException):
            metrics.SHIPPED.labels(self._component, message.topic).inc()
            return Outcome.ACKED
        self._kafka_failed(result)
        if isinstance(result, REFUSED_FOR_GOOD):
            # Retrying can never succeed (e.g. a message over the broker's limit): count it as lost, loudly.
            reason = f"kafka_refused_{type(result).__name__}"
            metrics.DROPPED.labels(self._component, reason).inc()
            for listener in self._loss_listeners:
                listener(message, reason)
            log.error("kafka refused a message for good", extra={"topic": message.topic, "bytes": len(message.value),
                                                                "error": type(result).__name__})
            return Outcome.REFUSED
        return Outcome.RETRY

    async def _spool_append(self, messages: list[Message]) -> None:
        async with self._lock:
            try:
                await asyncio.to_thread(self._spool.append, messages)
            except SpoolFull:
                metrics.DROPPED.labels(self._component, "spool_full").inc(len(messages))
                raise
        self._start_drainer()

    def _kafka_failed(self, exc: BaseException) -> None:
        metrics.KAFKA_ERRORS.labels(self._component, type(exc).__name__).inc()
        if not self._spool:
            log.warning("kafka unavailable, spooling to disk", extra={"error": str(exc)})

    def _start_drainer(self) -> None:
        if not self._closing and (self._drainer is None or self._drainer.done()):
            self._drainer = asyncio.create_task(self._drain(), name=f"{self._component}-spool-drain")

    async def _drain(self) -> None:
        """Replay the spool into Kafka in order, backing off while Kafka stays unreachable."""
        backoff = 0.5
        while True:
            if self._producer is None and not await self._connect():
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            await self._settle_late()
            async with self._lock:
                batch = await asyncio.to_thread(self._spool.peek, self.DRAIN_BATCH)
                if not batch:
                    log.info("spool drained, shipping directly")
                    return
                outcomes = await self._send_unless_delivered([message for message, _ in batch])
                # Only the settled prefix leaves the spool, so a retry keeps the original order.
                prefix = outcomes.index(Outcome.RETRY) if Outcome.RETRY in outcomes else len(outcomes)
                for message, outcome in zip(batch[prefix:], outcomes[prefix:], strict=True):
                    if outcome is Outcome.DELIVERED:  # stays spooled: still known as delivered next time
                        self._delivered_late[message[0]] += 1
                await asyncio.to_thread(self._spool.ack, [size for _, size in batch[:prefix]])
            if prefix < len(batch):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            else:
                backoff = 0.5

    async def _settle_late(self) -> None:
        """Wait for the sends that outlived their deadline, and note the spooled messages Kafka took after all. They
        settle once Kafka answers, which is also when the drain can send anything again; after
        :data:`LATE_SETTLE_SECONDS` the drain goes on (sending those again: at least once rather than stuck)."""
        if not self._late:
            return
        done, _ = await asyncio.wait(list(self._late), timeout=LATE_SETTLE_SECONDS)
        for future in done:
            message = self._late.pop(future)
            if not future.cancelled() and future.exception() is None:
                metrics.SHIPPED.labels(self._component, message.topic).inc()
                self._delivered_late[message] += 1

    async def _send_unless_delivered(self, messages: list[Message]) -> list[Outcome]:
        """:meth:`_send` for spooled messages, but those Kafka already took (late) are not sent again."""
        delivered = []
        for message in messages:
            taken = self._delivered_late[message] > 0
            if taken:
                self._delivered_late[message] -= 1
                self._delivered_late += Counter()  # drops the counts down to 0
            delivered.append(taken)
        sent = iter(await self._send([m for m, taken in zip(messages, delivered, strict=True) if not taken]))
        return [Outcome.DELIVERED if taken else next(sent) for taken in delivered]

    async def _connect(self) -> bool:
        # The producer's requests, its connections' set-up among them, get the delivery deadline but at least a
        # second: a shorter deadline bounds each send (_send) without failing every connect on a loaded host.
        producer = kafka.producer(self._settings,
                                  request_timeout_ms=max(self._delivery_timeout_ms, MIN_REQUEST_TIMEOUT_MS))
        try:
            await producer.start()
        except KafkaError as exc:
            self._kafka_failed(exc)
            await producer.stop()
            return False
        self._producer = producer
        return True

    def _set_queued(self, delta: int) -> None:
        self._queued += delta
        metrics.QUEUE_BYTES.labels(self._component).set(self._queued)
