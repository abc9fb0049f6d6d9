"""containerd's events and CRI against a real containerd running real containers (see containerd_runtime.py)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tests.integration.containerd_runtime import IMAGE, Containerd, containerd, gated, open_gate  # noqa: F401
from vigil.collectors.runtime.api import cri_pb2
from vigil.collectors.runtime.cri import CriClient
from vigil.collectors.runtime.watcher import ContainerdWatcher
from vigil.sources.containerd import CONTAINERD_SOURCE

#: Exits once the test saw its start: containerd 1.6 can publish the exit of a process that ends at once first.
COMMAND = gated("cat /etc/hostname")


async def test_lifecycle_events_arrive_and_resolve_to_their_pod(containerd):  # noqa: F811
    connected = asyncio.Event()

    async def on_connected() -> None:
        connected.set()

    watcher = ContainerdWatcher(containerd.address, "node-a", on_connected)
    stream = watcher.records()
    first = asyncio.ensure_future(anext(stream))
    await asyncio.wait_for(connected.wait(), 10)
    pod = await asyncio.to_thread(containerd.run_pod, "web-1", "shop", {"app": "web", "tier": "front"})
    container_id = await asyncio.to_thread(containerd.run_container, pod, "main", COMMAND)
    records = []
    record = await first
    async with asyncio.timeout(30):
        while not (record["kind"] == "container.exit" and record["container_id"] == container_id):
            records.append(record)
            if record["kind"] == "container.start" and record["container_id"] == container_id:
                open_gate(record["pid"])
            record = await anext(stream)
    records.append(record)
    await stream.aclose()

    mine = {r["kind"]: r for r in records if r["container_id"] == container_id}
    assert set(mine) == {"container.create", "container.start", "container.exit"}
    assert mine["container.create"]["image"] == IMAGE
    assert mine["container.start"]["pid"] > 0 and mine["container.exit"]["pid"] == mine["container.start"]["pid"]
    assert mine["container.exit"]["exit_status"] == 0
    assert all(r["containerd_namespace"] == "k8s.io" and r["node"] == "node-a" for r in mine.values())
    sandbox = {r["kind"] for r in records if r["container_id"] == pod.sandbox_id}
    assert {"container.create", "container.start"} <= sandbox

    cri = CriClient(containerd.address)
    try:
        context = await cri.context(container_id)
        assert context == {"namespace": "shop", "pod": "web-1", "pod_uid": pod.uid, "container_id": container_id,
                           "container_name": "main", "image": IMAGE, "service_account": "",
                           "labels": {"app": "web", "tier": "front"}}
        sandbox_context = await cri.context(pod.sandbox_id)
        assert (sandbox_context["pod"], sandbox_context["container_name"]) == ("web-1", "")
        assert (await cri.all_contexts())[container_id] == context
        assert await cri.context("0" * 64) is None
    finally:
        await cri.close()

    event = CONTAINERD_SOURCE.normalize(mine["container.exit"] | {"k8s": context}, "prod", "ignored")
    assert (event.kind, event.node, event.k8s.pod, event.k8s.namespace) == ("container.exit", "node-a", "web-1", "shop")
    assert event.outcome.result == "success"
    await asyncio.to_thread(containerd.remove_pod, pod)


async def test_cri_container_events_are_unimplemented_before_containerd_1_7(containerd):  # noqa: F811
    """Debian's containerd 1.6 has no GetContainerEvents: the call fails cleanly with UNIMPLEMENTED, which the
    node collector takes as "use containerd's events"; a newer containerd streams and this test says so."""
    cri = CriClient(containerd.address)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async with asyncio.timeout(2):
                async for _ in cri.container_events():
                    break
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await cri.close()


async def test_watcher_retries_until_containerd_is_there(tmp_path):
    """No containerd at the address: the watcher neither raises nor yields; it keeps retrying."""
    watcher = ContainerdWatcher(str(tmp_path / "absent.sock"), "node-a")
    stream = watcher.records()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(stream), 1.5)
    await stream.aclose()


async def test_the_watcher_follows_containerd_across_a_restart(containerd):  # noqa: F811
    connections = asyncio.Queue()

    async def on_connected() -> None:
        connections.put_nowait(True)

    watcher = ContainerdWatcher(containerd.address, "node-a", on_connected)
    stream = watcher.records()
    first = asyncio.ensure_future(anext(stream))
    await asyncio.wait_for(connections.get(), 10)
    await asyncio.to_thread(containerd.restart)
    await asyncio.wait_for(connections.get(), 30)  # reconnected by itself
    pod = await asyncio.to_thread(containerd.run_pod, "after-restart", "shop")
    record = await asyncio.wait_for(first, 30)
    assert (record["kind"], record["container_id"]) == ("container.create", pod.sandbox_id)
    await stream.aclose()
    await asyncio.to_thread(containerd.remove_pod, pod)


async def test_a_container_created_by_image_id_is_named_by_its_image(containerd):  # noqa: F811
    """The kubelet creates containers with the image's id, which containerd 1.6 lists as their image: the context
    names the image as the pod spec does."""
    pod = await asyncio.to_thread(containerd.run_pod, "by-id", "shop")
    cri = CriClient(containerd.address)
    try:
        named = await asyncio.to_thread(containerd.run_container, pod, "named", ["sleep", "60"])
        image_id = _listed(containerd, named).image_ref
        assert image_id.startswith("sha256:"), image_id
        by_id = await asyncio.to_thread(containerd.run_container, pod, "by-id", ["sleep", "60"], image=image_id)
        assert _listed(containerd, by_id).image.image == image_id
        assert (await cri.context(by_id))["image"] == IMAGE
        assert (await cri.all_contexts())[by_id]["image"] == IMAGE
    finally:
        await cri.close()
        await asyncio.to_thread(containerd.remove_pod, pod)


def _listed(containerd: Containerd, container_id: str) -> cri_pb2.Container:  # noqa: F811
    request = cri_pb2.ListContainersRequest(filter=cri_pb2.ContainerFilter(id=container_id))
    (container,) = containerd.runtime.ListContainers(request, timeout=10).containers
    return container
