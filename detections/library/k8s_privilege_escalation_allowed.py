"""``allowPrivilegeEscalation: true``: a container whose processes may gain privileges through setuid binaries
or file capabilities (the kernel's ``no_new_privs`` left off on purpose)."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import (
    is_privileged,
    posture_detection,
)
from vigil.detections.sdk import Example
from vigil.sources.audit.fixtures import audit_record, workload_object


def allows_escalation(spec: Mapping[str, Any], container: Mapping[str, Any], annotations: Mapping[str, Any]) -> str:
    """The explicit setting ("" when absent, or for a privileged container, which is k8s.privileged_container's)."""
    context = container.get("securityContext")
    explicit = isinstance(context, dict) and context.get("allowPrivilegeEscalation") is True
    return "securityContext.allowPrivilegeEscalation: true" if explicit and not is_privileged(container) else ""


def _container(**security: Any) -> dict[str, Any]:
    return {"name": "app", "image": "registry.example.com/app:3", "securityContext": security}


DETECTION = posture_detection(
    check=allows_escalation,
    id="k8s.privilege_escalation_allowed",
    title="Container allows privilege escalation",
    alert_title="{user} allowed privilege escalation for {containers} in {workload} ({namespace})",
    description=(
        "A pod, or a workload that templates pods, was created or changed with allowPrivilegeEscalation: true "
        "on a container. The kernel's no_new_privs stays off, so a process in the container can become root "
        "through a setuid binary or file capabilities (sudo, su, a planted setuid shell). The Pod Security "
        "Standards' restricted level requires false. Setting it explicitly is a choice someone made."
    ),
    severity="low",
    mitre=["T1548.001", "T1611"],
    tags=["kubernetes", "posture", "privilege-escalation"],
    references=[
        "https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted",
        "https://kubernetes.io/docs/tasks/configure-pod-container/security-context/",
    ],
    false_positives=["Images that run sudo or ping (setuid) by design."],
    examples=[
        Example(name="explicitly allowed in a pod", source="k8s-audit", fires=True, record=audit_record(
            "create", "pods", name="tools", request_object=workload_object(
                "Pod", "tools", {"containers": [_container(allowPrivilegeEscalation=True)]}))),
        Example(name="allowed in a StatefulSet's init container", source="k8s-audit", fires=True, record=audit_record(
            "update", "statefulsets", name="db", api_group="apps", request_object=workload_object(
                "StatefulSet", "db", {"initContainers": [_container(allowPrivilegeEscalation=True)],
                                      "containers": [_container(allowPrivilegeEscalation=False)]}))),
        Example(name="explicitly refused", source="k8s-audit", fires=False, record=audit_record(
            "create", "pods", name="web", request_object=workload_object(
                "Pod", "web", {"containers": [_container(allowPrivilegeEscalation=False)]}))),
        Example(name="privileged (another detection's)", source="k8s-audit", fires=False, record=audit_record(
            "create", "pods", name="debug", request_object=workload_object(
                "Pod", "debug", {"containers": [_container(privileged=True, allowPrivilegeEscalation=True)]}))),
    ],
)
