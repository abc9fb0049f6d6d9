"""An attack through kubectl on a real node, end to end: the dev cluster (``vigil dev cluster``: apiserver,
controller-manager, scheduler, a kubelet on a private containerd) with vigil around it as it would run on a node.

The apiserver's audit webhook is ``vigil collect audit --webhook``; ``vigil collect node`` watches the kernel (eBPF),
containerd and CRI, and this node's pods on the API; the stream worker and the writer run as their own processes.
Someone creates a namespace and a pod with kubectl, execs into it and runs examples/cluster-attack.sh (a download
tool, the service-account token read and used against the API, a connection out, a write under /etc). The audit
exec (who, which pod), the runtime alerts from that pod (with the container and image the node collector found)
and the sequences that join the two sources on the pod must reach the SIEM topic and ClickHouse.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.dev_cluster import RunningCluster, assert_stored, dev_cluster  # noqa: F401  (the fixture)
from tests.integration.harness import VIGIL, RunningCollector, free_port, running_node_collector, wait_for
from vigil.collectors.node.collector import NodeCollector, NodeOptions

pytestmark = pytest.mark.integration

#: Alerts the attack must raise, each about the attacked pod.
EXPECTED = {
    "k8s.exec_into_pod",  # the audit log: who exec'd into which pod
    "seq.exec_then_tooling",  # exec (audit) → wget in that pod (eBPF)
    "seq.token_read_api_use",  # the token read in the pod (eBPF) → an API request with it (audit)
}
#: Runtime detections on the pod's own processes (eBPF records the node collector gave the pod, container and
#: image): the token read, the download, the connection out, the write under /etc.
RUNTIME_EXPECTED = {"runtime.sensitive_file_read", "runtime.remote_copy_tool_in_container",
                    "runtime.network_client_tool", "runtime.etc_write_in_container"}


class _Listener(http.server.BaseHTTPRequestHandler):
    """The "attacker's" server on the host: serves a payload, accepts whatever else connects."""

    def do_GET(self) -> None:
        body = b"#!/bin/sh\necho pwned\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def listener(address: str) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer((address, free_port()), _Listener)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def pipeline(settings, directory: Path) -> Iterator[None]:
    """The stream worker and the storage writer as the separate processes they are in production."""
    env = os.environ | {
        "VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix, "VIGIL_CLICKHOUSE_URL": settings.clickhouse.url,
        "VIGIL_CLICKHOUSE_DATABASE": settings.clickhouse.database, "VIGIL_DATA_DIR": settings.data_dir,
        "VIGIL_CLUSTER": settings.cluster, "VIGIL_NODE": settings.node,
    }
    processes = []
    for name, command in (("worker", ["stream", "worker"]), ("writer", ["store"])):
        with open(directory / f"{name}.log", "wb") as log:
            processes.append((name, subprocess.Popen([VIGIL, *command], env=env, stdout=log,
                                                     stderr=subprocess.STDOUT, start_new_session=True)))
    try:
        yield
    finally:
        for _, process in processes:
            process.send_signal(signal.SIGTERM)
        for name, process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
            sys.stderr.write(f"--- {name}.log\n{(directory / f'{name}.log').read_text(errors='replace')[-3000:]}\n")


async def test_kubectl_attack_raises_audit_runtime_and_sequence_alerts(dev_cluster: RunningCluster,  # noqa: F811
                                                                      kafka_settings, read_documents,
                                                                      clickhouse_client, tmp_path, monkeypatch):
    settings = kafka_settings
    cluster = dev_cluster.cluster
    settings.cluster = "dev-cluster"
    settings.node = cluster.node
    settings.clickhouse.database = f"test_{uuid.uuid4().hex[:10]}"
    settings.collector.webhook_port = dev_cluster.audit_webhook_port
    monkeypatch.setenv("KUBECONFIG", str(cluster.layout.kubeconfig))
    namespace, pod_name = f"attack-{uuid.uuid4().hex[:6]}", "web"

    collector = NodeCollector(settings, NodeOptions(containerd_address=str(cluster.layout.containerd_socket)))
    with pipeline(settings, tmp_path), listener(cluster.node_ip) as port:
        async with RunningCollector(settings, webhook=True, files=[]):
            stop, run = await running_node_collector(collector, ("containerd", "ebpf", "kubernetes-api"),
                                                     timeout=120)
            try:
                pod = await asyncio.to_thread(dev_cluster.run_pod, namespace, pod_name)
                output = await asyncio.to_thread(dev_cluster.attack, namespace, pod_name, port)
                assert "attack done" in output, output
                alerts = await _alerts_about(settings, read_documents, namespace, pod_name)
            finally:
                stop.set()
                await asyncio.wait_for(run, 60)
                await asyncio.to_thread(dev_cluster.kubectl, "delete", "namespace", namespace, "--wait=false")

    by_detection = {alert["detection"]: alert for alert in alerts}
    exec_alert = by_detection["k8s.exec_into_pod"]
    assert (exec_alert["user"], exec_alert["namespace"], exec_alert["pod"]) == ("vigil-dev-admin", namespace,
                                                                              pod_name)
    exec_step, tool_step = by_detection["seq.exec_then_tooling"]["context"]["steps"]
    assert (exec_step["source"], exec_step["exec_user"]) == ("k8s-audit", "vigil-dev-admin")
    assert (tool_step["source"], tool_step["program"]) == ("ebpf", "wget")
    read_step, call_step = by_detection["seq.token_read_api_use"]["context"]["steps"]
    assert read_step["source"] == "ebpf"
    assert (call_step["source"], call_step["service_account"], call_step["verb"], call_step["resource"]) == (
        "k8s-audit", f"{namespace}/default", "list", "secrets")
    container = pod["status"]["containerStatuses"][0]
    await assert_stored(clickhouse_client, settings.clickhouse.database, namespace, pod_name, container,
                        set(by_detection))


async def _alerts_about(settings, read_documents, namespace: str, pod: str) -> list[dict]:
    """The alerts about the attacked pod on the SIEM topic, once every expected one is there."""
    found: list[dict] = []

    async def complete() -> bool:
        documents = await read_documents(settings, "alerts", expected=1, timeout=30)
        found[:] = [a for a in documents if a.get("namespace") == namespace and a.get("pod") == pod]
        detections = {a["detection"] for a in found}
        return detections >= EXPECTED and detections >= RUNTIME_EXPECTED

    try:
        await wait_for(complete, timeout=240, interval=2)
    except AssertionError:
        raise AssertionError(f"alerts about {namespace}/{pod}: {sorted({a['detection'] for a in found})}, "
                             f"expected {sorted(EXPECTED | RUNTIME_EXPECTED)}") from None
    return found


