"""A packet socket, or a raw IP socket, opened in a container: reading every frame of the pod's network or forging
its own (ARP spoofing, packet crafting, the CVE-2020-14386 exploit), which no application needs."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod

#: Network agents that read or send frames from their pods as their job: CNI and routing agents, load-balancer
#: speakers announcing addresses by ARP, DHCP clients.
NETWORK_AGENTS = ["cilium-agent", "calico-node", "bird", "bird6", "felix", "antrea-agent", "kube-router", "flanneld",
                  "ovs-vswitchd", "speaker", "kube-vip", "keepalived", "dhclient", "dhcpcd", "udhcpc"]
#: Programs whose raw socket is an ICMP echo (where unprivileged ICMP sockets are off, ping needs a raw one).
PING = frozenset({"ping", "ping6", "fping", "fping6"})
_ICMP = frozenset({"icmp", "icmpv6"})


def raw_access(event: Event, params: dict[str, Any]) -> str:
    """``packet socket`` or ``raw <family> socket`` for a container's socket the detection reports, else ''."""
    if not (event.container.id or event.k8s.container_id):
        return ""
    program = program_name(event)
    if program in params["allowed_programs"]:
        return ""
    network = event.network
    if network.family == "packet":
        return "packet socket"
    if event.target.name != "raw" or (program in PING and network.protocol in _ICMP):
        return ""
    return f"raw {network.family} socket"


def socket_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe,
            "what": raw_access(event, params), "protocol": event.network.protocol, "socket_type": event.target.name,
            "where": container_label(event), "image": event.k8s.image or event.container.image, "node": event.node}


def _socket(comm: str, family: str, socket_type: str, protocol: str, **pod: str) -> dict[str, Any]:
    record = {"type": "socket", "time_ns": EXAMPLE_START_NS, "pid": 7101, "tid": 7101, "ppid": 7100, "uid": 0,
              "gid": 0, "comm": comm, "cgroup_id": 7301, "family": family, "socket_type": socket_type,
              "protocol": protocol}
    return in_pod(record, **pod)


DETECTION = EventDetection(
    id="runtime.packet_socket_in_container",
    title="Packet or raw socket opened in a container",
    alert_title="{program} in {where} opened a {what} ({protocol})",
    description=(
        "A process in a container created an AF_PACKET socket, or a raw IPv4/IPv6 socket. A packet socket sees "
        "every frame on the pod's interface (and the node's, in a host-network pod) and sends forged ones: "
        "sniffing other pods' traffic, ARP and DNS spoofing, and kernel exploits through packet sockets "
        "(CVE-2020-14386) all start here. A raw IP socket crafts packets (SYN scans, covert ICMP tunnels). "
        "ping's raw ICMP socket and the network agents in `allowed_programs` (CNI, load-balancer speakers, DHCP "
        "clients) are not reported. On nodes packet sockets are routine (DHCP clients, CNI agents, an operator's "
        "tcpdump), so only containers are watched here; `runtime.network_tool_on_node` reports sniffers run on "
        "nodes."
    ),
    severity="high",
    mitre=["T1040", "T1557.002", "T1068"],
    tags=["runtime", "credential_access", "discovery", "lateral_movement"],
    references=["https://attack.mitre.org/techniques/T1040/", "https://man7.org/linux/man-pages/man7/packet.7.html",
                "https://nvd.nist.gov/vuln/detail/CVE-2020-14386"],
    false_positives=["Network agents and debugging sidecars that capture traffic, not in the allow-list."],
    kinds=["net.socket"],
    params={"allowed_programs": NETWORK_AGENTS},
    match=lambda event, params: bool(raw_access(event, params)),
    context=socket_context,
    dedup="{cluster}/{namespace}/{pod}/{program}/{what}",
    examples=[
        Example(
            name="a sniffer's packet socket in a pod (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=_socket("tcpdump", "packet", "raw", "all"),
        ),
        Example(
            name="a raw TCP socket for a SYN scan in a pod",
            source="ebpf",
            fires=True,
            record=_socket("nmap", "inet", "raw", "tcp"),
        ),
        Example(
            name="ping's raw ICMP socket",
            source="ebpf",
            fires=False,
            record=_socket("ping", "inet", "raw", "icmp"),
        ),
        Example(
            name="a load-balancer speaker announcing addresses by ARP",
            source="ebpf",
            fires=False,
            record=_socket("speaker", "packet", "dgram", "arp", namespace="metallb-system", pod="speaker-x2k9d",
                           container="speaker"),
        ),
        Example(
            name="a DHCP client's packet socket on the node",
            source="ebpf",
            fires=False,
            record={"type": "socket", "time_ns": EXAMPLE_START_NS, "pid": 612, "tid": 612, "ppid": 1, "uid": 0,
                    "gid": 0, "comm": "dhclient", "cgroup_id": 1, "container_id": "", "node": "worker-1",
                    "family": "packet", "socket_type": "raw", "protocol": "all"},
        ),
    ],
)
