"""``vigil bench detect``: events per second through the detection engine with the whole library enabled.

The event mix imitates a busy node pool: mostly runtime events (file opens, connections, execs, writes) of a
few hundred pods, plus audit traffic (controllers renewing leases, kubelets patching node status, reads,
pod creations, a few execs and forbidden requests), with event times a few microseconds apart. It is
measured three ways in one run, each next to the same raw baseline, an orjson parse loop over the same
serialized records:

- ``engine``: normalized events through :meth:`Engine.process` (the detections and their state);
- ``stream step``: raw Kafka message values through :class:`StreamProcessor` in the batches a worker takes
  (decode, normalize, engine, encode the events batches, state written once per batch);
- ``faust``: the same messages on a private topic prefix of the local Kafka, through ``--workers`` real
  ``vigil stream worker`` processes sharing the topics' partitions, counted on the events topic; the baseline
  there is a raw aiokafka consumer reading and parsing the same messages (on a prefix of their own). The
  messages are sent only once every worker has joined the group, so the rate is that of all of them.

The in-process rates are events per CPU second of the benchmark's own (single-threaded) process, and the
worker's are given per CPU second of the worker too: "per core" figures that hold on a machine shared with
the broker and other work, where wall-clock rates measure the neighbours as much as vigil.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from vigil import heap, kafka
from vigil.benchmarks.cpu import cpu_seconds
from vigil.config import Settings
from vigil.detections.engine import Engine
from vigil.detections.sdk import Detection, StatefulDetection
from vigil.detections.state import CountingStore
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record, workload_object
from vigil.sources.source import get_source
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record
from vigil.streams.app import BATCH_MESSAGES
from vigil.streams.processor import RawMessage, StreamProcessor

START_NS = 1_741_069_338 * 10**9
#: Event time between consecutive events: a stream of 200k events/s.
STEP_NS = 5_000
NAMESPACES = [f"team-{n}" for n in range(10)]
PODS = [(namespace, f"svc-{p}-7f9c{p % 10}") for namespace in NAMESPACES for p in range(20)]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil bench detect``: the mix, the in-process runs, then (unless skipped) the Faust worker's."""
    records = event_mix(args.events)
    print(describe_mix(records))
    bench_in_process(settings, records, args.records_per_message)
    if args.faust_events:
        return asyncio.run(bench_faust(settings, event_mix(args.faust_events), args.records_per_message,
                                       args.workers))
    return 0


# --- The event mix --------------------------------------------------------------------------------------------

_Make = Callable[[random.Random, str, str], tuple[str, dict[str, Any]]]


def _runtime(event_type: str, binary: str, body: dict[str, Any] | None = None, arguments: str = "") -> _Make:
    def make(rng: random.Random, namespace: str, pod: str) -> tuple[str, dict[str, Any]]:
        return "tetragon", tetragon_record(event_type, binary=binary, arguments=arguments, body=body,
                                           namespace=namespace, pod=pod, pid=rng.randrange(100, 60_000))

    return make


def _audit(verb: str, resource: str, *, subresource: str = "", user: str = "system:node:node-1", code: int = 200,
           pod_body: bool = False, about_pod: bool = False) -> _Make:
    def make(rng: random.Random, namespace: str, pod: str) -> tuple[str, dict[str, Any]]:
        spec = {"containers": [{"name": "app", "image": "nginx:1.27"}]}
        body = workload_object("Pod", pod, spec) if pod_body else None
        name = pod if about_pod or pod_body else f"{resource}-{rng.randrange(50)}"
        return "k8s-audit", audit_record(verb, resource, name=name, namespace=namespace, subresource=subresource,
                                         user=user, code=code, request_object=body)

    return make


def _open(path: str) -> dict[str, Any]:
    return kprobe("fd_install", {"int_arg": 7}, {"file_arg": {"path": path}})


def _connect(address: str, port: int) -> dict[str, Any]:
    return kprobe("tcp_connect", {"sock_arg": {"family": "AF_INET", "saddr": "10.244.1.7", "daddr": address,
                                               "sport": 40_122, "dport": port}})


#: (share, what) of the mix; shares add up to 1.
MIX: list[tuple[float, _Make]] = [
    (0.20, _runtime("process_kprobe", "/usr/sbin/nginx", _open("/usr/share/nginx/html/index.html"))),
    (0.08, _runtime("process_kprobe", "/usr/bin/python3", _open("/app/config/settings.yaml"))),
    (0.02, _runtime("process_kprobe", "/app/server", _open("/var/run/secrets/kubernetes.io/serviceaccount/token"))),
    (0.10, _runtime("process_kprobe", "/app/server", _connect("10.96.12.4", 5432))),
    (0.05, _runtime("process_kprobe", "/app/server", _connect("142.250.74.100", 443))),
    (0.08, _runtime("process_kprobe", "/usr/bin/python3", kprobe(
        "security_file_permission", {"file_arg": {"path": "/tmp/cache/item.bin"}}, {"int_arg": 2}))),
    (0.10, _runtime("process_exec", "/usr/bin/python3", arguments="/app/worker.py")),
    (0.03, _runtime("process_exec", "/bin/sh", arguments="-c healthcheck")),
    (0.02, _runtime("process_exec", "/usr/bin/curl", arguments="-s localhost:8080/healthz")),
    (0.02, _runtime("process_exit", "/bin/sh")),
    (0.10, _audit("update", "leases", user="system:serviceaccount:kube-system:leader-election")),
    (0.06, _audit("get", "configmaps", user="system:serviceaccount:team-0:app")),
    (0.04, _audit("list", "pods", user="system:serviceaccount:kube-system:replicaset-controller")),
    (0.04, _audit("patch", "nodes", subresource="status")),
    (0.02, _audit("get", "secrets", user="system:node:node-1")),
    (0.03, _audit("create", "pods", user="system:serviceaccount:kube-system:replicaset-controller",
                  pod_body=True)),
    (0.005, _audit("create", "pods", subresource="exec", user="alice@example.com", code=101, about_pod=True)),
    (0.005, _audit("list", "secrets", user="mallory@example.com", code=403)),
]


def event_mix(count: int, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """``count`` (source, record) pairs drawn from :data:`MIX` over :data:`PODS`, in event-time order."""
    rng = random.Random(seed)
    makers = [make for _, make in MIX]
    weights = [share for share, _ in MIX]
    pool = [make(rng, *rng.choice(PODS)) for make in rng.choices(makers, weights, k=min(count, 5_000))]
    records = []
    for index in range(count):
        source, template = pool[index % len(pool)]
        records.append((source, _dated(source, template, START_NS + index * STEP_NS, index)))
    return records


def _dated(source: str, template: dict[str, Any], time_ns: int, index: int) -> dict[str, Any]:
    """A copy of ``template`` at ``time_ns`` with its own identity (so events and alerts are distinct)."""
    seconds, nanos = divmod(time_ns, 10**9)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
    record = dict(template)
    if source == "k8s-audit":
        record.update(auditID=f"bench-{index}", requestReceivedTimestamp=stamp, stageTimestamp=stamp)
    else:
        record["time"] = stamp
    return record


def describe_mix(records: list[tuple[str, dict[str, Any]]]) -> str:
    events = list(_normalize(records[:20_000]))
    kinds = Counter(event.kind for event in events)
    total = sum(kinds.values())
    shares = ", ".join(f"{kind} {100 * n / total:.0f}%" for kind, n in kinds.most_common())
    engine = Engine.load()
    stateful = sum(isinstance(d, StatefulDetection) for d in engine.detections)
    asked = [_asked(engine.detections, event) for event in events[:5_000]]
    return (f"event mix: {len(records):,} events over {len(PODS)} pods ({shares}); "
            f"{len(engine.detections)} detections loaded ({stateful} windowed or sequence); their prefilters ask "
            f"{sum(asked) / len(asked):.1f} per event, {100 * asked.count(0) / len(asked):.0f}% of events none")


def _asked(detections: list[Detection], event: Event) -> int:
    """How many of ``detections`` the engine asks about ``event``: those of its kind whose prefilter admits it."""
    return sum(event.kind in d.kinds and any(p.admits(event) for p in d.prefilters(event.kind)) for d in detections)


def _normalize(records: list[tuple[str, dict[str, Any]]]) -> Iterator[Event]:
    for source_name, record in records:
        yield get_source(source_name).normalize(record, "bench", "node-1")


# --- In-process -----------------------------------------------------------------------------------------------


def bench_in_process(settings: Settings, records: list[tuple[str, dict[str, Any]]], per_message: int) -> None:
    count = len(records)
    payloads = [orjson.dumps(record) for _, record in records]
    events = list(_normalize(records))
    messages = list(_messages(records, per_message))
    # The prepared inputs are not part of the work: keep the collector from rescanning them in every run, and
    # collect as the stream worker does (vigil.heap).
    heap.settle()

    def parse() -> None:
        for payload in payloads:
            orjson.loads(payload)

    raw_rate = count / _timed(parse)
    print(f"raw orjson parse loop         {raw_rate:>12,.0f} events/s  {1e6 / raw_rate:6.2f} us/event  "
          f"(in-process rates: per CPU second)")

    store = CountingStore()
    engine = Engine.load(store=store)

    def each_event() -> None:
        for event in events:
            engine.process(event)
            engine.commit()  # as if every event were its own message: the most state writes

    rate = count / _timed(each_event)
    print(f"engine (whole library)        {rate:>12,.0f} events/s  {1e6 / rate:6.2f} us/event  "
          f"raw/engine {raw_rate / rate:5.1f}x  state writes {store.writes / count:.3f}/event, "
          f"{len(store)} keys held, prefilter signatures {engine.prefilter_signatures}")

    store = CountingStore()
    processor = StreamProcessor(settings, Engine.load(store=store))
    raw_messages = [RawMessage(source_name, value, START_NS) for source_name, _, value in messages]
    batches = [raw_messages[i : i + BATCH_MESSAGES] for i in range(0, len(raw_messages), BATCH_MESSAGES)]
    raised: list[int] = []
    updated: list[int] = []

    def step() -> None:
        for batch in batches:
            raised.extend(len(out.alerts) for out in processor.process_batch(batch))
        updated.append(len(processor.advance()))  # the worker's timer: the open alerts hits updated

    rate = count / _timed(step)
    print(f"stream step (decode, normalize, engine, encode) {rate:>10,.0f} events/s  {1e6 / rate:6.2f} us/event  "
          f"raw/step {raw_rate / rate:5.1f}x  state writes {store.writes / count:.3f}/event "
          f"({len(messages):,} messages of up to {per_message} records in batches of {BATCH_MESSAGES}, "
          f"{sum(raised):,} alerts, {sum(updated):,} updated)")


def _timed(work: Callable[[], object]) -> float:
    """CPU seconds ``work`` took: its cost on one core, whatever else the machine runs meanwhile."""
    started = time.process_time()
    work()
    return time.process_time() - started


def _messages(records: list[tuple[str, dict[str, Any]]], per_message: int) -> Iterator[tuple[str, bytes, bytes]]:
    """(source, key, value) Kafka messages: records grouped by key in flushes, as the collectors ship them."""
    flush = per_message * len(PODS)
    for start in range(0, len(records), flush):
        batches: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for source_name, record in records[start : start + flush]:
            key = get_source(source_name).key(record, "bench")
            batches.setdefault((source_name, key), []).append(record)
        for (source_name, key), batch in batches.items():
            for chunk in range(0, len(batch), per_message):
                yield source_name, key.encode(), kafka.encode_batch(batch[chunk : chunk + per_message])


# --- Through a Faust worker -------------------------------------------------------------------------------------


async def bench_faust(settings: Settings, records: list[tuple[str, dict[str, Any]]], per_message: int,
                      workers: int = 1) -> int:
    run = f"bench-{uuid.uuid4().hex[:8]}"
    baseline_settings = copy.deepcopy(settings)
    baseline_settings.kafka.topic_prefix = f"{run}-raw."
    settings.kafka.topic_prefix = f"{run}."
    data_dir = Path(settings.data_dir) / run
    try:
        await kafka.ensure_topics(settings)
        await kafka.ensure_topics(baseline_settings)
    except KafkaError as exc:
        print(f"vigil bench detect: Kafka is not reachable ({exc}); start it with `vigil dev up`", file=sys.stderr)
        return 1
    processes: list[subprocess.Popen] = []
    try:
        messages = list(_messages(records, per_message))
        await _produce(baseline_settings, messages)
        baseline = await _consume_raw(baseline_settings, len(records))
        processes = [_start_worker(settings, data_dir / str(n)) for n in range(workers)]
        await _joined(settings, processes)
        await _produce(settings, messages)
        rate, per_cpu_second = await _count_events(settings, len(records), processes)
    finally:
        for process in processes:
            _stop(process)
        await _delete_topics(settings)
        await _delete_topics(baseline_settings)
        shutil.rmtree(data_dir, ignore_errors=True)
    label = f"faust workers ({workers} processes)" if workers > 1 else "faust worker (1 process)"
    print(f"{label:<30}{rate:>12,.0f} events/s  raw aiokafka consume+parse {baseline:,.0f} events/s"
          f"  raw/worker {baseline / rate:5.1f}x  ({len(records):,} events in {len(messages):,} messages, "
          f"{settings.kafka.partitions} partitions)")
    print(f"faust worker per CPU second   {per_cpu_second:>12,.0f} events/s  (the workers used "
          f"{100 * rate / per_cpu_second:.0f}% of a core meanwhile)")
    return 0


async def _joined(settings: Settings, processes: list[subprocess.Popen]) -> None:
    """Return once the workers' consumer group is stable with every one of them in it."""
    group = f"{settings.kafka.topic_prefix}streams"
    deadline = time.monotonic() + 300
    admin = AIOKafkaAdminClient(**kafka.client_options(settings.kafka))
    await admin.start()
    try:
        while True:
            (response,) = await admin.describe_consumer_groups([group])
            _, _, state, _, _, members = response.groups[0][:6]
            if state == "Stable" and len(members) == len(processes):
                return
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"the workers did not join one group (state {state}, {len(members)} members)")
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def _produce(settings: Settings, messages: list[tuple[str, bytes, bytes]]) -> None:
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for source_name, key, value in messages:
            await producer.send(settings.topic(f"raw.{source_name}"), value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def _consume_raw(settings: Settings, expected: int) -> float:
    """Events/s of a bare consumer that reads the raw topics and parses each message: the transport's ceiling."""
    topics = [settings.topic(f"raw.{name}") for name in ("k8s-audit", "tetragon")]
    consumer = kafka.consumer(settings, *topics, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    seen, started = 0, time.perf_counter()
    try:
        while seen < expected:
            for messages in (await consumer.getmany(timeout_ms=1000, max_records=5_000)).values():
                seen += sum(len(orjson.loads(message.value)) for message in messages)
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - started)


def _start_worker(settings: Settings, data_dir: Path) -> subprocess.Popen:
    env = os.environ | {"VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix, "VIGIL_DATA_DIR": str(data_dir),
                        "VIGIL_LOG_LEVEL": "WARNING", "VIGIL_CLUSTER": "bench"}
    vigil = str(Path(sys.executable).with_name("vigil"))
    return subprocess.Popen([vigil, "stream", "worker"], env=env, start_new_session=True)


async def _count_events(settings: Settings, expected: int, workers: list[subprocess.Popen]) -> tuple[float, float]:
    """Events/s the workers wrote to the events topic, from the first output to the last (start-up excluded):
    per wall-clock second and per CPU second of the workers together."""
    consumer = kafka.consumer(settings, settings.topic("events"), group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    seen, first, first_cpu = 0, 0.0, 0.0
    deadline = time.monotonic() + 600
    try:
        while seen < expected:
            if any(worker.poll() is not None for worker in workers) or time.monotonic() > deadline:
                raise RuntimeError(f"a worker stopped or stalled after {seen} of {expected} events")
            for messages in (await consumer.getmany(timeout_ms=500, max_records=5_000)).values():
                if not first:
                    first, first_cpu = time.perf_counter(), sum(cpu_seconds(w.pid) for w in workers)
                seen += sum(len(orjson.loads(message.value)) for message in messages)
    finally:
        await consumer.stop()
    cpu = sum(cpu_seconds(worker.pid) for worker in workers) - first_cpu
    return seen / (time.perf_counter() - first), seen / cpu


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


async def _delete_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_options(settings.kafka))
    await admin.start()
    try:
        prefix = settings.kafka.topic_prefix
        streams_prefix = f"{prefix}streams"  # Faust's own topics (changelogs) carry the app id
        doomed = [t for t in await admin.list_topics() if t.startswith((prefix, streams_prefix))]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
