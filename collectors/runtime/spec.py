"""What a container was started with, from its OCI runtime spec in containerd: privileged or not, its effective
capabilities, what of the host it mounts, the user it runs as, and which host namespaces it shares.

containerd keeps every container's spec, whoever created it (the kubelet through CRI, ``ctr``, nerdctl, docker),
so the node collector reads it when containerd announces a container and adds the summary to the
``container.create`` record as ``security``. This is how containers started outside Kubernetes, which no pod spec
in the API audit log shows, are judged at all. The summary is small and flat, ready for JSON::

    {"privileged": false, "capabilities": ["CAP_CHOWN", ...], "uid": 0, "host_namespaces": ["network"],
     "host_mounts": [{"source": "/var/run/containerd/containerd.sock", "destination": "/run/containerd.sock",
                      "readonly": false}]}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import grpc
import orjson

from vigil.collectors.runtime.api import containerd_containers_pb2 as containers
from vigil.collectors.runtime.api import containerd_containers_pb2_grpc as containers_grpc
from vigil.collectors.runtime.cri import k8s_context

log = logging.getLogger(__name__)

_CALL_TIMEOUT_S = 5.0
#: Namespaces a container gets its own of unless it shares the host's (OCI ``linux.namespaces`` types).
_ISOLATING_NAMESPACES = ("pid", "network", "ipc", "uts", "mount")
#: The prefix of the annotations containerd's CRI plugin writes into the specs of the containers it creates.
_CRI = "io.kubernetes.cri."
#: Mount types that bring a host path into the container.
_BIND_TYPES = frozenset({"bind", "rbind"})


def security_of_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The summary of an OCI runtime spec (the parsed JSON); fields the spec lacks read as not granted."""
    process = _mapping(spec.get("process"))
    linux = _mapping(spec.get("linux"))
    capabilities = sorted(_strings(_mapping(process.get("capabilities")).get("effective")))
    uid = _mapping(process.get("user")).get("uid")
    return {
        # CRI's and ctr's "privileged" is every capability with the kernel's interfaces left unmasked: the
        # masked paths (/proc/kcore, /proc/keys, …) are what every unprivileged container gets.
        "privileged": "CAP_SYS_ADMIN" in capabilities and not linux.get("maskedPaths"),
        "capabilities": capabilities,
        "uid": uid if type(uid) is int else -1,
        "host_namespaces": _host_namespaces(linux.get("namespaces")),
        "host_mounts": [_bind(mount) for mount in _list(spec.get("mounts")) if _is_bind(mount)],
    }


def pod_of_spec(spec: dict[str, Any], container_id: str) -> dict[str, Any] | None:
    """The ``k8s`` context of a container the kubelet created through CRI, from the annotations containerd's CRI
    plugin writes into its spec (``io.kubernetes.cri.*``); ``None`` for containers created otherwise. The spec is
    written before containerd announces the container, while CRI's own lookup may not know a sandbox yet on a
    loaded node: this is the pod's name when that lookup comes back empty. It has no labels or service account
    (the Kubernetes API watch adds them)."""
    annotations = _mapping(spec.get("annotations"))
    namespace, pod = annotations.get(_CRI + "sandbox-namespace"), annotations.get(_CRI + "sandbox-name")
    if not (isinstance(namespace, str) and namespace and isinstance(pod, str) and pod):
        return None
    is_container = annotations.get(_CRI + "container-type") == "container"
    return k8s_context(namespace=namespace, pod=pod, pod_uid=_string(annotations.get(_CRI + "sandbox-uid")),
                       container_id=container_id,
                       container_name=_string(annotations.get(_CRI + "container-name")) if is_container else "",
                       image=_string(annotations.get(_CRI + "image-name")) if is_container else "")


def _host_namespaces(namespaces: Any) -> list[str]:
    """The isolating namespaces the spec does not create (absent: the container shares the host's)."""
    own = {_mapping(item).get("type") for item in _list(namespaces)}
    return [kind for kind in _ISOLATING_NAMESPACES if kind not in own] if namespaces is not None else []


def _is_bind(mount: Any) -> bool:
    """A bind mount: by its type, or (as runc writes them) by its options."""
    mount = _mapping(mount)
    return mount.get("type") in _BIND_TYPES or not _BIND_TYPES.isdisjoint(_strings(mount.get("options")))


def _bind(mount: Any) -> dict[str, Any]:
    mount = _mapping(mount)
    source, destination = mount.get("source"), mount.get("destination")
    return {"source": source if isinstance(source, str) else "",
            "destination": destination if isinstance(destination, str) else "",
            "readonly": "ro" in _strings(mount.get("options"))}


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> list[str]:
    return [item for item in _list(value) if isinstance(item, str)]


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """What the node collector reads of one container's spec."""

    security: dict[str, Any]  #: :func:`security_of_spec`
    pod: dict[str, Any] | None  #: :func:`pod_of_spec`


class ContainerSpecs:
    """Reads containers' specs from containerd's containers service (on its main socket)."""

    def __init__(self, address: str) -> None:
        self._channel = grpc.aio.insecure_channel(f"unix://{address}")
        self._containers = containers_grpc.ContainersStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def read(self, namespace: str, container_id: str) -> ContainerSpec | None:
        """What one container's spec says; ``None`` when containerd does not have the container any more or its
        spec is not JSON."""
        try:
            reply = await self._containers.Get(containers.GetContainerRequest(id=container_id),
                                               metadata=(("containerd-namespace", namespace),),
                                               timeout=_CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            log.debug("container spec unavailable", extra={"container_id": container_id, "code": exc.code().name})
            return None
        try:
            spec = orjson.loads(reply.container.spec.value)
        except orjson.JSONDecodeError:
            log.debug("container spec is not JSON", extra={"container_id": container_id})
            return None
        if not isinstance(spec, dict):
            return None
        return ContainerSpec(security_of_spec(spec), pod_of_spec(spec, container_id))
