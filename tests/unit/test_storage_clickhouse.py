"""ClickHouseStore and the migrations, against the ClickHouse engine embedded in this process (chdb)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import orjson
import pytest

from vigil.alert import Alert
from vigil.config import ClickHouseSettings
from vigil.event import Actor, Container, Event, File, K8sContext, Network, Outcome, Request, Target
from vigil.storage.clickhouse import (
    ALERT_COLUMNS,
    STORED_EVENT_COLUMNS,
    ClickHouseStore,
    StoreError,
    StoreUnavailable,
    connect,
)
from vigil.storage.schema import MIGRATIONS, migrate, status

T0 = 1_700_000_000_123_456_789


def chdb_settings() -> ClickHouseSettings:
    return ClickHouseSettings(url="chdb://memory", database=f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store() -> Iterator[ClickHouseStore]:
    store = connect(chdb_settings())
    migrate(store)
    # Background merges would collapse duplicates in the ReplacingMergeTrees and hide a failed dedup.
    store.command("SYSTEM STOP MERGES {db:Identifier}.events", {"db": store.database})
    store.command("SYSTEM STOP MERGES {db:Identifier}.alerts", {"db": store.database})
    yield store
    store.command("DROP DATABASE {db:Identifier}", {"db": store.database})
    store.close()


def full_event(n: int = 0, namespace: str = "payments") -> Event:
    """An event with every field set to a value that differs from its default."""
    return Event(
        id=f"ev-{n}",
        time_ns=T0 + n,
        source="k8s-audit",
        kind="k8s.api",
        action="create",
        original_id=f"audit-{n}",
        ingest_ns=T0 + 1_000_000 + n,
        cluster="prod-eu",
        node="node-3",
        k8s=K8sContext(namespace=namespace, pod="api-7d9f", pod_uid="uid-1", container_id="c0ffee",
                       container_name="api", image="registry/api:1.2", service_account="api-sa",
                       labels={"app": "api", "tier": "backend"}),
        actor=Actor(user="alice@example.com", user_uid="u-42", groups=["dev", "system:authenticated"],
                    source_ips=["10.1.2.3", "2001:db8::1"], user_agent="kubectl/v1.30", impersonated_by="admin",
                    pid=4242, ppid=1, uid=4_294_967_294, gid=1000, exe="/bin/sh", args=["sh", "-c", "id"],
                    cwd="/srv", parent_exe="/usr/bin/containerd-shim", euid=0, egid=0, auid=1001, tty=34816,
                    container_pid=9, exe_flags=["writable", "upper_layer"], parent_args=["sh", "-c", "run"],
                    grandparent_exe="/usr/bin/runc", token_pod="api-7d9f"),
        target=Target(resource="pods", subresource="exec", api_group="apps", api_version="v1", namespace="payments",
                      name="api-7d9f", uri="/api/v1/namespaces/payments/pods/api-7d9f/exec?command=id",
                      path="/etc/shadow", address="10.9.9.9", port=6443),
        outcome=Outcome(result="denied", code=403, reason="forbidden"),
        container=Container(id="c0ffee", runtime="containerd", name="api", image="registry/api:1.2"),
        file=File(path="/etc/shadow", access=["read", "write"], mode=0o640, other_path="/etc/shadow-"),
        network=Network(family="inet", protocol="tcp", direction="outbound", local_address="10.1.2.3",
                        local_port=40000, remote_address="10.9.9.9", remote_port=6443, remote_class="service"),
        request=Request(stage="ResponseComplete", decision="forbid"),
        raw={"kind": "Event", "auditID": f"audit-{n}", "nested": {"ü": [1, 2.5, None]}},
    )


def count(store: ClickHouseStore, table: str, final: str = "") -> int:
    return store.query(f"SELECT count() FROM {table} {final}").result_rows[0][0]


def test_columns_cover_every_table_column(store: ClickHouseStore) -> None:
    for table, columns in (("events", STORED_EVENT_COLUMNS), ("alerts", ALERT_COLUMNS)):
        described = [row[0] for row in store.query(f"DESCRIBE TABLE {table}").result_rows]
        assert described == [c.name for c in columns]


def test_event_roundtrips_every_column(store: ClickHouseStore) -> None:
    event = full_event()
    assert store.insert_events([event], "t1").written == 1
    result = store.query(
        "SELECT *, toUnixTimestamp64Nano(time) AS time_ns, toUnixTimestamp64Nano(ingest_time) AS ingest_ns "
        "FROM events"
    )
    row = dict(zip(result.column_names, result.result_rows[0], strict=True))
    k8s, actor, target, outcome = event.k8s, event.actor, event.target, event.outcome
    expected = {
        "event_id": event.id, "time_ns": event.time_ns, "ingest_ns": event.ingest_ns, "source": event.source,
        "kind": event.kind, "action": event.action, "original_id": event.original_id, "cluster": event.cluster,
        "node": event.node, "namespace": k8s.namespace, "pod": k8s.pod, "pod_uid": k8s.pod_uid,
        "container_id": k8s.container_id, "container_name": k8s.container_name, "image": k8s.image,
        "service_account": k8s.service_account, "labels": k8s.labels, "actor_user": actor.user,
        "actor_user_uid": actor.user_uid, "actor_groups": actor.groups, "actor_source_ips": actor.source_ips,
        "actor_user_agent": actor.user_agent, "actor_impersonated_by": actor.impersonated_by,
        "actor_pid": actor.pid, "actor_ppid": actor.ppid, "actor_uid": actor.uid, "actor_gid": actor.gid,
        "actor_exe": actor.exe, "actor_args": actor.args, "actor_cwd": actor.cwd,
        "actor_parent_exe": actor.parent_exe, "target_resource": target.resource,
        "target_subresource": target.subresource, "target_api_group": target.api_group,
        "target_api_version": target.api_version, "target_namespace": target.namespace,
        "target_name": target.name, "target_uri": target.uri, "target_path": target.path,
        "target_address": target.address, "target_port": target.port, "outcome_result": outcome.result,
        "outcome_code": outcome.code, "outcome_reason": outcome.reason, "schema_version": event.schema,
        "container_runtime": "containerd", "actor_euid": 0, "actor_egid": 0, "actor_auid": 1001, "actor_tty": 34816,
        "actor_container_pid": 9, "actor_exe_flags": ["writable", "upper_layer"],
        "actor_parent_args": ["sh", "-c", "run"], "actor_grandparent_exe": "/usr/bin/runc",
        "actor_token_pod": "api-7d9f", "file_access": ["read", "write"], "file_mode": 0o640,
        "file_other_path": "/etc/shadow-", "network_family": "inet", "network_direction": "outbound",
        "network_local_address": "10.1.2.3", "network_local_port": 40000, "network_remote_class": "service",
        "request_decision": "forbid",
    }
    assert {name: row[name] for name in expected} == expected
    assert orjson.loads(row["raw"]) == event.raw


def test_default_event_fields_roundtrip(store: ClickHouseStore) -> None:
    """uid/gid -1 ("unknown") and an absent raw record must survive as they are."""
    event = Event(id="bare", time_ns=T0, source="ebpf", kind="process.exec")
    store.insert_events([event], "t1")
    assert store.query("SELECT actor_uid, actor_gid, raw, labels FROM events").result_rows == [(-1, -1, "null", {})]
    assert store.query("SELECT actor_euid, actor_auid, file_mode, file_access FROM events").result_rows == [
        (-1, -1, -1, [])]


def test_container_without_pod_is_stored_under_its_id(store: ClickHouseStore) -> None:
    """A container the runtime knows but Kubernetes does not (no pod context) still has its id in container_id."""
    event = Event(id="podless", time_ns=T0, source="tetragon", kind="process.exec",
                  container=Container(id="86eb9e29a77d432", runtime="docker"))
    store.insert_events([event], "t1")
    assert store.query("SELECT container_id, container_runtime, pod FROM events").result_rows == [
        ("86eb9e29a77d432", "docker", "")]


def test_rows_stored_before_migration_5_read_not_known(store: ClickHouseStore) -> None:
    """Rows inserted with migration 1's columns only (as before migration 5) read -1 for the new ids and mode."""
    store.command(
        "INSERT INTO {db:Identifier}.events (event_id, time, source, kind) VALUES ('old', now64(9), 'ebpf', 'x')",
        {"db": store.database})
    rows = store.query("SELECT actor_euid, actor_egid, actor_auid, file_mode, network_remote_class FROM events")
    assert rows.result_rows == [(-1, -1, -1, -1, "")]


def test_alert_roundtrips_and_lifecycle_update_replaces_it(store: ClickHouseStore) -> None:
    first = Alert(detection="exec-into-pod", title="Shell in pod", severity="high", time_ns=T0,
                  mitre=["T1609"], description="kubectl exec", tags=["k8s"], cluster="prod-eu",
                  namespace="payments", pod="api-7d9f", user="alice", dedup_key="payments/api-7d9f",
                  evidence=["audit-1"], event_ids=["ev-1"], context={"command": ["sh"], "n": 1})
    later = Alert.from_dict(first.to_dict() | {"last_seen_ns": T0 + 60_000_000_000, "count": 3,
                                               "evidence": ["audit-1", "audit-2"]})
    assert later.id == first.id
    store.insert_alerts([first], "a1")
    store.insert_alerts([later], "a2")
    assert count(store, "alerts") == 2
    result = store.query(
        "SELECT id, detection, title, severity, toUnixTimestamp64Nano(time), toUnixTimestamp64Nano(first_seen), "
        "toUnixTimestamp64Nano(last_seen), count, mitre, description, tags, cluster, namespace, pod, user, "
        "dedup_key, evidence, event_ids, context FROM alerts FINAL"
    )
    (row,) = result.result_rows
    assert row[:-1] == (later.id, "exec-into-pod", "Shell in pod", "high", T0, T0, T0 + 60_000_000_000, 3,
                        ["T1609"], "kubectl exec", ["k8s"], "prod-eu", "payments", "api-7d9f", "alice",
                        "payments/api-7d9f", ["audit-1", "audit-2"], ["ev-1"])
    assert orjson.loads(row[-1]) == {"command": ["sh"], "n": 1}


def test_same_dedup_token_is_stored_once(store: ClickHouseStore) -> None:
    events = [full_event(n) for n in range(5)]
    store.insert_events(events, "events:0:10-14")
    store.insert_events(events, "events:0:10-14")
    assert count(store, "events") == 5
    store.insert_events(events, "events:0:10-15")  # another token: ClickHouse takes it again …
    assert count(store, "events") == 10
    assert count(store, "events", "FINAL") == 5  # … and the ReplacingMergeTree still counts each event once


def test_invalid_row_is_refused_and_the_rest_stored(store: ClickHouseStore) -> None:
    events = [full_event(n) for n in range(7)]
    events[1].actor.pid = -5  # does not fit UInt32
    events[2].k8s.pod = 17  # not text
    events[3].actor.groups = "admins"  # would silently become ['a', 'd', 'm', …]
    events[4].target.port = 443.5  # would silently become 443
    result = store.insert_events(events, "t1")
    assert result.written == 3
    assert [(r.index, r.reason) for r in result.refused] == [(i, "invalid_row") for i in (1, 2, 3, 4)]
    assert [r.detail.split(":")[0] for r in result.refused] == [
        "column actor_pid", "column pod", "column actor_groups", "column target_port"
    ]
    assert sorted(r[0] for r in store.query("SELECT event_id FROM events").result_rows) == ["ev-0", "ev-5", "ev-6"]


def test_rows_clickhouse_refuses_are_isolated(store: ClickHouseStore) -> None:
    store.command("ALTER TABLE {db:Identifier}.events ADD CONSTRAINT no_poison CHECK namespace != 'poison'",
                  {"db": store.database})
    events = [full_event(n, namespace="poison" if n in (2, 5) else "ok") for n in range(7)]
    result = store.insert_events(events, "t1")
    assert [(r.index, r.reason) for r in result.refused] == [(2, "clickhouse_refused"), (5, "clickhouse_refused")]
    assert "VIOLATED_CONSTRAINT" in result.refused[0].detail
    assert result.written == 5
    store.insert_events(events, "t1")  # a retry of the whole batch is deduplicated part by part
    assert count(store, "events") == 5


def test_batch_spanning_many_days_is_stored(store: ClickHouseStore) -> None:
    """A replay of old logs: more daily partitions in one insert than ClickHouse allows by default (100)."""
    day_ns = 86_400 * 10**9
    events = [full_event(n) for n in range(150)]
    for n, event in enumerate(events):
        event.time_ns = T0 - n * day_ns
    assert store.insert_events(events, "t1").written == 150
    assert store.query("SELECT uniqExact(toDate(time)) FROM events").result_rows == [(150,)]


def test_query_binds_parameters_server_side(store: ClickHouseStore) -> None:
    store.insert_events([full_event(0), full_event(1, namespace="it's")], "t1")
    sql = "SELECT count() FROM events WHERE namespace = {ns:String}"
    assert store.query(sql, {"ns": "it's"}).result_rows == [(1,)]
    assert store.query(sql, {"ns": "x' OR '1'='1"}).result_rows == [(0,)]


def test_query_error_carries_clickhouse_message(store: ClickHouseStore) -> None:
    with pytest.raises(StoreError, match=r"^Code: 60\..*UNKNOWN_TABLE"):
        store.query("SELECT * FROM no_such_table")


def test_migrations_are_idempotent_and_recorded() -> None:
    store = connect(chdb_settings())
    try:
        assert [s.applied_at for s in status(store)] == [None] * len(MIGRATIONS)
        assert not store.query("EXISTS DATABASE {db:Identifier}", {"db": store.database}).result_rows[0][0]
        assert migrate(store).applied == [m.version for m in MIGRATIONS]
        assert migrate(store).applied == []
        assert all(s.applied_at is not None for s in status(store))
        versions = store.query("SELECT version FROM schema_migrations ORDER BY version").result_rows
        assert versions == [(m.version,) for m in MIGRATIONS]
    finally:
        store.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": store.database})
        store.close()


def test_connect_refuses_unknown_scheme() -> None:
    with pytest.raises(StoreError, match="scheme"):
        connect(ClickHouseSettings(url="ftp://127.0.0.1"))


def test_unreachable_server_is_unavailable_not_refused() -> None:
    with pytest.raises(StoreUnavailable):
        connect(ClickHouseSettings(url="http://127.0.0.1:9"))
