"""Creation and deletion of the objects that shape a cluster's access and exposure (namespaces, service accounts,
RBAC, secrets, ConfigMaps, Services, Deployments) by people and workloads: an informational change record."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import CONTROL_PLANE, identity_in
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_VERBS = frozenset({"create", "delete"})
#: API group of each recorded resource (``group/resource`` in the parameter; the core group is empty).
RECORDED = [
    "namespaces", "serviceaccounts", "secrets", "configmaps", "services",
    "apps/deployments",
    "rbac.authorization.k8s.io/roles", "rbac.authorization.k8s.io/clusterroles",
    "rbac.authorization.k8s.io/rolebindings", "rbac.authorization.k8s.io/clusterrolebindings",
]
_RESOURCES = frozenset(entry.rpartition("/")[2] for entry in RECORDED)


def is_recorded_change(event: Event, params: Mapping[str, Any]) -> bool:
    target = event.target
    qualified = f"{target.api_group}/{target.resource}" if target.api_group else target.resource
    return (
        event.action in _VERBS
        and not target.subresource
        and qualified in params["resources"]
        and event.outcome.result == "success"
        and not identity_in(event.actor.user, params["allowed_identities"])
    )


DETECTION = EventDetection(
    id="k8s.object_lifecycle",
    title="Access-shaping object created or deleted",
    alert_title="{user} {verb}d {resource} {namespace}/{name}",
    description=(
        "A namespace, service account, secret, ConfigMap, Service, Deployment, Role, ClusterRole or binding was "
        "created or deleted successfully by an identity that is not a control-plane component. Informational: "
        "the record an investigation needs of who changed access and exposure when, searchable next to the "
        "alerts. The changes that are risky by their content (admin bindings, powerful roles, privileged "
        "workloads, exposed services) have detections of their own."
    ),
    severity="informational",
    params={"resources": RECORDED, "allowed_identities": list(CONTROL_PLANE)},
    mitre=["T1098", "T1136", "T1485"],
    tags=["kubernetes", "audit-trail"],
    references=["https://kubernetes.io/docs/tasks/debug/debug-cluster/audit/"],
    false_positives=["Every deployment; this is a record, not a finding."],
    kinds=["k8s.api"],
    resources=_RESOURCES, actions=_VERBS, subresources=[""],
    match=is_recorded_change,
    dedup="{cluster}/{verb}/{resource}/{namespace}/{name}",
    examples=[
        Example(name="a namespace created", source="k8s-audit", fires=True,
                record=audit_record("create", "namespaces", name="tmp-x", namespace="")),
        Example(name="a ClusterRoleBinding deleted", source="k8s-audit", fires=True,
                record=audit_record("delete", "clusterrolebindings", name="audit-reader", namespace="",
                                    api_group="rbac.authorization.k8s.io")),
        Example(name="a secret created by a workload", source="k8s-audit", fires=True,
                record=audit_record("create", "secrets", name="creds", namespace="shop",
                                    user="system:serviceaccount:shop:web")),
        Example(name="the service-account controller", source="k8s-audit", fires=False,
                record=audit_record("create", "serviceaccounts", name="default", namespace="shop",
                                    user="system:serviceaccount:kube-system:service-account-controller")),
        Example(name="a pod is not recorded", source="k8s-audit", fires=False,
                record=audit_record("create", "pods", name="web", namespace="shop")),
        Example(name="refused", source="k8s-audit", fires=False,
                record=audit_record("delete", "namespaces", name="prod", namespace="", code=403)),
    ],
)
