"""AppArmor switched off: containers whose AppArmor profile is ``Unconfined``."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import (
    APPARMOR_CONTAINER_ANNOTATION,
    apparmor_profile,
    is_privileged,
    posture_detection,
)
from vigil.detections.sdk import Example
from vigil.sources.audit.fixtures import audit_record, workload_object


def unconfined(spec: Mapping[str, Any], container: Mapping[str, Any], annotations: Mapping[str, Any]) -> str:
    """Where the container's AppArmor profile is set to Unconfined ("" if not, or if it is privileged)."""
    profile, where = apparmor_profile(spec, container, annotations)
    return f"{where}: Unconfined" if profile == "Unconfined" and not is_privileged(container) else ""


def _pod(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return audit_record("create", "pods", name="web", request_object=workload_object("Pod", "web", spec, **metadata))


_APP = {"name": "app", "image": "nginx:1.27"}

DETECTION = posture_detection(
    check=unconfined,
    id="k8s.apparmor_unconfined",
    title="AppArmor disabled for a container",
    alert_title="{user} disabled AppArmor for {containers} in {workload} ({namespace})",
    description=(
        "A pod, or a workload that templates pods, was created or changed with the AppArmor profile Unconfined "
        "(securityContext.appArmorProfile at pod or container level, or the legacy "
        "container.apparmor.security.beta.kubernetes.io annotation). On nodes that enforce AppArmor the runtime's "
        "default profile denies mounts, writes to /proc and /sys and other escape steps; unconfined, only "
        "capabilities and seccomp stand in the way. The Pod Security Standards' baseline level forbids it."
    ),
    severity="low",  # posture: namespaces and capabilities still confine; useful beside a later escape
    mitre=["T1611", "T1562.001"],
    tags=["kubernetes", "posture", "apparmor", "defense-evasion"],
    references=[
        "https://kubernetes.io/docs/tutorials/security/apparmor/",
        "https://kubernetes.io/docs/concepts/security/pod-security-standards/#baseline",
    ],
    false_positives=["Workloads whose needs the default profile refuses, such as FUSE or nested containers."],
    examples=[
        Example(name="container appArmorProfile Unconfined", source="k8s-audit", fires=True, record=_pod(
            {"containers": [{**_APP, "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}]})),
        Example(name="legacy annotation in a DaemonSet template", source="k8s-audit", fires=True,
                record=audit_record("create", "daemonsets", name="agent", api_group="apps",
                                    request_object={**workload_object("DaemonSet", "agent", {"containers": [_APP]}),
                                                    "spec": {"selector": {"matchLabels": {"app": "agent"}},
                                                             "template": {"metadata": {"annotations": {
                                                                 f"{APPARMOR_CONTAINER_ANNOTATION}app": "unconfined"}},
                                                                 "spec": {"containers": [_APP]}}}})),
        Example(name="runtime default annotation", source="k8s-audit", fires=False, record=_pod(
            {"containers": [_APP]}, annotations={f"{APPARMOR_CONTAINER_ANNOTATION}app": "runtime/default"})),
        Example(name="pod Unconfined overridden by the container's Localhost profile", source="k8s-audit",
                fires=False, record=_pod({
                    "securityContext": {"appArmorProfile": {"type": "Unconfined"}},
                    "containers": [{**_APP, "securityContext": {"appArmorProfile": {
                        "type": "Localhost", "localhostProfile": "k8s-nginx"}}}]})),
    ],
)
