"""A privileged container started, as containerd records it: every capability, the kernel's interfaces unmasked,
the node's devices. Seen for every container the node runs, including those started without Kubernetes."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.event import Event
from vigil.sources.containerd.fixtures import containerd_record, plain_container_record

#: containerd's default capabilities, as a privileged container's list starts.
DEFAULT_CAPABILITIES = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                        "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                        "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


def judged_here(event: Event, params: dict[str, Any]) -> bool:
    """Containers of pods are k8s.privileged_container's (from the pod spec) unless ``pods_too`` is set."""
    return params["pods_too"] or not event.k8s.pod


def privileged_start(event: Event, params: dict[str, Any]) -> bool:
    return event.container.privileged and judged_here(event, params)


def start_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    container = event.container
    return {"where": container_label(event), "image": container.image, "uid": container.uid,
            "host_namespaces": container.host_namespaces, "host_mounts": container.host_mounts,
            "in_kubernetes": bool(event.k8s.pod), "node": event.node}


def plain_create(security: dict[str, Any], **record: Any) -> dict[str, Any]:
    """containerd's record of a container created outside Kubernetes (``ctr run``), with its spec's summary."""
    return plain_container_record(security={"capabilities": DEFAULT_CAPABILITIES, **security}, **record)


DETECTION = EventDetection(
    id="runtime.privileged_container_started",
    title="Privileged container started",
    alert_title="Privileged {where} started from {image} on node {node}",
    description=(
        "containerd created a privileged container: every capability, /proc and /sys unmasked, the node's "
        "devices. A privileged container is root on the node (mount its disk, load modules, join PID 1's "
        "namespaces). k8s.privileged_container reports pods from their spec in the API audit log; this reports "
        "what the node actually runs, including containers started with ctr, nerdctl or docker on the node, "
        "which admission control never saw. Pods are left to the audit-log detection unless pods_too is set "
        "(for clusters whose audit log vigil does not receive)."
    ),
    severity="critical",
    mitre=["T1610", "T1611"],
    tags=["runtime", "container", "privilege_escalation", "container_escape"],
    references=["https://attack.mitre.org/techniques/T1610/"],
    false_positives=["Node agents run outside Kubernetes on purpose (storage or network daemons under ctr)."],
    kinds=["container.create"],
    params={"pods_too": False},
    match=privileged_start,
    context=start_context,
    dedup="{cluster}/{node}/{where}",
    examples=[
        Example(name="ctr run --privileged on the node", source="containerd", fires=True,
                record=plain_create({"privileged": True, "capabilities": [*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"]})),
        Example(name="a privileged container of docker's on the node, sharing its network and PIDs",
                source="containerd", fires=True,
                record=plain_create({"privileged": True, "capabilities": ["CAP_SYS_ADMIN", "CAP_SYS_MODULE"],
                                     "host_namespaces": ["pid", "network"]}, image="docker.io/library/ubuntu:24.04",
                                    containerd_namespace="moby", container_id="5f3b" * 16)),
        Example(name="an ordinary container started with ctr", source="containerd", fires=False,
                record=plain_create({})),
        Example(name="a privileged pod (k8s.privileged_container's, from its spec)", source="containerd",
                fires=False, record=containerd_record("container.create", security={"privileged": True})),
    ],
)
