"""SELinux isolation switched off: containers labelled with a type the container policy does not confine
(``spc_t``, the "super privileged container" type, or ``unconfined_t``), or with the whole MCS category range,
which reaches every other container's files."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import (
    PostureCheck,
    is_privileged,
    posture_detection,
    security_setting,
)
from vigil.detections.sdk import Example
from vigil.sources.audit.fixtures import audit_record, workload_object

#: The category range of every MCS label (s0-s0:c0.c1023 is system-high for containers).
ALL_CATEGORIES = "c0.c1023"


def weakening(params: Mapping[str, Any]) -> PostureCheck:
    def check(spec: Mapping[str, Any], container: Mapping[str, Any], annotations: Mapping[str, Any]) -> str:
        """The seLinuxOptions that undo the container's confinement ("" if none, or if it is privileged: a
        privileged container already runs spc_t and is k8s.privileged_container's)."""
        options = security_setting(spec, container, "seLinuxOptions")
        if not isinstance(options, dict) or is_privileged(container):
            return ""
        if options.get("type") in params["unconfined_types"]:
            return f"seLinuxOptions.type: {options['type']}"
        level = str(options.get("level", ""))
        return f"seLinuxOptions.level: {level}" if ALL_CATEGORIES in level else ""

    return check


def _pod(options: dict[str, Any], level: str = "pod") -> dict[str, Any]:
    app = {"name": "app", "image": "registry.example.com/agent:1.4"}
    if level == "container":
        spec = {"containers": [{**app, "securityContext": {"seLinuxOptions": options}}]}
    else:
        spec = {"securityContext": {"seLinuxOptions": options}, "containers": [app]}
    return audit_record("create", "pods", name="agent", request_object=workload_object("Pod", "agent", spec))


DETECTION = posture_detection(
    check_with=weakening,
    id="k8s.selinux_isolation_disabled",
    title="SELinux isolation disabled for a container",
    alert_title="{user} set {settings} for {containers} in {workload} ({namespace})",
    description=(
        "A pod, or a workload that templates pods, was created or changed with SELinux options that leave its "
        "containers unconfined: the type spc_t (super privileged container) or unconfined_t, which the container "
        "policy does not restrict, or a level spanning every MCS category (c0.c1023), which can read and write "
        "every other container's files on the node. The Pod Security Standards' baseline level forbids custom "
        "SELinux types other than the container ones."
    ),
    severity="medium",  # posture, but on SELinux nodes the one wall between containers' files
    params={"unconfined_types": ["spc_t", "unconfined_t", "container_runtime_t"]},
    mitre=["T1611", "T1562.001"],
    tags=["kubernetes", "posture", "selinux", "defense-evasion"],
    references=[
        "https://kubernetes.io/docs/concepts/security/pod-security-standards/#baseline",
        "https://danwalsh.livejournal.com/74754.html",
    ],
    false_positives=["Node agents that manage the host (log shippers reading every container's files, CSI drivers)."],
    examples=[
        Example(name="spc_t at pod level", source="k8s-audit", fires=True, record=_pod({"type": "spc_t"})),
        Example(name="all categories for one container", source="k8s-audit", fires=True,
                record=_pod({"level": "s0-s0:c0.c1023"}, level="container")),
        Example(name="a container's own MCS pair", source="k8s-audit", fires=False,
                record=_pod({"level": "s0:c123,c456"}, level="container")),
        Example(name="the container type", source="k8s-audit", fires=False, record=_pod({"type": "container_t"})),
    ],
)
