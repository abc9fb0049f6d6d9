"""Complete ``raw.containerd`` records for detection examples and tests, as the node collector ships them."""

from __future__ import annotations

from typing import Any

from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod


def containerd_record(
    kind: str, *, at_s: float = 0.0, namespace: str = "shop", pod: str = "api-7d4b9c-x2x9z",
    container: str = "api", image: str = "registry.example.com/shop/api:2.3", **fields: Any,
) -> dict[str, Any]:
    """A ``raw.containerd`` record (see :mod:`vigil.collectors.runtime.events`) as the node collector ships it, with
    the pod context it adds, ``at_s`` seconds into 2025-03-04T06:22:18Z; ``fields`` adds ``exit_status`` etc."""
    pod_record = in_pod({}, namespace=namespace, pod=pod, container=container, image=image)
    return {
        "kind": kind,
        "topic": {"container.exit": "/tasks/exit", "container.oom": "/tasks/oom"}.get(kind, ""),
        "time_ns": EXAMPLE_START_NS + int(at_s * 1e9),
        "containerd_namespace": "k8s.io",
        **pod_record,
        **fields,
    }


def plain_container_record(
    *, image: str = "docker.io/library/alpine:3.20", container_id: str = "5e2a" * 16,
    containerd_namespace: str = "default", security: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``container.create`` record of a container started without Kubernetes (``ctr run``, nerdctl in
    ``default``, docker in ``moby``): no pod context. ``security`` sets fields of the spec's summary the node
    collector adds (:mod:`vigil.collectors.runtime.spec`) over an unprivileged root container's."""
    summary = {"privileged": False, "capabilities": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"], "uid": 0,
               "host_namespaces": [], "host_mounts": [], **(security or {})}
    return {"kind": "container.create", "topic": "/containers/create", "time_ns": EXAMPLE_START_NS,
            "containerd_namespace": containerd_namespace, "container_id": container_id, "image": image,
            "runtime": "io.containerd.runc.v2", "node": "worker-1", "security": summary}
