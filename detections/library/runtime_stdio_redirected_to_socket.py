"""A process's standard input, output or error made a network connection (dup2 of a connected socket onto 0, 1
or 2): how a reverse shell hands the attacker its terminal, whatever the program or its command line."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod

#: Super-servers that hand an accepted connection to a service as its standard input and output, by design, and
#: servers that fork per connection and serve it on their own stdin/stdout the same way (busybox httpd, tcpsvd
#: and udpsvd; git daemon): the benign corpus's web pod, busybox httpd answering its probes, does it each request.
SUPER_SERVERS = ["inetd", "xinetd", "systemd", "tcpserver", "s6-tcpserver", "s6-tcpserver4", "s6-tcpserver6",
                 "httpd", "tcpsvd", "udpsvd", "git-daemon"]


def redirects(event: Event, params: dict[str, Any]) -> bool:
    """A connected socket (it has a peer) on a standard stream, by a program not in the allow-list."""
    if not event.network.remote_port or event.target.name not in ("stdin", "stdout", "stderr"):
        return False
    return program_name(event) not in params["allowed_programs"]


def redirect_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    network = event.network
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "stream": event.target.name,
            "call": event.action, "peer": f"{network.remote_address}:{network.remote_port}",
            "peer_class": network.remote_class,
            "where": container_label(event) if in_container else f"node {event.node}",
            "image": event.k8s.image or event.container.image, "node": event.node}


def _dup(comm: str, new_fd: int, remote: tuple[str, int], **pod: str) -> dict[str, Any]:
    record = {"type": "stdio_dup", "time_ns": EXAMPLE_START_NS, "pid": 7201, "tid": 7201, "ppid": 7200, "uid": 33,
              "gid": 33, "comm": comm, "cgroup_id": 7301, "family": "inet", "protocol": "tcp",
              "local_address": "10.244.1.9", "local_port": 40522, "remote_address": remote[0],
              "remote_port": remote[1], "fd": 3, "new_fd": new_fd, "call": "dup2"}
    return in_pod(record, **pod)


DETECTION = EventDetection(
    id="runtime.stdio_redirected_to_socket",
    title="Standard input or output redirected to a network connection",
    alert_title="{program} in {where} put its {stream} on a network connection to {peer} ({call})",
    description=(
        "A process duplicated a connected TCP or UDP socket onto its standard input, output or error (dup2, dup3, "
        "dup or fcntl F_DUPFD landing on descriptor 0, 1 or 2). That is the core of a reverse shell: the shell "
        "then reads its commands from, and writes its output to, the attacker's connection. It is caught whatever "
        "the program is called and however its command line is hidden (bash -i >& /dev/tcp/…, python, perl, "
        "socat, a compiled payload). Super-servers that run services on accepted connections (inetd, xinetd, "
        "systemd socket activation) are in `allowed_programs`. Reported in containers and on nodes."
    ),
    severity="high",
    mitre=["T1059.004", "T1095"],
    tags=["runtime", "execution", "command_and_control"],
    references=["https://attack.mitre.org/techniques/T1059/004/", "https://gtfobins.github.io/#+reverse%20shell"],
    false_positives=["Services run by a super-server not in the allow-list (inetd-style services)."],
    kinds=["net.stdio_redirect"],
    params={"allowed_programs": SUPER_SERVERS},
    match=redirects,
    context=redirect_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{program}/{peer}",
    examples=[
        Example(
            name="bash's stdin on a connection to a public address (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=_dup("bash", 0, ("45.33.32.156", 4444)),
        ),
        Example(
            name="a payload's stdout on a connection inside the cluster",
            source="ebpf",
            fires=True,
            record=_dup("kworker", 1, ("10.244.3.17", 9001)),
        ),
        Example(
            name="xinetd handing a service its connection",
            source="ebpf",
            fires=False,
            record={**_dup("xinetd", 0, ("10.0.0.4", 51234)), "k8s": {}, "container_id": ""},
        ),
        Example(
            name="busybox httpd serving an accepted request on its stdin and stdout",
            source="ebpf",
            fires=False,
            record={**_dup("httpd", 0, ("10.244.0.1", 55470)), "local_port": 8080},
        ),
        Example(
            name="a socket duplicated onto another descriptor",
            source="ebpf",
            fires=False,
            record=_dup("python3", 9, ("45.33.32.156", 4444)),
        ),
    ],
)
