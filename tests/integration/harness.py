"""Pieces integration tests share: the collector running in-process, sample payloads, polling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson
from prometheus_client import REGISTRY

from vigil import kafka
from vigil.collectors.cli import run_audit_collector
from vigil.collectors.node.collector import NodeCollector
from vigil.collectors.node.metrics import SOURCE_UP

VIGIL = str(Path(sys.executable).with_name("vigil"))
SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "attack-scenario.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event_list(n: int) -> bytes:
    items = [orjson.loads(line) for line in SAMPLES.read_bytes().splitlines()]
    return orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items[:n]})


class RunningCollector:
    """The collector in-process, as `vigil collect audit` runs it."""

    def __init__(self, settings, **kwargs) -> None:
        self.settings = settings
        self.kwargs = kwargs
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> RunningCollector:
        self.task = asyncio.create_task(run_audit_collector(self.settings, stop=self.stop, **self.kwargs))
        for _ in range(150):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.settings.collector.webhook_port)
                writer.close()
                return self
            except OSError:
                assert not self.task.done(), self.task.exception()
                await asyncio.sleep(0.1)
        raise AssertionError("webhook did not come up")

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)



async def wait_for(predicate, timeout: float = 60.0, interval: float = 0.5):
    """Poll ``predicate`` (sync or async) until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def running_node_collector(collector: NodeCollector, sources: Iterable[str] = ("containerd",),
                                 timeout: float = 60.0) -> tuple[asyncio.Event, asyncio.Task[None]]:
    """Start a node collector and return once its sources are up: containerd keeps no event history, so a
    container a test starts before the collector follows its events would never reach the topic."""
    sources = tuple(sources)
    for source in sources:
        SOURCE_UP.labels(source).set(0)  # set to 1 once this collector runs the source
    stop = asyncio.Event()
    run = asyncio.create_task(collector.run(stop))
    await wait_for(lambda: run.done() or all(
        REGISTRY.get_sample_value("vigil_node_source_up", {"source": source}) == 1 for source in sources),
        timeout=timeout)
    assert not run.done(), run.exception()
    return stop, run


async def read_raw_records(settings, topic: str) -> list[dict]:
    """Every record of a topic whose messages are JSON arrays (raw and events topics), up to its end offsets at
    the time of the call, without a consumer group."""
    consumer = kafka.consumer(settings, settings.topic(topic), group_id=None)
    await consumer.start()
    try:
        partitions = consumer.assignment()
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(list(partitions))
        records: list[dict] = []
        while [p for p, end in ends.items() if await consumer.position(p) < end]:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                records += [doc for message in messages for doc in orjson.loads(message.value)]
        return records
    finally:
        await consumer.stop()


@contextlib.contextmanager
def stream_worker_process(settings, directory: Path) -> Iterator[None]:
    """``vigil stream worker`` as its own process, on the topics, data directory and metrics port of ``settings``;
    its log is printed when it stops, so a failing test shows what the worker did."""
    settings.data_dir = str(directory / "data")
    settings.metrics_port = free_port()
    env = os.environ | {
        "VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "VIGIL_DATA_DIR": settings.data_dir,
        "VIGIL_CLUSTER": settings.cluster,
        "VIGIL_NODE": settings.node,
        "VIGIL_METRICS_PORT": str(settings.metrics_port),
    }
    log = directory / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([VIGIL, "stream", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        yield
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        sys.stderr.write(f"--- worker.log\n{log.read_text(errors='replace')[-3000:]}\n")
