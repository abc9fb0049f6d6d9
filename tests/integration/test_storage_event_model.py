"""The event model's columns (migration 5) on the real dev stack: sources' events through Kafka and the storage
writer into ClickHouse, and a database stored before migration 5 upgraded in place."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.integration.harness import wait_for
from vigil import kafka
from vigil.config import Settings
from vigil.event import Event
from vigil.sources.audit import AUDIT_SOURCE
from vigil.sources.audit.fixtures import audit_record
from vigil.sources.ebpf import EBPF_SOURCE
from vigil.sources.falco import FALCO_SOURCE
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import in_pod
from vigil.sources.tetragon import TETRAGON_SOURCE
from vigil.sources.tetragon.fixtures import tetragon_record
from vigil.storage.clickhouse import ClickHouseStore, connect
from vigil.storage.schema import MIGRATIONS, MIGRATIONS_TABLE_DDL, migrate
from vigil.storage.writer import run_writer

pytestmark = pytest.mark.integration


@pytest.fixture
async def model_settings(kafka_settings: Settings) -> AsyncIterator[Settings]:
    """This test's own topics and a database of its own (migrated), dropped after."""
    kafka_settings.clickhouse.database = f"test_{uuid.uuid4().hex[:10]}"
    kafka_settings.clickhouse.batch_seconds = 0.2
    store = connect(kafka_settings.clickhouse)
    migrate(store)
    yield kafka_settings
    store.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": store.database})
    store.close()


def source_events() -> list[Event]:
    """One event of each source whose new fields the columns hold, normalized as the stream worker does."""
    connect_body = {"function_name": "tcp_connect", "args": [{"sock_arg": {
        "family": "AF_INET", "protocol": "IPPROTO_TCP", "saddr": "10.244.1.5", "sport": 51000, "daddr": "8.8.8.8",
        "dport": 443}}], "action": "KPROBE_ACTION_POST"}
    tetragon = TETRAGON_SOURCE.normalize(
        tetragon_record("process_kprobe", binary="/usr/bin/curl", body=connect_body), "it", "node-1")
    falco = FALCO_SOURCE.normalize(falco_record(
        "Drift", "execve", {"proc.exepath": "/tmp/x", "proc.tty": 34816, "user.loginuid": 1000,
                            "evt.arg.flags": "EXE_WRITABLE|EXE_UPPER_LAYER", "container.type": "containerd"}),
        "it", "node-1")
    ebpf = EBPF_SOURCE.normalize(in_pod(
        {"type": "file_write", "time_ns": 1_741_069_338_000_000_000, "pid": 9, "tid": 9, "ppid": 1, "uid": 0,
         "gid": 0, "comm": "sh", "cgroup_id": 7, "flags": 0o1101, "mode": 0o644, "path": "/etc/cron.d/x"}),
        "it", "node-1")
    audit = AUDIT_SOURCE.normalize(audit_record("get", "secrets", user="bob", code=403), "it", "node-1")
    return [tetragon, falco, ebpf, audit]


def rows(settings: Settings, sql: str) -> list[tuple]:
    store = connect(settings.clickhouse)
    try:
        return store.query(sql).result_rows
    finally:
        store.close()


async def test_the_writer_fills_the_model_columns(model_settings: Settings) -> None:
    settings = model_settings
    events = source_events()
    sender = kafka.producer(settings)
    await sender.start()
    try:
        await sender.send_and_wait(settings.topic("events"), kafka.encode_batch([e.to_dict() for e in events]))
    finally:
        await sender.stop()
    stop = asyncio.Event()
    task = asyncio.create_task(run_writer(settings, stop))
    try:
        await wait_for(lambda: rows(settings, "SELECT count() FROM events")[0][0] >= len(events), timeout=90)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)
    found = {row[0]: row[1:] for row in rows(settings, """
        SELECT source, container_runtime, actor_euid, actor_auid, actor_tty, actor_exe_flags, file_access, file_mode,
               network_direction, network_remote_class, network_local_address, request_decision
        FROM events""")}
    assert found["tetragon"] == ("containerd", 0, -1, 0, [], [], -1, "outbound", "public", "10.244.1.5", "")
    assert found["falco"] == ("containerd", -1, 1000, 34816, ["writable", "upper_layer"], [], -1, "", "", "", "")
    assert found["ebpf"] == ("", -1, -1, 0, [], ["write", "create", "truncate"], 0o644, "", "", "", "")
    assert found["k8s-audit"][-1] == "forbid"


def test_migration_5_upgrades_a_database_stored_before_it(settings: Settings) -> None:
    settings.clickhouse.database = f"test_{uuid.uuid4().hex[:10]}"
    store = connect(settings.clickhouse)
    try:
        _migrate_to_4(store)
        store.command("INSERT INTO {db:Identifier}.events (event_id, time, source, kind, actor_uid) "
                      "VALUES ('before', now64(9), 'ebpf', 'process.exec', 1000)", {"db": store.database})
        report = migrate(store)
        assert report.applied == [5]
        assert store.query("SELECT actor_uid, actor_euid, actor_auid, file_mode, actor_exe_flags, "
                           "network_remote_class FROM events").result_rows == [(1000, -1, -1, -1, [], "")]
        assert migrate(store).applied == []  # applied once
    finally:
        store.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": store.database})
        store.close()


def _migrate_to_4(store: ClickHouseStore) -> None:
    """The schema as it was before migration 5, recorded as applied."""
    db = {"db": store.database}
    store.create_database()
    for migration in MIGRATIONS[:4]:
        for statement in migration.statements:
            store.command(statement, db)
    store.command(MIGRATIONS_TABLE_DDL, db)
    for migration in MIGRATIONS[:4]:
        store.command("INSERT INTO {db:Identifier}.schema_migrations (version, description) "
                      "VALUES ({version:UInt32}, {description:String})",
                      db | {"version": migration.version, "description": migration.description})
