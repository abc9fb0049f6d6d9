"""The Faust stream worker: ``raw.<source>`` topics → :class:`StreamProcessor` → ``events`` and ``alerts``.

Faust owns consumption, partition assignment across workers and offset commits (at-least-once: a message's
offset is committed after the agent finished with it). Values are moved as raw bytes: decoding happens in
the processor, so a malformed message becomes a dead letter instead of a crashed agent. Events keep the
raw message's key, so everything about one pod stays on one partition downstream too.

The state of windowed and sequence detections is a Faust table whose changelog is compacted in Kafka: a
restarted worker, or the one a partition moves to, reads it back before processing, so a sequence whose first
step was seen before the restart still completes after it. A pod's state lives in the changelog partition that
pairs with the raw partition its events arrive on. The engine writes the table only for events a windowed or
sequence detection observes. Open alerts and their recent hits (suppression) are a second table, written to the
partition of the events that opened each alert: a worker that takes over a partition folds the next repeats into
the alert the previous owner opened, and ignores the hits that owner counted but did not commit. Both are
:mod:`vigil.streams.tables`, whose changelog records the agent sends with a batch's outputs.

Throughput: Faust costs ~54 us per message it hands to an agent (FACTS.md), so the agent takes the messages
Kafka delivered in one go (up to :data:`BATCH_MESSAGES`, waiting at most :data:`BATCH_SECONDS` for more) and
processes them as one batch: the detection state is written once per key per batch, the events of each key
leave packed in one message however many messages of the batch carried the key (as the collectors pack records),
and the outputs and the tables' changelog records go straight to the producer instead of through Faust's
per-message send buffer. At least once still holds: the agent acks a batch's messages itself, only once Kafka has
acknowledged every output and changelog record of the batch, and Faust commits acked offsets only. A batch whose
outputs could not be sent, or that was cut short by a stop or rebalance, stays unacked and is read again.

Latency: aiokafka keeps one fetch in flight per broker, and leaves out of it the partitions whose fetched
records the agent has not taken yet. Those are the busy ones, so under load that fetch asks only for idle
partitions and the broker holds it for the fetch's maximum wait, while new records of the busy partitions wait
behind it. Faust hard-codes that wait at 1.5 s, which was most of the POST→alert latency of `vigil bench e2e`
(stalls of 1 to 1.5 s); the worker's consumer waits :data:`FETCH_MAX_WAIT_MS` instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from prometheus_client import Counter

from vigil import kafka
from vigil.config import Settings
from vigil.detections.engine import LIBRARY, Engine
from vigil.detections.state import StateStore
from vigil.detections.tuning import Tuning
from vigil.sources.source import SOURCES
from vigil.streams.processor import COMPONENT, ProcessedMessage, RawMessage, StreamProcessor
from vigil.streams.stall import StallWatch
from vigil.streams.tables import Changelog, RoutedTableStore, TableStore

log = logging.getLogger(__name__)

STALLS = Counter("vigil_stream_stalls_total",
                 "Times this worker restarted itself because a raw partition it holds stopped being processed")

HOUSEKEEPING_SECONDS = 5.0
#: How long the stall check waits for the raw partitions' end offsets.
OFFSETS_TIMEOUT_S = 5.0
#: How often the watermark is applied to windows and sequences (absences fire, expired state goes).
ADVANCE_SECONDS = 1.0
STATE_TABLE = "detection-state"
ALERTS_TABLE = "open-alerts"
#: Raw messages processed as one batch at most (each holds up to a collector flush of one key's records).
BATCH_MESSAGES = 500
#: How long the agent waits for a batch to fill before it processes what it has: latency added at low rates.
BATCH_SECONDS = 0.05
#: The longest the broker holds a fetch of the worker's consumer that found no new records (Faust: 1500 ms).
#: Costs an idle worker ten small fetch requests a second.
FETCH_MAX_WAIT_MS = 100


class ShortFetchWaitConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer with a fetch wait of :data:`FETCH_MAX_WAIT_MS` (see the module's docstring)."""

    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes no setting through; aiokafka reads this attribute when the consumer starts its fetcher.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class ShortFetchWaitConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ShortFetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's producer with idempotence on, as every vigil producer (``vigil.kafka.producer``): Faust enables it
    only inside transactions (exactly_once). Without it, a batch the producer re-sends after a partition leader
    failed (the first send written, its answer lost) is written twice: twice the events, rows stored twice."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class ShortFetchWaitTransport(faust_aiokafka.Transport):
    Consumer = ShortFetchWaitConsumer
    Producer = IdempotentProducer


class StreamsApp(faust.App):
    """The Faust app whose consumer uses :class:`ShortFetchWaitConsumer` and whose producer is idempotent."""

    def _new_transport(self) -> ShortFetchWaitTransport:
        return ShortFetchWaitTransport(self.conf.broker_consumer, self)


def configured_engine(settings: Settings, store: StateStore, alert_store: StateStore) -> Engine:
    """The bundled library and the deployment's own detections (e.g. a ConfigMap the Helm chart mounts), with
    its tuning, keeping state in ``store`` and open alerts in ``alert_store``."""
    extra = [path for path in settings.detections.path.split(os.pathsep) if path]
    return Engine.load([LIBRARY, *extra], store=store, alert_store=alert_store,
                       tuning=Tuning.load(settings.detections.config or None))


def create_app(settings: Settings, replication: kafka.Replication,
               engine_factory: Callable[[Settings, StateStore, StateStore], Engine] = configured_engine) -> faust.App:
    """The worker's app; the topics it creates itself (the state table's changelog, Faust's own) are replicated as
    ``replication`` says (what :func:`vigil.kafka.ensure_topics` returned)."""
    datadir = Path(settings.data_dir) / "streams"
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = StreamsApp(
        # The app id is the consumer group and the prefix of Faust's own topics: one per vigil deployment.
        f"{settings.kafka.topic_prefix}streams",
        broker=[f"kafka://{server}" for server in settings.kafka.bootstrap.split(",")],
        broker_credentials=kafka.faust_credentials(settings.kafka),
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        processing_guarantee="at_least_once",
        producer_compression_type=settings.kafka.compression or None,
        producer_max_request_size=settings.kafka.max_message_bytes,
        # Events batches are tens of KB: with aiokafka's 16 KB default every one would be its own batch, sent
        # one round trip after the other per partition (a few hundred messages/s in all).
        producer_max_batch_size=settings.kafka.max_batch_bytes,
        # No linger: the agent sends a batch's outputs without a wait in between, so they share Kafka batches
        # anyway.
        producer_linger=0.0,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka.stream_session_timeout_s,
        # No standby copies of other workers' partitions: the engine expires and evicts every key its tables hold,
        # and would do so for keys another worker owns (and write tombstones over that worker's entries). A worker
        # that takes a partition over reads its changelog partitions from the start instead (compacted, small).
        table_standby_replicas=0,
        topic_replication_factor=replication.factor,
        topic_partitions=settings.kafka.partitions,
    )
    state = app.Table(
        STATE_TABLE, key_type=bytes, value_type=bytes, partitions=settings.kafka.partitions, use_partitioner=True,
        extra_topic_configs=replication.topic_config,
    )
    open_alerts = app.Table(
        ALERTS_TABLE, key_type=bytes, value_type=bytes, partitions=settings.kafka.partitions, use_partitioner=True,
        extra_topic_configs=replication.topic_config,
    )
    changelog = Changelog()
    alert_store = RoutedTableStore(open_alerts, settings.kafka.partitions, changelog)
    state_store = TableStore(state, settings.kafka.partitions, changelog)
    processor = StreamProcessor(settings, engine_factory(settings, state_store, alert_store))
    raw = app.topic(*(settings.topic(f"raw.{s}") for s in SOURCES), key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    events_topic, alerts_topic = settings.topic("events"), settings.topic("alerts")
    deadletter_topic = settings.topic("deadletter")
    prefix_len = len(settings.topic("raw."))
    max_message_bytes = settings.kafka.max_message_bytes

    changelogs = [table.changelog_topic.get_topic_name() for table in (state, open_alerts)]

    everywhere = asyncio.Event()

    async def changelog_known() -> None:
        """Wait until the producer's metadata has the tables' changelogs. The changelog records name their
        partition, which aiokafka checks against that metadata, and before it is fetched a send fails; when Faust
        still partitioned the writes, its partitioner raised there (TypeError: 'NoneType' object is not iterable)
        and crashed the agent when the first write came right after a fresh start created the topic. On a cluster
        the first wait lasts until every broker knows the topic: a refresh from one that does not yet made the
        producer forget it again. The metadata can still lose the topic later (seen when a broker of the cluster
        died), so the agent asks before every batch: returns at once when the topic is known."""
        producer = app.producer._ensure_producer()
        for topic in changelogs:
            await producer.partitions_for(topic)
        if not everywhere.is_set():
            for topic in changelogs:
                await kafka.known_by_every_broker(producer.client, topic)
            everywhere.set()

    async def publish(outputs: list[tuple[str, bytes | None, bytes]]) -> None:
        """Send the tables' changelog records and (topic, key, value) outputs, and wait until Kafka has every one:
        the caller's input is done only then. Sent through the Faust app's own Kafka producer (it batches what is
        sent without a wait between)."""
        send = app.producer.send
        pending = [await send(topic, key, value, partition, None, None)
                   for topic, partition, key, value in changelog.take()]
        pending += [await send(topic, key, value, None, None, None) for topic, key, value in outputs]
        await asyncio.gather(*pending)

    def packed(messages: list[Any], processed: list[ProcessedMessage]) -> list[tuple[str, bytes | None, bytes]]:
        """A batch's outputs: the events of each key in as few messages as fit (one, almost always), however
        many of the batch's messages carried the key, as the collectors pack records; then alerts and dead
        letters. Kafka and the consumers pay per message, and a key's events stay in order on its partition."""
        events: dict[bytes | None, list[bytes]] = {}
        outputs: list[tuple[str, bytes | None, bytes]] = []
        for message, out in zip(messages, processed, strict=True):
            if out.events:
                events.setdefault(message.key, []).extend(out.events)
            outputs.extend((alerts_topic, alert.id.encode(), alert.to_json()) for alert in out.alerts)
            outputs.extend((deadletter_topic, message.key, record) for record in out.deadletters)
        packed_events = [(events_topic, key, value) for key, arrays in events.items()
                         for value in kafka.packed_arrays(arrays, max_message_bytes)]
        return packed_events + outputs

    @app.agent(raw)
    async def process(stream: faust.StreamT) -> None:
        # noack_take, not take_events: that one acks a batch in a `finally`, also when its processing failed.
        async for batch in stream.noack_take(BATCH_MESSAGES, within=BATCH_SECONDS):
            messages = [event.message for event in batch]
            await changelog_known()
            processed = processor.process_batch(
                [RawMessage(m.topic[prefix_len:], m.value, int(m.timestamp * 1e9)) for m in messages]
            )
            await publish(packed(messages, processed))
            for event in batch:
                await stream.ack(event)

    @app.timer(ADVANCE_SECONDS)
    async def advance() -> None:
        await changelog_known()
        await publish([(alerts_topic, alert.id.encode(), alert.to_json()) for alert in processor.advance()])

    stall_watch = StallWatch(settings.kafka.stream_stall_s)
    raw_topics = frozenset(raw.topics)

    @app.timer(HOUSEKEEPING_SECONDS)
    async def housekeeping() -> None:
        processor.engine.reload_if_changed()
        _export_lag(app)
        if stall_watch.after_s > 0:
            await _restart_if_stalled(app, stall_watch, raw_topics)

    return app


async def _restart_if_stalled(app: faust.App, watch: StallWatch, raw_topics: frozenset[str]) -> None:
    """Restart this worker in place when a raw partition it holds stopped being processed while records wait (see
    :mod:`vigil.streams.stall`): its successor process rejoins the group and reads from the committed offsets, so
    nothing is lost and what was processed but not committed is processed again (the writer drops the copies)."""
    consumer = app.consumer
    partitions = [tp for tp in consumer.assignment() if tp.topic in raw_topics]
    if not partitions:
        watch.stalled(time.monotonic(), {}, {})
        return
    ends = await _end_offsets(app, partitions)
    # Faust's record of the group's committed offsets: read from Kafka at assignment, then each commit's. None
    # before the group's first commit of the partition, which then is processed from its start.
    committed = {tp: consumer._committed_offset[tp] or 0 for tp in partitions}
    restored = _restored(app) if app.in_recovery else None
    stalled = watch.stalled(time.monotonic(), committed, ends, restored)
    if not stalled:
        return
    STALLS.inc()
    log.error("stream partitions stalled: restarting the worker", extra={
        "partitions": {f"{tp.topic}:{tp.partition}": {"committed": committed[tp], "end": ends.get(tp)}
                       for tp in stalled},
        "stalled_for_s": watch.after_s, "in_recovery": bool(app.in_recovery), "restored": restored,
    })
    logging.shutdown()
    os.execv(sys.executable, sys.orig_argv)


async def _end_offsets(app: faust.App, partitions: list[Any]) -> Mapping[Any, int]:
    """The partitions' end offsets from Kafka, or, when Kafka does not answer within OFFSETS_TIMEOUT_S (a leader
    moving), the last ones the fetches saw (Faust's monitor)."""
    try:
        return await asyncio.wait_for(app.consumer.highwaters(*partitions), timeout=OFFSETS_TIMEOUT_S)
    except Exception as exc:
        log.info("end offsets unavailable, using the last fetched", extra={"error": f"{type(exc).__name__}: {exc}"})
        seen = app.monitor.tp_end_offsets
        return {tp: seen[tp] for tp in partitions if tp in seen}


def _restored(app: faust.App) -> int:
    """How far the worker's restore of its tables has read their changelogs: grows while it reads."""
    recovery = app.tables.recovery
    return sum(recovery.active_offsets.values()) + sum(recovery.standby_offsets.values())


def _export_lag(app: faust.App) -> None:
    """Records behind the end of each raw topic, summed over this worker's partitions, from Faust's monitor."""
    monitor = app.monitor
    read = monitor.tp_read_offsets
    kafka.report_lag(COMPONENT, [(tp.topic, end, read.get(tp, -1) + 1) for tp, end in monitor.tp_end_offsets.items()])
