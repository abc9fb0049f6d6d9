"""Coverage on the real stack: a collector's loss report goes to every partition of ``raw.<source>``, the Faust
worker turns it into a ``collector.health`` event, and an alert over the span of the loss says it may be blind."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pytest

from tests.integration.harness import stream_worker_process
from vigil import kafka
from vigil.collectors.health import HealthReporter
from vigil.collectors.ingest import SourceIngest
from vigil.collectors.shipper import KafkaShipper
from vigil.sources.audit.fixtures import audit_record
from vigil.sources.source import get_source

pytestmark = pytest.mark.integration

LOST = 17


@pytest.fixture
def worker(kafka_settings, tmp_path):
    """The stream worker as its own process, on this test's topics."""
    with stream_worker_process(kafka_settings, tmp_path):
        yield kafka_settings


def _sweep(start_ns: int) -> list[bytes]:
    """Eight different forbidden requests from one identity, one millisecond apart: k8s.enumeration fires."""
    requests = [(verb, resource) for resource in ("secrets", "pods", "nodes", "configmaps") for verb in ("list", "get")]
    records = []
    for i, (verb, resource) in enumerate(requests):
        at = datetime.fromtimestamp((start_ns + i * 1_000_000) / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        records.append(audit_record(verb, resource, user="system:serviceaccount:default:stolen", code=403, time=at))
    return [orjson.dumps(record) for record in records]


async def test_a_reported_loss_reaches_every_partition_and_marks_the_alerts_over_it(worker, read_documents) -> None:
    settings = worker
    shipper = KafkaShipper(settings, "coverage-test")
    await shipper.start()
    try:
        reporter = HealthReporter(settings, shipper, "coverage-test")
        reporter.count("k8s-audit", LOST, "kafka_refused_MessageSizeTooLargeError")
        sweep = _sweep(time.time_ns())
        await reporter.report()  # the loss spans the sweep's event times, and is on Kafka before the sweep
        result = await SourceIngest(get_source("k8s-audit"), settings, shipper, "coverage-test").ingest(sweep)
        assert result.accepted == len(sweep) and not result.rejected
    finally:
        await shipper.close()

    partitions = kafka.TOPICS["raw.k8s-audit"]
    raw = await read_documents(settings, "raw.k8s-audit", expected=partitions + len(sweep), with_keys=True)
    reports = [doc for _, doc in raw if doc.get("kind") == "vigil.collector.health"]
    assert len(reports) == partitions and {r["dropped"] for r in reports} == {LOST}
    assert await _partitions_holding_reports(settings) == set(range(partitions))

    events = await read_documents(settings, "events", expected=partitions + len(sweep), timeout=180)
    health = [event for event in events if event["kind"] == "collector.health"]
    assert len(health) == partitions and len({event["id"] for event in health}) == 1
    assert health[0]["source"] == "k8s-audit" and health[0]["raw"]["dropped"] == LOST

    alerts = await read_documents(settings, "alerts", expected=1, timeout=60, settle=1.0)
    (alert,) = [alert for alert in alerts if alert["detection"] == "k8s.enumeration"]
    assert alert["context"]["coverage_degraded"] == {"k8s-audit": LOST}


async def _partitions_holding_reports(settings) -> set[int]:
    """The partitions of ``raw.k8s-audit`` a health report arrived on."""
    consumer = kafka.consumer(settings, settings.topic("raw.k8s-audit"), group_id=None)
    await consumer.start()
    try:
        await consumer.seek_to_beginning(*consumer.assignment())
        found: set[int] = set()
        for _ in range(20):
            for partition, messages in (await consumer.getmany(timeout_ms=500)).items():
                if any(b"vigil.collector.health" in message.value for message in messages):
                    found.add(partition.partition)
        return found
    finally:
        await consumer.stop()
