"""Script interpreters (python, perl, ruby, node, php) listening for connections or connecting to the internet:
an inventory of which containers serve or call out through interpreters, the material of script backdoors."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import tetragon_record

INTERPRETERS = frozenset({
    "python", "python2", "python3", *(f"python3.{minor}" for minor in range(6, 15)), "pypy", "pypy3", "perl",
    "ruby", "irb", "node", "nodejs", "deno", "bun", "php", "php-cgi", "lua", "luajit", "tclsh", "wish", "Rscript",
})


def direction(event: Event, params: dict[str, Any]) -> str:
    """``inbound`` for a listen or accept, ``outbound`` for a connection to an address of one of the
    ``outbound_classes`` (public ones by default), '' otherwise."""
    if event.kind in ("net.listen", "net.accept"):
        return "inbound"
    return "outbound" if event.network.remote_class in params["outbound_classes"] else ""


def interpreter_traffic(event: Event, params: dict[str, Any]) -> bool:
    if not (event.container.id or event.k8s.container_id) or program_name(event) not in INTERPRETERS:
        return False
    return direction(event, params) in params["directions"]


def traffic_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    network = event.network
    peer = f"{network.remote_address}:{network.remote_port}" if network.remote_address else ""
    return {"exe": event.actor.exe, "interpreter": program_name(event), "direction": direction(event, params),
            "local_port": network.local_port, "peer": peer, "where": container_label(event),
            "image": event.k8s.image or event.container.image}


DETECTION = EventDetection(
    id="runtime.interpreter_network_activity",
    title="Interpreter listening or connecting out",
    alert_title="{interpreter} in {where}: {direction} network activity",
    description=(
        "A script interpreter (python, perl, ruby, node, php, lua) in a container listened for or accepted "
        "connections, or connected to a public address. One-line bind and reverse shells and dropped scripts "
        "are written for these interpreters. Informational by default, as in Falco where the rules are opt-in: "
        "many applications are interpreted servers; raise it for namespaces whose images run no interpreter on "
        "the network, and choose the `directions` (inbound, outbound) and the `outbound_classes` of address "
        "(public by default; private, pod and service too for Falco's every outbound connection) that matter."
    ),
    severity="informational",
    mitre=["T1059.006", "T1059.007", "T1071"],
    tags=["runtime", "execution", "network"],
    references=["https://attack.mitre.org/techniques/T1059/"],
    false_positives=["Applications written in these languages (web servers, API clients)."],
    kinds=["net.listen", "net.accept", "net.connect"],
    exe_names=INTERPRETERS,
    params={"directions": ["inbound", "outbound"], "outbound_classes": ["public"]},
    match=interpreter_traffic,
    context=traffic_context,
    dedup="{cluster}/{namespace}/{pod}/{where}/{interpreter}/{direction}",
    examples=[
        Example(
            name="python listening on a port in a pod (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "listen", "time_ns": EXAMPLE_START_NS, "pid": 4700, "tid": 4700, "ppid": 4690,
                           "uid": 0, "gid": 0, "comm": "python3", "cgroup_id": 7305, "family": "inet",
                           "protocol": "tcp", "local_address": "0.0.0.0", "local_port": 4444,
                           "remote_address": "0.0.0.0", "remote_port": 0, "fd": 3}),
        ),
        Example(
            name="Falco: perl accepting a connection",
            source="falco",
            fires=True,
            record=falco_record("Interpreted procs inbound network activity", "accept",
                                {"proc.exepath": "/usr/bin/perl", "proc.name": "perl", "fd.cip": "10.244.3.4",
                                 "fd.cport": 50210, "fd.sip": "10.244.1.9", "fd.sport": 9001, "fd.l4proto": "tcp",
                                 "fd.type": "ipv4"}, priority="Notice"),
        ),
        Example(
            name="ruby connecting to a public address (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record("process_connect", binary="/usr/local/bin/ruby", arguments="-rsocket -e ...",
                                   body={"source_ip": "10.244.1.7", "source_port": 40116,
                                         "destination_ip": "45.33.32.156", "destination_port": 443,
                                         "protocol": "TCP"}),
        ),
        Example(
            name="python connecting to the database service",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_connect", binary="/usr/bin/python3", arguments="app.py",
                                   body={"source_ip": "10.244.1.7", "source_port": 40116,
                                         "destination_ip": "10.96.0.30", "destination_port": 5432,
                                         "protocol": "TCP"}),
        ),
        Example(
            name="nginx accepting a connection",
            source="falco",
            fires=False,
            record=falco_record("Custom accept audit", "accept",
                                {"proc.exepath": "/usr/sbin/nginx", "proc.name": "nginx", "fd.cip": "10.244.3.4",
                                 "fd.cport": 50210, "fd.sip": "10.244.1.9", "fd.sport": 80, "fd.l4proto": "tcp",
                                 "fd.type": "ipv4"}),
        ),
    ],
)
