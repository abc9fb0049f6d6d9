"""Privileged container: a pod or workload template that runs a container with ``privileged: true``."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import (
    NODE_AGENT_IMAGES,
    POD_SPEC_RESOURCES,
    SPEC_SUBRESOURCES,
    SPEC_WRITE_VERBS,
    TEMPLATE_CONTROLLERS,
    containers,
    pod_spec,
    restated_pod,
    runs_node_agents,
    workload,
)
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record, workload_object


def privileged_containers(event: Event) -> list[dict[str, str]]:
    spec = pod_spec(event)
    if spec is None:
        return []
    return [
        {"container": str(c.get("name", "")), "image": str(c.get("image", "")), "list": list_name}
        for list_name, c in containers(spec)
        if isinstance(c.get("securityContext"), dict) and c["securityContext"].get("privileged") is True
    ]


def sets_privileged(event: Event, params: Mapping[str, Any]) -> bool:
    """A privileged container written by someone who decides it (see k8s.restated_pod), outside the node agents."""
    return (bool(privileged_containers(event)) and not restated_pod(event, params["template_controllers"])
            and not runs_node_agents(event, params["node_agent_images"]))


def privileged_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    found = privileged_containers(event)
    return {
        "workload": workload(event),
        "containers": [c["container"] for c in found],
        "images": sorted({c["image"] for c in found}),
        "privileged_containers": found,
        "setting": "securityContext.privileged: true",
    }


_PRIVILEGED = {"name": "shell", "image": "alpine:3.20", "securityContext": {"privileged": True}}
_PLAIN = {"name": "web", "image": "nginx:1.27", "securityContext": {"runAsNonRoot": True}}

DETECTION = EventDetection(
    id="k8s.privileged_container",
    title="Privileged container",
    alert_title="{user} set a privileged container in {workload} ({namespace})",
    description=(
        "A pod, or a workload that templates pods (Deployment, DaemonSet, StatefulSet, ReplicaSet, Job, CronJob), "
        "was created or changed with a container, init container or ephemeral container running privileged. "
        "A privileged container has every capability and the host's devices: it is root on the node and escapes "
        "the container in one step. Reported whether or not the request was allowed."
    ),
    severity="critical",
    mitre=["T1610", "T1611"],
    tags=["kubernetes", "privilege-escalation", "container-escape"],
    references=[
        "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/Privileged%20container/",
        "https://kubernetes.io/docs/concepts/security/pod-security-standards/",
    ],
    false_positives=[
        "Node agents that need the host (CNI, CSI drivers, monitoring) run privileged DaemonSets: the common ones "
        "are node_agent_images, and the pods a DaemonSet's controller creates on each node are not reported "
        "(the DaemonSet is); add a deployment's own agents to node_agent_images.",
    ],
    kinds=["k8s.api"],
    resources=POD_SPEC_RESOURCES, actions=SPEC_WRITE_VERBS, subresources=SPEC_SUBRESOURCES,
    params={"node_agent_images": NODE_AGENT_IMAGES, "template_controllers": TEMPLATE_CONTROLLERS},
    match=sets_privileged,
    context=privileged_context,
    dedup="{cluster}/{namespace}/{workload}",
    examples=[
        Example(
            name="privileged pod",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "pods", name="debug",
                request_object=workload_object("Pod", "debug", {"containers": [_PRIVILEGED]}),
            ),
        ),
        Example(
            name="privileged init container in a DaemonSet",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "daemonsets", name="node-agent", namespace="kube-system", api_group="apps",
                request_object=workload_object(
                    "DaemonSet", "node-agent", {"initContainers": [_PRIVILEGED], "containers": [_PLAIN]}
                ),
            ),
        ),
        Example(
            name="calico/node's DaemonSet applied by Argo CD (a node agent image)",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "daemonsets", name="calico-node", namespace="kube-system", api_group="apps",
                user="system:serviceaccount:argocd:argocd-application-controller",
                request_object=workload_object("DaemonSet", "calico-node", {"hostNetwork": True, "containers": [
                    {"name": "calico-node", "image": "quay.io/calico/node:v3.28.2",
                     "securityContext": {"privileged": True}}]}),
            ),
        ),
        Example(
            name="the daemon-set controller creating a privileged DaemonSet's pod on a node",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "pods", name="node-agent-x7k2p", namespace="kube-system",
                user="system:serviceaccount:kube-system:daemon-set-controller",
                request_object=workload_object("Pod", "node-agent-x7k2p", {"containers": [_PRIVILEGED]},
                                               ownerReferences=[{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                                                 "name": "node-agent", "controller": True}]),
            ),
        ),
        Example(
            name="privileged container in a CronJob",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "cronjobs", name="cleanup", api_group="batch",
                request_object=workload_object("CronJob", "cleanup", {"containers": [_PRIVILEGED]}),
            ),
        ),
        Example(
            name="privileged ephemeral container added by kubectl debug",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "patch", "pods", name="web-7f9c", subresource="ephemeralcontainers",
                request_object={"spec": {"ephemeralContainers": [_PRIVILEGED]}},
            ),
        ),
        Example(
            name="ordinary pod",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "pods", name="web",
                request_object=workload_object("Pod", "web", {"containers": [_PLAIN]}),
            ),
        ),
        Example(
            name="privileged: false",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "deployments", name="web", api_group="apps",
                request_object=workload_object(
                    "Deployment", "web", {"containers": [{**_PLAIN, "securityContext": {"privileged": False}}]}
                ),
            ),
        ),
        Example(
            name="kubelet status update of a privileged pod",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "patch", "pods", name="debug", subresource="status", user="system:node:worker-1",
                request_object=workload_object("Pod", "debug", {"containers": [_PRIVILEGED]}),
            ),
        ),
    ],
)
