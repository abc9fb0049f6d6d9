"""What the node sources' fixtures share: the time example records are dated at, and the pod context the node
collector adds to a sensor's record (eBPF, kernel audit, containerd)."""

from __future__ import annotations

import uuid
from typing import Any

#: When example records are dated (2025-03-04T06:22:18Z, the audit examples' time and the scenarios' start).
EXAMPLE_START_NS = 1_741_069_338 * 10**9


def in_pod(
    record: dict[str, Any], *, namespace: str = "shop", pod: str = "api-7d4b9c-x2x9z", container: str = "api",
    image: str = "registry.example.com/shop/api:2.3",
) -> dict[str, Any]:
    """A node sensor's record (eBPF, kernel audit) with the pod context the node collector adds to it, for
    examples of runtime detections."""
    container_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{pod}/{container}").hex * 2
    k8s = {"namespace": namespace, "pod": pod, "container_name": container, "container_id": container_id,
           "image": image}
    return {**record, "container_id": container_id, "node": "worker-1", "k8s": k8s}
