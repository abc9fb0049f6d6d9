"""A container started with capabilities that amount to root on the node (SYS_ADMIN, SYS_MODULE, SYS_PTRACE,
NET_ADMIN, BPF, …), as containerd records its effective set: also for containers started without Kubernetes."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.event import Event
from vigil.sources.containerd.fixtures import containerd_record, plain_container_record

#: Capabilities beyond the runtime's defaults that give the node's kernel, devices, network or other processes.
POWERFUL = frozenset({"CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE", "CAP_SYS_BOOT",
                      "CAP_SYSLOG", "CAP_DAC_READ_SEARCH", "CAP_NET_ADMIN", "CAP_BPF", "CAP_PERFMON",
                      "CAP_SYS_TIME", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE"})


def powerful_capabilities(event: Event, params: dict[str, Any]) -> list[str]:
    allowed = {name if name.startswith("CAP_") else f"CAP_{name}" for name in params["allowed_capabilities"]}
    return sorted(POWERFUL.intersection(event.container.capabilities) - allowed)


def capable_start(event: Event, params: dict[str, Any]) -> bool:
    # A privileged container has them all and is runtime.privileged_container_started's; pods are
    # k8s.added_capabilities' (from the spec) unless pods_too is set.
    if event.container.privileged or not (params["pods_too"] or not event.k8s.pod):
        return False
    return bool(powerful_capabilities(event, params))


def capable_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"where": container_label(event), "image": event.container.image,
            "capabilities": powerful_capabilities(event, params), "in_kubernetes": bool(event.k8s.pod),
            "node": event.node}


def plain_create(capabilities: list[str], privileged: bool = False, **record: Any) -> dict[str, Any]:
    """containerd's record of a container created outside Kubernetes, with its spec's summary."""
    defaults = {"image": "docker.io/library/debian:12", "container_id": "6f3b" * 16}
    return plain_container_record(**{**defaults, **record},
                                  security={"privileged": privileged, "capabilities": ["CAP_CHOWN", *capabilities]})


DETECTION = EventDetection(
    id="runtime.capable_container_started",
    title="Container started with powerful capabilities",
    alert_title="{where} started with {capabilities} on node {node}",
    description=(
        "containerd created a container whose effective capabilities include SYS_ADMIN, SYS_MODULE, SYS_RAWIO, "
        "SYS_PTRACE, NET_ADMIN, BPF, DAC_READ_SEARCH or another capability that reaches past the container: "
        "mounting filesystems, loading kernel modules, reading any file, tracing other processes, reconfiguring "
        "the node's network. k8s.added_capabilities reports pods from their spec; this reports what the node "
        "actually runs, including containers started without Kubernetes. Pods are left to the audit-log "
        "detection unless pods_too is set; capabilities a deployment expects go in allowed_capabilities."
    ),
    severity="high",
    mitre=["T1610", "T1611"],
    tags=["runtime", "container", "privilege_escalation"],
    references=["https://man7.org/linux/man-pages/man7/capabilities.7.html"],
    false_positives=["Network and storage daemons run outside Kubernetes with the capabilities they need."],
    kinds=["container.create"],
    params={"pods_too": False, "allowed_capabilities": []},
    match=capable_start,
    context=capable_context,
    dedup="{cluster}/{node}/{where}",
    examples=[
        Example(name="ctr run --cap-add CAP_SYS_ADMIN on the node", source="containerd", fires=True,
                record=plain_create(["CAP_SYS_ADMIN"])),
        Example(name="a docker container on the node with SYS_MODULE and BPF", source="containerd", fires=True,
                record=plain_create(["CAP_SYS_MODULE", "CAP_BPF"], containerd_namespace="moby")),
        Example(name="a container with the default capabilities", source="containerd", fires=False,
                record=plain_create(["CAP_NET_RAW", "CAP_SETUID"])),
        Example(name="a privileged container (runtime.privileged_container_started's)", source="containerd",
                fires=False, record=plain_create(["CAP_SYS_ADMIN", "CAP_SYS_MODULE"], privileged=True)),
        Example(name="a pod's container with NET_ADMIN (k8s.added_capabilities')", source="containerd",
                fires=False,
                record=containerd_record("container.create", security={"capabilities": ["CAP_NET_ADMIN"]})),
    ],
)
