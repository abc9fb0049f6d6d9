"""vigil on a ClickHouse cluster: two real chdb servers started by the dev stack's own code (``vigil dev up
--clickhouse-shards``) on ports and in a run dir of this test's own, wired as one cluster through ``<remote_servers>``.

Hunts, triage and retro-hunts through the Distributed tables must answer as one server does; migrations must be
idempotent on the cluster; and with one shard down, the storage writer must neither commit nor lose anything, and
store everything exactly once when the shard is back. The shared dev stack's Kafka carries this test's own topics;
its ClickHouse is the "one server" the cluster is compared with.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY

from tests.integration.harness import wait_for
from tests.integration.test_storage_writer import committed, produce
from tests.integration.zookeeper import running_zookeeper
from tests.unit.test_storage_hunts import ALERTS, EVENTS, T
from vigil import kafka
from vigil.config import Settings
from vigil.devstack.clickhouse import SERVER_MODULE, ClickHouseServer, clickhouse_servers, dev_server_url
from vigil.devstack.ports import is_listening
from vigil.devstack.process import DetachedProcess
from vigil.devstack.stack import wait_healthy
from vigil.event import Actor, Event, K8sContext
from vigil.storage import alerts
from vigil.storage.clickhouse import ClickHouseStore, StoreError, connect
from vigil.storage.hunts import load_hunts
from vigil.storage.schema import MIGRATIONS, migrate, statements_for, status
from vigil.storage.sigma_sql import convert_rule
from vigil.storage.writer import run_writer

pytestmark = pytest.mark.integration

SHARDS = 2
SIGMA_RULES = Path(os.environ.get("VIGIL_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data")
                   ) / "sigma" / "kubernetes-audit"
#: Values for hunts' required parameters (the incident's pod and people).
HUNT_PARAMS = {"namespace": "payments", "pod": "api-1", "user": "alice"}


def _free_port_pair(start: int) -> int:
    """The first port from ``start`` such that it and the next ``SHARDS - 1`` are all free."""
    port = start
    while any(is_listening("127.0.0.1", port + k) for k in range(SHARDS)):
        port += SHARDS
    return port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, dev_stack: Settings) -> Iterator[list[ClickHouseServer]]:
    """Two chdb servers as one cluster, in a run dir of their own, stopped (only they) at the end."""
    run_dir = tmp_path_factory.mktemp("clickhouse-cluster")
    settings = dataclasses.replace(dev_stack, clickhouse=dataclasses.replace(
        dev_stack.clickhouse, url=f"http://127.0.0.1:{_free_port_pair(28123 + os.getpid() % 500 * 4)}",
        cluster="vigil_test"))
    tcp_port = _free_port_pair(29000 + os.getpid() % 500 * 4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIGIL_DEV_CLICKHOUSE_TCP_PORT", str(tcp_port))
        servers = clickhouse_servers(settings, run_dir, SHARDS)
    try:
        for server in servers:
            server.start()
        for server in servers:
            wait_healthy(server, time.monotonic() + 120, 120)
        yield servers
    finally:
        for server in servers:
            pid = server.process.terminate() if server.process else None
            if pid is not None:
                server.process.wait_gone(pid, 30)


def cluster_settings(settings: Settings, servers: list[ClickHouseServer], database: str) -> Settings:
    """``settings`` pointed at the cluster: its first node, every node listed for per-node migrations."""
    return dataclasses.replace(settings, clickhouse=dataclasses.replace(
        settings.clickhouse, url=servers[0].url, database=database, cluster=servers[0].cluster,
        cluster_nodes=",".join(server.url for server in servers)))


@contextlib.contextmanager
def opened(settings: Settings) -> Iterator[ClickHouseStore]:
    store = connect(settings.clickhouse)
    try:
        yield store
    finally:
        store.close()


def per_node(servers: list[ClickHouseServer], settings: Settings, sql: str) -> list[list[tuple]]:
    """``sql`` on each node by itself (no cluster settings), e.g. over its ``*_local`` tables."""
    results = []
    for server in servers:
        node = dataclasses.replace(settings.clickhouse, url=server.url, cluster="", cluster_nodes="")
        with opened(dataclasses.replace(settings, clickhouse=node)) as store:
            results.append(store.query(sql).result_rows)
    return results


def spread_events(count: int, prefix: str, at: int) -> list[Event]:
    """Process starts in 40 pods of 4 namespaces, so the pod key spreads them over both shards."""
    return [Event(id=f"{prefix}{n}", time_ns=at + n, source="ebpf", kind="process.exec", action="exec",
                  cluster="it", k8s=K8sContext(namespace=f"ns{n % 4}", pod=f"pod-{n % 40}", image="img:1"),
                  actor=Actor(exe=f"/bin/tool{n % 7}", pid=100 + n))
            for n in range(count)]


def drop(settings: Settings, servers: list[ClickHouseServer]) -> None:
    for server in servers:
        node = dataclasses.replace(settings.clickhouse, url=server.url, cluster="", cluster_nodes="")
        with opened(dataclasses.replace(settings, clickhouse=node)) as store:
            store.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": settings.clickhouse.database})


def test_migrations_are_idempotent_on_the_cluster(cluster: list[ClickHouseServer], settings: Settings) -> None:
    settings = cluster_settings(settings, cluster, f"test_{uuid.uuid4().hex[:10]}")
    without_nodes = dataclasses.replace(settings.clickhouse, cluster_nodes="")
    with opened(dataclasses.replace(settings, clickhouse=without_nodes)) as store, pytest.raises(
            StoreError, match="no ZooKeeper or Keeper"):
        migrate(store)  # these servers cannot run ON CLUSTER: refused, with what to set instead
    try:
        with opened(settings) as store:
            assert migrate(store).applied == [m.version for m in MIGRATIONS]
            assert migrate(store).applied == []
            assert migrate(store, retention_days=30).retention_changed
            assert not migrate(store, retention_days=30).retention_changed
            store.insert_events(spread_events(10, "m", T), "idempotent")
            assert migrate(store, retention_days=30).applied == []
            assert store.query("SELECT count() FROM events").result_rows == [(10,)]
        tables = per_node(cluster, settings, "SELECT name, engine FROM system.tables "
                                             "WHERE database = currentDatabase() ORDER BY name")
        assert tables[0] == tables[1]
        engines = dict(tables[0])
        assert engines["events"] == engines["alerts"] == engines["process_executions"] == "Distributed"
        assert engines["events_local"] == "ReplacingMergeTree"
        assert engines["process_executions_mv"] == "MaterializedView"
        assert per_node(cluster, settings, "SELECT engine_full LIKE '%TTL toDateTime(time) + toIntervalDay(30)%' "
                                           "FROM system.tables WHERE database = currentDatabase() "
                                           "AND name = 'events_local'") == [[(1,)], [(1,)]]
        # A node that lost a migration (here: its record of it) gets it again, and the others are left alone.
        node = dataclasses.replace(settings.clickhouse, url=cluster[1].url, cluster="", cluster_nodes="")
        with opened(dataclasses.replace(settings, clickhouse=node)) as second:
            second.command("ALTER TABLE schema_migrations DELETE WHERE version = 5 SETTINGS mutations_sync = 1")
        with opened(settings) as store:
            assert [m.version for m in status(store) if m.applied_at is None] == [5]  # pending on one node
            assert migrate(store, retention_days=30).applied == [5]
            assert all(m.applied_at is not None for m in status(store))
            assert migrate(store, retention_days=30).applied == []
    finally:
        drop(settings, cluster)


@pytest.fixture(scope="module")
def incident(cluster: list[ClickHouseServer], dev_stack: Settings) -> Iterator[tuple[Settings, Settings]]:
    """The hunts' incident (plus events spread over 40 pods) stored on one server and on the cluster, the same
    triage decisions taken on both: (one server, cluster)."""
    database = f"test_{uuid.uuid4().hex[:10]}"
    single = dataclasses.replace(dev_stack, clickhouse=dataclasses.replace(
        dev_stack.clickhouse, url=dev_server_url(dev_stack), database=database))
    sharded = cluster_settings(dev_stack, cluster, database)
    events = [*EVENTS, *spread_events(400, "s", T)]
    for settings in (single, sharded):
        with opened(settings) as store:
            migrate(store)
            assert store.insert_events(events, "incident").written == len(events)
            assert store.insert_alerts(ALERTS, "incident-alerts").written == len(ALERTS)
            alerts.set_status(store, ALERTS[0].id, "acknowledged", "analyst", "looking")
            alerts.set_status(store, ALERTS[1].id, "closed", "analyst", "benign")
    try:
        yield single, sharded
    finally:
        with opened(single) as store:
            store.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": database})
        drop(sharded, cluster)


def rows_of(settings: Settings, sql: str, parameters: dict) -> list[dict]:
    """The result as JSON objects in a stable order: a query's ORDER BY may leave ties in any order, and
    groupUniqArray gives its elements in none (on one server too), so arrays are compared as sorted."""
    with opened(settings) as store:
        text = store.query_raw(sql, parameters, "JSONEachRow")
    rows = [{name: sorted(value, key=orjson.dumps) if isinstance(value, list) else value
             for name, value in orjson.loads(line).items()} for line in text.splitlines()]
    return sorted(rows, key=lambda row: orjson.dumps(row, option=orjson.OPT_SORT_KEYS))


def test_rows_are_sharded_by_pod(cluster: list[ClickHouseServer], incident: tuple[Settings, Settings]) -> None:
    _, sharded = incident
    pods = per_node(cluster, sharded, "SELECT DISTINCT cluster, namespace, pod FROM events_local WHERE pod != ''")
    assert all(len(found) > 5 for found in pods)  # both shards hold some of the 40 pods
    assert not set(pods[0]) & set(pods[1])  # and no pod is on both
    api = per_node(cluster, sharded, "SELECT (SELECT count() FROM events_local WHERE pod = 'api-1'), "
                                     "(SELECT count() FROM alerts_local WHERE pod = 'api-1')")
    assert sorted(found[0] for found in api) == [(0, 0), (11, 2)]  # the pod's events and alerts share a shard


def test_hunts_answer_on_the_cluster_as_on_one_server(incident: tuple[Settings, Settings]) -> None:
    single, sharded = incident
    since = datetime.now(UTC) - timedelta(days=30)
    answered = 0
    for hunt in load_hunts().values():
        values = {p.name: HUNT_PARAMS[p.name] for p in hunt.params if p.default is None}
        parameters = hunt.bind(values, since)
        expected = rows_of(single, hunt.sql, parameters)
        assert rows_of(sharded, hunt.sql, parameters) == expected, hunt.name
        answered += bool(expected)
    assert answered >= 10  # the incident gives most hunts something to find


def test_triage_and_retro_hunts_answer_on_the_cluster_as_on_one_server(incident: tuple[Settings, Settings]) -> None:
    single, sharded = incident
    listing = alerts.list_params((datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S"))
    expected = rows_of(single, alerts.LIST_SQL, listing)
    assert {row["status"] for row in expected} == {"new", "acknowledged", "closed"}
    assert rows_of(sharded, alerts.LIST_SQL, listing) == expected
    for alert in ALERTS:
        with opened(single) as one, opened(sharded) as many:
            # The same decisions, taken a moment apart on each.
            assert alerts.get_alert(many, alert.id) | {"status_changed_at": None} == alerts.get_alert(
                one, alert.id) | {"status_changed_at": None}
            assert [row[1:] for row in alerts.status_history(many, alert.id)] == [
                row[1:] for row in alerts.status_history(one, alert.id)]
            params = alerts.evidence_params(alerts.get_alert(one, alert.id))
        assert rows_of(sharded, alerts.EVIDENCE_SQL, params) == rows_of(single, alerts.EVIDENCE_SQL, params)
    found = 0
    for path in sorted(SIGMA_RULES.glob("*.yml")):
        query = convert_rule(path.read_text())
        parameters = query.parameters | {"since": "2000-01-01 00:00:00", "limit": 1000}
        expected = rows_of(single, query.sql, parameters)
        assert rows_of(sharded, query.sql, parameters) == expected, path.name
        found += len(expected)
    assert found > 0


@pytest.fixture
async def writer_on_cluster(cluster: list[ClickHouseServer], kafka_settings: Settings) -> AsyncIterator[Settings]:
    """This test's topics and a migrated database on the cluster, merges stopped so duplicates stay countable."""
    settings = cluster_settings(kafka_settings, cluster, f"test_{uuid.uuid4().hex[:10]}")
    settings.clickhouse.batch_seconds = 0.2
    with opened(settings) as store:
        migrate(store)
    for server in cluster:
        node = dataclasses.replace(settings.clickhouse, url=server.url, cluster="", cluster_nodes="")
        with opened(dataclasses.replace(settings, clickhouse=node)) as store:
            store.command("SYSTEM STOP MERGES {db:Identifier}.events_local", {"db": store.database})
    yield settings
    drop(settings, cluster)


def counted(settings: Settings) -> tuple[int, int]:
    """Rows in ``events`` through the Distributed table, and distinct event ids among them."""
    with opened(settings) as store:
        return store.query("SELECT count(), uniqExact(event_id) FROM events").result_rows[0]


def insert_retries() -> float:
    return REGISTRY.get_sample_value("vigil_clickhouse_errors_total", {"operation": "insert_events"}) or 0.0


async def test_a_shard_down_holds_the_writer_back_and_nothing_is_lost_or_doubled(
        cluster: list[ClickHouseServer], writer_on_cluster: Settings) -> None:
    settings = writer_on_cluster
    first = spread_events(200, "a", T)
    await produce(settings, "events", [kafka.encode_batch(first[i:i + 20]) for i in range(0, 200, 20)], partition=0)
    stop = asyncio.Event()
    task = asyncio.create_task(run_writer(settings, stop))
    try:
        await wait_for(lambda: counted(settings) == (200, 200), timeout=90)
        await wait_for(committed_up_to(settings, 10), timeout=60)

        down = cluster[1]
        os.kill(down.process.pid(), signal.SIGKILL)  # the shard this test started, and only it
        await wait_for(lambda: down.process.pid() is None, timeout=30)
        retries = insert_retries()
        second = spread_events(200, "b", T + 10_000)
        await produce(settings, "events", [kafka.encode_batch(second[i:i + 20]) for i in range(0, 200, 20)],
                      partition=0)
        await wait_for(lambda: insert_retries() >= retries + 2, timeout=60)  # tried, refused, tried again
        offset, metadata = await committed(settings, "events")
        assert offset == 10 and metadata.startswith("vigil-pending:")  # noted as being stored, not committed

        down.start()
        wait_healthy(down, time.monotonic() + 120, 120)
        await wait_for(committed_up_to(settings, 20), timeout=120)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)
    assert counted(settings) == (400, 400)
    shares = per_node(cluster, settings, "SELECT count() FROM events_local")
    assert all(share[0][0] > 0 for share in shares) and sum(share[0][0] for share in shares) == 400


def committed_up_to(settings: Settings, offset: int):
    """A predicate for wait_for: the writer committed ``offset`` on the events topic, with no range pending."""

    async def reached() -> bool:
        return await committed(settings, "events") == (offset, "")

    return reached


def test_replicated_tables_are_accepted_as_generated(tmp_path: Path, settings: Settings) -> None:
    """With replication configured, every statement the migrations generate reaches a server with ZooKeeper and
    macros. chdb's server creates the replicated tables but keeps them read-only (FACTS.md), so it refuses the one
    statement that changes a replicated table (migration 5's new columns) for that reason and no other; a real
    ClickHouse cluster with Keeper is where they are written to."""
    http_port, tcp_port, zookeeper_port = (_free_port_pair(port) for port in (31123, 31900, 32181))
    with running_zookeeper(tmp_path / "zookeeper", zookeeper_port) as zookeeper:
        home = tmp_path / "clickhouse"
        server = DetachedProcess(tmp_path / "clickhouse.pid", tmp_path / "clickhouse.log", marker=str(home))
        home.mkdir()
        server.start([sys.executable, "-m", SERVER_MODULE, "--dir", str(home), "--http-port", str(http_port),
                      "--tcp-port", str(tcp_port), "--cluster", "replicated", "--shard-tcp-ports", str(tcp_port),
                      "--zookeeper", zookeeper, "--macros", "shard=01,replica=r1"], cwd=home)
        try:
            url = f"http://127.0.0.1:{http_port}"
            node = dataclasses.replace(settings.clickhouse, url=url, database=f"test_{uuid.uuid4().hex[:10]}",
                                       cluster="replicated", cluster_nodes=url, replication=True)
            asyncio.run(wait_for(lambda: is_listening("127.0.0.1", http_port), timeout=60))
            with opened(dataclasses.replace(settings, clickhouse=node)) as store:
                store.create_database()
                refused = []
                for migration in MIGRATIONS:
                    for statement in statements_for(migration, store):
                        try:
                            store.command(statement, {"db": store.database})
                        except StoreError as exc:
                            refused.append((statement.split()[2], exc.code))
                assert refused == [("{db:Identifier}.events_local", 242)]  # TABLE_IS_READ_ONLY
                replicas = store.query("SELECT table, zookeeper_path, is_readonly FROM system.replicas "
                                       "WHERE database = {db:String} ORDER BY table", {"db": store.database})
                assert [table for table, _, _ in replicas.result_rows] == [
                    "alert_status_local", "alerts_hourly_local", "alerts_local", "events_local",
                    "network_destinations_local", "process_executions_local", "workload_activity_local",
                    "workload_observations_local"]
                assert all(path == f"/clickhouse/tables/01/{store.database}/{table}" and readonly == 1
                           for table, path, readonly in replicas.result_rows)
                store.command("DROP DATABASE {db:Identifier} SYNC", {"db": store.database})
        finally:
            pid = server.terminate()
            if pid is not None:
                server.wait_gone(pid, 30)
