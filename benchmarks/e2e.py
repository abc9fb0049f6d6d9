"""``vigil bench e2e``: latency from an audit webhook POST to the alert on the SIEM topic, under a fixed load.

The real pipeline runs as the separate processes it is in production (audit webhook, Faust stream worker,
storage writer) against the local dev stack, on a private topic prefix and database. The load generator
posts ``EventList`` batches at a fixed rate; a small share of the events are exec-into-pod requests, each
on its own pod so that suppression never folds them together, and every one of them must come back as an
alert. Latency is the time from the POST that carried the event to the alert's arrival on the topic.
The raw baseline measured in the same run is the webhook alone: POST to 200 (durable in Kafka). The CPU each
pipeline process used while the load ran says which one a missed target is about, on a machine they share.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from vigil import kafka
from vigil.benchmarks.cpu import cpu_seconds
from vigil.config import Settings
from vigil.devstack.clickhouse import dev_server_url
from vigil.storage.clickhouse import connect
from vigil.streams.app import FETCH_MAX_WAIT_MS

SCENARIO = Path(__file__).resolve().parents[1] / "examples" / "attack-scenario.jsonl"
TICK_SECONDS = 0.01
DRAIN_SECONDS = 120.0
#: The pipeline's processes: name → ``vigil`` command.
PIPELINE = {"webhook": ["collect", "audit", "--webhook"], "stream worker": ["stream", "worker"], "writer": ["store"]}


@dataclass(slots=True)
class Load:
    rate: int
    seconds: float
    attack_share: float


@dataclass(slots=True)
class Measurement:
    posted: int = 0
    post_seconds: list[float] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)
    alert_latency: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    #: Share of one core each pipeline process used from the first POST until the last alert arrived.
    cpu: dict[str, float] = field(default_factory=dict)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil bench e2e`` at the load the options ask for."""
    return asyncio.run(bench_e2e(settings, Load(args.rate, args.seconds, args.attack_share)))


async def bench_e2e(settings: Settings, load: Load) -> int:
    run = f"bench-{uuid.uuid4().hex[:8]}"
    settings.kafka.topic_prefix = f"{run}."
    settings.clickhouse.url = dev_server_url(settings)  # the writer and the clean-up share the dev server
    settings.clickhouse.database = run.replace("-", "_")
    settings.collector.webhook_port = 18_765
    try:
        await kafka.ensure_topics(settings)
    except KafkaError as exc:
        print(f"vigil bench e2e: Kafka is not reachable ({exc}); start it with `vigil dev up`", file=sys.stderr)
        return 1
    processes = _start_pipeline(settings, run)
    try:
        await wait_for_webhook(settings.collector.webhook_port, list(processes.values()))
        await asyncio.sleep(8.0)  # let the Faust worker join its group before the clock starts
        measurement = Measurement()
        pids = {name: p.pid for name, p in processes.items()} | {"load generator": os.getpid()}
        started, cpu_before = time.monotonic(), {name: cpu_seconds(pid) for name, pid in pids.items()}
        consumer = asyncio.create_task(_collect_alerts(settings, measurement, load))
        await send(settings.collector.webhook_port, load, measurement)
        try:
            await asyncio.wait_for(consumer, timeout=DRAIN_SECONDS)
        except TimeoutError:
            print(f"gave up waiting for alerts {DRAIN_SECONDS:.0f} s after the load ended", file=sys.stderr)
        elapsed = time.monotonic() - started
        measurement.cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / elapsed for name, pid in pids.items()}
    finally:
        stop(list(processes.values()))
        await clean_up(settings, run)
    _report(load, measurement)
    return 0


def _start_pipeline(settings: Settings, run: str) -> dict[str, subprocess.Popen]:
    env = pipeline_env(settings, run)
    return {name: start_vigil(command, env) for name, command in PIPELINE.items()}


def pipeline_env(settings: Settings, run: str) -> dict[str, str]:
    """The environment of a pipeline process of ``run``: its topic prefix, database, webhook port and data dir."""
    return os.environ | {
        "VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "VIGIL_CLICKHOUSE_URL": settings.clickhouse.url,
        "VIGIL_CLICKHOUSE_DATABASE": settings.clickhouse.database,
        "VIGIL_COLLECTOR_WEBHOOK_PORT": str(settings.collector.webhook_port),
        "VIGIL_DATA_DIR": str(Path(settings.data_dir) / run),
        "VIGIL_LOG_LEVEL": "WARNING",
    }


def start_vigil(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """``vigil <command>`` from this venv, in its own session (a Ctrl-C here does not reach it)."""
    return subprocess.Popen([str(Path(sys.executable).with_name("vigil")), *command], env=env, start_new_session=True)


async def wait_for_webhook(port: int, processes: list[subprocess.Popen]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if any(p.poll() is not None for p in processes):
                raise RuntimeError("a pipeline process exited during start-up")
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise RuntimeError("the webhook did not come up")


def _events(load: Load) -> Iterator[tuple[list[bytes], list[str]]]:
    """Per tick, the encoded events to post (benign list calls and, at the configured share, execs) and the
    auditIDs of the execs, each of which must come back as an alert.

    Events are stamped with the time their tick is made, as an API server stamps its own: the engine's clock is
    event time, and events that all carried the scenario's fixed timestamps would never let a window, a sequence
    or an open alert expire (a long run would look like a leak of every attack pod's state)."""
    lines = SCENARIO.read_bytes().splitlines()
    benign, attack = orjson.loads(lines[0]), orjson.loads(lines[2])
    per_tick = max(1, round(load.rate * TICK_SECONDS))
    attack_every = max(1, round(1 / load.attack_share)) if load.attack_share > 0 else 0
    sequence = 0
    while True:
        batch, attacks = [], []
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        stamped = {"requestReceivedTimestamp": now, "stageTimestamp": now}
        for _ in range(per_tick):
            sequence += 1
            if attack_every and sequence % attack_every == 0:
                audit_id = f"e2e-{sequence}"
                pod = f"web-{sequence}"
                event = attack | stamped | {"auditID": audit_id, "objectRef": attack["objectRef"] | {"name": pod},
                                            "requestURI": f"/api/v1/namespaces/shop/pods/{pod}/exec?command=sh"}
                attacks.append(audit_id)
            else:
                event = benign | stamped | {"auditID": f"e2e-{sequence}"}
            batch.append(orjson.dumps(event))
        yield batch, attacks


async def send(port: int, load: Load, measurement: Measurement) -> None:
    url = f"http://127.0.0.1:{port}/audit"
    ticks = int(load.seconds / TICK_SECONDS)
    start = time.monotonic()
    pending: set[asyncio.Task] = set()
    async with aiohttp.ClientSession() as session:
        for tick, (batch, attacks) in zip(range(ticks), _events(load), strict=False):
            await asyncio.sleep(max(0.0, start + tick * TICK_SECONDS - time.monotonic()))
            body = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[' + b",".join(batch) + b"]}"
            sent = time.time()
            measurement.sent_at.update(dict.fromkeys(attacks, sent))
            task = asyncio.create_task(_post(session, url, body, sent, measurement))
            pending.add(task)
            task.add_done_callback(pending.discard)
            measurement.posted += len(batch)
        await asyncio.gather(*pending)
    measurement.elapsed = time.monotonic() - start


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, sent: float, measurement: Measurement) -> None:
    async with session.post(url, data=body) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"webhook answered {response.status}")
    measurement.post_seconds.append(time.time() - sent)


async def _collect_alerts(settings: Settings, measurement: Measurement, load: Load) -> None:
    # A short fetch wait, as the worker's: with aiokafka's 500 ms a fetch for idle partitions would hold back the
    # alerts of busy ones, and that stall is the reader's, not the pipeline's (see streams.app).
    consumer = kafka.consumer(settings, settings.topic("alerts"), group_id=None, auto_offset_reset="earliest",
                              fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    await consumer.start()
    seen: set[str] = set()
    try:
        while not measurement.elapsed or len(seen) < len(measurement.sent_at):
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                arrived = time.time()
                for message in messages:
                    evidence = orjson.loads(message.value)["evidence"][0]
                    if evidence not in seen and measurement.sent_at.get(evidence):
                        seen.add(evidence)
                        measurement.alert_latency.append(arrived - measurement.sent_at[evidence])
    finally:
        await consumer.stop()


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


async def clean_up(settings: Settings, run: str) -> None:
    """Drop what the run created: its topics, its database and its data dir."""
    admin = AIOKafkaAdminClient(**kafka.client_options(settings.kafka))
    await admin.start()
    try:
        await admin.delete_topics([t for t in await admin.list_topics() if t.startswith(settings.kafka.topic_prefix)])
    finally:
        await admin.close()
    store = connect(settings.clickhouse)
    try:
        store.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": settings.clickhouse.database})
    finally:
        store.close()
    shutil.rmtree(Path(settings.data_dir) / run, ignore_errors=True)


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(share * 100) - 1] if len(values) > 1 else 0.0


def _report(load: Load, m: Measurement) -> None:
    achieved = m.posted / m.elapsed if m.elapsed else 0.0
    post_p50, post_p99 = percentile(m.post_seconds, 0.50), percentile(m.post_seconds, 0.99)
    alert_p50, alert_p99 = percentile(m.alert_latency, 0.50), percentile(m.alert_latency, 0.99)
    print(f"events posted        {m.posted} in {m.elapsed:.1f} s ({achieved:,.0f}/s; target {load.rate:,}/s)")
    print(f"alerts received      {len(m.alert_latency)} of {len(m.sent_at)} expected")
    print(f"raw baseline         webhook POST→200 (durable in Kafka): p50 {post_p50 * 1000:.0f} ms, "
          f"p99 {post_p99 * 1000:.0f} ms")
    print(f"end to end           POST→alert on SIEM topic: p50 {alert_p50 * 1000:.0f} ms, p99 {alert_p99 * 1000:.0f} ms"
          f" (target p99 < 1000 ms)")
    if post_p99:
        print(f"ratio                e2e p99 / POST p99 = {alert_p99 / post_p99:.1f}")
    if m.cpu:
        print("CPU while loaded     " + ", ".join(f"{name} {100 * share:.0f}%" for name, share in m.cpu.items())
              + " of a core")
