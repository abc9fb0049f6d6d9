"""The Faust stream worker: ``raw.<source>`` topics → :class:`StreamProcessor` → ``events`` and ``alerts``.

Faust owns consumption, partition assignment across workers and offset commits (at-least-once: a message's
offset is committed after the agent finished with it). Values are moved as raw bytes: decoding happens in
the processor, so a malformed message becomes a dead letter instead of a crashed agent. Events keep the
raw message's key, so everything about one pod stays on one partition downstream too.
"""

from __future__ import annotations

from collections.abc import Callable

import faust

from collectors.source import SOURCES
from detections.engine import Engine
from streams.processor import COMPONENT, StreamProcessor
from vigil import kafka, metrics
from vigil.config import Settings

HOUSEKEEPING_SECONDS = 5.0


def create_app(settings: Settings, engine_factory: Callable[[], Engine] = Engine.load) -> faust.App:
    app = faust.App(
        # The app id is the consumer group and the prefix of Faust's own topics: one per vigil deployment.
        f"{settings.kafka.topic_prefix}streams",
        broker=[f"kafka://{server}" for server in settings.kafka.bootstrap.split(",")],
        broker_credentials=kafka.faust_credentials(settings.kafka),
        store="memory://",
        datadir=f"{settings.data_dir}/streams",
        web_enabled=False,
        processing_guarantee="at_least_once",
        producer_compression_type=settings.kafka.compression or None,
        producer_max_request_size=settings.kafka.max_message_bytes,
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
        topic_partitions=kafka.TOPICS["events"],
    )
    processor = StreamProcessor(settings, engine_factory())
    raw = app.topic(*(settings.topic(f"raw.{s}") for s in SOURCES), key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    events = app.topic(settings.topic("events"), key_serializer="raw", value_serializer="raw")
    alerts = app.topic(settings.topic("alerts"), key_serializer="raw", value_serializer="raw")
    deadletter = app.topic(settings.topic("deadletter"), key_serializer="raw", value_serializer="raw")
    prefix_len = len(settings.topic("raw."))

    @app.agent(raw)
    async def process(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            out = processor.process(message.topic[prefix_len:], message.value, int(message.timestamp * 1e9))
            if out.events:
                await events.send(key=message.key, value=out.events)
            for alert in out.alerts:
                await alerts.send(key=alert.id.encode(), value=alert.to_json())
            for record in out.deadletters:
                await deadletter.send(key=message.key, value=record)

    @app.timer(HOUSEKEEPING_SECONDS)
    async def housekeeping() -> None:
        processor.engine.reload_if_changed()
        _export_lag(app)

    return app


def _export_lag(app: faust.App) -> None:
    """Records behind the end of each raw topic, summed over this worker's partitions, from Faust's monitor."""
    lag: dict[str, int] = {}
    monitor = app.monitor
    for tp, end in monitor.tp_end_offsets.items():
        read = monitor.tp_read_offsets.get(tp, -1)
        lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end - read - 1)
    for topic, records in lag.items():
        metrics.CONSUMER_LAG.labels(COMPONENT, topic).set(records)
