"""A node process joining another process's namespaces (setns) that is not a container runtime, CNI plugin or
known agent: someone stepping into a container from the node, or a rootkit hiding in a container's namespaces."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: runc and crun join namespaces as their init (``runc:[2:INIT]``), which sensors without an executable name by it.
RUNTIME_INITS = ("runc:[", "crun:[")
#: How long a process name (comm) the kernel keeps is: sensors without the executable report names cut to it.
COMM_LENGTH = 15
#: Programs whose job is to enter namespaces on a node: runtimes, CNI plugins, network agents.
ALLOWED = [
    "runc", "crun", "youki", "containerd", "containerd-shim", "containerd-shim-runc-v2", "conmon", "crio", "dockerd",
    "kubelet", "kube-proxy", "bridge", "portmap", "loopback", "host-local", "ptp", "bandwidth", "firewall",
    "tuning", "vlan", "macvlan", "ipvlan", "dhcp", "sbr", "static", "flannel", "calico", "calico-ipam",
    "calico-node", "cilium-cni", "cilium-agent", "cilium-health", "aws-cni", "aws-k8s-agent", "egress-cni",
    "azure-vnet", "azure-vnet-ipam", "weave-net", "multus", "multus-shim", "kube-ovn", "antrea-agent",
    "istio-cni", "linkerd-cni", "systemd", "systemd-networkd", "NetworkManager",
]


def allowed(program: str, names: tuple[str, ...]) -> bool:
    return program.startswith(RUNTIME_INITS) or program in names or any(
        len(program) == COMM_LENGTH and name.startswith(program) for name in names)


def joins_namespaces(event: Event, params: dict[str, Any]) -> bool:
    if event.container.id or event.k8s.container_id:
        return False  # runtime.nsenter_host_namespaces' (critical)
    return not allowed(program_name(event), params["allowed_programs"])


def setns_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "namespaces": event.target.name, "command": " ".join(event.actor.args),
            "uid": event.actor.uid, "auid": event.actor.auid, "node": event.node}


def sensor_setns(comm: str) -> dict[str, Any]:
    """The eBPF sensor's record of a setns into a network namespace by ``comm`` on the node."""
    return {"type": "ns_change", "time_ns": EXAMPLE_START_NS, "pid": 3400, "tid": 3400, "ppid": 3300, "uid": 0,
            "gid": 0, "comm": comm, "cgroup_id": 1, "call": "setns", "flags": 0x40000000, "namespaces": ["net"],
            "fd": 4, "node": "worker-1"}


DETECTION = EventDetection(
    id="runtime.setns_on_node",
    title="Node process joining other namespaces",
    alert_title="{program} joined other namespaces ({namespaces}) on node {node}",
    description=(
        "A process on a node, outside any container, called setns to join another process's namespaces, and it "
        "is not a container runtime, CNI plugin or network agent, whose job that is. Operators do it with "
        "nsenter while debugging; otherwise it is someone stepping into a container from the node (its network, "
        "its files, its secrets) or malware hiding its activity in a container's namespaces."
    ),
    severity="medium",
    mitre=["T1055", "T1611"],
    tags=["runtime", "defense_evasion", "node"],
    references=["https://man7.org/linux/man-pages/man2/setns.2.html"],
    false_positives=["Operators running nsenter or ip netns exec on a node; agents not in allowed_programs."],
    kinds=["process.ns_change"],
    actions=["setns"],
    params={"allowed_programs": ALLOWED},
    match=joins_namespaces,
    context=setns_context,
    dedup="{cluster}/{node}/{exe}",
    examples=[
        Example(name="an unknown program joining a pod's network namespace (eBPF sensor)", source="ebpf",
                fires=True, record=sensor_setns("implant")),
        Example(
            name="Falco: nsenter into a container from the host",
            source="falco",
            fires=True,
            record=falco_record("Change thread namespace", "setns",
                                {"proc.exepath": "/usr/bin/nsenter", "proc.name": "nsenter",
                                 "proc.cmdline": "nsenter -t 4242 -n", "evt.res": "SUCCESS"},
                                priority="Notice", host=True),
        ),
        Example(name="runc's init joining a container's namespaces (eBPF sensor)", source="ebpf", fires=False,
                record=sensor_setns("runc:[2:INIT]")),
        Example(name="the containerd shim, its name cut to 15 characters (eBPF sensor)", source="ebpf",
                fires=False, record=sensor_setns("containerd-shim")),
        Example(
            name="the Calico CNI plugin setting up a pod's network (Tetragon kprobe)",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_kprobe", binary="/opt/cni/bin/calico", host=True,
                                   body=kprobe("__x64_sys_setns", {"int_arg": 5}, {"int_arg": 0x40000000})),
        ),
    ],
)
