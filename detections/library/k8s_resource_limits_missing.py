"""Containers without resource limits: one of them can exhaust its node's memory or CPU and starve (or, for
memory, get OOM-killed along with) every other pod there. Informational by default; a deployment raises the
severity, and chooses which limits are required, per namespace."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import (
    PostureCheck,
    posture_detection,
)
from vigil.detections.sdk import Example
from vigil.sources.audit.fixtures import audit_record, workload_object


def unlimited(params: Mapping[str, Any]) -> PostureCheck:
    def check(spec: Mapping[str, Any], container: Mapping[str, Any], annotations: Mapping[str, Any]) -> str:
        """The required limits the container does not set ("" when it sets them all)."""
        resources = container.get("resources")
        limits = resources.get("limits") if isinstance(resources, dict) else None
        limits = limits if isinstance(limits, dict) else {}
        absent = [name for name in params["required_limits"] if not limits.get(name)]
        return f"no limits.{', limits.'.join(absent)}" if absent else ""

    return check


def _deployment(*containers: dict[str, Any]) -> dict[str, Any]:
    return audit_record("create", "deployments", name="api", api_group="apps",
                        request_object=workload_object("Deployment", "api", {"containers": list(containers)}))


_APP = {"name": "app", "image": "registry.example.com/api:2.1"}

DETECTION = posture_detection(
    check_with=unlimited,
    id="k8s.resource_limits_missing",
    title="Container without resource limits",
    alert_title="{containers} in {workload} ({namespace}): {settings}",
    description=(
        "A pod, or a workload that templates pods, was created or changed with containers that set no limit for a "
        "required resource (memory by default: the limit that protects the node; add cpu or ephemeral-storage in "
        "required_limits). A container without a memory limit can exhaust the node (a leak, a fork bomb, a "
        "miner), and the kernel's OOM killer then picks among every pod there. Informational by default: raise "
        "the severity for the namespaces whose policy requires limits."
    ),
    severity="informational",
    params={"required_limits": ["memory"]},
    mitre=["T1499", "T1496"],
    tags=["kubernetes", "posture", "resources"],
    references=[
        "https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/",
        "https://kubernetes.io/docs/concepts/policy/limit-range/",
    ],
    false_positives=["Namespaces with a LimitRange, which gives containers default limits at admission."],
    examples=[
        Example(name="no resources at all", source="k8s-audit", fires=True, record=_deployment(_APP)),
        Example(name="requests but no memory limit", source="k8s-audit", fires=True, record=_deployment(
            {**_APP, "resources": {"requests": {"memory": "256Mi"}, "limits": {"cpu": "1"}}})),
        Example(name="memory limit set", source="k8s-audit", fires=False, record=_deployment(
            {**_APP, "resources": {"limits": {"memory": "512Mi"}}})),
        Example(name="a read of the Deployment", source="k8s-audit", fires=False,
                record=audit_record("get", "deployments", name="api", api_group="apps")),
    ],
)
