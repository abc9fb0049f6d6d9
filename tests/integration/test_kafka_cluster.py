"""A 3-broker Kafka cluster losing the broker that leads the stream's partitions, in the middle of a stream.

The cluster is the project's own (``vigil dev up --kafka-brokers 3``), in a run dir and on ports of its own (with
the dev stack's ClickHouse of that run dir), never the shared dev stack. The real pipeline runs on it: the audit
webhook collector in this process, the stream worker and the storage writer as the processes they are in
production. Half-way through the stream the broker leading the most of the raw, events and alerts partitions is
killed with SIGKILL. Kafka keeps 3 copies with 2 in sync and every producer waits for all in-sync copies
(acks=all, idempotent), so every record posted must be stored once, and every alert raised once.

Failover is measured twice: Kafka's (kill → every partition the dead broker led has a live leader) and the
pipeline's (kill → the rows of the batch posted just after the kill are in ClickHouse). The test prints both.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import clickhouse_connect
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from tests.integration.harness import SAMPLES, RunningCollector, free_port, wait_for
from vigil import devstack, kafka
from vigil.config import Settings, load_settings
from vigil.detections.engine import Engine
from vigil.detections.replay import Replay
from vigil.devstack.kafka_broker import KafkaBroker, kafka_brokers
from vigil.devstack.ports import is_listening
from vigil.sources.source import get_source
from vigil.storage.writer import GROUP_ID

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

BATCHES = 40
BATCH_EVENTS = 50
#: The alerts each batch raises once: an exec into its own pod, and a privileged pod of its own.
PER_BATCH_ALERTS = ("k8s.exec_into_pod", "k8s.privileged_container")
#: What log lines repeated a few times a second while the killed broker is away say: left out of the logs printed.
_NOISE = ('"msg":"Unable connect to node', '"msg":"Failed fetch messages from')
_LIST, _, _EXEC, _PRIVILEGED_POD, _ = (orjson.loads(line) for line in SAMPLES.read_bytes().splitlines())


@pytest.fixture
def directory() -> Iterator[Path]:
    """A directory of the test's own that outlives it: pytest prunes old tmp_path directories when other sessions
    start, and one gone during the test would leave its servers running with no PID files to stop them by."""
    path = Path(tempfile.mkdtemp(prefix="vigil-kafka-cluster-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cluster(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A dev stack of 3 Kafka brokers and a ClickHouse on free ports, in a run dir of its own; settings whose
    bootstrap lists every broker."""
    monkeypatch.setenv("VIGIL_DEV_DIR", str(directory / "dev"))
    monkeypatch.delenv("VIGIL_CLICKHOUSE_URL", raising=False)
    monkeypatch.setenv("VIGIL_DEV_CLICKHOUSE_TCP_PORT", str(free_port()))
    settings = load_settings()
    settings.data_dir = str(directory / "data")
    settings.cluster = "failover"
    settings.kafka.bootstrap = f"127.0.0.1:{_free_port_run(6)}"
    settings.clickhouse.url = f"http://127.0.0.1:{free_port()}"
    settings.clickhouse.database = f"test_{uuid.uuid4().hex[:10]}"
    settings.collector.webhook_port = free_port()
    try:
        devstack.up(settings, kafka_brokers=3)
        settings.kafka.bootstrap = kafka_brokers(settings, devstack.run_dir(settings))[0].bootstrap
        yield settings
    finally:
        devstack.down(settings, grace=10)


@pytest.fixture
def pipeline(cluster: Settings, directory: Path) -> Iterator[Settings]:
    """The stream worker and the storage writer on the cluster, as separate processes; their logs are printed
    at the end."""
    logs = directory / "logs"
    logs.mkdir()
    env = os.environ | {
        "VIGIL_KAFKA_BOOTSTRAP": cluster.kafka.bootstrap,
        "VIGIL_CLICKHOUSE_URL": cluster.clickhouse.url,
        "VIGIL_CLICKHOUSE_DATABASE": cluster.clickhouse.database,
        "VIGIL_DATA_DIR": cluster.data_dir,
        "VIGIL_CLUSTER": cluster.cluster,
    }
    processes = []
    for name, command in (("worker", ["stream", "worker"]), ("writer", ["store"])):
        with open(logs / f"{name}.log", "wb") as out:
            # The interpreter running the tests, not a console script: it runs this checkout's code.
            processes.append(subprocess.Popen([sys.executable, "-m", "vigil.cli", *command], stdout=out,
                                              stderr=subprocess.STDOUT, start_new_session=True,
                                              env=env | {"VIGIL_METRICS_PORT": str(free_port())}))
    try:
        yield cluster
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in sorted(logs.iterdir()):
            lines = [line for line in log.read_text(errors="replace").splitlines()
                     if not any(noise in line for noise in _NOISE)]
            sys.stderr.write(f"--- {log.name}, without aiokafka's retries of the dead broker\n")
            sys.stderr.write("\n".join(lines)[-12000:] + "\n")


async def test_killing_the_leading_broker_mid_stream_loses_and_doubles_nothing(pipeline: Settings, tmp_path: Path):
    settings = pipeline
    run = uuid.uuid4().hex[:8]
    batches = [_batch(run, number) for number in range(BATCHES)]
    expected_alerts = _expected_alerts(batches, tmp_path)
    assert len(expected_alerts) == len(PER_BATCH_ALERTS) * BATCHES, "the stream does not raise what it should"
    store = _clickhouse(settings)
    half = BATCHES // 2

    async with RunningCollector(settings, webhook=True, files=[]), aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{settings.collector.webhook_port}/audit"
        await _post(session, url, batches[0])
        # The pipeline is up (the worker joined its group, the writer created its tables) once a batch is stored.
        await wait_for(lambda: _stored(store, settings, batches[:1]), timeout=180)
        for batch in batches[1:half]:
            await _post(session, url, batch)

        victim, led = await _leading_broker(settings)
        os.kill(victim.process.pid(), signal.SIGKILL)
        killed = time.monotonic()
        # Watched while the second half is posted: either may come first.
        moved = asyncio.create_task(_seconds_until(lambda: _leaders_moved(settings, victim.node_id, led), killed))
        flowing = asyncio.create_task(_seconds_until(lambda: _stored(store, settings, batches[half:half + 1]), killed))
        for batch in batches[half:]:
            await _post(session, url, batch)
        posted = time.monotonic() - killed
        try:
            kafka_failover, pipeline_failover = await moved, await flowing
            await wait_for(lambda: _stored(store, settings, batches), timeout=300)
        except AssertionError as stuck:
            flowing.cancel()
            raise AssertionError(f"{stuck}; {await _where_it_stands(settings)}") from stuck
        drained = time.monotonic() - killed

    audit_ids = [event["auditID"] for batch in batches for event in batch]
    rows = dict(store.query(f"SELECT original_id, count() FROM {settings.clickhouse.database}.events "
                            f"WHERE original_id LIKE '{run}-%' GROUP BY original_id").result_rows)
    alerts = await wait_for(lambda: (found := _stored_alerts(store, settings, run)).keys() >= expected_alerts
                            and found, timeout=120)
    print(f"\nkafka cluster failover: killed kafka-{victim.node_id} (leader of {len(led)} of the stream's "
          f"partitions) after {half} of {BATCHES} batches; every partition it led had a new leader after "
          f"{kafka_failover:.1f} s; the first batch posted after the kill was stored after {pipeline_failover:.1f} s; "
          f"all {len(audit_ids)} events after {drained:.1f} s (posting the second half took {posted:.1f} s); "
          f"{sum(rows.values())} event rows for {len(rows)} events, {sum(alerts.values())} rows for "
          f"{len(alerts)} alerts")
    assert sorted(rows) == sorted(audit_ids), "lost events"
    assert {audit_id: count for audit_id, count in rows.items() if count != 1} == {}, "events stored twice"
    assert set(alerts) == expected_alerts
    assert {alert: count for alert, count in alerts.items() if count != 1} == {}, "alerts stored twice"


def _stored_alerts(store, settings: Settings, run: str) -> Counter:
    """Rows of the per-batch alerts of this run, by (detection, pod); no FINAL: every row stored counts."""
    return Counter(store.query(
        f"SELECT detection, pod FROM {settings.clickhouse.database}.alerts "
        f"WHERE detection IN {PER_BATCH_ALERTS} AND pod LIKE '%-{run}-%'").result_rows)


async def _seconds_until(predicate, since: float) -> float:
    """Seconds from ``since`` until ``predicate`` holds (polled every 0.1 s, for at most 3 minutes)."""
    await wait_for(predicate, timeout=180, interval=0.1)
    return time.monotonic() - since


async def _where_it_stands(settings: Settings) -> str:
    """For a failure: what the collector holds in its spool, and how far behind the worker's and the writer's
    groups are on the raw and events topics."""
    spooled = REGISTRY.get_sample_value("vigil_spool_bytes", {"component": "audit-collector"})
    admin = AIOKafkaAdminClient(**kafka.client_options(settings.kafka))
    reader = kafka.consumer(settings, group_id=None)
    await admin.start()
    await reader.start()
    try:
        behind = {}
        for group, topic in ((f"{settings.kafka.topic_prefix}streams", "raw.k8s-audit"),
                             (GROUP_ID, "events")):
            committed = await admin.list_consumer_group_offsets(group)
            partitions = [p for p in committed if p.topic == settings.topic(topic)]
            ends = await reader.end_offsets(partitions)
            behind[group] = {p.partition: ends[p] - committed[p].offset for p in partitions
                             if ends[p] > committed[p].offset}
    finally:
        await reader.stop()
        await admin.close()
    return f"collector spool {spooled:.0f} bytes; records behind per partition: {behind}"


def _batch(run: str, number: int) -> list[dict]:
    """One webhook post: an exec into a pod of its own, a privileged pod of its own, and list requests spread
    over namespaces (so over every partition); unique audit ids, stamped now."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    exec_pod, debug_pod = f"web-{run}-{number}", f"debug-{run}-{number}"
    exec_event = orjson.loads(orjson.dumps(_EXEC))
    exec_event["objectRef"]["name"] = exec_pod
    exec_event["requestURI"] = exec_event["requestURI"].replace("/web-7d9f/", f"/{exec_pod}/")
    privileged = orjson.loads(orjson.dumps(_PRIVILEGED_POD))
    privileged["objectRef"]["name"] = privileged["requestObject"]["metadata"]["name"] = debug_pod
    events = [exec_event, privileged]
    for index in range(BATCH_EVENTS - len(events)):
        listing = orjson.loads(orjson.dumps(_LIST))
        namespace = f"team-{index % 12}"
        listing["objectRef"]["namespace"] = namespace
        listing["requestURI"] = f"/api/v1/namespaces/{namespace}/pods?limit=500"
        events.append(listing)
    for index, event in enumerate(events):
        event["auditID"] = f"{run}-{number:04d}-{index:04d}"
        event["requestReceivedTimestamp"] = event["stageTimestamp"] = now
    return events


def _expected_alerts(batches: list[list[dict]], directory: Path) -> set[tuple[str, str]]:
    """The per-batch alerts the library raises on the stream, replayed in this process."""
    stream = directory / "stream.jsonl"
    stream.write_bytes(b"".join(orjson.dumps(event) + b"\n" for batch in batches for event in batch))
    replay = Replay(get_source("k8s-audit"), Engine.load(), cluster="failover", node="n", max_record_bytes=1 << 20)
    return {(alert.detection, alert.pod) for alert in replay.run([stream]).alerts.values()
            if alert.detection in PER_BATCH_ALERTS}


async def _post(session: aiohttp.ClientSession, url: str, events: list[dict]) -> None:
    body = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": events})
    async with session.post(url, data=body) as response:
        assert response.status == 200, await response.text()


def _stored(store, settings: Settings, batches: list[list[dict]]) -> bool:
    """Whether every event of ``batches`` has its row (the tables may not exist yet)."""
    ids = [event["auditID"] for batch in batches for event in batch]
    try:
        found = store.command(f"SELECT uniqExact(original_id) FROM {settings.clickhouse.database}.events "
                              f"WHERE original_id IN {tuple(ids)}")
    except Exception:  # the writer has not created the database yet
        return False
    return int(found) == len(ids)


async def _leading_broker(settings: Settings) -> tuple[KafkaBroker, set[tuple[str, int]]]:
    """The broker leading the most partitions of the stream's topics (the active controller among equals), and
    the partitions it leads."""
    topics = [settings.topic(name) for name in ("raw.k8s-audit", "events", "alerts")]
    admin = AIOKafkaAdminClient(**kafka.client_options(settings.kafka))
    await admin.start()
    try:
        controller = (await admin.describe_cluster())["controller_id"]
        leaders = _leaders(await admin.describe_topics(topics))
    finally:
        await admin.close()
    led: dict[int, set[tuple[str, int]]] = {}
    for partition, leader in leaders.items():
        led.setdefault(leader, set()).add(partition)
    node_id = max(led, key=lambda node: (len(led[node]), node == controller))
    broker = kafka_brokers(settings, devstack.run_dir(settings))[node_id - 1]
    assert broker.node_id == node_id and broker.process.pid() is not None
    return broker, led[node_id]


async def _leaders_moved(settings: Settings, dead: int, partitions: set[tuple[str, int]]) -> bool:
    """Whether each of ``partitions`` has a live leader other than ``dead``."""
    admin = AIOKafkaAdminClient(**kafka.client_options(settings.kafka), request_timeout_ms=2000)
    try:
        await admin.start()
        leaders = _leaders(await admin.describe_topics(sorted({topic for topic, _ in partitions})))
    except Exception:  # metadata from a broker that has not noticed yet: ask again
        return False
    finally:
        await admin.close()
    return all(leaders.get(partition, -1) not in (-1, dead) for partition in partitions)


def _leaders(described: list[dict]) -> dict[tuple[str, int], int]:
    return {(topic["topic"], p["partition"]): p["leader"] for topic in described for p in topic["partitions"]}


def _clickhouse(settings: Settings):
    url = urlsplit(settings.clickhouse.url)
    return clickhouse_connect.get_client(host=url.hostname, port=url.port)


def _free_port_run(count: int) -> int:
    """A port P with P .. P+count-1 all free, below the kernel's ephemeral range: the brokers' client and controller
    ports. (A port from the ephemeral range can be taken, as the source port of a connection between the first
    brokers, before the last broker binds it.)"""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(10_000, low - count)
        if not any(is_listening("127.0.0.1", port + i) for i in range(count)):
            return port
