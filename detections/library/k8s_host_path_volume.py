"""A hostPath volume in a pod or workload template: the inventory of workloads that reach into their node.

Informational: log shippers, CNI and CSI agents mount node directories by design. The paths that hand over the
node (its root, /etc, runtime sockets, the kubelet's directory…) are ``k8s.sensitive_host_path``, at high, and
are left out here so one mount is one alert."""

from typing import Any

from vigil.detections.k8s import (
    POD_SPEC_RESOURCES,
    SPEC_SUBRESOURCES,
    SPEC_WRITE_VERBS,
    host_path,
    is_sensitive_host_path,
    pod_spec,
    workload,
)
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record, workload_object


def host_paths(event: Event) -> list[str]:
    """The normalized host paths of the hostPath volumes an API write sets that are not sensitive, in volume order."""
    spec = pod_spec(event)
    volumes = spec.get("volumes") if spec is not None else None
    if not isinstance(volumes, list):
        return []
    return [
        path for volume in volumes
        if isinstance(volume, dict) and (path := host_path(volume)) and not is_sensitive_host_path(path)
    ]


def _spec(*paths: str) -> dict[str, Any]:
    volumes = [{"name": f"v{i}", "hostPath": {"path": p}} for i, p in enumerate(paths)]
    volumes.append({"name": "cache", "emptyDir": {}})
    return {"containers": [{"name": "app", "image": "registry.example.com/app@sha256:" + "a" * 64}],
            "volumes": volumes}


DETECTION = EventDetection(
    id="k8s.host_path_volume",
    title="hostPath volume outside the sensitive paths",
    alert_title="{workload} ({namespace}) mounts host paths {host_paths}",
    description=(
        "A pod, or a workload that templates pods, was created or changed with a hostPath volume: its containers "
        "read (and unless mounted read-only, write) a directory of whichever node runs them, outside the "
        "container's filesystem and outside what the pod's own namespace isolates. A hygiene finding "
        "(informational) kept as an inventory; the paths that give away the node are k8s.sensitive_host_path "
        "and are not repeated here."
    ),
    severity="informational",
    mitre=["T1611"],
    tags=["kubernetes", "posture"],
    references=["https://kubernetes.io/docs/concepts/storage/volumes/#hostpath"],
    false_positives=["Node agents (log shippers, CNI, CSI, monitoring) mount host directories by design."],
    kinds=["k8s.api"],
    resources=POD_SPEC_RESOURCES, actions=SPEC_WRITE_VERBS, subresources=SPEC_SUBRESOURCES,
    match=lambda event: bool(host_paths(event)),
    context=lambda event: {"workload": workload(event), "host_paths": host_paths(event)},
    dedup="{cluster}/{namespace}/{workload}",
    examples=[
        Example(name="a pod mounting a node directory", source="k8s-audit", fires=True,
                record=audit_record("create", "pods", name="cache", namespace="shop",
                                    request_object=workload_object("Pod", "cache", _spec("/mnt/cache")))),
        Example(name="a DaemonSet with an agent directory of the node", source="k8s-audit", fires=True,
                record=audit_record("create", "daemonsets", name="shipper", namespace="logging", api_group="apps",
                                    request_object=workload_object("DaemonSet", "shipper", _spec("/opt/agent")))),
        Example(name="only an emptyDir", source="k8s-audit", fires=False,
                record=audit_record("create", "pods", name="web", namespace="shop",
                                    request_object=workload_object("Pod", "web", _spec()))),
        Example(name="a sensitive path is k8s.sensitive_host_path's", source="k8s-audit", fires=False,
                record=audit_record("create", "pods", name="x", namespace="shop",
                                    request_object=workload_object("Pod", "x", _spec("/var/run/docker.sock")))),
        Example(name="body not logged", source="k8s-audit", fires=False,
                record=audit_record("create", "pods", name="web", namespace="shop")),
    ],
)
