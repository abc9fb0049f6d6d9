"""Kubernetes events deleted: the cluster's own record of what happened, removed."""

from vigil.detections.k8s import CONTROL_PLANE, identity_in
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_DELETES = frozenset({"delete", "deletecollection"})
#: Events are core ("") and events.k8s.io objects; the API server expires them itself without an audit
#: record, and the namespace controller deletes them with their namespace.
_API_GROUPS = frozenset({"", "events.k8s.io"})
ALLOWED_IDENTITIES = CONTROL_PLANE


def is_events_deletion(event: Event) -> bool:
    target = event.target
    return (
        event.action in _DELETES
        and target.resource == "events"
        and target.api_group in _API_GROUPS
        and not identity_in(event.actor.user, ALLOWED_IDENTITIES)
    )


DETECTION = EventDetection(
    id="k8s.events_deleted",
    title="Kubernetes events deleted",
    alert_title="{user} deleted events in {namespace}",
    description=(
        "Kubernetes events (scheduling, image pulls, container restarts, failed mounts) were deleted through the "
        "API. Events expire on their own after an hour, so deleting them by hand serves mostly to erase the "
        "trace of what just happened, such as a pod that was started and removed. Reported whether or not "
        "the request was allowed."
    ),
    severity="medium",
    mitre=["T1070"],
    tags=["kubernetes", "defense-evasion"],
    references=["https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/Delete%20K8S%20events/"],
    false_positives=["An administrator clearing noisy events after an incident was resolved."],
    kinds=["k8s.api"],
    resources=["events"], actions=_DELETES,
    match=is_events_deletion,
    dedup="{cluster}/{namespace}/{user}",
    examples=[
        Example(
            name="kubectl delete events --all",
            source="k8s-audit",
            fires=True,
            record=audit_record("deletecollection", "events", namespace="shop"),
        ),
        Example(
            name="one events.k8s.io event deleted",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "delete", "events", name="web.17a2b", namespace="shop", api_group="events.k8s.io",
            ),
        ),
        Example(
            name="the namespace controller cleaning up a deleted namespace",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "deletecollection", "events", namespace="old-shop",
                user="system:serviceaccount:kube-system:namespace-controller",
            ),
        ),
        Example(
            name="listing events", source="k8s-audit", fires=False, record=audit_record("list", "events")
        ),
    ],
)
