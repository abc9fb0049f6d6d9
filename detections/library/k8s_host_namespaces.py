"""Host namespaces: a pod or workload template sharing the node's PID, IPC or network namespace."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import (
    NODE_AGENT_IMAGES,
    POD_SPEC_RESOURCES,
    SPEC_SUBRESOURCES,
    SPEC_WRITE_VERBS,
    TEMPLATE_CONTROLLERS,
    pod_spec,
    restated_pod,
    runs_node_agents,
    workload,
)
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record, workload_object

HOST_NAMESPACE_FIELDS = ("hostPID", "hostIPC", "hostNetwork")


def host_namespaces(event: Event) -> list[str]:
    spec = pod_spec(event)
    if spec is None:
        return []
    return [field for field in HOST_NAMESPACE_FIELDS if spec.get(field) is True]


def shares_host_namespaces(event: Event, params: Mapping[str, Any]) -> bool:
    """Host namespaces written by someone who decides them (see k8s.restated_pod), outside the node agents."""
    return (bool(host_namespaces(event)) and not restated_pod(event, params["template_controllers"])
            and not runs_node_agents(event, params["node_agent_images"]))


def host_namespace_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    return {"workload": workload(event), "host_namespaces": host_namespaces(event)}


_APP = {"name": "app", "image": "busybox:1.36"}

DETECTION = EventDetection(
    id="k8s.host_namespaces",
    title="Pod shares the node's namespaces",
    alert_title="{user} set {host_namespaces} in {workload} ({namespace})",
    description=(
        "A pod, or a workload that templates pods, was created or changed with hostPID, hostIPC or hostNetwork. "
        "hostPID shows every process of the node (and, as root, lets the container nsenter into them); hostIPC "
        "shares the node's shared memory; hostNetwork binds the node's interfaces, sniffs its traffic and reaches "
        "services listening on localhost, such as the kubelet. Reported whether or not the request was allowed."
    ),
    severity="high",
    mitre=["T1611", "T1610"],
    tags=["kubernetes", "privilege-escalation", "container-escape"],
    references=[
        "https://kubernetes.io/docs/concepts/security/pod-security-standards/#baseline",
        "https://www.elastic.co/guide/en/security/current/kubernetes-pod-created-with-hostnetwork.html",
    ],
    false_positives=[
        "CNI plugins, kube-proxy and node exporters run hostNetwork DaemonSets: the common ones are "
        "node_agent_images; pods a controller creates from a template and kubelets' mirror pods of static pods "
        "are not reported (the template and the static manifest are).",
    ],
    kinds=["k8s.api"],
    resources=POD_SPEC_RESOURCES, actions=SPEC_WRITE_VERBS, subresources=SPEC_SUBRESOURCES,
    params={"node_agent_images": NODE_AGENT_IMAGES, "template_controllers": TEMPLATE_CONTROLLERS},
    match=shares_host_namespaces,
    context=host_namespace_context,
    dedup="{cluster}/{namespace}/{workload}",
    examples=[
        Example(
            name="a kubelet's mirror of its static hostNetwork pod",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "pods", name="nginx-proxy-worker-1", namespace="kube-system", user="system:node:worker-1",
                groups=("system:nodes", "system:authenticated"),
                request_object=workload_object(
                    "Pod", "nginx-proxy-worker-1", {"hostNetwork": True, "containers": [_APP]},
                    annotations={"kubernetes.io/config.mirror": "0b1c9e", "kubernetes.io/config.source": "file"}),
            ),
        ),
        Example(
            name="a node identity creating a hostNetwork pod that mirrors nothing",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "pods", name="sniffer", namespace="kube-system", user="system:node:worker-1",
                groups=("system:nodes", "system:authenticated"),
                request_object=workload_object("Pod", "sniffer", {"hostNetwork": True, "containers": [_APP]}),
            ),
        ),
        Example(
            name="pod with hostPID and hostNetwork",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "pods", name="nsenter",
                request_object=workload_object(
                    "Pod", "nsenter", {"hostPID": True, "hostNetwork": True, "containers": [_APP]}
                ),
            ),
        ),
        Example(
            name="DaemonSet with hostIPC",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "daemonsets", name="shm-reader", api_group="apps",
                request_object=workload_object("DaemonSet", "shm-reader", {"hostIPC": True, "containers": [_APP]}),
            ),
        ),
        Example(
            name="ordinary pod",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "pods", name="web", request_object=workload_object("Pod", "web", {"containers": [_APP]})
            ),
        ),
        Example(
            name="host namespaces explicitly off",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "deployments", name="web", api_group="apps",
                request_object=workload_object(
                    "Deployment", "web", {"hostPID": False, "hostNetwork": False, "containers": [_APP]}
                ),
            ),
        ),
    ],
)
