"""A container started without Kubernetes is judged by what it was started with, on the real stack: ``ctr run
--privileged`` with the node's /etc mounted, on a real containerd that ``vigil collect node`` follows, through
Kafka and the stream worker to the alerts topic."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.integration.containerd_runtime import IMAGE, Containerd, containerd  # noqa: F401  (the fixture)
from tests.integration.harness import running_node_collector, stream_worker_process
from vigil.collectors.node.collector import NodeCollector, NodeOptions

pytestmark = pytest.mark.integration

#: What a privileged container with the node's /etc mounted raises (not the capability detection: a
#: privileged container has every capability, and that is the privileged detection's to say).
EXPECTED = {"runtime.privileged_container_started", "runtime.sensitive_mount_container_started",
            "runtime.root_container_started"}


@pytest.fixture
def worker(kafka_settings, tmp_path):
    """The stream worker as its own process, on this test's topics."""
    with stream_worker_process(kafka_settings, tmp_path):
        yield kafka_settings


def run_privileged(runtime: Containerd) -> str:
    """``ctr run --privileged`` with the node's /etc mounted read-only: no CRI, no pod, as someone with the
    runtime socket on a node would start one."""
    container_id = uuid.uuid4().hex * 2
    runtime.ctr("run", "--detach", "--snapshotter", "overlayfs", "--privileged", "--mount",
                "type=bind,src=/etc,dst=/host/etc,options=rbind:ro", IMAGE, container_id, "sleep", "30")
    return container_id


def remove(runtime: Containerd, container_id: str) -> None:
    runtime.ctr("tasks", "delete", "--force", container_id)
    runtime.ctr("containers", "delete", container_id)


async def test_a_privileged_container_started_with_ctr_raises_its_alerts(worker, containerd,  # noqa: F811
                                                                        read_documents) -> None:
    settings = worker
    collector = NodeCollector(settings, NodeOptions(containerd_address=containerd.address, ebpf=False,
                                                    kernel_audit=False, kube_api=False))
    stop, run = await running_node_collector(collector)
    container_id = await asyncio.to_thread(run_privileged, containerd)
    try:
        alerts = await read_documents(settings, "alerts", expected=len(EXPECTED), timeout=90, settle=1.0)
    finally:
        await asyncio.to_thread(remove, containerd, container_id)
        stop.set()
        await asyncio.wait_for(run, 60)

    raised = {alert["detection"]: alert for alert in alerts}
    assert set(raised) == EXPECTED, sorted(raised)
    privileged = raised["runtime.privileged_container_started"]
    assert privileged["severity"] == "critical" and privileged["pod"] == ""
    assert privileged["context"]["where"] == f"container {container_id[:12]}"
    assert raised["runtime.sensitive_mount_container_started"]["context"]["mounts"] == ["/etc"]
