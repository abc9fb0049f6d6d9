"""A container whose first process runs as root, as containerd records its user: also for containers started
without Kubernetes, which no pod spec shows."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.event import Event
from vigil.sources.containerd.fixtures import containerd_record, plain_container_record


def root_start(event: Event, params: dict[str, Any]) -> bool:
    # Pods are k8s.run_as_root's (from the spec) unless pods_too is set.
    return event.container.uid == 0 and (params["pods_too"] or not event.k8s.pod)


def root_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"where": container_label(event), "image": event.container.image, "in_kubernetes": bool(event.k8s.pod),
            "node": event.node}


def plain_create(uid: int, **record: Any) -> dict[str, Any]:
    """containerd's record of a container created outside Kubernetes whose first process runs as ``uid``."""
    defaults = {"image": "docker.io/library/redis:7", "container_id": "8b5d" * 16}
    return plain_container_record(**{**defaults, **record}, security={"uid": uid})


DETECTION = EventDetection(
    id="runtime.root_container_started",
    title="Container started as root",
    alert_title="{where} started as root from {image} on node {node}",
    description=(
        "containerd created a container whose first process runs as uid 0. Root in a container is one kernel bug "
        "or one mistaken mount away from root on the node, and most images run fine as another user. "
        "k8s.run_as_root reports pods from their spec; this reports containers the node runs, including those "
        "started without Kubernetes. Low, as a hygiene finding; pods are left to the audit-log detection unless "
        "pods_too is set."
    ),
    severity="low",
    mitre=["T1610"],
    tags=["runtime", "container", "posture"],
    references=["https://kubernetes.io/docs/concepts/security/pod-security-standards/"],
    false_positives=["Images that need root to start and drop privileges themselves."],
    kinds=["container.create"],
    params={"pods_too": False},
    match=root_start,
    context=root_context,
    dedup="{cluster}/{node}/{image}",
    examples=[
        Example(name="ctr run of an image as root", source="containerd", fires=True, record=plain_create(0)),
        Example(name="a nerdctl container on the node running as root", source="containerd", fires=True,
                record=plain_create(0, image="ghcr.io/acme/agent:1.4", containerd_namespace="default",
                                    container_id="8c6e" * 16)),
        Example(name="a container running as uid 999", source="containerd", fires=False, record=plain_create(999)),
        Example(name="a pod's root container (k8s.run_as_root's)", source="containerd", fires=False,
                record=containerd_record("container.create", security={"uid": 0})),
        Example(name="a create record without the spec's summary", source="containerd", fires=False,
                record=containerd_record("container.create")),
    ],
)
