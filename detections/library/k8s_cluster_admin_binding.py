"""Binding to cluster-admin: a ClusterRoleBinding or RoleBinding that grants the cluster-admin ClusterRole."""

from typing import Any

from vigil.detections.k8s import identity_in, written_object
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

#: ClusterRoles that grant everything (a RoleBinding to them grants everything in its namespace).
POWERFUL_ROLES = frozenset({"cluster-admin"})
#: The API server reconciles its bootstrap bindings (``cluster-admin`` → ``system:masters``) at every start.
ALLOWED_IDENTITIES = ("system:apiserver",)
_BINDINGS = frozenset({"clusterrolebindings", "rolebindings"})
_WRITES = frozenset({"create", "update", "patch"})


def bound_role(event: Event) -> str:
    """The powerful ClusterRole a binding write grants, or ""."""
    target = event.target
    if (
        event.action not in _WRITES
        or target.resource not in _BINDINGS
        or target.api_group != "rbac.authorization.k8s.io"
        or identity_in(event.actor.user, ALLOWED_IDENTITIES)
    ):
        return ""
    role_ref = (written_object(event) or {}).get("roleRef")
    if not isinstance(role_ref, dict) or role_ref.get("kind") != "ClusterRole":
        return ""
    name = role_ref.get("name")
    return name if name in POWERFUL_ROLES else ""


def binding_context(event: Event) -> dict[str, Any]:
    subjects = (written_object(event) or {}).get("subjects")
    return {
        "role": bound_role(event),
        "binding_kind": event.target.resource,
        "subjects": [
            f"{s.get('kind', '')}:{s.get('namespace') + '/' if s.get('namespace') else ''}{s.get('name', '')}"
            for s in subjects if isinstance(s, dict)
        ] if isinstance(subjects, list) else [],
    }


def _binding(kind: str, name: str, role: str, subject: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": kind,
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [subject],
    }


_SA = {"kind": "ServiceAccount", "name": "default", "namespace": "shop"}
_RBAC = "rbac.authorization.k8s.io"

DETECTION = EventDetection(
    id="k8s.cluster_admin_binding",
    title="Binding to cluster-admin",
    alert_title="{user} bound {subjects} to {role} ({binding_kind} {name})",
    description=(
        "A ClusterRoleBinding or RoleBinding was created or changed to grant the cluster-admin ClusterRole. "
        "cluster-admin may do anything to any object: binding it to a user, group or service account (above all "
        "to a workload's service account) hands over the cluster. Attackers who can write bindings use it to "
        "escalate and to persist. Reported whether or not the request was allowed."
    ),
    severity="high",
    mitre=["T1098", "T1078.001"],
    tags=["kubernetes", "privilege-escalation", "persistence"],
    references=[
        "https://kubernetes.io/docs/reference/access-authn-authz/rbac/#user-facing-roles",
        "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/Cluster-admin%20binding/",
    ],
    false_positives=["Bootstrapping a cluster or an administrator granting admin to a new operator."],
    kinds=["k8s.api"],
    resources=_BINDINGS, actions=_WRITES,
    match=lambda event: bool(bound_role(event)),
    context=binding_context,
    dedup="{cluster}/{binding_kind}/{namespace}/{name}",
    examples=[
        Example(
            name="cluster-admin for a workload's service account",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "clusterrolebindings", name="shop-admin", namespace="", api_group=_RBAC,
                request_object=_binding("ClusterRoleBinding", "shop-admin", "cluster-admin", _SA),
            ),
        ),
        Example(
            name="RoleBinding to the cluster-admin ClusterRole",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "rolebindings", name="all-in-shop", namespace="shop", api_group=_RBAC,
                request_object=_binding(
                    "RoleBinding", "all-in-shop", "cluster-admin", {"kind": "User", "name": "mallory@example.com"}
                ),
            ),
        ),
        Example(
            name="binding to view",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "clusterrolebindings", name="shop-view", namespace="", api_group=_RBAC,
                request_object=_binding("ClusterRoleBinding", "shop-view", "view", _SA),
            ),
        ),
        Example(
            name="the API server reconciling its bootstrap binding",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "update", "clusterrolebindings", name="cluster-admin", namespace="", api_group=_RBAC,
                user="system:apiserver", groups=["system:masters"],
                request_object=_binding(
                    "ClusterRoleBinding", "cluster-admin", "cluster-admin", {"kind": "Group", "name": "system:masters"}
                ),
            ),
        ),
    ],
)
