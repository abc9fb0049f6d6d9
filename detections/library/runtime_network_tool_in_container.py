"""Network reconnaissance, sniffing and raw socket tools started in a container: someone is exploring the network
from inside a workload."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import tetragon_record

#: Scanners, sniffers, packet crafters and interception proxies: no application runs these.
RECON_TOOLS = frozenset({
    "nmap", "masscan", "zmap", "rustscan", "naabu", "unicornscan", "hping", "hping3", "arping", "arp-scan",
    "tcpdump", "tshark", "dumpcap", "ngrep", "ettercap", "bettercap", "mitmproxy", "mitmdump", "responder",
    "proxychains", "proxychains4",
})
#: Raw connection tools: a client connection is a common connectivity test, so they count only when they
#: listen (a bind shell or a drop point) or scan ports. A netcat executing a program is runtime.reverse_shell's.
NETCATS = frozenset({"nc", "ncat", "netcat", "nc.traditional", "nc.openbsd", "socat"})
NETWORK_TOOLS = RECON_TOOLS | NETCATS


#: netcat options that take a value (``-w 1``, ``-p 4000``, ``-s addr``): the value is no host or port.
_NETCAT_VALUED = frozenset("wipsxXqWTOIM")


def netcat_mode(args: list[str]) -> str:
    """``listen`` or ``port scan`` for a netcat or socat command line, '' for a plain client. ``-z`` to one port
    of one host is a check that a service is up (readiness probes, init containers waiting for a database); a
    scan names a range or several ports."""
    zero_io, operands, skip = False, [], False
    for arg in args[1:]:
        lowered = arg.lower()
        if skip:
            skip = False
        elif lowered.startswith(("tcp-listen", "tcp4-listen", "tcp6-listen", "udp-listen", "openssl-listen")):
            return "listen"
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
            if "l" in arg[1:]:
                return "listen"
            zero_io = zero_io or "z" in arg[1:]
            skip = arg[-1] in _NETCAT_VALUED
        elif arg == "--listen":
            return "listen"
        else:
            operands.append(arg)
    ports = operands[1:]
    return "port scan" if zero_io and (len(ports) != 1 or any(c in ports[0] for c in "-,")) else ""


def in_container(event: Event) -> bool:
    """A container's process, with or without pod metadata: the runtime's container id is enough."""
    return bool(event.container.id or event.k8s.container_id)


def tool_use(event: Event) -> str:
    """How the event uses a network tool in a container ('' for not at all, or a plain netcat client)."""
    program = program_name(event)
    if not in_container(event) or program not in NETWORK_TOOLS:
        return ""
    return "recon" if program in RECON_TOOLS else netcat_mode(event.actor.args)


def tool_context(event: Event) -> dict[str, Any]:
    return {"exe": event.actor.exe, "tool": program_name(event), "use": tool_use(event),
            "command": " ".join(event.actor.args), "parent_exe": event.actor.parent_exe,
            "where": container_label(event),
            "container": event.k8s.container_name or event.container.name, "image": event.k8s.image}


DETECTION = EventDetection(
    id="runtime.network_tool_in_container",
    title="Network scanning or sniffing tool in a container",
    alert_title="{tool} ({use}) started in {where}",
    description=(
        "A network scanner (nmap, masscan, zmap), sniffer (tcpdump, tshark, ngrep) or interception proxy "
        "(mitmproxy, bettercap, responder) started in a container, or netcat or socat listened or scanned ports "
        "there. Application images do not ship or run these; after a compromise they map the cluster network, "
        "capture other pods' traffic and open bind shells. A netcat client connection alone is a common "
        "connectivity test and is not reported. Containers without pod metadata count as containers."
    ),
    severity="medium",
    mitre=["T1046", "T1040", "T1095"],
    tags=["runtime", "discovery", "network"],
    references=["https://attack.mitre.org/techniques/T1046/", "https://attack.mitre.org/techniques/T1040/"],
    false_positives=["Network debugging images (netshoot, busybox's nc) used by operators on purpose."],
    kinds=["process.exec"],
    exe_names=NETWORK_TOOLS,
    match=lambda event: bool(tool_use(event)),
    context=tool_context,
    dedup="{cluster}/{namespace}/{pod}/{where}/{tool}",
    examples=[
        Example(
            name="nmap sweeping the pod network (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/nmap", arguments="-sS -p- 10.244.0.0/16", parent="/bin/sh"),
        ),
        Example(
            name="busybox's nc applet in a container without pod metadata (eBPF sensor)",
            source="ebpf",
            fires=True,
            record={"type": "exec", "time_ns": EXAMPLE_START_NS, "pid": 812, "tid": 812, "ppid": 800, "uid": 0,
                    "gid": 0, "comm": "nc", "cgroup_id": 9120, "container_id": "4be1" * 16, "node": "worker-1",
                    "args": ["nc", "-lp", "9001"], "exe": "/bin/busybox", "cwd": "/", "parent_exe": "/bin/busybox",
                    "euid": 0, "egid": 0},
        ),
        Example(
            name="Falco: tcpdump capturing in a docker container",
            source="falco",
            fires=True,
            record=falco_record(
                "Launch Suspicious Network Tool in Container", "execve",
                {"proc.exepath": "/usr/sbin/tcpdump", "proc.name": "tcpdump",
                 "proc.cmdline": "tcpdump -i any -w /tmp/c",
                 "k8s.ns.name": None, "k8s.pod.name": None},
                priority="Notice",
            ),
        ),
        Example(
            name="netcat as a client checking a port is open",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/nc", arguments="db.shop.svc 5432", parent="/usr/bin/sh"),
        ),
        Example(
            name="an init container waiting for its database's port (nc -z, eBPF sensor)",
            source="ebpf",
            fires=False,
            record=in_pod({"type": "exec", "time_ns": EXAMPLE_START_NS, "pid": 812, "tid": 812, "ppid": 800,
                           "uid": 0, "gid": 0, "comm": "nc", "cgroup_id": 9120, "args": ["nc", "-z", "-w", "1",
                           "postgres.shop.svc", "5432"], "exe": "/usr/bin/nc.openbsd", "cwd": "/",
                           "parent_exe": "/bin/sh", "euid": 0, "egid": 0}, container="wait-for-db"),
        ),
        Example(
            name="nc -z sweeping a port range",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/nc", arguments="-zv 10.244.1.7 20-1024", parent="/bin/sh"),
        ),
        Example(
            name="curl probing the application",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/curl", arguments="-fsS http://localhost:8080/healthz"),
        ),
        Example(
            name="tcpdump run by an administrator on the node",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/sbin/tcpdump", arguments="-i eth0 port 53", host=True),
        ),
    ],
)
