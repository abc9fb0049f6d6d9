"""Role or ClusterRole written with rules that grant write verbs: the inventory of who may change the cluster.

Informational: every operator installs such roles. What makes a role dangerous (wildcards, escalate, bind,
impersonate, writing secrets or RBAC, exec) is ``k8s.powerful_role``, at high severity."""

from vigil.detections.k8s import (
    RBAC_API_GROUP,
    ROLE_RESOURCES,
    WRITE_GRANTS,
    WRITES,
    rule_strings,
    written_role_rules,
)
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record, role_object


def written_grants(event: Event) -> list[str]:
    """``verbs on resources`` for each rule of a written Role or ClusterRole that grants a write verb."""
    grants = []
    for rule in written_role_rules(event):
        if verbs := [v for v in rule_strings(rule, "verbs") if v in WRITE_GRANTS]:
            grants.append(f"{'/'.join(verbs)} on {'/'.join(rule_strings(rule, 'resources')) or 'non-resource URLs'}")
    return grants


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
    resources=ROLE_RESOURCES, actions=WRITES, subresources=[""],
    match=lambda event: bool(written_grants(event)),
    context=lambda event: {"grants": written_grants(event)},
    dedup="{cluster}/{resource}/{namespace}/{name}",
    examples=[
        Example(
            name="ClusterRole that deletes deployments",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "clusterroles", name="deployer", namespace="", api_group=RBAC_API_GROUP,
                request_object=role_object("ClusterRole", "deployer",
                                     {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "delete"]}),
            ),
        ),
        Example(
            name="Role that patches ConfigMaps",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "roles", name="config-writer", namespace="shop", api_group=RBAC_API_GROUP,
                request_object=role_object("Role", "config-writer",
                                     {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"]}),
            ),
        ),
        Example(
            name="read-only role",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "roles", name="web-reader", namespace="shop", api_group=RBAC_API_GROUP,
                request_object=role_object("Role", "web-reader",
                                     {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}),
            ),
        ),
        Example(
            name="the aggregation controller filling in edit",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "update", "clusterroles", name="edit", namespace="", api_group=RBAC_API_GROUP,
                user="system:serviceaccount:kube-system:clusterrole-aggregation-controller",
                request_object=role_object("ClusterRole", "edit",
                                     {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create"]}),
            ),
        ),
    ],
)
