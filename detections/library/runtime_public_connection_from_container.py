"""A container connecting to an address on the internet: for workloads that should only talk inside the cluster,
the first sign of a callback, a download or exfiltration."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.templates import program_label
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import tetragon_record


def in_container(event: Event) -> bool:
    """A container's process, with or without pod metadata: the runtime's container id is enough."""
    return bool(event.container.id or event.k8s.container_id)


def connects_to_internet(event: Event, params: dict[str, Any]) -> bool:
    """An outbound connection from a container to a public address, on a port the namespace does not expect."""
    network = event.network
    if not in_container(event) or network.remote_class != "public":
        return False
    return str(network.remote_port) not in params["expected_ports"]


def connection_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    network = event.network
    return {"exe": event.actor.exe, "program": program_label(event), "where": container_label(event),
            "peer": f"{network.remote_address}:{network.remote_port}", "protocol": network.protocol,
            "image": event.k8s.image or event.container.image}


def connection(source_ip: str, address: str, port: int) -> dict[str, Any]:
    return {"source_ip": source_ip, "source_port": 40116, "destination_ip": address, "destination_port": port,
            "protocol": "TCP"}


DETECTION = EventDetection(
    id="runtime.public_connection_from_container",
    title="Container connected to a public address",
    alert_title="{program} in {where} connected to {peer}",
    description=(
        "A process in a container opened a connection to a public internet address (not loopback, link-local, "
        "private, the cluster's pod or service ranges, or reserved space). Many workloads only talk to services "
        "inside the cluster; for them a connection out is a reverse shell calling home, a payload download or "
        "data leaving. Informational by default, since other workloads call public APIs all day: raise it for "
        "the namespaces that must stay internal, and list the ports they may use in `expected_ports`."
    ),
    severity="informational",
    mitre=["T1071", "T1041"],
    tags=["runtime", "command_and_control", "exfiltration", "network"],
    references=["https://attack.mitre.org/techniques/T1071/", "https://attack.mitre.org/techniques/T1041/"],
    false_positives=["Workloads calling public APIs, package mirrors or SaaS endpoints."],
    kinds=["net.connect"],
    remote_classes=["public"],
    params={"expected_ports": []},
    match=connects_to_internet,
    context=connection_context,
    dedup="{cluster}/{namespace}/{pod}/{where}/{peer}",
    examples=[
        Example(
            name="a python process connecting out to the internet (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record("process_connect", binary="/usr/bin/python3", arguments="-c ...",
                                   body=connection("10.244.1.7", "45.33.32.156", 4444)),
        ),
        Example(
            name="Falco: outbound connection from a container without pod metadata",
            source="falco",
            fires=True,
            record=falco_record(
                "Unexpected outbound connection destination", "connect",
                {"proc.exepath": "/usr/bin/curl", "proc.name": "curl", "fd.rip": "185.199.108.133", "fd.rport": 443,
                 "fd.lip": "172.17.0.2", "fd.lport": 51812, "fd.l4proto": "tcp", "fd.type": "ipv4",
                 "k8s.ns.name": None, "k8s.pod.name": None},
                priority="Notice",
            ),
        ),
        Example(
            name="the eBPF sensor's connect to a public address",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "connect", "time_ns": EXAMPLE_START_NS, "pid": 4410, "tid": 4410, "ppid": 1,
                           "uid": 1000, "gid": 1000, "comm": "node", "cgroup_id": 7301, "family": "inet",
                           "protocol": "tcp", "local_address": "10.244.1.9", "local_port": 40200,
                           "remote_address": "140.82.112.3", "remote_port": 22, "fd": 21}),
        ),
        Example(
            name="a connection to the database service",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_connect", binary="/usr/bin/python3", arguments="app.py",
                                   body=connection("10.244.1.7", "10.96.0.30", 5432)),
        ),
        Example(
            name="a node process reaching the internet",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_connect", binary="/usr/bin/containerd", host=True,
                                   body=connection("10.0.0.3", "104.18.2.11", 443)),
        ),
    ],
)
