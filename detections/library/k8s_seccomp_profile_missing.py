"""No seccomp profile: containers left to the runtime's default, which is Unconfined unless the kubelet runs
with ``--seccomp-default``. Informational everywhere; a deployment raises the severity for the namespaces
whose policy requires a profile (``[detections."k8s.seccomp_profile_missing".namespaces."prod-*"]``)."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import (
    is_privileged,
    posture_detection,
    seccomp_profile,
)
from vigil.detections.sdk import Example
from vigil.sources.audit.fixtures import audit_record, workload_object


def missing(spec: Mapping[str, Any], container: Mapping[str, Any], annotations: Mapping[str, Any]) -> str:
    """'no seccompProfile' when nothing sets a profile for the container. An explicit Unconfined is
    k8s.seccomp_unconfined's; a privileged container has none anyway and is k8s.privileged_container's."""
    if is_privileged(container) or seccomp_profile(spec, container, annotations)[0]:
        return ""
    return "no seccompProfile"


def _deployment(spec: dict[str, Any]) -> dict[str, Any]:
    return audit_record("create", "deployments", name="api", namespace="prod", api_group="apps",
                        request_object=workload_object("Deployment", "api", spec))


_APP = {"name": "app", "image": "registry.example.com/api:2.1"}

DETECTION = posture_detection(
    check=missing,
    id="k8s.seccomp_profile_missing",
    title="Container without a seccomp profile",
    alert_title="{containers} in {workload} ({namespace}) run without a seccomp profile",
    description=(
        "A pod, or a workload that templates pods, was created or changed with containers for which neither the "
        "container, the pod nor a legacy annotation sets a seccomp profile. Unless every kubelet runs with "
        "--seccomp-default they run unconfined; the Pod Security Standards' restricted level requires "
        "RuntimeDefault or Localhost. Informational by default: set the severity per namespace where policy "
        "requires a profile."
    ),
    severity="informational",
    mitre=["T1611"],
    tags=["kubernetes", "posture", "seccomp"],
    references=[
        "https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted",
        "https://kubernetes.io/docs/tutorials/security/seccomp/#enable-the-use-of-runtimedefault-as-the-default-seccomp-profile-for-all-workloads",
    ],
    false_positives=["Clusters whose kubelets run with --seccomp-default: the runtime's default profile applies."],
    examples=[
        Example(name="Deployment without any profile", source="k8s-audit", fires=True,
                record=_deployment({"containers": [_APP]})),
        Example(name="the sidecar has no profile, the app has one", source="k8s-audit", fires=True,
                record=_deployment({"containers": [
                    {**_APP, "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
                    {"name": "proxy", "image": "envoyproxy/envoy:v1.31"}]})),
        Example(name="pod-level RuntimeDefault", source="k8s-audit", fires=False,
                record=_deployment({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                                    "containers": [_APP]})),
        Example(name="Localhost profile through the legacy annotation", source="k8s-audit", fires=False,
                record=audit_record("create", "pods", name="api", request_object=workload_object(
                    "Pod", "api", {"containers": [_APP]},
                    annotations={"seccomp.security.alpha.kubernetes.io/pod": "localhost/profiles/api.json"}))),
        Example(name="explicitly Unconfined is another detection's", source="k8s-audit", fires=False,
                record=_deployment({"securityContext": {"seccompProfile": {"type": "Unconfined"}},
                                    "containers": [_APP]})),
    ],
)
