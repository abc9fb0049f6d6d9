"""``vigil stream tail --since`` on a topic that has nothing yet: the first records must not be skipped. Tailing a
topic that did not exist yet printed nothing at all, however many records arrived (measured with the code before
:func:`vigil.kafka.seek_to_time`)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.integration.harness import VIGIL, PipeLines
from vigil import kafka

pytestmark = pytest.mark.integration


async def _produce(settings, topic: str, values: list[bytes]) -> None:
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(settings.topic(topic), value)
    finally:
        await producer.stop()


async def test_seeking_a_fresh_topic_to_a_time_keeps_the_records_produced_next(kafka_settings) -> None:
    settings = kafka_settings
    consumer = kafka.consumer(settings, settings.topic("alerts"), group_id=None)
    await consumer.start()
    try:
        await kafka.seek_to_time(consumer, consumer.assignment(), int(time.time() * 1000) - 60_000)
        values = [b'{"n": %d}' % n for n in range(3)]
        await _produce(settings, "alerts", values)
        read: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(read) < len(values) and time.monotonic() < deadline:
            read += [m.value for batch in (await consumer.getmany(timeout_ms=500)).values() for m in batch]
    finally:
        await consumer.stop()
    assert sorted(read) == values


async def test_tail_since_prints_the_first_records_of_a_topic_created_after_it_started(settings) -> None:
    env = {"VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix}
    tail = subprocess.Popen([VIGIL, "stream", "tail", "alerts", "--since", "10m", "--max", "2", "--timeout", "60"],
                            env=os.environ | env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        PipeLines(tail.stderr).wait_for(lambda line: line.startswith(b"vigil: reading"))
        await _produce(settings, "alerts", [b'{"id": "first"}', b'{"id": "second"}'])
        printed = PipeLines(tail.stdout).until_closed()
    finally:
        tail.kill()
        tail.wait()
    assert printed == [b'{"id": "first"}', b'{"id": "second"}']
