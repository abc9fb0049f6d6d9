"""Port-forward to a pod: a tunnel from the caller's machine into a container's network namespace."""

from typing import Any

from vigil.detections.k8s import request_query
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

#: SPDY clients POST (audited as ``create``); newer kubectl tunnels over a WebSocket opened with a GET.
_VERBS = frozenset({"create", "get"})


def is_port_forward(event: Event) -> bool:
    target = event.target
    return event.action in _VERBS and target.resource == "pods" and target.subresource == "portforward"


def port_forward_context(event: Event) -> dict[str, Any]:
    return {"ports": request_query(event).get("ports", [])}


DETECTION = EventDetection(
    id="k8s.port_forward",
    title="Port-forward to a pod",
    alert_title="{user} port-forwarded to pod {namespace}/{pod}",
    description=(
        "Someone opened a port-forward tunnel to a pod through the API (kubectl port-forward). The tunnel reaches "
        "services listening inside the pod (databases, admin consoles, debug ports) from outside the cluster, "
        "bypassing Services, ingress and network policies. Reported whether or not the API server allowed it."
    ),
    severity="medium",
    mitre=["T1572", "T1609"],
    tags=["kubernetes", "command-and-control", "lateral-movement"],
    references=["https://kubernetes.io/docs/tasks/access-application-cluster/port-forward-access-application-cluster/"],
    false_positives=["Developers reaching a database or a dashboard during debugging; check the user and the pod."],
    kinds=["k8s.api"],
    resources=["pods"], actions=_VERBS, subresources=["portforward"],
    match=is_port_forward,
    context=port_forward_context,
    examples=[
        Example(
            name="kubectl port-forward to a database",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "pods", name="postgres-0", namespace="prod", subresource="portforward", code=101,
                query="ports=5432",
            ),
        ),
        Example(
            name="port-forward over a WebSocket, audited as get",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "get", "pods", name="web-7f9c", subresource="portforward", code=101, query="ports=8080"
            ),
        ),
        Example(
            name="exec is not port-forward",
            source="k8s-audit",
            fires=False,
            record=audit_record("create", "pods", name="web-7f9c", subresource="exec", code=101),
        ),
        Example(
            name="reading a pod", source="k8s-audit", fires=False, record=audit_record("get", "pods", name="web-7f9c")
        ),
    ],
)
