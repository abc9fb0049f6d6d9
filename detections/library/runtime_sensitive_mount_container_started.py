"""A container started with a sensitive part of the node mounted (its root, /etc, /proc, the runtime's socket, the
kubelet's directory), as containerd records its mounts: also for containers started without Kubernetes."""

import posixpath
from typing import Any

from vigil.detections.k8s import SENSITIVE_HOST_PATHS
from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.event import Event
from vigil.sources.containerd.fixtures import containerd_record, plain_container_record


def normalized(path: str) -> str:
    """``/var/run`` is ``/run`` (a symlink on every modern node), and ``..`` or repeated slashes change nothing."""
    path = posixpath.normpath("/" + path.lstrip("/"))
    return path[len("/var") :] if path == "/var/run" or path.startswith("/var/run/") else path


def sensitive_mounts(event: Event) -> list[str]:
    """The host paths mounted into the container that are, or lie under, a sensitive path of the node, except
    the pod's own directory, from which the kubelet mounts every container its volumes, token and hosts file."""
    own = f"/var/lib/kubelet/pods/{event.k8s.pod_uid}/" if event.k8s.pod_uid else ""
    found = []
    for source in event.container.host_mounts:
        path = normalized(source)
        if own and path.startswith(own):
            continue
        if any(path == p or (p != "/" and path.startswith(p + "/")) for p in SENSITIVE_HOST_PATHS):
            found.append(source)
    return found


def sensitive_start(event: Event, params: dict[str, Any]) -> bool:
    # Pods are k8s.sensitive_host_path's (from the spec) unless pods_too is set.
    return (params["pods_too"] or not event.k8s.pod) and bool(sensitive_mounts(event))


def mount_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"where": container_label(event), "image": event.container.image, "mounts": sensitive_mounts(event),
            "privileged": event.container.privileged, "in_kubernetes": bool(event.k8s.pod), "node": event.node}


def plain_create(*mounts: str) -> dict[str, Any]:
    """containerd's record of a container created outside Kubernetes with ``mounts`` bind-mounted from the host."""
    return plain_container_record(container_id="7a4c" * 16, security={"host_mounts": [
        {"source": mount, "destination": mount, "readonly": False} for mount in mounts]})


DETECTION = EventDetection(
    id="runtime.sensitive_mount_container_started",
    title="Container started with a sensitive host path mounted",
    alert_title="{where} started with {mounts} of the node mounted on node {node}",
    description=(
        "containerd created a container with a sensitive host path bind-mounted: the node's root, /etc, /root, "
        "/home, /proc, /sys, /dev, /var/log, the kubelet's directory or a container runtime's socket. Each gives "
        "the container the node (its credentials, its processes, every other container through the runtime "
        "socket). k8s.sensitive_host_path reports pods from their spec; this reports what the node actually "
        "runs, including containers started with ctr, nerdctl or docker on the node. Pods are left to the "
        "audit-log detection unless pods_too is set."
    ),
    severity="high",
    mitre=["T1610", "T1611"],
    tags=["runtime", "container", "container_escape"],
    references=["https://attack.mitre.org/techniques/T1611/"],
    false_positives=["Node agents run outside Kubernetes that need the node's /proc or the runtime socket."],
    kinds=["container.create"],
    params={"pods_too": False},
    match=sensitive_start,
    context=mount_context,
    dedup="{cluster}/{node}/{where}",
    examples=[
        Example(name="ctr run with containerd's socket mounted", source="containerd", fires=True,
                record=plain_create("/var/run/containerd/containerd.sock")),
        Example(name="a container with the node's root mounted", source="containerd", fires=True,
                record=plain_create("/")),
        Example(name="a container with an application data directory mounted", source="containerd", fires=False,
                record=plain_create("/srv/data", "/etc-backup")),
        Example(name="a pod with /etc mounted (k8s.sensitive_host_path's)", source="containerd", fires=False,
                record=containerd_record("container.create", security={"host_mounts": [
                    {"source": "/etc", "destination": "/host/etc", "readonly": True}]})),
    ],
)
