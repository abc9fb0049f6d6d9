"""A Node object created by an identity other than that node's own kubelet, or a node outside the allow-list."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import identity_in
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

#: Identities that register nodes on behalf of others: cloud node controllers and virtual-kubelet style providers
#: a deployment runs (none by default).
ALLOWED_REGISTRARS: list[str] = []


def registration_problem(event: Event, params: Mapping[str, Any]) -> str:
    """Why a node create is suspicious ("" when it is not): a node registers itself as ``system:node:<name>``;
    ``allowed_nodes`` narrows which names may join (every name by default)."""
    target = event.target
    if event.action != "create" or target.resource != "nodes" or target.subresource or target.api_group:
        return ""
    user = event.actor.user
    if not identity_in(target.name, params["allowed_nodes"]):
        return "node name not in allowed_nodes"
    if user != f"system:node:{target.name}" and not identity_in(user, params["allowed_registrars"]):
        return "registered by another identity"
    return ""


DETECTION = EventDetection(
    id="k8s.node_registered",
    title="Node joined by an unexpected identity or name",
    alert_title="node {name} registered by {user}: {problem} ({outcome})",
    description=(
        "A Node object was created by an identity other than the node's own kubelet (system:node:<name>), or "
        "with a name outside allowed_nodes. A kubelet registers its own node; a Node created by a person or a "
        "pod is a fake node that the scheduler will send pods, and their secrets, to, and a node joining "
        "under an unexpected name is a machine that got hold of bootstrap credentials. Reported whether or "
        "not the request succeeded (the outcome is in the title)."
    ),
    severity="medium",
    params={"allowed_nodes": ["*"], "allowed_registrars": ALLOWED_REGISTRARS},
    mitre=["T1078.001", "T1610", "T1098"],
    tags=["kubernetes", "persistence", "initial-access"],
    references=["https://kubernetes.io/docs/concepts/architecture/nodes/#self-registration-of-nodes",
                "https://kubernetes.io/docs/reference/access-authn-authz/node/"],
    false_positives=["Virtual-kubelet providers and cloud controllers that register nodes (allowed_registrars)."],
    kinds=["k8s.api"],
    resources=["nodes"], actions=["create"], subresources=[""],
    match=lambda event, params: bool(registration_problem(event, params)),
    context=lambda event, params: {"problem": registration_problem(event, params), "outcome": event.outcome.result},
    dedup="{cluster}/{name}/{user}",
    examples=[
        Example(name="a person creates a Node object", source="k8s-audit", fires=True,
                record=audit_record("create", "nodes", name="worker-99", namespace="")),
        Example(name="a kubelet registering under another node's name", source="k8s-audit", fires=True,
                record=audit_record("create", "nodes", name="worker-2", namespace="", user="system:node:worker-1",
                                    groups=["system:nodes"], code=403)),
        Example(name="a kubelet registering itself", source="k8s-audit", fires=False,
                record=audit_record("create", "nodes", name="worker-3", namespace="", user="system:node:worker-3",
                                    groups=["system:nodes"])),
        Example(name="a node's status", source="k8s-audit", fires=False,
                record=audit_record("patch", "nodes", name="worker-3", namespace="", subresource="status",
                                    user="system:node:worker-3")),
    ],
)
