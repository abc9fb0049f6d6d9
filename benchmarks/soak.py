"""``vigil bench soak``: the whole pipeline under a steady load for minutes, watched for growth.

The pipeline runs as the separate processes it is in production (audit webhook, Faust stream worker, storage
writer, SIEM publisher) against the local dev stack, on a private topic prefix, database and consumer group,
fed by the same load generator as ``vigil bench e2e`` at a rate the machine can sustain. Every few seconds the
soak samples each process's resident memory (``/proc/<pid>/status``), the consumer lag it exports
(``vigil_consumer_lag_records`` on its ``/metrics``) and the host's load average; each alert's latency, from
the POST that carried its event to the alert on the ``alerts`` topic and to its OCSF document on the SIEM
topic, is recorded when it arrives.

Memory grows while caches fill, so the figures start after a warm-up. Growth is the slope of a least-squares
line through every RSS sample after it, per 10 minutes, over the whole window and over its second half: a
process that only warms up flattens out in the second half, one that leaks keeps its slope. The end of the run
waits for the last alerts and for the writer to store every event, and counts the stored rows against the
posted events.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from vigil import kafka
from vigil.benchmarks.cpu import cpu_seconds
from vigil.benchmarks.e2e import (
    Load,
    Measurement,
    clean_up,
    percentile,
    pipeline_env,
    send,
    start_vigil,
    stop,
    wait_for_webhook,
)
from vigil.config import Settings
from vigil.devstack.clickhouse import dev_server_url
from vigil.storage.clickhouse import connect
from vigil.streams.app import FETCH_MAX_WAIT_MS

#: The pipeline's processes: name → ``vigil`` command. The webhook serves /metrics on its own HTTP port, the
#: others each on a port of their own. The writer and the publisher get the run's own consumer groups
#: (``_start``): in a group shared with other runs or tests, every rebalance of theirs would stall the soak's.
COMPONENTS = {"webhook": ["collect", "audit", "--webhook"], "stream worker": ["stream", "worker"],
              "writer": ["store"], "siem publisher": ["siem", "publish"]}
#: Where latency is measured: the worker's ``alerts`` topic and the publisher's OCSF topic, and how each
#: document names the audit event that raised it.
ALERT_TOPICS: dict[str, Callable[[dict[str, Any]], str]] = {
    "alerts": lambda doc: doc["evidence"][0],
    "alerts.ocsf": lambda doc: doc["evidences"][0]["uid"],
}
DRAIN_SECONDS = 180.0
MIB = 1024 * 1024


@dataclass(slots=True)
class Soak:
    load: Load
    warmup_s: float
    sample_s: float
    interval_s: float


@dataclass(slots=True)
class Sample:
    """One look at every process, ``at`` seconds after the load started."""

    at: float
    rss: dict[str, int]
    cpu: dict[str, float]  # CPU seconds so far
    lag: dict[str, int]  # records behind, summed over the topics the process reads; consumers only
    kafka_errors: dict[str, int]  # vigil_kafka_errors_total so far (failed sends and commits: rebalances…)
    loadavg: float


@dataclass(slots=True)
class Observed:
    samples: list[Sample] = field(default_factory=list)
    #: Per alert topic, ``(seconds after the load started, latency in seconds)`` of each alert's first arrival.
    arrivals: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: {t: [] for t in ALERT_TOPICS})
    post_seconds: list[float] = field(default_factory=list)  # webhook POST → 200 of every batch
    posted_events: int = 0
    expected_alerts: int = 0
    stored_events: int = -1
    exited: list[str] = field(default_factory=list)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil bench soak`` for the minutes the options ask for."""
    soak = Soak(Load(args.rate, args.warmup + args.minutes * 60, args.attack_share), args.warmup,
                args.sample_seconds, args.interval_seconds)
    return asyncio.run(bench_soak(settings, soak, Path(args.json) if args.json else None))


async def bench_soak(settings: Settings, soak: Soak, json_path: Path | None) -> int:
    run = f"soak-{uuid.uuid4().hex[:8]}"
    settings.kafka.topic_prefix = f"{run}."
    settings.clickhouse.url = dev_server_url(settings)
    settings.clickhouse.database = run.replace("-", "_")
    settings.collector.webhook_port = _free_port()
    try:
        await kafka.ensure_topics(settings)
    except KafkaError as exc:
        print(f"vigil bench soak: Kafka is not reachable ({exc}); start it with `vigil dev up`", file=sys.stderr)
        return 1
    ports, processes = _start(settings, run)
    observed = Observed()
    try:
        await wait_for_webhook(settings.collector.webhook_port, list(processes.values()))
        await asyncio.sleep(8.0)  # let the Faust worker join its group before the clock starts
        await _soak(settings, soak, processes, ports, observed)
    finally:
        stop(list(processes.values()))
        await clean_up(settings, run)
    report = build_report(soak, observed)
    print_report(report)
    if json_path:
        json_path.write_text(json.dumps(report | {"samples": [asdict(s) for s in observed.samples]}, indent=1))
        print(f"\nreport and samples written to {json_path}")
    return 0 if not observed.exited else 1


def _start(settings: Settings, run: str) -> tuple[dict[str, int], dict[str, subprocess.Popen]]:
    """Start every component; return each one's metrics port and process."""
    env = pipeline_env(settings, run) | {"VIGIL_SIEM_GROUP_ID": f"{run}-siem"}
    commands = COMPONENTS | {"writer": [*COMPONENTS["writer"], "--group-id", f"{run}-writer"]}
    ports = {name: settings.collector.webhook_port if name == "webhook" else _free_port() for name in COMPONENTS}
    metrics = {name: {} if name == "webhook" else {"VIGIL_METRICS_PORT": str(ports[name])} for name in COMPONENTS}
    processes = {name: start_vigil(command, env | metrics[name]) for name, command in commands.items()}
    return ports, processes


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _soak(settings: Settings, soak: Soak, processes: dict[str, subprocess.Popen], ports: dict[str, int],
                observed: Observed) -> None:
    """Send the load while sampling and collecting alerts, then drain: wait for the last alerts and rows."""
    measurement = Measurement()
    started = time.monotonic()
    done = asyncio.Event()
    sampler = asyncio.create_task(_sample(soak, processes, ports, observed, started, done))
    collectors = [asyncio.create_task(_collect(settings, topic, measurement, observed.arrivals[topic], started))
                  for topic in ALERT_TOPICS]
    sending = asyncio.create_task(send(settings.collector.webhook_port, soak.load, measurement))
    await asyncio.wait([sending, sampler], return_when=asyncio.FIRST_COMPLETED)  # the sampler ends if one exits
    done.set()
    await sampler
    if not sending.done():
        for task in (sending, *collectors):
            task.cancel()
        return
    observed.post_seconds, observed.posted_events = measurement.post_seconds, measurement.posted
    observed.expected_alerts = len(measurement.sent_at)
    try:
        await asyncio.wait_for(asyncio.gather(*collectors), timeout=DRAIN_SECONDS)
    except TimeoutError:
        print(f"gave up waiting for alerts {DRAIN_SECONDS:.0f} s after the load ended", file=sys.stderr)
    observed.stored_events = await _stored_events(settings, ports["writer"], measurement.posted)


async def _sample(soak: Soak, processes: dict[str, subprocess.Popen], ports: dict[str, int], observed: Observed,
                  started: float, done: asyncio.Event) -> None:
    """Sample every ``sample_s`` until ``done``, or until a component exits (that ends the soak)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while not done.is_set():
            observed.exited = [name for name, process in processes.items() if process.poll() is not None]
            if observed.exited:
                print(f"vigil bench soak: {', '.join(observed.exited)} exited during the soak", file=sys.stderr)
                return
            at = time.monotonic() - started
            scraped = {name: await _scrape(session, port) for name, port in ports.items()}
            lag = {name: lag for name, (lag, _) in scraped.items() if name != "webhook"}
            errors = {name: errors for name, (_, errors) in scraped.items()}
            rss = {name: _rss(process.pid) for name, process in processes.items()}
            cpu = {name: cpu_seconds(process.pid) for name, process in processes.items()}
            observed.samples.append(Sample(round(at, 1), rss, cpu, lag, errors, os.getloadavg()[0]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=soak.sample_s)


def _rss(pid: int) -> int:
    """Resident set size of a process in bytes (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def _scrape(session: aiohttp.ClientSession, port: int) -> tuple[int, int]:
    """:func:`read_metrics` of the process behind ``port``; -1 each if its page cannot be read."""
    try:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return -1, -1
    return read_metrics(text)


def read_metrics(metrics_text: str) -> tuple[int, int]:
    """From a /metrics page, the records behind (``vigil_consumer_lag_records``, summed over its topics) and
    the Kafka errors so far (``vigil_kafka_errors_total``, summed over their kinds)."""
    totals = {"vigil_consumer_lag_records": 0.0, "vigil_kafka_errors_total": 0.0}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return int(totals["vigil_consumer_lag_records"]), int(totals["vigil_kafka_errors_total"])


async def _collect(settings: Settings, topic: str, measurement: Measurement, arrivals: list[tuple[float, float]],
                   started: float) -> None:
    """Record each alert's first arrival on ``topic`` until the load ended and every expected alert came."""
    evidence_of = ALERT_TOPICS[topic]
    consumer = kafka.consumer(settings, settings.topic(topic), group_id=None, auto_offset_reset="earliest",
                              fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    await consumer.start()
    seen: set[str] = set()
    try:
        while not measurement.elapsed or len(seen) < len(measurement.sent_at):
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                arrived = time.time()
                at = time.monotonic() - started
                for message in messages:
                    evidence = evidence_of(orjson.loads(message.value))
                    sent = measurement.sent_at.get(evidence)
                    if sent and evidence not in seen:
                        seen.add(evidence)
                        arrivals.append((at, arrived - sent))
    finally:
        await consumer.stop()


async def _stored_events(settings: Settings, writer_port: int, posted: int) -> int:
    """Rows in the run's events table once the writer is caught up (or after the drain deadline)."""
    deadline = time.monotonic() + DRAIN_SECONDS
    store = connect(settings.clickhouse)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while True:
                count = store.query("SELECT count() FROM {db:Identifier}.events", {"db": store.database})
                stored = count.result_rows[0][0]
                caught_up = (await _scrape(session, writer_port))[0] == 0
                if (stored >= posted and caught_up) or time.monotonic() > deadline:
                    return stored
                await asyncio.sleep(2.0)
    finally:
        store.close()


def growth_per_10min(points: Sequence[tuple[float, float]]) -> float:
    """Slope of the least-squares line through ``(seconds, value)`` points, per 600 s; 0 with fewer than two
    distinct times. A fit over every sample, not end minus start: one garbage collection or one burst at
    either end does not decide it."""
    if len({t for t, _ in points}) < 2:
        return 0.0
    slope, _ = statistics.linear_regression([t for t, _ in points], [v for _, v in points])
    return slope * 600


def latency_by_interval(arrivals: Sequence[tuple[float, float]], start: float, interval_s: float,
                        end: float) -> list[dict[str, float]]:
    """p50/p99 (ms) and count of the latencies whose alerts arrived in each ``interval_s`` from ``start`` to
    ``end``; alerts arriving after ``end`` (the drain) count in the last interval."""
    count = max(1, round((end - start) / interval_s))
    buckets: list[list[float]] = [[] for _ in range(count)]
    for at, latency in arrivals:
        if at >= start:
            buckets[min(count - 1, int((at - start) // interval_s))].append(latency)
    return [{"from_s": round(start + i * interval_s), "alerts": len(b), "p50_ms": round(percentile(b, 0.5) * 1000),
             "p99_ms": round(percentile(b, 0.99) * 1000)} for i, b in enumerate(buckets)]


def build_report(soak: Soak, observed: Observed) -> dict[str, Any]:
    """The soak's figures per component and per interval (the shape ``print_report`` and the JSON file use)."""
    window = [s for s in observed.samples if s.at >= soak.warmup_s]
    halfway = (window[0].at + window[-1].at) / 2 if window else 0.0
    components: dict[str, dict[str, Any]] = {}
    for name in COMPONENTS:
        rss = [(s.at, s.rss[name] / MIB) for s in window if name in s.rss]
        lags = [s.lag[name] for s in window if s.lag.get(name, -1) >= 0]
        busy = window[-1].at - window[0].at if len(window) > 1 else 0.0
        errors = [s.kafka_errors[name] for s in window if s.kafka_errors.get(name, -1) >= 0]
        components[name] = {
            "rss_start_mib": round(rss[0][1], 1) if rss else None,
            "rss_end_mib": round(rss[-1][1], 1) if rss else None,
            "rss_growth_mib_per_10min": round(growth_per_10min(rss), 2),
            "rss_growth_second_half_mib_per_10min": round(growth_per_10min([p for p in rss if p[0] >= halfway]), 2),
            "lag_max": max(lags) if lags else None,
            "lag_end": lags[-1] if lags else None,
            "kafka_errors": errors[-1] - errors[0] if errors else None,
            "cpu_share": round((window[-1].cpu[name] - window[0].cpu[name]) / busy, 2) if busy else None,
        }
    end = soak.load.seconds
    return {
        "load": {"rate": soak.load.rate, "attack_share": soak.load.attack_share, "warmup_s": soak.warmup_s,
                 "measured_s": end - soak.warmup_s, "sample_s": soak.sample_s},
        "samples_in_window": len(window),
        "loadavg_1min": {"min": min(s.loadavg for s in window), "max": max(s.loadavg for s in window)}
        if window else None,
        "components": components,
        "latency": {topic: latency_by_interval(arrivals, soak.warmup_s, soak.interval_s, end)
                    for topic, arrivals in observed.arrivals.items()},
        "alerts_expected": observed.expected_alerts,
        "alerts_received": {topic: len(arrivals) for topic, arrivals in observed.arrivals.items()},
        "post_ms": {"p50": round(percentile(observed.post_seconds, 0.5) * 1000),
                    "p99": round(percentile(observed.post_seconds, 0.99) * 1000)},
        "events_posted": observed.posted_events,
        "events_stored": observed.stored_events,
        "exited": observed.exited,
    }


def print_report(report: dict[str, Any]) -> None:
    load = report["load"]
    print(f"load                 {load['rate']:,} events/s, attack share {load['attack_share']}, "
          f"{load['measured_s'] / 60:.1f} min measured after {load['warmup_s']:.0f} s of warm-up, "
          f"{report['samples_in_window']} samples")
    if report["loadavg_1min"]:
        print(f"host load average    {report['loadavg_1min']['min']:.1f} to {report['loadavg_1min']['max']:.1f} "
              f"(1 min, {os.cpu_count()} CPUs)")
    received = ", ".join(f"{count} on {topic}" for topic, count in report["alerts_received"].items())
    print(f"alerts               {report['alerts_expected']} expected, {received}")
    print(f"events               {report['events_posted']} posted, {report['events_stored']} stored")
    print(f"webhook POST → 200   p50 {report['post_ms']['p50']} ms, p99 {report['post_ms']['p99']} ms")
    print(f"\n{'component':16}{'RSS start':>11}{'RSS end':>10}{'growth/10min':>14}{'2nd half':>10}"
          f"{'lag max':>9}{'lag end':>9}{'errors':>8}{'CPU':>6}")
    for name, c in report["components"].items():
        print(f"{name:16}{_mib(c['rss_start_mib']):>11}{_mib(c['rss_end_mib']):>10}"
              f"{c['rss_growth_mib_per_10min']:>+10.2f} MiB{c['rss_growth_second_half_mib_per_10min']:>+10.2f}"
              f"{_opt(c['lag_max']):>9}{_opt(c['lag_end']):>9}{_opt(c['kafka_errors']):>8}"
              f"{_percent(c['cpu_share']):>6}")
    for topic, intervals in report["latency"].items():
        print(f"\nPOST → {topic} latency per interval")
        print(f"{'from':>8}{'alerts':>8}{'p50 ms':>9}{'p99 ms':>9}")
        for row in intervals:
            print(f"{row['from_s']:>7}s{row['alerts']:>8}{row['p50_ms']:>9}{row['p99_ms']:>9}")


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} MiB"


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{share:.0%}"


def _opt(value: object) -> str:
    return "—" if value is None else str(value)
