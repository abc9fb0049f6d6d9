"""Seccomp switched off: a pod or workload template whose containers run with the ``Unconfined`` profile."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import (
    SECCOMP_CONTAINER_ANNOTATION,
    SECCOMP_POD_ANNOTATION,
    posture_detection,
    seccomp_profile,
)
from vigil.detections.sdk import Example
from vigil.sources.audit.fixtures import audit_record, workload_object


def unconfined(spec: Mapping[str, Any], container: Mapping[str, Any], annotations: Mapping[str, Any]) -> str:
    """Where the container's seccomp profile is set to Unconfined ("" if it is not)."""
    profile, where = seccomp_profile(spec, container, annotations)
    return f"{where}: Unconfined" if profile == "Unconfined" else ""


def _pod(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return audit_record("create", "pods", name="web", request_object=workload_object("Pod", "web", spec, **metadata))


_APP = {"name": "app", "image": "nginx:1.27"}
_RUNTIME_DEFAULT = {"seccompProfile": {"type": "RuntimeDefault"}}

DETECTION = posture_detection(
    check=unconfined,
    id="k8s.seccomp_unconfined",
    title="Seccomp disabled for a container",
    alert_title="{user} disabled seccomp for {containers} in {workload} ({namespace})",
    description=(
        "A pod, or a workload that templates pods, was created or changed with the seccomp profile Unconfined, "
        "at pod or container level or through the legacy seccomp annotations. Without a seccomp filter every "
        "system call reaches the kernel, including those container escapes rely on (unshare, keyctl, bpf, "
        "userfaultfd); the Pod Security Standards' baseline level forbids it. Reported whether or not the "
        "request was allowed."
    ),
    severity="low",  # posture: namespaces and capabilities still confine; useful beside a later escape
    mitre=["T1611", "T1562.001"],
    tags=["kubernetes", "posture", "seccomp", "defense-evasion"],
    references=[
        "https://kubernetes.io/docs/tutorials/security/seccomp/",
        "https://kubernetes.io/docs/concepts/security/pod-security-standards/#baseline",
    ],
    false_positives=["Debugging a workload whose system calls the default profile refuses."],
    examples=[
        Example(name="pod-level Unconfined", source="k8s-audit", fires=True, record=_pod(
            {"securityContext": {"seccompProfile": {"type": "Unconfined"}}, "containers": [_APP]})),
        Example(name="container-level Unconfined in a Deployment overriding the pod's RuntimeDefault",
                source="k8s-audit", fires=True, record=audit_record(
                    "create", "deployments", name="web", api_group="apps", request_object=workload_object(
                        "Deployment", "web", {"securityContext": _RUNTIME_DEFAULT, "containers": [
                            {**_APP, "securityContext": {"seccompProfile": {"type": "Unconfined"}}}]}))),
        Example(name="legacy pod annotation", source="k8s-audit", fires=True, record=_pod(
            {"containers": [_APP]}, annotations={SECCOMP_POD_ANNOTATION: "unconfined"})),
        Example(name="RuntimeDefault", source="k8s-audit", fires=False, record=_pod(
            {"securityContext": _RUNTIME_DEFAULT, "containers": [_APP]})),
        Example(name="container RuntimeDefault overrides a legacy unconfined annotation", source="k8s-audit",
                fires=False, record=_pod({"containers": [{**_APP, "securityContext": _RUNTIME_DEFAULT}]},
                                         annotations={f"{SECCOMP_CONTAINER_ANNOTATION}app": "unconfined"})),
    ],
)
