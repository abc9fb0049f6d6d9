"""Ephemeral container added to a running pod (``kubectl debug``): a new container inside an existing pod."""

from typing import Any

from vigil.detections.k8s import containers, written_object
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_VERBS = frozenset({"update", "patch"})


def is_ephemeral_container(event: Event) -> bool:
    target = event.target
    return event.action in _VERBS and target.resource == "pods" and target.subresource == "ephemeralcontainers"


def ephemeral_context(event: Event) -> dict[str, Any]:
    body = written_object(event) or {}
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    added = [c for list_name, c in containers(spec) if list_name == "ephemeralContainers"]
    return {
        "containers": [str(c.get("name", "")) for c in added],
        "images": sorted({str(c.get("image", "")) for c in added}),
        "targets": sorted({str(c["targetContainerName"]) for c in added if c.get("targetContainerName")}),
    }


_DEBUG = {"name": "debugger-x7k2", "image": "busybox:1.36", "targetContainerName": "app", "stdin": True, "tty": True}

DETECTION = EventDetection(
    id="k8s.ephemeral_container",
    title="Ephemeral container added to a pod",
    alert_title="{user} added an ephemeral container to pod {namespace}/{pod}",
    description=(
        "An ephemeral container was added to a running pod (kubectl debug). It runs an image of the caller's "
        "choice inside the pod, sharing its network and, with a target container, its process namespace: it "
        "sees the workload's processes, environment and mounted secrets without the pod being redeployed, and "
        "the pod's own image review never saw it. Reported whether or not the API server allowed it."
    ),
    severity="high",
    mitre=["T1609", "T1610"],
    tags=["kubernetes", "execution"],
    references=["https://kubernetes.io/docs/concepts/workloads/pods/ephemeral-containers/"],
    false_positives=["Operators debugging a distroless workload with kubectl debug; check the user and the image."],
    kinds=["k8s.api"],
    resources=["pods"], actions=_VERBS, subresources=["ephemeralcontainers"],
    match=is_ephemeral_container,
    context=ephemeral_context,
    examples=[
        Example(
            name="kubectl debug adds a busybox next to the app",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "patch", "pods", name="web-7f9c", subresource="ephemeralcontainers",
                request_object={"spec": {"ephemeralContainers": [_DEBUG]}},
            ),
        ),
        Example(
            name="update without a logged body",
            source="k8s-audit",
            fires=True,
            record=audit_record("update", "pods", name="api-0", namespace="prod", subresource="ephemeralcontainers"),
        ),
        Example(
            name="reading the ephemeral containers",
            source="k8s-audit",
            fires=False,
            record=audit_record("get", "pods", name="web-7f9c", subresource="ephemeralcontainers"),
        ),
        Example(
            name="pod status update by the kubelet",
            source="k8s-audit",
            fires=False,
            record=audit_record("patch", "pods", name="web-7f9c", subresource="status", user="system:node:worker-1"),
        ),
    ],
)
