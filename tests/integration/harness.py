"""Pieces integration tests share: the collector running in-process, sample payloads, polling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

import orjson
from prometheus_client import REGISTRY

from vigil import kafka
from vigil.collectors.cli import run_audit_collector
from vigil.collectors.node.collector import NodeCollector
from vigil.collectors.node.metrics import SOURCE_UP

VIGIL = str(Path(sys.executable).with_name("vigil"))
SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "attack-scenario.jsonl"

#: A process (x86-64) that logs every getppid (RET_LOG), calls it ``argv[1]`` times, says so, and once more on a
#: line: the kernel writes an audit SECCOMP record with its pid for each call.
LOGGED_GETPPID = r"""
import ctypes, os, struct, sys
AUDIT_ARCH_X86_64, GETPPID = 0xC000003E, 110
LD_ABS, JEQ, RET = 0x20, 0x15, 0x06
program = [(LD_ABS, 0, 0, 4), (JEQ, 0, 3, AUDIT_ARCH_X86_64), (LD_ABS, 0, 0, 0), (JEQ, 1, 0, GETPPID),
           (RET, 0, 0, 0x7FFF0000), (RET, 0, 0, 0x7FFC0000)]  # ALLOW, LOG
filters = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *op) for op in program))
fprog = ctypes.create_string_buffer(struct.pack("=HxxxxxxQ", len(program), ctypes.addressof(filters)))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0 and libc.syscall(317, 1, 0, fprog) == 0
for _ in range(int(sys.argv[1])):
    os.getppid()
print("done", flush=True)
sys.stdin.readline()
os.getppid()
"""


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
        await wait_for(self._listening, timeout=15, interval=0.1)
        return self

    async def _listening(self) -> bool:
        """Whether the webhook accepts connections (a collector that stopped fails the wait at once)."""
        assert self.task is not None
        if self.task.done():
            raise AssertionError(f"the collector stopped: {self.task.exception()!r}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.settings.collector.webhook_port)
        except OSError:
            return False
        writer.close()
        return True

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


class PipeLines:
    """The lines a child process writes to one of its pipes, read as they come: a test waits for the line that
    says what it needs (a component's "ready" log line, a record) instead of guessing how long that takes.

    Read the pipe only through this object: it buffers what it has read past the line a test waited for.
    """

    def __init__(self, pipe: IO[bytes]) -> None:
        self._fd = pipe.fileno()
        self._partial = b""
        self._closed = False
        self.lines: list[bytes] = []

    def wait_for(self, match: Callable[[bytes], bool], timeout: float = 60.0) -> bytes:
        """The first line (read so far or from now on) ``match`` accepts; fail after ``timeout`` or at EOF."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for line in self.lines[checked:]:
                if match(line):
                    return line
            checked = len(self.lines)
            if self._closed:
                raise AssertionError(f"the pipe closed; no matching line among {checked}:\n{self._tail()}")
            self._read(deadline, f"no matching line among {checked} within {timeout}s:\n{self._tail()}")

    def until_closed(self, timeout: float = 60.0) -> list[bytes]:
        """Every line, once the child closed the pipe (it exited): a child stopping must not block on a full
        pipe nobody reads."""
        deadline = time.monotonic() + timeout
        while not self._closed:
            self._read(deadline, f"the pipe was still open after {timeout}s")
        return self.lines

    def _tail(self, lines: int = 10) -> str:
        return b"\n".join(self.lines[-lines:]).decode(errors="replace")

    def _read(self, deadline: float, failure: str) -> None:
        ready, _, _ = select.select([self._fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(failure)
        chunk = os.read(self._fd, 1 << 16)
        if not chunk:
            self._closed = True
            chunk = b"\n" if self._partial else b""
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        self.lines += complete


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


async def container_lifecycles(settings, container_ids: Iterable[str],
                               awaited: frozenset[str] = frozenset({"container.exit"})
                               ) -> dict[str, dict[str, dict]] | None:
    """Each container's ``raw.containerd`` records by kind, once every one of them has the awaited kinds on the
    topic (``None`` before): poll it with :func:`wait_for`.

    containerd publishes an OOM kill and the exit it causes from two watchers of its shim: either may come
    first, and each carries the time it was published.
    """
    found: dict[str, dict[str, dict]] = {container_id: {} for container_id in container_ids}
    for record in await read_raw_records(settings, "raw.containerd"):
        if record.get("container_id") in found:
            found[record["container_id"]][record["kind"]] = record
    return found if all(awaited <= kinds.keys() for kinds in found.values()) else None


@contextlib.contextmanager
def stream_worker_process(settings, directory: Path, command: Sequence[str] = (VIGIL, "stream", "worker"),
                          ) -> Iterator[None]:
    """``vigil stream worker`` (or ``command``, a wrapper of it) as its own process, on the topics, data directory
    and metrics port of ``settings``; its log is printed when it stops, so a failing test shows what the worker
    did."""
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
        worker = subprocess.Popen(list(command), env=env, stdout=out, stderr=subprocess.STDOUT,
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
