"""Exec or attach into a pod: interactive access to a container, through the API."""

from typing import Any

from vigil.detections.k8s import request_query
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_SUBRESOURCES = frozenset({"exec", "attach"})
#: SPDY clients POST (audited as ``create``); kubectl 1.30+ opens a WebSocket with a GET, audited as ``get``
#: (kubernetes/kubectl#1761), which a create-only rule silently misses.
_VERBS = frozenset({"create", "get"})


def is_exec_or_attach(event: Event) -> bool:
    target = event.target
    return event.action in _VERBS and target.resource == "pods" and target.subresource in _SUBRESOURCES


def exec_context(event: Event) -> dict[str, Any]:
    query = request_query(event)
    return {
        "container": query.get("container", [""])[0],
        "command": query.get("command", []),
        "tty": query.get("tty", ["false"])[0] == "true",
    }


DETECTION = EventDetection(
    id="k8s.exec_into_pod",
    title="Exec or attach into a pod",
    alert_title="{user} ran {subresource} in pod {namespace}/{pod}",
    description=(
        "Someone ran a command in, or attached to, a running container through the API (kubectl exec/attach, "
        "POSTed or over a WebSocket). "
        "Interactive access bypasses the image and deployment review; attackers with stolen credentials use it "
        "to run tools, read mounted secrets and move laterally. Reported whether or not the API server allowed "
        "it: a refused exec is still someone trying."
    ),
    severity="high",
    mitre=["T1609"],
    tags=["kubernetes", "execution"],
    references=[
        "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/Exec%20into%20container/",
        "https://attack.mitre.org/techniques/T1609/",
    ],
    false_positives=["Operators debugging a workload; check the user and whether the access was expected."],
    kinds=["k8s.api"],
    resources=["pods"], actions=_VERBS, subresources=_SUBRESOURCES,
    match=is_exec_or_attach,
    context=exec_context,
    dedup="{cluster}/{namespace}/{pod}/{user}",
    examples=[
        Example(
            name="interactive shell in a pod",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "pods", name="web-7f9c", subresource="exec", code=101,
                query="command=sh&command=-c&command=id&container=app&stdin=true&tty=true",
            ),
        ),
        Example(
            name="kubectl 1.30+ exec over WebSocket, audited as get",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "get", "pods", name="web-7f9c", subresource="exec", code=101,
                query="command=%2Fbin%2Fbash&container=app&stdin=true&stdout=true&tty=true",
            ),
        ),
        Example(
            name="attach refused by RBAC",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "pods", name="db-0", namespace="prod", subresource="attach", code=403,
                user="system:serviceaccount:ci:deployer", query="container=postgres&stdin=true",
            ),
        ),
        Example(
            name="reading a pod", source="k8s-audit", fires=False, record=audit_record("get", "pods", name="web-7f9c")
        ),
        Example(
            name="reading pod logs",
            source="k8s-audit",
            fires=False,
            record=audit_record("get", "pods", name="web-7f9c", subresource="log"),
        ),
        Example(
            name="port-forward is not exec",
            source="k8s-audit",
            fires=False,
            record=audit_record("create", "pods", name="web-7f9c", subresource="portforward", code=101),
        ),
    ],
)
