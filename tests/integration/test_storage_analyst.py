"""The analyst's commands against the dev stack's ClickHouse server: read-only queries, server-side binding
over HTTP, roles where the server keeps none, triage, and progress of a running query."""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from vigil.alert import Alert
from vigil.config import Settings
from vigil.event import Actor, Event, K8sContext, Target
from vigil.storage import cli
from vigil.storage.clickhouse import QueryProgress, connect
from vigil.storage.schema import migrate

pytestmark = pytest.mark.integration

SHARED_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))

NOW = time.time_ns()


@pytest.fixture
def analyst_settings(settings: Settings) -> Iterator[Settings]:
    settings.clickhouse.database = f"test_analyst_{uuid.uuid4().hex[:12]}"
    store = connect(settings.clickhouse)
    report = migrate(store)
    assert report.roles == [] and report.roles_skipped.startswith("Code: 497.")  # the dev server keeps no roles
    store.insert_events([
        Event(id="a1", time_ns=NOW - 10**9, source="k8s-audit", kind="k8s.api", action="list", original_id="x1",
              k8s=K8sContext(namespace="payments"), actor=Actor(user="mallory", source_ips=["203.0.113.4"]),
              target=Target(resource="secrets", namespace="payments")),
    ], "analyst")
    store.insert_alerts([Alert(detection="k8s.exec_into_pod", title="Exec", severity="high", time_ns=NOW,
                               evidence=["x1"])], "analyst-alerts")
    yield settings
    store.command("DROP DATABASE {db:Identifier}", {"db": settings.clickhouse.database})
    store.close()


def run(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args, settings)


def test_query_is_read_only_on_a_server(analyst_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(analyst_settings, "query", "DROP TABLE events") == 1
    assert "READONLY" in capsys.readouterr().err
    assert run(analyst_settings, "query", "SELECT count() AS n FROM events", "--format", "json") == 0
    assert orjson.loads(capsys.readouterr().out) == {"n": 1}


def test_hunt_and_sigma_bind_over_http(analyst_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(analyst_settings, "hunt", "run", "identity-activity", "--param", "user=mallory", "--format",
               "json") == 0
    assert [orjson.loads(line)["resource"] for line in capsys.readouterr().out.splitlines()] == ["secrets"]
    rule = SHARED_DATA / "sigma" / "kubernetes-audit" / "kubernetes_audit_secrets_enumeration.yml"
    assert run(analyst_settings, "hunt", "--sigma", str(rule), "--format", "json") == 0
    assert [orjson.loads(line)["audit_id"] for line in capsys.readouterr().out.splitlines()] == ["x1"]


def test_triage_writes_on_a_server(analyst_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    alert_id = Alert(detection="k8s.exec_into_pod", title="Exec", severity="high", time_ns=NOW, evidence=["x1"]).id
    assert run(analyst_settings, "alerts", "ack", alert_id, "--by", "sam") == 0
    assert run(analyst_settings, "alerts", "list", "--format", "json") == 0
    rows = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()[1:]]
    assert [(r["id"], r["status"]) for r in rows] == [(alert_id, "acknowledged")]


def test_progress_of_a_running_query_is_reported(analyst_settings: Settings) -> None:
    store = connect(analyst_settings.clickhouse, read_only=True)
    seen: list[QueryProgress] = []
    try:
        store.query_raw("SELECT sum(sleepEachRow(0.1)) FROM numbers(20) SETTINGS max_block_size = 1", None,
                        "JSONEachRow", on_progress=seen.append)
    finally:
        store.close()
    assert seen, "no progress was reported while the query ran"
    assert [p.read_rows for p in seen] == sorted(p.read_rows for p in seen)
