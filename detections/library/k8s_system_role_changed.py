"""Change to a built-in ``system:`` ClusterRole or ClusterRoleBinding by someone other than the API server."""

from vigil.detections.k8s import identity_in
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_RBAC = "rbac.authorization.k8s.io"
_OBJECTS = frozenset({"clusterroles", "clusterrolebindings", "roles", "rolebindings"})
_CHANGES = frozenset({"update", "patch", "delete"})
#: The API server reconciles the bootstrap roles and bindings at start (adding what is missing); the
#: aggregation controller updates aggregated roles.
ALLOWED_IDENTITIES = (
    "system:apiserver",
    "system:serviceaccount:kube-system:clusterrole-aggregation-controller",
)


def is_system_role_change(event: Event) -> bool:
    target = event.target
    return (
        event.action in _CHANGES
        and target.resource in _OBJECTS
        and target.api_group == _RBAC
        and target.name.startswith("system:")
        and not target.subresource
        and not identity_in(event.actor.user, ALLOWED_IDENTITIES)
    )


DETECTION = EventDetection(
    id="k8s.system_role_changed",
    title="Built-in system: role or binding changed",
    alert_title="{user} changed {resource} {name} ({verb})",
    description=(
        "A built-in RBAC object whose name starts with system: (the roles and bindings of the API server, "
        "kubelets, controllers and system:authenticated users) was updated, patched or deleted by someone other "
        "than the API server. Widening one of them (say system:discovery or system:basic-user, which every "
        "authenticated or even anonymous caller holds) grants the change to whole classes of identities at "
        "once and is rarely reviewed; deleting one breaks a component. Reported whether or not it was allowed."
    ),
    severity="high",
    mitre=["T1098", "T1484"],
    tags=["kubernetes", "privilege-escalation", "persistence"],
    references=["https://kubernetes.io/docs/reference/access-authn-authz/rbac/#default-roles-and-role-bindings"],
    false_positives=["An administrator deliberately tightening a default role (with autoupdate turned off)."],
    kinds=["k8s.api"],
    resources=_OBJECTS, actions=_CHANGES, subresources=[""],
    match=is_system_role_change,
    dedup="{cluster}/{resource}/{name}",
    examples=[
        Example(
            name="system:discovery widened by a person",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "patch", "clusterroles", name="system:discovery", namespace="", api_group=_RBAC,
                request_object={"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]},
            ),
        ),
        Example(
            name="system binding deleted",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "delete", "clusterrolebindings", name="system:kube-scheduler", namespace="", api_group=_RBAC,
            ),
        ),
        Example(
            name="the API server reconciling at start",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "update", "clusterroles", name="system:discovery", namespace="", api_group=_RBAC,
                user="system:apiserver", groups=["system:masters"],
            ),
        ),
        Example(
            name="an application's own role",
            source="k8s-audit",
            fires=False,
            record=audit_record("update", "clusterroles", name="shop-reader", namespace="", api_group=_RBAC),
        ),
    ],
)
