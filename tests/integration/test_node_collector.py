"""``vigil collect node`` end to end on the real thing: containerd runs a pod through CRI, the eBPF sensor (when
this host can run it) watches the kernel, the collector enriches and ships to the dev Kafka; the Kubernetes
API is configured but unreachable, so context must come from CRI alone."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests.integration.containerd_runtime import IMAGE, containerd  # noqa: F401  (the fixture)
from tests.integration.harness import read_raw_records, running_node_collector, wait_for
from vigil.collectors.node.collector import NodeCollector, NodeOptions
from vigil.collectors.node.kubeapi import PodWatch
from vigil.collectors.node.metrics import SOURCE_UP
from vigil.collectors.runtime.api import cri_pb2

pytestmark = pytest.mark.integration


def _unreachable_kubeconfig(tmp_path: Path) -> Path:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: test}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    return path


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _kernel_losses() -> float:
    return sum(_sample("vigil_sensor_kernel_losses_total", reason=reason) for reason in ("full", "busy"))


async def test_node_collector_ships_enriched_container_and_sensor_records(kafka_settings, containerd,  # noqa: F811
                                                                         tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(_unreachable_kubeconfig(tmp_path)))
    kafka_settings.node = "node-under-test"
    # no periodic flush during the test: a running container's syscalls can only come from the final drain
    collector = NodeCollector(kafka_settings, NodeOptions(containerd_address=containerd.address,
                                                          syscall_flush_s=3600.0))
    stop, run = await running_node_collector(collector, timeout=120)
    sensor_up = _sample("vigil_node_source_up", source="ebpf") == 1
    hits_before = _sample("vigil_enrichment_lookups_total", result="hit")
    exits_before = _sample("vigil_node_records_shipped_total", source="containerd", kind="container.exit")
    losses_before = _kernel_losses()

    pod = await asyncio.to_thread(containerd.run_pod, "api-7f9c", "payments", {"app": "api"})
    container_id = await asyncio.to_thread(containerd.run_container, pod, "server",
                                           ["sh", "-c", "cat /etc/hostname; sleep 1"])
    await wait_for(lambda: containerd.container_state(container_id) == cri_pb2.CONTAINER_EXITED, timeout=30)
    await wait_for(lambda: _sample("vigil_node_records_shipped_total", source="containerd",
                                   kind="container.exit") > exits_before, timeout=30)
    assert collector.pod_watch is not None and collector.pod_watch.state == "unreachable"
    stop.set()
    await asyncio.wait_for(run, 60)

    pod_context = {"namespace": "payments", "pod": "api-7f9c", "pod_uid": pod.uid, "container_id": container_id,
                   "container_name": "server", "image": IMAGE, "service_account": "", "labels": {"app": "api"}}
    lifecycle = {r["kind"]: r for r in await read_raw_records(kafka_settings, "raw.containerd")
                 if r["container_id"] == container_id}
    assert set(lifecycle) == {"container.create", "container.start", "container.exit"}
    assert all(r["k8s"] == pod_context and r["node"] == "node-under-test" for r in lifecycle.values())
    assert lifecycle["container.exit"]["exit_status"] == 0
    # What containerd's CRI plugin wrote in the container's spec: an unprivileged container of busybox's root user.
    security = lifecycle["container.create"]["security"]
    assert security["privileged"] is False and security["uid"] == 0 and "CAP_SYS_ADMIN" not in security["capabilities"]
    assert _sample("vigil_enrichment_lookups_total", result="hit") > hits_before

    if not sensor_up:
        pytest.skip("the eBPF sensor cannot run on this host (see the collector's log); container events passed")
    sensor_records = await read_raw_records(kafka_settings, "raw.ebpf")
    syscalls = {r["container_id"]: r for r in sensor_records if r["type"] == "syscalls"}
    # the exited container's when its cgroup went; the pod's sandbox (still running) only when the collector
    # stopped, from the sensor's final drain
    assert container_id in syscalls and pod.sandbox_id in syscalls, sorted(syscalls)
    assert syscalls[container_id]["k8s"] == pod_context and "clock_nanosleep" in syscalls[container_id]["syscalls"]
    execs = [r for r in sensor_records if r["type"] == "exec" and r["container_id"] == container_id]
    lost = _kernel_losses() - losses_before
    if not execs and lost:  # counted, not silent: other load on this machine filled the ring buffer
        pytest.skip(f"the kernel dropped {lost:.0f} sensor records during the test (concurrent load)")
    assert {"sh", "cat", "sleep"} <= {r["args"][0] for r in execs if r["args"]}, execs
    assert all(r["k8s"] == pod_context and r["node"] == "node-under-test" for r in execs)


def test_an_unreachable_kubernetes_api_is_reported_and_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(_unreachable_kubeconfig(tmp_path)))
    watch = PodWatch("node-a", lambda kind, pod: None)
    assert watch.start()
    try:
        asyncio.run(wait_for(lambda: watch.state == "unreachable", timeout=30, interval=0.1))
        assert "refused" in watch.error.lower() or "connect" in watch.error.lower(), watch.error
        assert _sample("vigil_node_source_up", source="kubernetes-api") == 0
    finally:
        watch.stop()


async def test_without_containerd_the_collector_keeps_running_and_says_so(kafka_settings, tmp_path):
    """containerd absent: no crash, the runtime source reports down and retries, the sensor (if any) ships."""
    options = NodeOptions(containerd_address=str(tmp_path / "no-containerd.sock"), kube_api=False)
    collector = NodeCollector(kafka_settings, options)
    shipped_before = _sample("vigil_node_records_shipped_total", source="ebpf", kind="exec")
    with contextlib.suppress(KeyError):
        SOURCE_UP.remove("ebpf")  # reappears once this collector has started its sensor, or failed to
    stop = asyncio.Event()
    run = asyncio.create_task(collector.run(stop))
    await wait_for(lambda: run.done() or REGISTRY.get_sample_value("vigil_node_source_up", {"source": "ebpf"})
                   is not None, timeout=120)
    sensor_up = _sample("vigil_node_source_up", source="ebpf") == 1
    process = await asyncio.create_subprocess_exec("/bin/true")
    await process.wait()
    if sensor_up:
        await wait_for(lambda: _sample("vigil_node_records_shipped_total", source="ebpf", kind="exec") > shipped_before,
                       timeout=30)
    assert not run.done()
    assert _sample("vigil_node_source_up", source="containerd") == 0
    stop.set()
    await asyncio.wait_for(run, 30)
