"""The spine end to end on the real stack: audit webhook → Kafka → Faust worker → events + alerts →
storage writer → ClickHouse, and alerts on the SIEM topic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.integration.harness import SAMPLES, RunningCollector, event_list, free_port, wait_for
from vigil.detections.engine import Engine
from vigil.detections.replay import Replay
from vigil.sources.source import get_source

pytestmark = pytest.mark.integration

VIGIL = str(Path(sys.executable).with_name("vigil"))


def _env(settings) -> dict[str, str]:
    return os.environ | {
        "VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "VIGIL_CLICKHOUSE_URL": settings.clickhouse.url,
        "VIGIL_CLICKHOUSE_DATABASE": settings.clickhouse.database,
        "VIGIL_DATA_DIR": settings.data_dir,
        "VIGIL_CLUSTER": settings.cluster,
        "VIGIL_METRICS_PORT": str(settings.metrics_port),
    }


def _spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([VIGIL, *command], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


@pytest.fixture
def metrics_ports() -> dict[str, int]:
    """Where each spawned component serves /metrics."""
    return {}


@pytest.fixture
def pipeline(kafka_settings, tmp_path, metrics_ports):
    """The stream worker and the storage writer as the separate processes they are in production."""
    ports = metrics_ports
    kafka_settings.data_dir = str(tmp_path / "data")
    kafka_settings.cluster = "e2e"
    kafka_settings.collector.webhook_port = free_port()
    kafka_settings.clickhouse.database = f"test_{uuid.uuid4().hex[:10]}"
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = []
    for name, command in (("worker", ["stream", "worker"]), ("writer", ["store"])):
        kafka_settings.metrics_port = free_port()
        processes.append(_spawn(command, _env(kafka_settings), logs / f"{name}.log"))
        ports[name] = kafka_settings.metrics_port
    yield kafka_settings
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    for log in logs.iterdir():
        sys.stderr.write(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}\n")


async def test_posted_audit_events_become_rows_and_siem_alerts(pipeline, read_documents, clickhouse_client,
                                                               metrics_ports):
    settings = pipeline
    async with RunningCollector(settings, webhook=True, files=[]), aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{settings.collector.webhook_port}/audit"
        async with session.post(url, data=event_list(5)) as response:
            assert response.status == 200

    replayed = Replay(get_source("k8s-audit"), Engine.load(), cluster="e2e", node="n", max_record_bytes=1 << 20)
    expected = len(replayed.run([SAMPLES]).alerts)  # the same library, in-process
    alerts = await read_documents(settings, "alerts", expected=expected, timeout=180, settle=1.0)
    assert len({alert["id"] for alert in alerts}) == expected
    by_detection = {alert["detection"]: alert for alert in alerts}
    exec_alert = by_detection["k8s.exec_into_pod"]
    assert exec_alert["evidence"] == ["d1c1a0e2-0003-4a1b-9c1e-000000000003"]
    assert (exec_alert["namespace"], exec_alert["pod"], exec_alert["user"]) == ("shop", "web-7d9f",
                                                                              "mallory@example.com")
    assert exec_alert["cluster"] == "e2e"
    assert {"k8s.privileged_container", "k8s.sensitive_host_path"} <= by_detection.keys()

    database = settings.clickhouse.database
    audit_ids = sorted(orjson.loads(line)["auditID"] for line in SAMPLES.read_bytes().splitlines())

    def stored_ids():
        try:
            rows = clickhouse_client.query(f"SELECT original_id FROM {database}.events ORDER BY original_id")
        except Exception:  # the writer has not created the database yet
            return None
        ids = [row[0] for row in rows.result_rows]
        return ids if len(ids) >= len(audit_ids) else None

    assert await wait_for(stored_ids, timeout=120) == audit_ids

    def stored_exec_alerts():  # the alerts may reach the writer in a later poll than the events, so a later flush
        return clickhouse_client.query(
            f"SELECT detection, namespace, pod FROM {database}.alerts FINAL WHERE detection = 'k8s.exec_into_pod'"
        ).result_rows

    assert await wait_for(stored_exec_alerts, timeout=60) == [("k8s.exec_into_pod", "shop", "web-7d9f")]

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{metrics_ports['worker']}/metrics") as response:
            worker_metrics = await response.text()
        async with session.get(f"http://127.0.0.1:{metrics_ports['writer']}/metrics") as response:
            writer_metrics = await response.text()
    assert 'vigil_events_processed_total{kind="k8s.api"} 5.0' in worker_metrics
    assert 'vigil_alerts_total{detection="k8s.exec_into_pod",severity="high"} 1.0' in worker_metrics
    assert await wait_for(lambda: _lag_metric(metrics_ports["worker"], settings.topic("raw.k8s-audit")), 30) == "0.0"
    assert 'vigil_clickhouse_rows_total{table="events"}' in writer_metrics


def _lag_metric(port: int, topic: str) -> str | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    prefix = f'vigil_consumer_lag_records{{component="stream-worker",topic="{topic}"}} '
    return next((line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)), None)
