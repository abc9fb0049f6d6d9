"""UDP sent from a container to a port no common protocol uses: DNS-less tunnels, exfiltration and command channels
over UDP pass where TCP is watched."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.templates import program_label
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import tetragon_record

#: Ports of ordinary UDP traffic: DNS, NTP, QUIC/HTTP3, syslog, statsd, SNMP, DHCP, VXLAN/Geneve overlays,
#: WireGuard, OpenVPN, IPsec, STUN/TURN, OTLP-over-UDP collectors (Jaeger agents), and connectivity tests.
EXPECTED_PORTS = ["53", "67", "68", "123", "161", "443", "500", "514", "1194", "1701", "3478", "4500", "4789",
                  "5353", "6081", "6831", "6832", "8125", "8472", "51820"]
LOCAL_CLASSES = frozenset({"loopback", "unspecified", ""})


def unexpected_udp(event: Event, params: dict[str, Any]) -> bool:
    network = event.network
    if not (event.container.id or event.k8s.container_id) or network.protocol != "udp":
        return False
    if network.remote_class in LOCAL_CLASSES:
        return False
    return str(network.remote_port) not in params["expected_ports"]


def udp_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    network = event.network
    return {"exe": event.actor.exe, "program": program_label(event), "where": container_label(event),
            "peer": f"{network.remote_address}:{network.remote_port}", "peer_class": network.remote_class,
            "image": event.k8s.image or event.container.image}


DETECTION = EventDetection(
    id="runtime.unexpected_udp_from_container",
    title="UDP from a container to an unusual port",
    alert_title="{program} in {where} sent UDP to {peer}",
    description=(
        "A process in a container connected a UDP socket to, or sent a datagram to, a port outside the usual UDP "
        "protocols (DNS, NTP, "
        "QUIC, syslog, statsd, overlays, VPNs: `expected_ports`). Tunnels and command channels use UDP to slip "
        "past TCP-centric monitoring and egress rules. Low: an input to an investigation, and a list to tune for "
        "workloads with their own UDP protocols (games, media, telemetry)."
    ),
    severity="low",
    mitre=["T1095", "T1048"],
    tags=["runtime", "command_and_control", "exfiltration", "network"],
    references=["https://attack.mitre.org/techniques/T1095/"],
    false_positives=["Media, gaming and telemetry workloads with UDP protocols of their own."],
    kinds=["net.connect"],
    protocols=["udp"],
    params={"expected_ports": EXPECTED_PORTS},
    match=unexpected_udp,
    context=udp_context,
    dedup="{cluster}/{namespace}/{pod}/{where}/{peer}",
    examples=[
        Example(
            name="UDP to a high port on the internet (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "connect", "time_ns": EXAMPLE_START_NS, "pid": 4430, "tid": 4430, "ppid": 1,
                           "uid": 0, "gid": 0, "comm": "agent", "cgroup_id": 7301, "family": "inet",
                           "protocol": "udp", "local_address": "10.244.1.9", "local_port": 40220,
                           "remote_address": "45.33.32.156", "remote_port": 9999, "fd": 5}),
        ),
        Example(
            name="a datagram sent to a high port without connecting (eBPF sensor, once per port)",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "connect", "call": "sendto", "time_ns": EXAMPLE_START_NS, "pid": 4432,
                           "tid": 4432, "ppid": 1, "uid": 0, "gid": 0, "comm": "beacon", "cgroup_id": 7301,
                           "family": "inet", "protocol": "udp", "local_address": "0.0.0.0", "local_port": 40230,
                           "remote_address": "198.51.100.23", "remote_port": 4444, "fd": 3}),
        ),
        Example(
            name="Falco: UDP to port 31337",
            source="falco",
            fires=True,
            record=falco_record(
                "Unexpected UDP Traffic", "connect",
                {"proc.exepath": "/tmp/x", "proc.name": "x", "fd.rip": "10.244.3.17", "fd.rport": 31337,
                 "fd.lip": "10.244.1.7", "fd.lport": 40999, "fd.l4proto": "udp", "fd.type": "ipv4"},
                priority="Notice",
            ),
        ),
        Example(
            name="a DNS query",
            source="ebpf",
            fires=False,
            record=in_pod({"type": "connect", "time_ns": EXAMPLE_START_NS, "pid": 4431, "tid": 4431, "ppid": 1,
                           "uid": 0, "gid": 0, "comm": "python3", "cgroup_id": 7301, "family": "inet",
                           "protocol": "udp", "local_address": "10.244.1.9", "local_port": 40221,
                           "remote_address": "10.96.0.10", "remote_port": 53, "fd": 6}),
        ),
        Example(
            name="a TCP connection to the same port",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_connect", binary="/usr/bin/python3",
                                   body={"source_ip": "10.244.1.7", "source_port": 40123,
                                         "destination_ip": "45.33.32.156", "destination_port": 9999,
                                         "protocol": "TCP"}),
        ),
    ],
)
