"""Retention, rollups, the embedded default and the alert lifecycle, on the embedded engine (chdb)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from vigil.alert import Alert
from vigil.config import ClickHouseSettings, Settings
from vigil.event import Actor, Event, K8sContext, Target
from vigil.storage import alerts, cli
from vigil.storage.clickhouse import ClickHouseStore, StoreError, connect, resolve_url
from vigil.storage.schema import apply_retention, migrate

NOW = time.time_ns()
S = 10**9


@pytest.fixture
def settings() -> Iterator[Settings]:
    settings = Settings(clickhouse=ClickHouseSettings(url="chdb://memory", database=f"tri_{uuid.uuid4().hex[:12]}"))
    store = connect(settings.clickhouse)
    migrate(store)
    yield settings
    store.command("DROP DATABASE {db:Identifier}", {"db": settings.clickhouse.database})
    store.close()


@pytest.fixture
def store(settings: Settings) -> Iterator[ClickHouseStore]:
    store = connect(settings.clickhouse)
    yield store
    store.close()


def run(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args, settings)


def exec_alert(last_seen_ns: int = NOW, count: int = 1) -> Alert:
    return Alert(detection="k8s.exec_into_pod", title="Exec into pod", severity="high", time_ns=NOW - 60 * S,
                 namespace="payments", pod="api-1", user="alice", evidence=["audit-exec"], event_ids=["p1"],
                 last_seen_ns=last_seen_ns, count=count)


def test_retention_is_a_ttl_set_and_removed_by_migrate(store: ClickHouseStore) -> None:
    def ttl() -> str:
        return store.query("SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
                           "AND name = 'events'").result_rows[0][0]

    assert "TTL" not in ttl()
    assert migrate(store, retention_days=7).retention_changed
    assert "TTL toDateTime(time) + toIntervalDay(7)" in ttl() and "ttl_only_drop_parts = 1" in ttl()
    assert not migrate(store, retention_days=7).retention_changed
    assert apply_retention(store, 0)
    assert "TTL" not in ttl()
    with pytest.raises(StoreError, match="retention"):
        apply_retention(store, -1)


def test_rollups_follow_inserts(store: ClickHouseStore) -> None:
    pod = K8sContext(namespace="payments", pod="api-1", image="api:1")
    events = [Event(id=f"e{i}", time_ns=NOW - i * S, source="ebpf", kind=kind, k8s=pod,
                    actor=Actor(exe="/bin/sh"), target=Target(address="10.0.0.5", port=443))
              for i, kind in enumerate(["process.exec", "process.exec", "net.connect", "file.open"])]
    store.insert_events(events, "rollup")
    store.insert_alerts([exec_alert(), exec_alert(count=2)], "rollup-alerts")  # one alert, emitted twice
    assert store.query("SELECT image, exe, sum(executions) FROM process_executions GROUP BY image, exe"
                       ).result_rows == [("api:1", "/bin/sh", 2)]
    assert store.query("SELECT pod, address, port, sum(connections) FROM network_destinations "
                       "GROUP BY pod, address, port").result_rows == [("api-1", "10.0.0.5", 443, 1)]
    assert store.query("SELECT detection, uniqExactMerge(alerts) FROM alerts_hourly GROUP BY detection"
                       ).result_rows == [("k8s.exec_into_pod", 1)]


def _server_clock_after(store: ClickHouseStore, moment: datetime, timeout: float = 10.0) -> None:
    """Return once the server's millisecond clock (``changed_at``'s default) is past ``moment``: two triage
    decisions stamped in the same millisecond would have no order."""
    deadline = time.monotonic() + timeout
    while store.query("SELECT now64(3, 'UTC')").result_rows[0][0] <= moment:
        assert time.monotonic() < deadline, f"the server's clock did not pass {moment} within {timeout}s"


def test_alert_lifecycle(settings: Settings, store: ClickHouseStore, capsys: pytest.CaptureFixture[str]) -> None:
    alert = exec_alert()
    store.insert_alerts([alert], "a1")
    assert alerts.get_alert(store, alert.id)["status"] == "new"
    assert run(settings, "alerts", "ack", alert.id, "--by", "sam", "--note", "looking") == 0
    assert capsys.readouterr().out == f"alert {alert.id}: acknowledged\n"
    assert alerts.get_alert(store, alert.id)["status"] == "acknowledged"
    _server_clock_after(store, alerts.status_history(store, alert.id)[-1][0])
    assert run(settings, "alerts", "close", alert.id, "--by", "sam", "--note", "approved debugging") == 0
    closed = alerts.get_alert(store, alert.id)
    assert (closed["status"], closed["status_changed_by"], closed["status_note"]) == (
        "closed", "sam", "approved debugging")
    assert [row[1] for row in alerts.status_history(store, alert.id)] == ["acknowledged", "closed"]
    # Raised again after it was closed: new again, with the history kept.
    store.insert_alerts([exec_alert(last_seen_ns=time.time_ns() + 60 * S, count=3)], "a2")
    assert alerts.get_alert(store, alert.id)["status"] == "new"


def test_status_of_an_unknown_alert_is_refused(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(settings, "alerts", "ack", "nope") == 1
    assert "no alert with id 'nope'" in capsys.readouterr().err


def test_alerts_list_filters_by_status(settings: Settings, store: ClickHouseStore,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    old = Alert(detection="k8s.privileged_container", title="Privileged", severity="critical",
                time_ns=NOW - 30 * 86_400 * S, evidence=["old"])
    store.insert_alerts([exec_alert(), old], "list")
    assert run(settings, "alerts", "list", "--format", "json") == 0
    assert [orjson.loads(line)["detection"] for line in capsys.readouterr().out.splitlines()] == [
        "k8s.exec_into_pod"]
    alerts.set_status(store, exec_alert().id, "closed", "sam")
    assert run(settings, "alerts", "list", "--status", "new", "--since", "60d", "--format", "json") == 0
    assert [orjson.loads(line)["detection"] for line in capsys.readouterr().out.splitlines()] == [
        "k8s.privileged_container"]


def test_alerts_show_has_the_evidence_timeline(settings: Settings, store: ClickHouseStore,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    pod = K8sContext(namespace="payments", pod="api-1")
    store.insert_events([
        Event(id="a1", time_ns=NOW - 61 * S, source="k8s-audit", kind="k8s.api", action="create", k8s=pod,
              original_id="audit-exec", target=Target(resource="pods", subresource="exec")),
        Event(id="a2", time_ns=NOW - 50 * S, source="k8s-audit", kind="k8s.api", action="create", k8s=pod,
              original_id="audit-exec", target=Target(resource="pods", subresource="exec")),
        Event(id="p1", time_ns=NOW - 55 * S, source="ebpf", kind="process.exec", k8s=pod, actor=Actor(exe="/bin/sh")),
        Event(id="other", time_ns=NOW - 55 * S, source="ebpf", kind="process.exec", k8s=pod),
    ], "evidence")
    alert = exec_alert()
    store.insert_alerts([alert], "show")
    assert run(settings, "alerts", "show", alert.id, "--format", "json") == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["status"] == "new"
    assert [(e["event_id"], e["kind"]) for e in doc["timeline"]] == [
        ("a1", "k8s.api"), ("p1", "process.exec"), ("a2", "k8s.api")]
    assert run(settings, "alerts", "show", alert.id) == 0
    out = capsys.readouterr().out
    assert "evidence timeline:" in out and "(3 rows)" in out


def test_embedded_url_lives_under_the_data_dir(tmp_path: Path) -> None:
    assert resolve_url(ClickHouseSettings(url="embedded"), str(tmp_path)) == f"chdb://{tmp_path}/clickhouse"
    assert resolve_url(ClickHouseSettings(url="http://ch:8123"), str(tmp_path)) == "http://ch:8123"
    with pytest.raises(StoreError, match="data dir"):
        resolve_url(ClickHouseSettings(url="embedded"))


def test_embedded_default_stores_under_the_data_dir(tmp_path: Path) -> None:
    """``VIGIL_CLICKHOUSE_URL=embedded``: the same commands, no server. Separate processes, as a user runs
    them: this one already holds an embedded engine (chdb://memory), and a process can open only one."""
    env = os.environ | {"VIGIL_CLICKHOUSE_URL": "embedded", "VIGIL_DATA_DIR": str(tmp_path), "VIGIL_CONFIG": ""}

    def vigil(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vigil.cli", *argv], env=env, capture_output=True, text=True,
                              timeout=120)

    migrated = vigil("storage", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith("applied migrations: 1, 2, 3")
    assert (tmp_path / "clickhouse").is_dir()
    listed = vigil("alerts", "list", "--format", "csv")
    assert (listed.returncode, listed.stdout.splitlines()[0]) == (0, '"id","first_seen","last_seen","count",'
                                                                     '"severity","detection","namespace","pod",'
                                                                     '"user","status"'), listed.stderr
