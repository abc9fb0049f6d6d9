"""``vigil bench store``: storage throughput and hunt latency, each next to a baseline from the same run.

1. Writer throughput: events go into Kafka first; then the storage writer (Kafka → ClickHouse, with its
   pending-range notes, tokens and commits) stores them, timed from the first stored row (joining the
   consumer group is start-up). The baseline inserts the same events straight with clickhouse-connect
   (Arrow, one insert per ``batch_rows``), once before and once after the writer, averaged. The figure is
   the ratio of the two rates.
2. Hunt latency: ten million events are generated inside ClickHouse (``INSERT … SELECT`` from ``numbers()``,
   with skewed namespaces, pods, kinds and programs), and every saved hunt runs on them several times;
   p50 and max per hunt are printed. The bench database and topics are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import clickhouse_connect
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from vigil import kafka
from vigil.config import Settings
from vigil.event import Actor, Event, K8sContext, Target
from vigil.storage.clickhouse import (
    STORED_EVENT_COLUMNS,
    ClickHouseStore,
    StoreError,
    arrow_table,
    connect,
    resolve_url,
)
from vigil.storage.hunts import load_hunts
from vigil.storage.schema import EVENT_MODEL_COLUMNS_DDL, EVENTS_DDL, migrate
from vigil.storage.writer import StorageWriter

#: Server-side generation of realistic events: a few busy namespaces and many quiet ones, 50 pods, mostly
#: API calls and process starts, 200 people with a few doing most of the work and one service account per
#: pod, one file open in a thousand on a credential, times spread evenly over the last 30 days.
GENERATE_SQL = """
INSERT INTO {db:Identifier}.events (event_id, time, ingest_time, source, kind, action, original_id, cluster, node,
    namespace, pod, image, actor_user, actor_source_ips, actor_user_agent, actor_pid, actor_ppid, actor_exe,
    actor_args, actor_parent_exe, target_resource, target_subresource, target_namespace, target_name,
    target_address, target_port, target_path, outcome_result, outcome_code, raw)
SELECT
    toString(number) AS event_id,
    now64(9) - toIntervalSecond(number % (30 * 86400)) AS time,
    time AS ingest_time,
    if(kind = 'k8s.api', 'k8s-audit', 'ebpf') AS source,
    ['k8s.api', 'k8s.api', 'k8s.api', 'process.exec', 'process.exec', 'net.connect', 'file.open']
        [1 + (intHash32(number) % 7)] AS kind,
    if(kind = 'k8s.api', ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'][1 + (number % 7)],
       splitByChar('.', kind)[2]) AS action,
    toString(intDiv(number, 2)) AS original_id,
    'prod' AS cluster,
    concat('node-', toString(number % 20)) AS node,
    concat('ns-', toString(toUInt32(pow(intHash32(number * 3) % 1000, 2) / 10000))) AS namespace,
    concat('pod-', toString(intHash32(number * 7) % 50)) AS pod,
    concat('registry/app-', toString(intHash32(number * 7) % 50 % 12), ':1.0') AS image,
    if(number % 5 = 0, concat('system:serviceaccount:', namespace, ':', pod),
       concat('user-', toString(toUInt32(pow(intHash32(number * 5) % 1000, 3) / 5e6)))) AS actor_user,
    [concat('10.0.', toString(number % 200), '.7')] AS actor_source_ips,
    'kubectl/v1.30' AS actor_user_agent,
    toUInt32(number % 30000) AS actor_pid,
    toUInt32((number % 30000) / 2) AS actor_ppid,
    ['/bin/sh', '/usr/bin/python', '/usr/bin/curl', '/app/server', '/bin/ls']
        [1 + (intHash32(number * 11) % 5)] AS actor_exe,
    [actor_exe, '-c', 'x'] AS actor_args,
    '/app/server' AS actor_parent_exe,
    ['pods', 'secrets', 'configmaps', 'clusterrolebindings', 'deployments'][1 + (intHash32(number * 13) % 5)]
        AS target_resource,
    if(number % 97 = 0, 'exec', '') AS target_subresource,
    namespace AS target_namespace,
    concat('obj-', toString(number % 500)) AS target_name,
    concat('203.0.113.', toString(intHash32(number) % 250)) AS target_address,
    toUInt16([443, 80, 4444, 5432][1 + (number % 4)]) AS target_port,
    if(number % 1000 = 0, ['/etc/shadow', '/var/run/secrets/kubernetes.io/serviceaccount/token'][1 + (number % 2)],
       concat('/usr/lib/python3/', toString(number % 997), '.py')) AS target_path,
    if(number % 13 = 0, 'denied', 'success') AS outcome_result,
    toInt32(if(number % 13 = 0, 403, 200)) AS outcome_code,
    concat('{"auditID":"', original_id, '","verb":"', action, '"}') AS raw
FROM numbers({rows:UInt64})
"""

#: Hunt parameters for the generated data: a busy namespace and pod, an identity that exists.
HUNT_VALUES = {"namespace": "ns-0", "pod": "pod-1", "user": "user-3"}


def run(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil bench store`` on a private topic prefix and database, both dropped at the end."""
    settings.kafka.topic_prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings.clickhouse.database = f"vigil_bench_{uuid.uuid4().hex[:8]}"
    try:
        store = connect(settings.clickhouse, data_dir=settings.data_dir)
    except StoreError as exc:
        print(f"vigil bench store: {exc}", file=sys.stderr)
        return 1
    try:
        migrate(store)
        writer_rate, raw_rate = asyncio.run(_throughput(settings, store, args.events))
        print(f"writer (Kafka → ClickHouse): {writer_rate:,.0f} rows/s; raw insert_arrow: {raw_rate:,.0f} rows/s; "
              f"ratio {writer_rate / raw_rate:.2f} (target ≥ 0.9)")
        store.command("TRUNCATE TABLE {db:Identifier}.events", {"db": store.database})
        _hunt_latency(store, args.rows, args.runs)
    except (StoreError, KafkaError) as exc:
        print(f"vigil bench store: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        _clean_up(settings, store)
    return 0


def _clean_up(settings: Settings, store: ClickHouseStore) -> None:
    """Drop the bench database and topics; what cannot be dropped now is named, for the operator."""
    try:
        store.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": store.database})
    except StoreError as exc:
        print(f"vigil bench store: could not drop database {store.database}: {exc}", file=sys.stderr)
    store.close()
    try:
        asyncio.run(_delete_topics(settings))
    except KafkaError as exc:
        print(f"vigil bench store: could not delete topics {settings.kafka.topic_prefix}*: {exc}", file=sys.stderr)


def bench_events(count: int) -> list[Event]:
    """Process events shaped like the real sensor's, spread over 50 pods."""
    now = time.time_ns()
    return [Event(id=f"bench-{i}", time_ns=now - i * 1000, source="ebpf", kind="process.exec", action="exec",
                  cluster="prod", node="node-1",
                  k8s=K8sContext(namespace=f"ns-{i % 7}", pod=f"pod-{i % 50}", image="registry/app:1.0"),
                  actor=Actor(pid=i % 30000, ppid=1, exe="/bin/sh", args=["sh", "-c", f"echo {i}"]),
                  target=Target(path="/etc/hosts"), raw={"n": i})
            for i in range(count)]


async def _throughput(settings: Settings, store: ClickHouseStore, count: int) -> tuple[float, float]:
    events = bench_events(count)
    await kafka.ensure_topics(settings, ["events", "alerts", "deadletter"])
    producer = kafka.producer(settings)
    await producer.start()
    try:
        chunk = 200  # envelopes per Kafka message, as the stream worker packs them
        for start in range(0, count, chunk):
            part = events[start:start + chunk]
            await producer.send(settings.topic("events"), kafka.encode_batch([e.to_dict() for e in part]),
                                key=part[0].correlation_key.encode())
        await producer.flush()
    finally:
        await producer.stop()

    # The baseline is measured before and after the writer, and averaged: the machine's load drifts.
    # The events table as its migrations build it, under another name: the baseline inserts what the writer does.
    for ddl in (EVENTS_DDL, EVENT_MODEL_COLUMNS_DDL):
        store.command(ddl.replace("{db:Identifier}.events", "{db:Identifier}.events_raw"), {"db": store.database})
    raw_seconds = _raw_insert_seconds(settings, events)
    store.command("TRUNCATE TABLE {db:Identifier}.events_raw", {"db": store.database})

    stop = asyncio.Event()
    writer_store = connect(settings.clickhouse, data_dir=settings.data_dir)  # a client runs one query at once
    task = asyncio.create_task(StorageWriter(settings, writer_store).run(stop))
    # Timed from the first stored row: joining the consumer group is start-up, not throughput.
    first_rows, started = 0, 0.0
    while (stored := _count(store, "events")) < count:
        if task.done():
            task.result()
        if not first_rows and stored:
            first_rows, started = stored, time.perf_counter()
        await asyncio.sleep(0.02)
    writer_seconds = time.perf_counter() - started
    stop.set()
    await task
    writer_store.close()

    raw_seconds = (raw_seconds + _raw_insert_seconds(settings, events)) / 2
    return (count - first_rows) / writer_seconds, count / raw_seconds


def _raw_insert_seconds(settings: Settings, events: list[Event]) -> float:
    """The baseline: the same events as Arrow, straight into a copy of the table, ``batch_rows`` at a time."""
    ch = settings.clickhouse
    client = clickhouse_connect.get_client(dsn=resolve_url(ch, settings.data_dir), username=ch.username,
                                           password=str(ch.password))
    try:
        started = time.perf_counter()
        for start in range(0, len(events), ch.batch_rows):
            client.insert_arrow("events_raw", arrow_table(STORED_EVENT_COLUMNS, events[start:start + ch.batch_rows]),
                                database=ch.database)
        return time.perf_counter() - started
    finally:
        client.close()


def _count(store: ClickHouseStore, table: str) -> int:
    return store.query(f"SELECT count() FROM {table}").result_rows[0][0]


def _hunt_latency(store: ClickHouseStore, rows: int, runs: int) -> None:
    started = time.perf_counter()
    store.command(GENERATE_SQL, {"db": store.database, "rows": rows})
    print(f"generated {rows:,} events server-side in {time.perf_counter() - started:.1f} s")
    since = datetime.now(UTC) - timedelta(days=1)
    medians = []
    for hunt in load_hunts().values():
        parameters = hunt.bind({k: v for k, v in HUNT_VALUES.items() if k in {p.name for p in hunt.params}}, since)
        timings = []
        for _ in range(runs):
            begun = time.perf_counter()
            store.query_raw(hunt.sql, parameters, "JSONEachRow")
            timings.append(time.perf_counter() - begun)
        medians.append(statistics.median(timings))
        print(f"  {hunt.name:<25} p50 {statistics.median(timings) * 1000:7.0f} ms   max {max(timings) * 1000:7.0f} ms")
    print(f"hunts over {rows:,} events: p50 of medians {statistics.median(medians) * 1000:.0f} ms, "
          f"slowest median {max(medians) * 1000:.0f} ms (target p50 < 1 s)")
    sys.stdout.flush()


async def _delete_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_options(settings.kafka))
    await admin.start()
    try:
        await admin.delete_topics([settings.topic(name) for name in ("events", "alerts", "deadletter")])
    finally:
        await admin.close()
