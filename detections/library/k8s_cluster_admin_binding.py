"""Binding to an admin-equivalent role: a ClusterRoleBinding or RoleBinding granting cluster-admin or one of the
control plane's own ClusterRoles, or a ClusterRoleBinding granting admin or edit in every namespace."""

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from vigil.detections.k8s import identity_in, subject_names, written_object
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

#: ClusterRoles that are admin-equivalent wherever they are bound: cluster-admin grants everything, and the
#: control plane's roles grant what its components need (the controllers' roles include escalate and bind on
#: RBAC, deleting every namespace, minting tokens; system:node reads the secrets of every pod on a node).
ADMIN_ROLES = [
    "cluster-admin",
    "system:controller:*",
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:node",
    "system:kube-dns",
]
#: ClusterRoles meant for one namespace (a RoleBinding): bound cluster-wide they grant writing every namespace's
#: workloads and reading every secret, which is cluster-admin in all but RBAC.
CLUSTER_WIDE_ROLES = ["admin", "edit"]
#: The API server reconciles its bootstrap bindings (``cluster-admin`` → ``system:masters``, the controllers'
#: ``system:controller:*`` bindings) at every start.
ALLOWED_IDENTITIES = ["system:apiserver"]
_BINDINGS = frozenset({"clusterrolebindings", "rolebindings"})
_WRITES = frozenset({"create", "update", "patch"})


def bound_role(event: Event, params: Mapping[str, Any]) -> str:
    """The admin-equivalent ClusterRole a binding write grants, or ""."""
    target = event.target
    if (
        event.action not in _WRITES
        or target.resource not in _BINDINGS
        or target.api_group != "rbac.authorization.k8s.io"
        or target.subresource
        or identity_in(event.actor.user, params["allowed_identities"])
    ):
        return ""
    role_ref = (written_object(event) or {}).get("roleRef")
    role_ref = role_ref if isinstance(role_ref, dict) else {}
    name = role_ref.get("name")
    if role_ref.get("kind") != "ClusterRole" or not isinstance(name, str):
        return ""
    if any(fnmatchcase(name, pattern) for pattern in params["admin_roles"]):
        return name
    cluster_wide = target.resource == "clusterrolebindings"
    return name if cluster_wide and any(fnmatchcase(name, p) for p in params["cluster_wide_roles"]) else ""


def binding_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "role": bound_role(event, params),
        "binding_kind": event.target.resource,
        "subjects": subject_names(written_object(event)),
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
    title="Binding to an admin-equivalent role",
    alert_title="{user} bound {subjects} to {role} ({binding_kind} {name})",
    description=(
        "A ClusterRoleBinding or RoleBinding was created or changed to grant an admin-equivalent ClusterRole: "
        "cluster-admin or one of the control plane's own roles (system:controller:*, system:kube-controller-manager, "
        "system:kube-scheduler, system:node) anywhere, or admin or edit cluster-wide. cluster-admin may do anything "
        "to any object, and the others grant escalate/bind, every secret or every workload: binding one to a "
        "user, group or service account (above all to a workload's service account) hands over the cluster. "
        "Attackers who can write bindings use it to escalate and to persist. Reported whether or not the request "
        "was allowed."
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
    params={"admin_roles": ADMIN_ROLES, "cluster_wide_roles": CLUSTER_WIDE_ROLES,
            "allowed_identities": ALLOWED_IDENTITIES},
    resources=_BINDINGS, actions=_WRITES, subresources=[""],
    match=lambda event, params: bool(bound_role(event, params)),
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
            name="edit granted in every namespace",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "clusterrolebindings", name="ci-edit", namespace="", api_group=_RBAC,
                request_object=_binding("ClusterRoleBinding", "ci-edit", "edit",
                                        {"kind": "ServiceAccount", "name": "runner", "namespace": "ci"}),
            ),
        ),
        Example(
            name="a controller's role for a user",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "clusterrolebindings", name="helper", namespace="", api_group=_RBAC,
                request_object=_binding(
                    "ClusterRoleBinding", "helper", "system:controller:clusterrole-aggregation-controller",
                    {"kind": "User", "name": "mallory@example.com"},
                ),
            ),
        ),
        Example(
            name="edit for a team in its own namespace",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "rolebindings", name="team-edit", namespace="shop", api_group=_RBAC,
                request_object=_binding("RoleBinding", "team-edit", "edit", {"kind": "Group", "name": "shop-devs"}),
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
