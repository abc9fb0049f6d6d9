"""A container connecting to a port in the NodePort range: pods reach services through their cluster address, so a
connection to a node's NodePort is someone reaching services around the cluster's own routing and policies."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.templates import program_label
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod

#: Peers that are not a node's NodePort: the pod itself, another pod or a service address (when the cluster's
#: ranges are configured), link-local and multicast.
NOT_NODES = frozenset({"loopback", "link_local", "multicast", "unspecified", "pod", "service"})


def in_container(event: Event) -> bool:
    return bool(event.container.id or event.k8s.container_id)


def connects_to_nodeport(event: Event, params: dict[str, Any]) -> bool:
    network = event.network
    if not in_container(event) or network.remote_class in NOT_NODES:
        return False
    return params["nodeport_min"] <= network.remote_port <= params["nodeport_max"]


def nodeport_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    network = event.network
    return {"exe": event.actor.exe, "program": program_label(event), "where": container_label(event),
            "peer": f"{network.remote_address}:{network.remote_port}", "protocol": network.protocol,
            "image": event.k8s.image or event.container.image}


def sensor_connect(remote: str, port: int) -> dict[str, Any]:
    return in_pod({"type": "connect", "time_ns": EXAMPLE_START_NS, "pid": 4600, "tid": 4600, "ppid": 4590,
                   "uid": 0, "gid": 0, "comm": "curl", "cgroup_id": 7304, "family": "inet", "protocol": "tcp",
                   "local_address": "10.244.1.9", "local_port": 40310, "remote_address": remote,
                   "remote_port": port, "fd": 5})


DETECTION = EventDetection(
    id="runtime.nodeport_connection_from_container",
    title="Container connected to a NodePort",
    alert_title="{program} in {where} connected to NodePort {peer}",
    description=(
        "A process in a container connected to a port in the NodePort range (30000-32767 by default) on an "
        "address that is not a pod or service address. Pods reach services through their ClusterIP; going "
        "through a node's NodePort is unusual, and is how an intruder reaches services that network policies "
        "keep from the pod (the node's address is often allowed), or scans nodes for exposed services."
    ),
    severity="low",
    mitre=["T1046", "T1599"],
    tags=["runtime", "discovery", "lateral_movement", "network"],
    references=["https://kubernetes.io/docs/concepts/services-networking/service/#type-nodeport"],
    false_positives=["Workloads configured with a node's address and NodePort (monitoring that probes NodePorts).",
                     "Pods listening on a port in the range, reached by pod address when the cluster's pod range "
                     "(VIGIL_POD_CIDRS) is not configured."],
    kinds=["net.connect"],
    params={"nodeport_min": 30000, "nodeport_max": 32767},
    match=connects_to_nodeport,
    context=nodeport_context,
    dedup="{cluster}/{namespace}/{pod}/{where}/{peer}",
    examples=[
        Example(name="curl in a pod to a node's NodePort (eBPF sensor)", source="ebpf", fires=True,
                record=sensor_connect("10.0.0.5", 31380)),
        Example(
            name="Falco: a container connecting to NodePort 30080",
            source="falco",
            fires=True,
            record=falco_record("Unexpected K8s NodePort Connection", "connect",
                                {"proc.exepath": "/usr/bin/python3", "proc.name": "python3", "fd.rip": "192.168.49.2",
                                 "fd.rport": 30080, "fd.lip": "10.244.0.12", "fd.lport": 41220, "fd.l4proto": "tcp",
                                 "fd.type": "ipv4"}, priority="Notice"),
        ),
        Example(name="a connection to the database on 5432", source="ebpf", fires=False,
                record=sensor_connect("10.0.0.5", 5432)),
        Example(name="a high port on the pod itself", source="ebpf", fires=False,
                record=sensor_connect("127.0.0.1", 31000)),
    ],
)
