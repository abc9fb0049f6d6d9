"""The storage writer on the real dev stack: Kafka topics in, ClickHouse rows out, offsets committed after."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from tests.integration.harness import wait_for
from vigil import kafka
from vigil.alert import Alert
from vigil.config import Settings
from vigil.event import Event, K8sContext
from vigil.storage.clickhouse import ClickHouseStore, connect
from vigil.storage.schema import migrate
from vigil.storage.writer import GROUP_ID, PENDING, StorageWriter, run_writer

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000_000_000


class Crash(Exception):
    """Stands for the process dying."""


class CrashAfterInsert:
    """The real store, except that the process "dies" right after ClickHouse acknowledged an insert."""

    def __init__(self, store: ClickHouseStore) -> None:
        self._store = store

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def insert_columns(self, table, values, dedup_token):
        self._store.insert_columns(table, values, dedup_token)
        raise Crash("after the insert, before the commit")


@pytest.fixture
async def writer_settings(kafka_settings: Settings) -> AsyncIterator[Settings]:
    """This test's own topics and database; the database is migrated, its merges stopped, and dropped after.

    With merges stopped, a duplicate row stays visible to count() instead of being collapsed by the
    ReplacingMergeTree, so the tests see exactly what the writer inserted.
    """
    kafka_settings.clickhouse.database = f"test_{uuid.uuid4().hex[:10]}"
    kafka_settings.clickhouse.batch_seconds = 0.2
    store = connect(kafka_settings.clickhouse)
    migrate(store)
    for table in ("events", "alerts"):
        store.command(f"SYSTEM STOP MERGES {{db:Identifier}}.{table}", {"db": store.database})
    yield kafka_settings
    store.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": store.database})
    store.close()


def event(n: int, **k8s: str) -> dict:
    return Event(id=f"ev-{n}", time_ns=T0 + n, source="k8s-audit", kind="k8s.api", action="get",
                 original_id=f"audit-{n}", cluster="it", k8s=K8sContext(**({"namespace": "shop"} | k8s)),
                 raw={"n": n}).to_dict()


def alert(n: int) -> bytes:
    return Alert(detection="k8s.exec_into_pod", title="Shell in pod", severity="high", time_ns=T0 + n,
                 dedup_key=f"key-{n}", evidence=[f"audit-{n}"]).to_json()


async def produce(settings: Settings, topic: str, values: list[bytes], partition: int | None = None) -> None:
    sender = kafka.producer(settings)
    await sender.start()
    try:
        for value in values:
            await sender.send_and_wait(settings.topic(topic), value, partition=partition)
    finally:
        await sender.stop()


async def committed(settings: Settings, topic: str, partition: int = 0, group_id: str = GROUP_ID) -> tuple[int, str]:
    admin = AIOKafkaAdminClient(**kafka.client_options(settings.kafka))
    await admin.start()
    try:
        tp = TopicPartition(settings.topic(topic), partition)
        offsets = await admin.list_consumer_group_offsets(group_id, partitions=[tp])
    finally:
        await admin.close()
    return (offsets[tp].offset, offsets[tp].metadata) if tp in offsets else (-1, "")


async def wait_committed(settings: Settings, topic: str, offset: int, partition: int = 0,
                         group_id: str = GROUP_ID) -> None:
    """Wait until the writer's group committed ``offset`` (with no pending range noted) on the partition."""

    async def reached() -> bool:
        return await committed(settings, topic, partition, group_id) == (offset, "")

    await wait_for(reached, timeout=120)


async def read_all(settings: Settings, topic: str) -> list[dict]:
    """Every message on a one-partition topic, from the beginning to the current end."""
    reader = kafka.consumer(settings, group_id=None)
    await reader.start()
    try:
        tp = TopicPartition(settings.topic(topic), 0)
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        end = (await reader.end_offsets([tp]))[tp]
        found: list[dict] = []
        while await reader.position(tp) < end:
            found += [orjson.loads(m.value) for m in (await reader.getmany(tp, timeout_ms=500)).get(tp, [])]
        return found
    finally:
        await reader.stop()


def rows(settings: Settings, sql: str) -> list[tuple]:
    store = connect(settings.clickhouse)
    try:
        return store.query(sql).result_rows
    finally:
        store.close()


async def stop_writer(task: asyncio.Task, stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(task, timeout=60)


async def test_events_and_alerts_become_rows_and_offsets_are_committed(writer_settings: Settings) -> None:
    settings = writer_settings
    await produce(settings, "events", [kafka.encode_batch([event(n) for n in range(i * 4, i * 4 + 4)])
                                       for i in range(3)], partition=1)
    await produce(settings, "alerts", [alert(1), alert(2)], partition=0)
    stop = asyncio.Event()
    task = asyncio.create_task(run_writer(settings, stop))
    try:
        await wait_for(lambda: rows(settings, "SELECT count() FROM events")[0][0] >= 12, timeout=90)
        await wait_for(lambda: rows(settings, "SELECT count() FROM alerts")[0][0] >= 2, timeout=60)
        await wait_committed(settings, "events", 3, partition=1)
        await wait_committed(settings, "alerts", 2)
    finally:
        await stop_writer(task, stop)
    assert rows(settings, "SELECT event_id, namespace, raw FROM events ORDER BY time LIMIT 1") == [
        ("ev-0", "shop", '{"n":0}')
    ]
    assert rows(settings, "SELECT count(), uniqExact(event_id) FROM events") == [(12, 12)]
    assert rows(settings, "SELECT count(), groupArraySorted(10)(dedup_key) FROM alerts") == [(2, ["key-1", "key-2"])]


def duplicates_dropped() -> float:
    return REGISTRY.get_sample_value("vigil_events_duplicates_dropped_total") or 0.0


async def test_events_a_worker_sends_again_are_stored_once(writer_settings: Settings) -> None:
    """A stream worker that reprocesses uncommitted raw messages after a rebalance sends their events again, in
    later messages of the same partition and packed differently: the writer stores each id once."""
    settings = writer_settings
    dropped_before = duplicates_dropped()
    stop = asyncio.Event()
    task = asyncio.create_task(run_writer(settings, stop))
    try:
        await produce(settings, "events", [kafka.encode_batch([event(n) for n in range(0, 6)])], partition=2)
        await wait_committed(settings, "events", 1, partition=2)  # stored and committed: a flush of its own
        # The reprocessed batch: the last three events again, then new ones, a copy of one inside the message.
        again = [event(n) for n in (3, 4, 5, 6, 7, 7, 8)]
        await produce(settings, "events", [kafka.encode_batch(again[:3]), kafka.encode_batch(again[3:])],
                      partition=2)
        await wait_committed(settings, "events", 3, partition=2)
    finally:
        await stop_writer(task, stop)
    assert rows(settings, "SELECT count(), uniqExact(event_id) FROM events") == [(9, 9)]
    assert duplicates_dropped() - dropped_before == 4


@pytest.mark.parametrize("group_id", [GROUP_ID, "another-deployment-writer"])
async def test_crash_between_insert_and_commit_stores_no_duplicates(writer_settings: Settings, group_id: str) -> None:
    settings = writer_settings
    first = [kafka.encode_batch([event(n)]) for n in range(5)]
    await produce(settings, "events", first, partition=0)

    store = connect(settings.clickhouse)
    try:
        with pytest.raises(Crash):
            writer = StorageWriter(settings, CrashAfterInsert(store), group_id=group_id)
            await asyncio.wait_for(writer.run(asyncio.Event()), 90)
    finally:
        store.close()
    inserted = rows(settings, "SELECT count() FROM events")[0][0]
    assert inserted >= 1
    # Nothing was committed past the batch, but the range being stored was noted, in the writer's own group.
    offset, metadata = await committed(settings, "events", group_id=group_id)
    assert offset == 0 and metadata == f"{PENDING}{inserted - 1}"
    if group_id != GROUP_ID:
        assert await committed(settings, "events") == (-1, "")

    # More records arrive before the restart, and the restarted writer flushes at 2 rows: the re-read must
    # still re-form exactly the crashed batch.
    await produce(settings, "events", [kafka.encode_batch([event(n)]) for n in range(5, 8)], partition=0)
    settings.clickhouse.batch_rows = 2
    stop = asyncio.Event()
    task = asyncio.create_task(run_writer(settings, stop, group_id=group_id))
    try:
        await wait_committed(settings, "events", 8, group_id=group_id)
    finally:
        await stop_writer(task, stop)
    assert rows(settings, "SELECT count(), uniqExact(event_id) FROM events") == [(8, 8)]


async def produce_until(settings: Settings, stop: asyncio.Event) -> dict[TopicPartition, int]:
    """One event a message, round-robin over the (new) events topic's partitions, every 10 ms until ``stop``;
    returns each partition's end offset."""
    sender = kafka.producer(settings)
    await sender.start()
    topic = settings.topic("events")
    try:
        ends = dict.fromkeys((TopicPartition(topic, p) for p in sorted(await sender.partitions_for(topic))), 0)
        partitions, sent = list(ends), 0
        while not stop.is_set():
            tp = partitions[sent % len(partitions)]
            await sender.send_and_wait(topic, kafka.encode_batch([event(sent)]), partition=tp.partition)
            ends[tp] += 1
            sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.01)
    finally:
        await sender.stop()
    return ends


async def caught_up(settings: Settings, group_id: str, ends: dict[TopicPartition, int]) -> bool:
    """Whether the group committed every events partition up to its end, with no pending range noted."""
    return all([await committed(settings, "events", tp.partition, group_id) == (end, "") for tp, end in ends.items()])


async def join_and_leave(settings: Settings, group_id: str) -> None:
    """Another member joins the writer's group (for a topic of its own) and leaves again: two rebalances, each
    revoking all of the writer's partitions and assigning them back."""
    member = kafka.consumer(settings, settings.topic("deadletter"), group_id=group_id)
    await member.start()
    try:
        await wait_for(lambda: member.assignment(), timeout=60)
    finally:
        await member.stop()


async def test_rebalances_while_records_arrive_lose_nothing(writer_settings: Settings) -> None:
    """Records fetched across a rebalance belong to no batch any more (their partition was revoked meanwhile),
    and Kafka may already count them as read under the new assignment: the writer must read them again, from
    the committed offset, and not go on after them (seen in a soak: a rebalance skipped 2,000 messages)."""
    settings = writer_settings
    settings.clickhouse.batch_seconds = 0.3
    group_id = f"{settings.kafka.topic_prefix}writer"
    stop, stop_sending = asyncio.Event(), asyncio.Event()
    writer = asyncio.create_task(run_writer(settings, stop, group_id=group_id))
    sending = asyncio.create_task(produce_until(settings, stop_sending))
    try:
        await wait_for(lambda: rows(settings, "SELECT count() FROM events")[0][0] > 0, timeout=90)
        for _ in range(6):
            await join_and_leave(settings, group_id)
        stop_sending.set()
        ends = await sending
        await wait_for(lambda: caught_up(settings, group_id, ends), timeout=120)
    finally:
        stop_sending.set()
        await stop_writer(writer, stop)
    sent = sum(ends.values())
    assert sent > 100
    assert rows(settings, "SELECT uniqExact(event_id) FROM events") == [(sent,)]


async def test_undecodable_and_refused_records_go_to_the_dead_letter_topic(writer_settings: Settings) -> None:
    settings = writer_settings
    bad_pod = event(2) | {"k8s": event(2)["k8s"] | {"pod": 17}}  # JSON, but pod is not text: not an event
    bad_port = event(3) | {"target": {"port": 70_000}}  # an event, but its port does not fit the column
    await produce(settings, "events", [b"not json", kafka.encode_batch([event(1), {"id": "no-time"}, bad_pod,
                                                                        bad_port])], partition=0)
    bad_severity = orjson.loads(alert(3)) | {"severity": "urgent"}
    await produce(settings, "alerts", [orjson.dumps(bad_severity), b"[1, 2]", alert(4)], partition=0)
    stop = asyncio.Event()
    task = asyncio.create_task(run_writer(settings, stop))
    try:
        await wait_committed(settings, "events", 2)  # dead letters are sent before the commit
        await wait_committed(settings, "alerts", 3)
        letters = await read_all(settings, "deadletter")
    finally:
        await stop_writer(task, stop)
    assert sorted((d["source"], d["reason"]) for d in letters) == [
        ("alerts", "invalid_alert"), ("alerts", "undecodable"),
        ("events", "invalid_event"), ("events", "invalid_event"), ("events", "invalid_row"), ("events", "undecodable"),
    ]
    assert {d["component"] for d in letters} == {"storage-writer"}
    [undecodable] = [d for d in letters if d["source"] == "events" and d["reason"] == "undecodable"]
    assert undecodable["raw"] == "not json"
    invalid = [d for d in letters if d["reason"] == "invalid_event"]
    assert any("$.k8s.pod" in d["detail"] and orjson.loads(d["raw"])["k8s"]["pod"] == 17 for d in invalid)
    [row] = [d for d in letters if d["reason"] == "invalid_row"]
    assert orjson.loads(row["raw"])["target"]["port"] == 70_000
    assert row["detail"].startswith("column target_port:")
    assert rows(settings, "SELECT event_id FROM events") == [("ev-1",)]
    assert rows(settings, "SELECT count() FROM alerts") == [(1,)]


def insert_failures() -> float:
    return REGISTRY.get_sample_value("vigil_clickhouse_errors_total", {"operation": "insert_events"}) or 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateClickHouse:
    """A ClickHouse server of this test's own (same engine as the dev stack's), so it can be stopped."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.http_port, self.tcp_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vigil.devstack.clickhouse_server", "--dir", str(self.home),
             "--http-port", str(self.http_port), "--tcp-port", str(self.tcp_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not _listening(self.http_port):
            assert self.process.poll() is None and time.monotonic() < deadline, "private ClickHouse did not start"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def private_clickhouse(tmp_path: Path) -> Iterator[PrivateClickHouse]:
    server = PrivateClickHouse(tmp_path / "clickhouse")
    server.start()
    yield server
    server.stop()


async def test_clickhouse_outage_loses_nothing(kafka_settings: Settings, private_clickhouse) -> None:
    settings = kafka_settings
    settings.clickhouse.url = private_clickhouse.url
    settings.clickhouse.batch_seconds = 0.2
    await produce(settings, "events", [kafka.encode_batch([event(n) for n in range(3)])], partition=0)
    stop = asyncio.Event()
    task = asyncio.create_task(run_writer(settings, stop))
    try:
        await wait_committed(settings, "events", 1)
        private_clickhouse.stop()
        failures = insert_failures()
        await produce(settings, "events", [kafka.encode_batch([event(n) for n in range(3, 7)])], partition=0)
        await wait_for(lambda: insert_failures() > failures + 1, timeout=60)
        offset, metadata = await committed(settings, "events")
        assert (offset, metadata) == (1, f"{PENDING}1")  # the failed batch is noted, not committed
        private_clickhouse.start()
        await wait_committed(settings, "events", 2)
    finally:
        await stop_writer(task, stop)
    assert rows(settings, "SELECT count(), uniqExact(event_id) FROM events") == [(7, 7)]


def received_events(metrics_port: int) -> float:
    """``vigil_records_received_total`` for the writer's events, scraped from the process's /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0.0  # not listening yet
    prefix = 'vigil_records_received_total{component="storage-writer",source="events"} '
    return sum(float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix))


async def test_sigterm_flushes_and_commits(writer_settings: Settings, tmp_path: Path) -> None:
    """``vigil store`` as it runs in production: a batch still accumulating is stored and committed on SIGTERM."""
    settings = writer_settings
    metrics_port = _free_port()
    env = os.environ | {
        "VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "VIGIL_CLICKHOUSE_URL": settings.clickhouse.url,
        "VIGIL_CLICKHOUSE_DATABASE": settings.clickhouse.database,
        "VIGIL_CLICKHOUSE_BATCH_SECONDS": "600",  # nothing is flushed by time or size before the signal
        "VIGIL_CLICKHOUSE_BATCH_ROWS": "1000000",
        "VIGIL_METRICS_PORT": str(metrics_port),
        "VIGIL_DATA_DIR": settings.data_dir,
    }
    await produce(settings, "events", [kafka.encode_batch([event(n), event(n + 100)]) for n in range(4)], partition=0)
    log = tmp_path / "writer.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(Path(sys.executable).with_name("vigil")), "store"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        await wait_for(lambda: received_events(metrics_port) >= 4, timeout=120)
        assert rows(settings, "SELECT count() FROM events") == [(0,)]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    assert rows(settings, "SELECT count(), uniqExact(event_id) FROM events") == [(8, 8)]
    assert await committed(settings, "events") == (4, "")
    assert "Traceback" not in log.read_text()
