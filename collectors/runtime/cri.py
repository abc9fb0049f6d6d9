"""The CRI RuntimeService, read-only: which pod a container belongs to, and container events where streamed.

A container's k8s context is the 8-field object of :class:`vigil.event.K8sContext` (as a dict, ready for
JSON): namespace, pod and pod UID come from the pod sandbox's metadata (what the kubelet passed to
RunPodSandbox), labels are the sandbox's labels (the pod's labels) without the kubelet's bookkeeping keys,
container name and image from the container. CRI does not know the service account; the Kubernetes API
path adds it (``vigil.collectors.node.kubeapi``). A sandbox id resolves too (its pause process is in the pod).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc

from vigil.collectors.runtime.api import cri_pb2, cri_pb2_grpc

log = logging.getLogger(__name__)

#: Labels the kubelet adds to sandboxes and containers for itself; they are not the pod's labels.
KUBELET_LABELS = frozenset({"io.kubernetes.pod.name", "io.kubernetes.pod.namespace", "io.kubernetes.pod.uid",
                            "io.kubernetes.container.name"})

_CALL_TIMEOUT_S = 5.0


def k8s_context(*, namespace: str = "", pod: str = "", pod_uid: str = "", container_id: str = "",
                container_name: str = "", image: str = "", service_account: str = "",
                labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``k8s`` object every node record carries (the fields of :class:`vigil.event.K8sContext`)."""
    return {"namespace": namespace, "pod": pod, "pod_uid": pod_uid, "container_id": container_id,
            "container_name": container_name, "image": image, "service_account": service_account,
            "labels": {k: v for k, v in (labels or {}).items() if k not in KUBELET_LABELS}}


def sandbox_context(sandbox: cri_pb2.PodSandbox | cri_pb2.PodSandboxStatus) -> dict[str, Any]:
    """The context of a pod sandbox (its pause container): the pod, no container name."""
    meta = sandbox.metadata
    return k8s_context(namespace=meta.namespace, pod=meta.name, pod_uid=meta.uid, container_id=sandbox.id,
                       labels=sandbox.labels)


def container_context(container: cri_pb2.Container | cri_pb2.ContainerStatus,
                      sandbox: cri_pb2.PodSandbox | cri_pb2.PodSandboxStatus | None,
                      image_name: str = "") -> dict[str, Any]:
    """The context of a container in ``sandbox``; without the sandbox, from the kubelet's container labels. The
    image is ``image_name`` when known, else what the runtime lists (see :meth:`CriClient.image_name`)."""
    if sandbox is not None:
        context = sandbox_context(sandbox)
    else:
        labels = container.labels
        context = k8s_context(namespace=labels.get("io.kubernetes.pod.namespace", ""),
                              pod=labels.get("io.kubernetes.pod.name", ""),
                              pod_uid=labels.get("io.kubernetes.pod.uid", ""))
    context.update(container_id=container.id, container_name=container.metadata.name,
                   image=image_name or _image(container))
    return context


def _image(container: cri_pb2.Container | cri_pb2.ContainerStatus) -> str:
    return container.image.user_specified_image or container.image.image or container.image_ref


def _is_image_id(image: str) -> bool:
    return image.startswith("sha256:")


def contexts_from_event(event: cri_pb2.ContainerEventResponse) -> dict[str, dict[str, Any]]:
    """Every container a CRI container event describes (with its sandbox), by container id."""
    sandbox = event.pod_sandbox_status if event.HasField("pod_sandbox_status") else None
    contexts = {status.id: container_context(status, sandbox) for status in event.containers_statuses}
    if sandbox is not None:
        contexts[sandbox.id] = sandbox_context(sandbox)
    return contexts


class CriClient:
    """Async CRI RuntimeService calls on the runtime's socket (containerd serves CRI on its main socket)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = grpc.aio.insecure_channel(f"unix://{address}")
        self._runtime = cri_pb2_grpc.RuntimeServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def all_contexts(self) -> dict[str, dict[str, Any]]:
        """Every sandbox and container the runtime knows, by id: two calls, to warm a cache at start."""
        sandboxes = await self._runtime.ListPodSandbox(cri_pb2.ListPodSandboxRequest(), timeout=_CALL_TIMEOUT_S)
        containers = await self._runtime.ListContainers(cri_pb2.ListContainersRequest(), timeout=_CALL_TIMEOUT_S)
        by_id = {sandbox.id: sandbox for sandbox in sandboxes.items}
        contexts = {sandbox.id: sandbox_context(sandbox) for sandbox in sandboxes.items}
        for container in containers.containers:
            contexts[container.id] = container_context(container, by_id.get(container.pod_sandbox_id),
                                                       await self.image_name(container))
        return contexts

    async def image_name(self, container: cri_pb2.Container) -> str:
        """The container's image by name, as the pod spec and the Kubernetes API give it. The kubelet creates
        containers with the image's id (sha256:...), which containerd 1.6 lists as the container's image (it
        drops the name the kubelet passes beside it); its ContainerStatus names the image by its first tag.
        "" when the listing has the name already, or the runtime knows no name."""
        if not _is_image_id(_image(container)):
            return ""
        try:
            reply = await self._runtime.ContainerStatus(cri_pb2.ContainerStatusRequest(container_id=container.id),
                                                        timeout=_CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return ""
        named = _image(reply.status)
        return "" if _is_image_id(named) else named

    async def context(self, container_id: str) -> dict[str, Any] | None:
        """The context of one container or sandbox id; ``None`` when the runtime does not know it."""
        request = cri_pb2.ListContainersRequest(filter=cri_pb2.ContainerFilter(id=container_id))
        found = (await self._runtime.ListContainers(request, timeout=_CALL_TIMEOUT_S)).containers
        sandbox_id = found[0].pod_sandbox_id if found else container_id
        try:
            reply = await self._runtime.PodSandboxStatus(
                cri_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id), timeout=_CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return container_context(found[0], None, await self.image_name(found[0])) if found else None
        if not found:
            return sandbox_context(reply.status)
        return container_context(found[0], reply.status, await self.image_name(found[0]))

    async def container_events(self) -> AsyncIterator[cri_pb2.ContainerEventResponse]:
        """CRI's container event stream. Raises ``AioRpcError`` UNIMPLEMENTED where the runtime lacks it
        (containerd before 1.7)."""
        async for event in self._runtime.GetContainerEvents(cri_pb2.GetEventsRequest()):
            yield event
