"""Role or ClusterRole written with rules that grant write verbs: the inventory of who may change the cluster.

Informational: every operator installs such roles. What makes a role dangerous (wildcards, escalate, bind,
impersonate, writing secrets or RBAC, exec) is ``k8s.powerful_role``, at high severity."""

from typing import Any

from vigil.detections.k8s import identity_in, written_object
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_RBAC = "rbac.authorization.k8s.io"
_ROLES = frozenset({"clusterroles", "roles"})
_WRITES = frozenset({"create", "update", "patch"})
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection", "*"})
#: The API server reconciles the bootstrap roles at start; the aggregation controller fills admin/edit/view.
ALLOWED_IDENTITIES = (
    "system:apiserver",
    "system:serviceaccount:kube-system:clusterrole-aggregation-controller",
)


def _strings(rule: dict[str, Any], key: str) -> list[str]:
    values = rule.get(key)
    return [str(v) for v in values] if isinstance(values, list) else []


def written_grants(event: Event) -> list[str]:
    """``verbs on resources`` for each rule of a written Role or ClusterRole that grants a write verb."""
    target = event.target
    if (
        event.action not in _WRITES
        or target.resource not in _ROLES
        or target.api_group != _RBAC
        or target.subresource
        or identity_in(event.actor.user, ALLOWED_IDENTITIES)
    ):
        return []
    rules = (written_object(event) or {}).get("rules")
    grants = []
    for rule in rules if isinstance(rules, list) else []:
        if isinstance(rule, dict) and (verbs := [v for v in _strings(rule, "verbs") if v in WRITE_VERBS]):
            grants.append(f"{'/'.join(verbs)} on {'/'.join(_strings(rule, 'resources')) or 'non-resource URLs'}")
    return grants


def _role(kind: str, name: str, *rules: dict[str, list[str]]) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": f"{_RBAC}/v1", "metadata": {"name": name}, "rules": list(rules)}


DETECTION = EventDetection(
    id="k8s.role_write_permissions",
    title="Role granting write permissions",
    alert_title="{user} wrote {resource} {name} granting {grants}",
    description=(
        "A Role or ClusterRole was created or changed with rules that grant create, update, patch, delete or "
        "deletecollection. Whoever is bound to it can change the cluster's objects: worth an entry in the "
        "record of who may change what (a ClusterRole applies in every namespace it is bound cluster-wide), "
        "not an incident by itself. Roles with wildcards, escalation verbs, or write access to secrets and RBAC "
        "are k8s.powerful_role."
    ),
    severity="informational",
    mitre=["T1098"],
    tags=["kubernetes", "persistence", "posture"],
    references=["https://kubernetes.io/docs/concepts/security/rbac-good-practices/"],
    false_positives=["Every operator and Helm chart installs roles that write its own resources."],
    kinds=["k8s.api"],
    resources=_ROLES, actions=_WRITES, subresources=[""],
    match=lambda event: bool(written_grants(event)),
    context=lambda event: {"grants": written_grants(event)},
    dedup="{cluster}/{resource}/{namespace}/{name}",
    examples=[
        Example(
            name="ClusterRole that deletes deployments",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "clusterroles", name="deployer", namespace="", api_group=_RBAC,
                request_object=_role("ClusterRole", "deployer",
                                     {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "delete"]}),
            ),
        ),
        Example(
            name="Role that patches ConfigMaps",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "roles", name="config-writer", namespace="shop", api_group=_RBAC,
                request_object=_role("Role", "config-writer",
                                     {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"]}),
            ),
        ),
        Example(
            name="read-only role",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "roles", name="web-reader", namespace="shop", api_group=_RBAC,
                request_object=_role("Role", "web-reader",
                                     {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}),
            ),
        ),
        Example(
            name="the aggregation controller filling in edit",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "update", "clusterroles", name="edit", namespace="", api_group=_RBAC,
                user="system:serviceaccount:kube-system:clusterrole-aggregation-controller",
                request_object=_role("ClusterRole", "edit",
                                     {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create"]}),
            ),
        ),
    ],
)
