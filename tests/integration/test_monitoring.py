"""The dev Prometheus (``vigil dev up --monitoring``, Debian's binary) scraping real vigil components: every target
it scrapes is up, a vigil metric comes back through its HTTP API, vigil's alert rules load and evaluate, and every
PromQL expression of the Grafana dashboard evaluates without error.

The components are the audit webhook (in this process) and a stream worker (its own process, with a metrics port):
the two ways vigil serves ``/metrics``. Each wait polls Prometheus until a deadline.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.harness import RunningCollector, event_list, free_port, stream_worker_process
from vigil import devstack
from vigil.config import Settings
from vigil.devstack.prometheus import PrometheusServer

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "vigil.json"
#: What Grafana puts for ``$__rate_interval`` with the dev scrape interval (5 s): at least four scrapes, 1 min.
RATE_INTERVAL = "1m"
DEADLINE_S = 60.0


async def _api(session: aiohttp.ClientSession, base: str, path: str, **params: str) -> Any:
    async with session.get(f"{base}/api/v1/{path}", params=params) as response:
        body = await response.json()
    assert body["status"] == "success", body
    return body["data"]


async def _until(probe: Callable[[], Awaitable[tuple[bool, Any]]], what: str, deadline_s: float = DEADLINE_S) -> Any:
    """``await probe()`` until it says done, and return what it saw; fail naming ``what`` after the deadline."""
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        done, last = await probe()
        if done:
            return last
        await asyncio.sleep(0.5)  # between polls (Prometheus scrapes every 5 s); the loop serves /metrics meanwhile
    raise AssertionError(f"{what} within {deadline_s:.0f} s; last seen: {last}")


@pytest.fixture
async def monitored(dev_stack: Settings, kafka_settings: Settings,
                    tmp_path: Path) -> AsyncIterator[tuple[str, Settings]]:
    """A webhook and a stream worker running, and the dev Prometheus pointed at them. Afterwards the dev stack is
    as it was: Prometheus stopped if it was not running, else pointed back at what the stack's settings name."""
    prometheus = PrometheusServer(dev_stack, devstack.run_dir(dev_stack))
    was_running = prometheus.process.pid() is not None
    settings = kafka_settings
    settings.collector.webhook_port = free_port()
    async with RunningCollector(settings, webhook=True, files=[]):
        with stream_worker_process(settings, tmp_path):
            targeted = copy.deepcopy(dev_stack)
            targeted.collector.webhook_port = settings.collector.webhook_port
            targeted.metrics_port = settings.metrics_port
            await _until_listening(settings.metrics_port)
            devstack.up(targeted, monitoring=True)
            try:
                yield prometheus.address, settings
            finally:
                if was_running:
                    devstack.up(dev_stack, monitoring=True)
                else:
                    devstack.down(dev_stack, only=["prometheus"])


async def _until_listening(port: int) -> None:
    async def probe() -> tuple[bool, None]:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False, None
        writer.close()
        return True, None

    await _until(probe, f"the stream worker's metrics port {port} listening")


async def test_prometheus_scrapes_every_component_and_serves_vigil_metrics(monitored):
    base, settings = monitored
    webhook = f"127.0.0.1:{settings.collector.webhook_port}"
    worker = f"127.0.0.1:{settings.metrics_port}"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://{webhook}/audit", data=event_list(5)) as response:
            assert response.status == 200

        async def targets_up() -> tuple[bool, Any]:
            active = (await _api(session, base, "targets", state="active"))["activeTargets"]
            health = {t["labels"]["instance"]: (t["labels"]["job"], t["health"]) for t in active}
            ours = health.get(webhook) == ("audit-webhook", "up") and health.get(worker) == ("vigil", "up")
            return ours and all(h == "up" for _, h in health.values()), health

        health = await _until(targets_up, "every target up, the webhook's and the worker's among them")
        assert ("prometheus", "up") in health.values()

        async def received() -> tuple[bool, Any]:
            query = f'sum(vigil_records_received_total{{job="audit-webhook", instance="{webhook}"}})'
            result = (await _api(session, base, "query", query=query))["result"]
            return bool(result) and float(result[0]["value"][1]) >= 5, result

        await _until(received, "the webhook's 5 received records visible through Prometheus")


async def test_alert_rules_load_and_evaluate(monitored):
    base, _ = monitored
    async with aiohttp.ClientSession() as session:

        async def evaluated() -> tuple[bool, Any]:
            groups = (await _api(session, base, "rules"))["groups"]
            rules = [r for g in groups if g["name"] == "vigil" for r in g["rules"]]
            done = bool(rules) and all(r["health"] == "ok" and r.get("lastEvaluation", "").startswith("20")
                                       for r in rules)
            return done, [(r["name"], r["health"], r.get("lastError")) for r in rules]

        rules = await _until(evaluated, "vigil's alert rules loaded and evaluated without error")
    alerts = {name for name, _, _ in rules}
    assert {"VigilRecordsDropped", "VigilConsumerLag", "VigilNoData", "VigilComponentDown"} <= alerts


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


async def test_every_dashboard_query_evaluates_against_prometheus(monitored):
    base, _ = monitored
    failures = []
    async with aiohttp.ClientSession() as session:
        for title, expr in dashboard_queries():
            query = expr.replace("$__rate_interval", RATE_INTERVAL)
            async with session.get(f"{base}/api/v1/query", params={"query": query}) as response:
                body = await response.json()
            if body.get("status") != "success" or body.get("warnings"):
                failures.append((title, expr, body.get("error"), body.get("warnings")))
    assert not failures


async def test_up_again_retargets_the_running_prometheus_without_restarting_it(monitored, dev_stack):
    base, settings = monitored
    prometheus = PrometheusServer(dev_stack, devstack.run_dir(dev_stack))
    pid = prometheus.process.pid()
    only_webhook = copy.deepcopy(dev_stack)
    only_webhook.collector.webhook_port = settings.collector.webhook_port
    devstack.up(only_webhook, monitoring=True)
    assert prometheus.process.pid() == pid
    webhook = f"127.0.0.1:{settings.collector.webhook_port}"
    expected = [{"targets": [webhook], "labels": {"job": "audit-webhook"}}]
    assert json.loads(prometheus.targets_file.read_text()) == expected
    async with aiohttp.ClientSession() as session:

        async def retargeted() -> tuple[bool, Any]:
            active = (await _api(session, base, "targets", state="active"))["activeTargets"]
            instances = sorted(t["labels"]["instance"] for t in active if t["labels"]["job"] != "prometheus")
            return instances == [webhook], instances

        await _until(retargeted, "Prometheus scraping only the webhook after the second up")
