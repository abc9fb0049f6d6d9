"""Containers set to run as root: ``runAsUser: 0`` or ``runAsNonRoot: false``."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import (
    is_privileged,
    posture_detection,
    security_setting,
)
from vigil.detections.sdk import Example
from vigil.sources.audit.fixtures import audit_record, workload_object


def as_root(spec: Mapping[str, Any], container: Mapping[str, Any], annotations: Mapping[str, Any]) -> str:
    """The setting that makes the container run as root, container level over pod level ("" if none; a
    privileged container is k8s.privileged_container's)."""
    if is_privileged(container):
        return ""
    user = security_setting(spec, container, "runAsUser")
    if user == 0 and not isinstance(user, bool):
        return "runAsUser: 0"
    return "runAsNonRoot: false" if security_setting(spec, container, "runAsNonRoot") is False else ""


def _pod(spec: dict[str, Any]) -> dict[str, Any]:
    return audit_record("create", "pods", name="app", request_object=workload_object("Pod", "app", spec))


_APP = {"name": "app", "image": "registry.example.com/app:3"}

DETECTION = posture_detection(
    check=as_root,
    id="k8s.run_as_root",
    title="Container set to run as root",
    alert_title="{user} set {settings} for {containers} in {workload} ({namespace})",
    description=(
        "A pod, or a workload that templates pods, was created or changed so that a container runs as UID 0: "
        "runAsUser: 0, or runAsNonRoot: false, at container or pod level. Root in a container is one kernel bug, "
        "one writable host mount or one added capability away from root on the node; the Pod Security "
        "Standards' restricted level forbids both settings. Images that run as root without saying so are not "
        "reported here (the audit log cannot see the image's USER)."
    ),
    severity="low",
    mitre=["T1611", "T1078.003"],
    tags=["kubernetes", "posture", "privilege-escalation"],
    references=[
        "https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted",
        "https://kubernetes.io/docs/tasks/configure-pod-container/security-context/",
    ],
    false_positives=["Images that need root to bind low ports or change file ownership at start."],
    examples=[
        Example(name="pod-level runAsUser 0", source="k8s-audit", fires=True,
                record=_pod({"securityContext": {"runAsUser": 0}, "containers": [_APP]})),
        Example(name="runAsNonRoot false on a container in a Job", source="k8s-audit", fires=True,
                record=audit_record("create", "jobs", name="migrate", api_group="batch", request_object=workload_object(
                    "Job", "migrate", {"containers": [{**_APP, "securityContext": {"runAsNonRoot": False}}]}))),
        Example(name="the container overrides the pod's root", source="k8s-audit", fires=False,
                record=_pod({"securityContext": {"runAsUser": 0},
                             "containers": [{**_APP, "securityContext": {"runAsUser": 10001}}]})),
        Example(name="non-root", source="k8s-audit", fires=False,
                record=_pod({"securityContext": {"runAsNonRoot": True, "runAsUser": 1000}, "containers": [_APP]})),
    ],
)
