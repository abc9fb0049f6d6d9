"""UDP sent by a node process, outside any container, to a port no common protocol or node service uses: a tunnel
or command channel on the node itself (Falco's "Unexpected UDP Traffic" outside containers)."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.templates import program_label
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS

#: Ports of ordinary UDP traffic (as for containers) and of node services: DNS, DHCP, NTP, SNMP and traps, QUIC,
#: IPsec, syslog, RPC and NFS, OpenVPN, L2TP, STUN, VXLAN and Geneve, mDNS, serf/memberlist gossip, Jaeger,
#: statsd, WireGuard.
EXPECTED_PORTS = ["53", "67", "68", "111", "123", "161", "162", "443", "500", "514", "1194", "1701", "2049",
                  "3478", "4500", "4789", "5353", "6081", "6831", "6832", "7946", "8125", "8301", "8302", "8472",
                  "51820"]
LOCAL_CLASSES = frozenset({"loopback", "unspecified", ""})


def unexpected_udp_on_node(event: Event, params: dict[str, Any]) -> bool:
    network = event.network
    if event.container.id or event.k8s.container_id or network.protocol != "udp":
        return False
    if network.remote_class in LOCAL_CLASSES:
        return False
    return str(network.remote_port) not in params["expected_ports"]


def udp_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    network = event.network
    return {"exe": event.actor.exe, "program": program_label(event), "node": event.node, "call": event.action,
            "peer": f"{network.remote_address}:{network.remote_port}", "peer_class": network.remote_class,
            "uid": event.actor.uid}


def _sent(comm: str, address: str, port: int, call: str = "sendto") -> dict[str, Any]:
    return {"type": "connect", "call": call, "time_ns": EXAMPLE_START_NS, "pid": 2210, "tid": 2210, "ppid": 1,
            "uid": 0, "gid": 0, "comm": comm, "cgroup_id": 1, "container_id": "", "node": "worker-1",
            "family": "inet", "protocol": "udp", "local_address": "0.0.0.0", "local_port": 51000,
            "remote_address": address, "remote_port": port, "fd": 3}


DETECTION = EventDetection(
    id="runtime.unexpected_udp_on_node",
    title="UDP from a node process to an unusual port",
    alert_title="{program} on node {node} sent UDP to {peer}",
    description=(
        "A process on a node, outside any container, connected a UDP socket to, or sent a datagram to, a port "
        "outside the usual UDP protocols and node services (DNS, NTP, syslog, NFS, overlays, VPNs, gossip: "
        "`expected_ports`). An implant on the node reaches its controller or tunnels out this way past "
        "TCP-centric egress rules. Low: a lead to read with what else the process did; tune the list for the "
        "node's own agents."
    ),
    severity="low",
    mitre=["T1095", "T1048"],
    tags=["runtime", "command_and_control", "exfiltration", "network", "node"],
    references=["https://attack.mitre.org/techniques/T1095/"],
    false_positives=["Node agents with UDP protocols of their own (monitoring, storage, clustering)."],
    kinds=["net.connect"],
    protocols=["udp"],
    params={"expected_ports": EXPECTED_PORTS},
    match=unexpected_udp_on_node,
    context=udp_context,
    dedup="{cluster}/{node}/{exe}/{peer}",
    examples=[
        Example(name="a datagram to a high port on the internet (eBPF sensor)", source="ebpf", fires=True,
                record=_sent("kworkerd", "198.51.100.23", 4444)),
        Example(
            name="Falco: UDP to port 31337 on the host",
            source="falco",
            fires=True,
            record=falco_record(
                "Unexpected UDP Traffic", "connect",
                {"proc.exepath": "/tmp/.x/agent", "proc.name": "agent", "fd.rip": "203.0.113.40", "fd.rport": 31337,
                 "fd.lip": "10.0.0.12", "fd.lport": 40999, "fd.l4proto": "udp", "fd.type": "ipv4"},
                priority="Notice", host=True,
            ),
        ),
        Example(name="chrony asking an NTP server", source="ebpf", fires=False,
                record=_sent("chronyd", "162.159.200.1", 123)),
        Example(name="a datagram to a loopback service", source="ebpf", fires=False,
                record=_sent("app", "127.0.0.1", 9999)),
        Example(
            name="the same from a container (runtime.unexpected_udp_from_container's)",
            source="ebpf",
            fires=False,
            record={**_sent("agent", "198.51.100.23", 4444), "container_id": "4be1" * 16, "cgroup_id": 7301},
        ),
    ],
)
