"""The node collector's reader of containerd's container specs, against a real containerd: what a container was
started with (privileged, capabilities, host mounts, user) is read for containers created without Kubernetes, and
the pod of those created through CRI."""

from __future__ import annotations

import asyncio
import uuid

from tests.integration.containerd_runtime import IMAGE, Containerd, containerd  # noqa: F401  (the fixture)
from vigil.collectors.runtime.spec import ContainerSpec, ContainerSpecs


def spec_of(runtime: Containerd, container_id: str) -> ContainerSpec | None:
    async def read() -> ContainerSpec | None:
        specs = ContainerSpecs(str(runtime.socket))
        try:
            return await specs.read("k8s.io", container_id)
        finally:
            await specs.close()

    return asyncio.run(read())


def security_of(runtime: Containerd, container_id: str) -> dict | None:
    spec = spec_of(runtime, container_id)
    return None if spec is None else spec.security


def created(runtime: Containerd, *flags: str) -> str:
    """A container created with ``ctr containers create`` (no task: nothing runs), removed by the caller."""
    container_id = uuid.uuid4().hex * 2
    runtime.ctr("containers", "create", "--snapshotter", "overlayfs", *flags, IMAGE, container_id, "sleep", "1")
    return container_id


def test_a_privileged_container_with_the_runtime_socket_mounted(containerd: Containerd) -> None:  # noqa: F811
    container_id = created(containerd, "--privileged", "--mount",
                           f"type=bind,src={containerd.socket},dst=/run/containerd.sock,options=rbind:rw")
    try:
        security = security_of(containerd, container_id)
    finally:
        containerd.ctr("containers", "rm", container_id)

    assert security is not None
    assert security["privileged"] is True and "CAP_SYS_ADMIN" in security["capabilities"]
    assert {"source": str(containerd.socket), "destination": "/run/containerd.sock",
            "readonly": False} in security["host_mounts"]
    assert security["uid"] == 0


def test_an_ordinary_container_and_one_with_an_added_capability(containerd: Containerd) -> None:  # noqa: F811
    plain = created(containerd)
    capable = created(containerd, "--cap-add", "CAP_NET_ADMIN")
    try:
        ordinary, added = security_of(containerd, plain), security_of(containerd, capable)
    finally:
        containerd.ctr("containers", "rm", plain, capable)

    assert ordinary is not None and added is not None
    assert ordinary["privileged"] is False and "CAP_SYS_ADMIN" not in ordinary["capabilities"]
    assert ordinary["host_mounts"] == [] and ordinary["host_namespaces"] == []
    assert "CAP_NET_ADMIN" in added["capabilities"] and "CAP_NET_ADMIN" not in ordinary["capabilities"]


def test_a_container_containerd_does_not_have(containerd: Containerd) -> None:  # noqa: F811
    assert security_of(containerd, "0" * 64) is None


def test_the_pod_of_a_sandbox_and_of_a_container_created_through_cri(containerd: Containerd) -> None:  # noqa: F811
    pod = containerd.run_pod("web-5d8f", "shop", {"app": "web"})
    try:
        container_id = containerd.run_container(pod, "server", ["sleep", "1"])
        sandbox, container = spec_of(containerd, pod.sandbox_id), spec_of(containerd, container_id)
    finally:
        containerd.remove_pod(pod)

    assert sandbox is not None and container is not None
    assert sandbox.pod is not None and container.pod is not None
    assert (sandbox.pod["namespace"], sandbox.pod["pod"], sandbox.pod["pod_uid"]) == ("shop", "web-5d8f", pod.uid)
    assert sandbox.pod["container_id"] == pod.sandbox_id and sandbox.pod["container_name"] == ""
    assert (container.pod["namespace"], container.pod["pod"], container.pod["pod_uid"]) == ("shop", "web-5d8f", pod.uid)
    assert container.pod["container_name"] == "server" and container.pod["image"] == IMAGE


def test_a_container_created_without_cri_has_no_pod(containerd: Containerd) -> None:  # noqa: F811
    container_id = created(containerd)
    try:
        spec = spec_of(containerd, container_id)
    finally:
        containerd.ctr("containers", "rm", container_id)

    assert spec is not None and spec.pod is None
