"""Sensitive hostPath mount: a pod or workload template mounts a sensitive directory or socket of the node."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import (
    NODE_AGENT_IMAGES,
    POD_SPEC_RESOURCES,
    SPEC_SUBRESOURCES,
    SPEC_WRITE_VERBS,
    TEMPLATE_CONTROLLERS,
    host_path,
    is_sensitive_host_path,
    pod_spec,
    restated_pod,
    runs_node_agents,
    workload,
)
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record, workload_object


def sensitive_mounts(event: Event) -> list[dict[str, str]]:
    spec = pod_spec(event)
    volumes = spec.get("volumes") if spec is not None else None
    if not isinstance(volumes, list):
        return []
    return [
        {"volume": str(volume.get("name", "")), "path": volume["hostPath"]["path"], "resolved": resolved}
        for volume in volumes
        if isinstance(volume, dict) and (resolved := host_path(volume)) and is_sensitive_host_path(resolved)
    ]


def mounts_sensitive_paths(event: Event, params: Mapping[str, Any]) -> bool:
    """Sensitive host paths written by someone who decides them (see k8s.restated_pod), outside the node agents."""
    return (bool(sensitive_mounts(event)) and not restated_pod(event, params["template_controllers"])
            and not runs_node_agents(event, params["node_agent_images"]))


def host_path_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    mounts = sensitive_mounts(event)
    return {"workload": workload(event), "host_paths": [m["path"] for m in mounts], "volumes": mounts}


def _pod_with_host_path(path: str) -> dict[str, Any]:
    return {
        "containers": [{"name": "app", "image": "busybox:1.36", "volumeMounts": [{"name": "host", "mountPath": "/h"}]}],
        "volumes": [{"name": "host", "hostPath": {"path": path}}],
    }


def _create_pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return audit_record("create", "pods", name=name, request_object=workload_object("Pod", name, spec))


DETECTION = EventDetection(
    id="k8s.sensitive_host_path",
    title="Sensitive hostPath mount",
    alert_title="{user} mounted host path {host_paths} in {workload} ({namespace})",
    description=(
        "A pod, or a workload that templates pods, was created or changed with a hostPath volume on a sensitive "
        "part of the node: its root, /etc, /root, /home, the container runtime socket, the kubelet's directory, "
        "/proc, /sys, /dev or /var/log. Such a mount reads the node's credentials and other pods' secrets, or "
        "controls the runtime, which is a container escape. Reported whether or not the request was allowed."
    ),
    severity="high",
    mitre=["T1611"],
    tags=["kubernetes", "privilege-escalation", "container-escape"],
    references=[
        "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/Writable%20hostPath%20mount/",
        "https://kubernetes.io/docs/concepts/storage/volumes/#hostpath",
    ],
    false_positives=[
        "Log shippers mount /var/log, node exporters /proc and /sys, CSI drivers /var/lib/kubelet: the common "
        "ones are node_agent_images, and the pods their DaemonSets' controller creates are not reported.",
    ],
    kinds=["k8s.api"],
    resources=POD_SPEC_RESOURCES, actions=SPEC_WRITE_VERBS, subresources=SPEC_SUBRESOURCES,
    params={"node_agent_images": NODE_AGENT_IMAGES, "template_controllers": TEMPLATE_CONTROLLERS},
    match=mounts_sensitive_paths,
    context=host_path_context,
    dedup="{cluster}/{namespace}/{workload}",
    examples=[
        Example(
            name="fluent-bit reading the node's logs (a node agent image)",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "daemonsets", name="fluent-bit", namespace="logging", api_group="apps",
                request_object=workload_object("DaemonSet", "fluent-bit", {
                    "containers": [{"name": "fluent-bit", "image": "cr.fluentbit.io/fluent/fluent-bit:3.1",
                                    "volumeMounts": [{"name": "logs", "mountPath": "/var/log"}]}],
                    "volumes": [{"name": "logs", "hostPath": {"path": "/var/log"}}]}),
            ),
        ),
        Example(
            name="the node's root filesystem",
            source="k8s-audit",
            fires=True,
            record=_create_pod("rootfs", _pod_with_host_path("/")),
        ),
        Example(
            name="the container runtime socket, spelled through /var/run",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "deployments", name="builder", api_group="apps",
                request_object=workload_object(
                    "Deployment", "builder", _pod_with_host_path("/var/run/containerd/containerd.sock")
                ),
            ),
        ),
        Example(
            name="a path under /etc with a trailing slash",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "jobs", name="peek", api_group="batch",
                request_object=workload_object("Job", "peek", _pod_with_host_path("/etc/kubernetes/")),
            ),
        ),
        Example(
            name="a scratch directory on the node",
            source="k8s-audit",
            fires=False,
            record=_create_pod("cache", _pod_with_host_path("/tmp/cache")),
        ),
        Example(
            name="a path that only starts like a sensitive one",
            source="k8s-audit",
            fires=False,
            record=_create_pod("data", _pod_with_host_path("/etcd-data")),
        ),
        Example(
            name="emptyDir volume",
            source="k8s-audit",
            fires=False,
            record=_create_pod("plain", {"containers": [{"name": "app"}], "volumes": [{"name": "s", "emptyDir": {}}]}),
        ),
    ],
)
