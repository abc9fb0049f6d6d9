"""One error policy on the real Kafka: a record whose normalizer raises something unexpected is dead-lettered as
``normalize_failed`` with the exception, and the worker goes on with the records after it."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

from tests.integration.faulty_normalizer_worker import FAULT_FIELD
from tests.integration.harness import stream_worker_process
from vigil import kafka
from vigil.sources.containerd.fixtures import containerd_record

pytestmark = pytest.mark.integration

WORKER = [sys.executable, str(Path(__file__).with_name("faulty_normalizer_worker.py"))]


async def test_a_normalizer_that_raises_dead_letters_the_record_and_the_worker_goes_on(
        kafka_settings, tmp_path, read_documents) -> None:
    settings = kafka_settings
    faulty = containerd_record("container.start", pod="faulty-pod") | {FAULT_FIELD: True}
    same_message = containerd_record("container.start", at_s=1.0, pod="faulty-pod")
    next_message = containerd_record("container.exit", at_s=2.0, pod="next-pod", exit_status=0)
    with stream_worker_process(settings, tmp_path, command=WORKER):
        producer = kafka.producer(settings)
        await producer.start()
        try:
            topic = settings.topic("raw.containerd")
            await producer.send_and_wait(topic, kafka.encode_batch([faulty, same_message]), key=b"c/shop/faulty-pod")
            await producer.send_and_wait(topic, kafka.encode_batch([next_message]), key=b"c/shop/next-pod")
        finally:
            await producer.stop()
        [dead] = await read_documents(settings, "deadletter", expected=1)
        events = await read_documents(settings, "events", expected=2)

    assert dead["component"] == "stream-worker" and dead["source"] == "containerd"
    assert dead["reason"] == "normalize_failed"
    assert dead["detail"] == "RuntimeError: injected normalizer fault"
    assert orjson.loads(dead["raw"]) == faulty
    assert sorted((e["k8s"]["pod"], e["kind"]) for e in events) == [
        ("faulty-pod", "container.start"), ("next-pod", "container.exit")]
