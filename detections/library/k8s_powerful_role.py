"""ClusterRole or Role granting wildcards, write access to secrets or RBAC, privilege-escalation verbs or pods/exec."""

from typing import Any

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

#: Writing these is taking over identities and permissions, or reading every credential.
SENSITIVE_RESOURCES = frozenset({"secrets", "roles", "clusterroles", "rolebindings", "clusterrolebindings"})
#: RBAC verbs that bypass RBAC's own escalation checks, or act as someone else.
ESCALATION_VERBS = frozenset({"bind", "escalate", "impersonate"})
EXEC_RESOURCES = frozenset({"pods/exec", "pods/attach", "pods/ephemeralcontainers", "nodes/proxy"})
#: ``pods/*`` and ``nodes/*`` name every subresource, the exec-like ones among them (nodes/proxy is the kubelet's
#: whole API: exec in any pod of the node, bypassing the API server's audit of exec).
EXEC_WILDCARDS = frozenset({"pods/*", "nodes/*"})


def _strings(rule: dict[str, Any], key: str) -> set[str]:
    return set(rule_strings(rule, key))


def rule_findings(rule: dict[str, Any]) -> list[str]:
    """What makes one RBAC policy rule powerful, as short phrases for the alert."""
    verbs, resources = _strings(rule, "verbs"), _strings(rule, "resources")
    findings = []
    if "*" in verbs and ("*" in resources or "*" in _strings(rule, "apiGroups")):
        findings.append("all verbs on all resources")
    elif "*" in resources:
        findings.append(f"{'/'.join(sorted(verbs))} on all resources")
    elif "*" in verbs:
        findings.append(f"all verbs on {'/'.join(sorted(resources))}")
    if verbs & WRITE_GRANTS and (written := resources & SENSITIVE_RESOURCES):
        findings.append(f"write on {'/'.join(sorted(written))}")
    if escalation := verbs & ESCALATION_VERBS:
        findings.append(f"{'/'.join(sorted(escalation))}")
    if verbs & {"create", "get", "*"} and (execs := resources & (EXEC_RESOURCES | EXEC_WILDCARDS)):
        findings.append(f"{'/'.join(sorted(execs))}")
    if "*" in _strings(rule, "nonResourceURLs") and "*" in verbs:
        findings.append("all non-resource URLs")
    return findings


def powerful_rules(event: Event) -> list[str]:
    return list(dict.fromkeys(f for rule in written_role_rules(event) for f in rule_findings(rule)))


def role_context(event: Event) -> dict[str, Any]:
    return {"role_kind": event.target.resource, "grants": powerful_rules(event)}


DETECTION = EventDetection(
    id="k8s.powerful_role",
    title="Role granting powerful permissions",
    alert_title="{user} wrote {role_kind} {name} granting {grants}",
    description=(
        "A ClusterRole or Role was created or changed with rules that grant wildcards (any verb or any "
        "resource), write access to secrets or to RBAC objects, the bind/escalate/impersonate verbs, or exec, "
        "attach and ephemeral containers in pods. Whoever is bound to such a role can read every credential, "
        "grant themselves more, or run code in any workload: attackers create such roles to escalate and "
        "persist. Reported whether or not the request was allowed."
    ),
    severity="high",
    mitre=["T1098", "T1078.001"],
    tags=["kubernetes", "privilege-escalation", "persistence"],
    references=[
        "https://kubernetes.io/docs/concepts/security/rbac-good-practices/",
        "https://kubernetes.io/docs/reference/access-authn-authz/rbac/#privilege-escalation-prevention-and-bootstrapping",
    ],
    false_positives=[
        "Operators and their Helm charts install ClusterRoles with broad permissions; check the chart and the user.",
    ],
    kinds=["k8s.api"],
    resources=ROLE_RESOURCES, actions=WRITES, subresources=[""],
    match=lambda event: bool(powerful_rules(event)),
    context=role_context,
    dedup="{cluster}/{role_kind}/{namespace}/{name}",
    examples=[
        Example(
            name="ClusterRole with all verbs on all resources",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "clusterroles", name="god", namespace="", api_group=RBAC_API_GROUP,
                request_object=role_object("ClusterRole", "god",
                                           {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
            ),
        ),
        Example(
            name="Role that writes secrets and execs into pods",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "roles", name="ops", namespace="shop", api_group=RBAC_API_GROUP,
                request_object=role_object(
                    "Role", "ops",
                    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "update"]},
                    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
                ),
            ),
        ),
        Example(
            name="ClusterRole with the escalate verb",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "patch", "clusterroles", name="rbac-manager", namespace="", api_group=RBAC_API_GROUP,
                request_object={
                    "rules": [
                        {"apiGroups": [RBAC_API_GROUP], "resources": ["clusterroles"], "verbs": ["escalate", "get"]},
                    ]
                },
            ),
        ),
        Example(
            name="ClusterRole reaching the kubelet through every node subresource",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "clusterroles", name="node-debug", namespace="", api_group=RBAC_API_GROUP,
                request_object=role_object("ClusterRole", "node-debug",
                                     {"apiGroups": [""], "resources": ["nodes/*"], "verbs": ["get"]}),
            ),
        ),
        Example(
            name="read-only role",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "clusterroles", name="pod-reader", namespace="", api_group=RBAC_API_GROUP,
                request_object=role_object(
                    "ClusterRole", "pod-reader", {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
                ),
            ),
        ),
        Example(
            name="the aggregation controller filling in edit",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "update", "clusterroles", name="edit", namespace="", api_group=RBAC_API_GROUP,
                user="system:serviceaccount:kube-system:clusterrole-aggregation-controller",
                request_object=role_object(
                    "ClusterRole", "edit", {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "update"]}
                ),
            ),
        ),
    ],
)
