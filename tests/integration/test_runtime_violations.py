"""Runtime violations containerd reports, on a real containerd through the node collector and Kafka: a
container killed for exceeding its memory limit (``container.oom``, then ``container.exit`` 137), and
restarts of one container of a pod, whose exits must stay distinguishable for crash-loop detection."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.containerd_runtime import containerd, gated, open_gate  # noqa: F401  (the fixture)
from tests.integration.harness import container_lifecycles, running_node_collector, wait_for
from vigil.collectors.node.collector import NodeCollector, NodeOptions
from vigil.collectors.runtime.api import cri_pb2
from vigil.sources.containerd import CONTAINERD_SOURCE

pytestmark = pytest.mark.integration

_MIB = 1 << 20


async def test_a_container_over_its_memory_limit_is_reported_oom_killed_with_its_pod(
        kafka_settings, containerd):  # noqa: F811
    kafka_settings.node = "node-under-test"
    options = NodeOptions(ebpf=False, kernel_audit=False, kube_api=False, containerd_address=containerd.address)
    stop, run = await running_node_collector(NodeCollector(kafka_settings, options))
    pod = await asyncio.to_thread(containerd.run_pod, "report-7c9d", "finance", {"app": "report"})
    limits = cri_pb2.LinuxContainerConfig(resources=cri_pb2.LinuxContainerResources(
        memory_limit_in_bytes=16 * _MIB, memory_swap_limit_in_bytes=16 * _MIB))
    try:
        # dd allocates its whole 64 MiB block and fills it from /dev/zero: four times the limit. It starts once
        # the container's start is on the topic: on cgroup v1 the shim arms its OOM eventfd only after the task
        # has started (before it publishes the start), and a kill before that goes unreported by containerd.
        hog = await asyncio.to_thread(containerd.run_container, pod, "render",
                                      gated("dd if=/dev/zero of=/dev/null bs=64M count=1"), linux=limits)
        started = frozenset({"container.start"})
        start = await wait_for(lambda: container_lifecycles(kafka_settings, [hog], started), timeout=60, interval=0.2)
        open_gate(start[hog]["container.start"]["pid"])
        lifecycle = frozenset({"container.start", "container.oom", "container.exit"})
        found = await wait_for(lambda: container_lifecycles(kafka_settings, [hog], lifecycle), timeout=60, interval=1)
        records = found[hog]
    finally:
        stop.set()
        await asyncio.wait_for(run, 60)
        await asyncio.to_thread(containerd.remove_pod, pod)

    oom = CONTAINERD_SOURCE.normalize(records["container.oom"], "prod", "ignored")
    exited = CONTAINERD_SOURCE.normalize(records["container.exit"], "prod", "ignored")
    for event in (oom, exited):
        assert (event.k8s.namespace, event.k8s.pod, event.k8s.container_name, event.k8s.container_id) == (
            "finance", "report-7c9d", "render", hog)
        assert event.k8s.labels == {"app": "report"} and event.node == "node-under-test"
    assert (oom.kind, oom.outcome.result, oom.outcome.reason) == ("container.oom", "failure", "oom")
    assert (exited.outcome.result, exited.outcome.code) == ("failure", 128 + 9)  # SIGKILL from the OOM killer


async def test_restarts_of_one_container_give_distinct_exits_of_the_same_name(
        kafka_settings, containerd):  # noqa: F811
    kafka_settings.node = "node-under-test"
    options = NodeOptions(ebpf=False, kernel_audit=False, kube_api=False, containerd_address=containerd.address)
    stop, run = await running_node_collector(NodeCollector(kafka_settings, options))
    pod = await asyncio.to_thread(containerd.run_pod, "worker-0", "queue", {"app": "worker"})
    try:
        attempts = []
        for attempt in range(3):  # what the kubelet does for a crashing container: same name, next attempt
            container_id = await asyncio.to_thread(containerd.run_container, pod, "consumer",
                                                   ["sh", "-c", "exit 3"], attempt=attempt)
            await wait_for(lambda: containerd.container_state(container_id) == cri_pb2.CONTAINER_EXITED,  # noqa: B023
                           timeout=30, interval=0.1)
            attempts.append(container_id)
        lifecycles = await wait_for(lambda: container_lifecycles(kafka_settings, attempts), timeout=60, interval=1)
    finally:
        stop.set()
        await asyncio.wait_for(run, 60)
        await asyncio.to_thread(containerd.remove_pod, pod)

    exits = [CONTAINERD_SOURCE.normalize(lifecycles[container_id]["container.exit"], "prod", "ignored")
             for container_id in attempts]
    assert len({event.id for event in exits}) == 3 and len({event.k8s.container_id for event in exits}) == 3
    assert {(e.k8s.namespace, e.k8s.pod, e.k8s.container_name) for e in exits} == {("queue", "worker-0", "consumer")}
    assert [(e.outcome.result, e.outcome.code) for e in exits] == [("failure", 3)] * 3
    assert len({event.correlation_key for event in exits}) == 1  # one partition: one detector sees them all
