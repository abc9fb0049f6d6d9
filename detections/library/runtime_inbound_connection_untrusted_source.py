"""A connection accepted from an address outside the networks a deployment expects clients from: a service
exposed further than intended, or a backdoor listener someone outside reached."""

from typing import Any

from vigil.detections.k8s import PRIVATE_NETWORKS, addresses_outside
from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.templates import program_label
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod


def from_untrusted_source(event: Event, params: dict[str, Any]) -> bool:
    address = event.network.remote_address or event.target.address
    if not address or not addresses_outside([address], params["allowed_sources"]):
        return False
    return str(event.network.local_port) not in params["public_ports"]


def inbound_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    network = event.network
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_label(event),
            "peer": f"{network.remote_address or event.target.address}:{network.remote_port or event.target.port}",
            "local_port": network.local_port, "protocol": network.protocol,
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


def sensor_accept(remote: str, comm: str = "python3", port: int = 8080) -> dict[str, Any]:
    """The eBPF sensor's record of a connection ``comm`` accepted on ``port`` from ``remote`` in a pod."""
    return in_pod({"type": "accept", "time_ns": EXAMPLE_START_NS, "pid": 4500, "tid": 4500, "ppid": 1,
                   "uid": 1000, "gid": 1000, "comm": comm, "cgroup_id": 7303, "family": "inet", "protocol": "tcp",
                   "local_address": "10.244.1.9", "local_port": port, "remote_address": remote,
                   "remote_port": 51022, "fd": 7})


DETECTION = EventDetection(
    id="runtime.inbound_connection_untrusted_source",
    title="Inbound connection from outside the trusted networks",
    alert_title="{program} in {where} accepted a connection from {peer}",
    description=(
        "A process in a container or on a node accepted a connection from an address outside `allowed_sources` "
        "(by default the private, loopback and link-local ranges), on a port not listed in `public_ports`. For "
        "workloads that only serve the cluster, a client from outside is a service exposed by mistake (a "
        "NodePort, a hostPort, a LoadBalancer) or a bind shell someone reached. Informational by default, since "
        "ingress controllers and public services accept the internet all day: raise it for the namespaces that "
        "must stay internal, and list their public ports."
    ),
    severity="informational",
    mitre=["T1133", "T1190"],
    tags=["runtime", "initial_access", "network"],
    references=["https://attack.mitre.org/techniques/T1133/"],
    false_positives=["Internet-facing services and ingress controllers (list their ports in public_ports)."],
    kinds=["net.accept"],
    params={"allowed_sources": PRIVATE_NETWORKS, "public_ports": []},
    match=from_untrusted_source,
    context=inbound_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{where}/{local_port}",
    examples=[
        Example(name="a pod accepting a connection from the internet (eBPF sensor)", source="ebpf", fires=True,
                record=sensor_accept("203.0.113.50")),
        Example(
            name="Falco: sshd on a node accepting a public client",
            source="falco",
            fires=True,
            record=falco_record("Unexpected inbound connection source", "accept",
                                {"proc.exepath": "/usr/sbin/sshd", "proc.name": "sshd", "fd.cip": "198.51.100.7",
                                 "fd.cport": 50122, "fd.sip": "10.0.0.3", "fd.sport": 22, "fd.l4proto": "tcp",
                                 "fd.type": "ipv4"}, priority="Notice", host=True),
        ),
        Example(name="a connection from another pod", source="ebpf", fires=False,
                record=sensor_accept("10.244.2.17")),
        Example(name="a kubelet probe from the node", source="ebpf", fires=False,
                record=sensor_accept("10.0.0.3")),
    ],
)
