"""Network scanners and sniffers run on a node: mapping the network or capturing every pod's traffic."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

#: Scanners, sniffers and interception tools (netcat and friends are too common on nodes to report).
RECON_TOOLS = frozenset({
    "nmap", "masscan", "zmap", "rustscan", "naabu", "unicornscan", "hping", "hping3", "arp-scan", "tcpdump",
    "tshark", "dumpcap", "ngrep", "ettercap", "bettercap", "mitmproxy", "mitmdump", "responder",
})


def runs_on_node(event: Event) -> bool:
    return not (event.container.id or event.k8s.container_id) and program_name(event) in RECON_TOOLS


def node_tool_context(event: Event) -> dict[str, Any]:
    return {"exe": event.actor.exe, "tool": program_name(event), "command": " ".join(event.actor.args),
            "parent_exe": event.actor.parent_exe, "uid": event.actor.uid, "auid": event.actor.auid,
            "node": event.node}


DETECTION = EventDetection(
    id="runtime.network_tool_on_node",
    title="Network scanning or sniffing tool on a node",
    alert_title="{tool} run on node {node}",
    description=(
        "A network scanner (nmap, masscan, zmap) or sniffer (tcpdump, tshark, ngrep), or an interception tool, "
        "ran on a node outside any container. Operators do capture traffic on nodes while debugging, so this is "
        "low; on a node nobody logged into it is an intruder mapping the network or capturing every pod's "
        "traffic, which crosses the node unencrypted unless the mesh encrypts it."
    ),
    severity="low",
    mitre=["T1046", "T1040"],
    tags=["runtime", "discovery", "network", "node"],
    references=["https://attack.mitre.org/techniques/T1040/"],
    false_positives=["Operators debugging networking on a node (check the login uid, auid)."],
    kinds=["process.exec"],
    exe_names=RECON_TOOLS,
    match=runs_on_node,
    context=node_tool_context,
    dedup="{cluster}/{node}/{tool}",
    examples=[
        Example(
            name="tcpdump capturing on the node (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/sbin/tcpdump", arguments="-i any -w /tmp/all.pcap", host=True),
        ),
        Example(
            name="Falco: nmap on the host",
            source="falco",
            fires=True,
            record=falco_record(
                "Launch Suspicious Network Tool on Host", "execve",
                {"proc.exepath": "/usr/bin/nmap", "proc.name": "nmap", "proc.cmdline": "nmap -sn 10.0.0.0/24"},
                host=True, priority="Notice",
            ),
        ),
        Example(
            name="tcpdump in a container (runtime.network_tool_in_container's)",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/sbin/tcpdump", arguments="-i eth0"),
        ),
        Example(
            name="ping on the node",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/bin/ping", arguments="-c1 10.0.0.1", host=True),
        ),
    ],
)
