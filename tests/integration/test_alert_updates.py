"""Repeats of an open alert reach the alerts topic as one update of it per worker timer tick, however many
repeats came: through a real stream worker on the dev Kafka."""

from __future__ import annotations

import pytest

from tests.integration.harness import stream_worker_process
from vigil import kafka
from vigil.sources.audit.fixtures import audit_record
from vigil.sources.source import get_source

pytestmark = pytest.mark.integration


def exec_into_web(second: int) -> dict:
    return audit_record("create", "pods", name="web-7f9c", subresource="exec", code=101,
                        query="command=bash&container=app", time=f"2025-03-04T06:22:{second:02d}.000000Z")


async def test_repeats_of_an_open_alert_go_out_as_one_update(kafka_settings, read_documents, tmp_path):
    settings = kafka_settings
    settings.cluster = "updates"
    execs = [exec_into_web(second) for second in (18, 20, 21, 22)]
    with stream_worker_process(settings, tmp_path):
        producer = kafka.producer(settings)
        await producer.start()
        try:
            key = get_source("k8s-audit").key(execs[0], settings.cluster).encode()
            await producer.send_and_wait(settings.topic("raw.k8s-audit"), kafka.encode_batch(execs), key=key)
        finally:
            await producer.stop()
        alerts = await read_documents(settings, "alerts", expected=2, timeout=120, settle=3)

    exec_alerts = [a for a in alerts if a["detection"] == "k8s.exec_into_pod"]
    assert [a["count"] for a in exec_alerts] == [1, 4]
    first, update = exec_alerts
    assert update["id"] == first["id"]
    assert update["evidence"] == [e["auditID"] for e in execs]
    assert update["last_seen_ns"] - update["first_seen_ns"] == 4 * 10**9
