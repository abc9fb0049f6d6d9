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
