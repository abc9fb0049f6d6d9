"""Keys that tie the events of one pod or one container together: the join key of a sequence step (which is
also its state key) or the group of a threshold."""

from __future__ import annotations

from vigil.event import Event


def pod_key(event: Event) -> str:
    """``cluster/namespace/pod`` (the events' correlation key) when the event names its pod, else "": the
    default join key of sequence steps. Audit ``pods/exec``, pod writes and calls made with a pod-bound
    service-account token, and runtime events enriched with their pod, all carry it."""
    pod = event.k8s.pod
    return f"{event.cluster}/{event.k8s.namespace}/{pod}" if pod else ""


def container_key(event: Event) -> str:
    """``cluster/container id`` for runtime events (two events of one container), else "": a join key for
    sequences whose steps all come from runtime sensors, even without Kubernetes enrichment."""
    container = event.k8s.container_id
    return f"{event.cluster}/{container}" if container else ""
