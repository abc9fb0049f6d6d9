"""A file or directory created with a name starting with a dot outside home directories' own configuration:
how droppers keep payloads out of a casual ``ls`` (/tmp/.x, /dev/shm/.cache, /usr/bin/.sshd)."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod

#: Dot-names programs create as a matter of course: locks, shell and tool histories, overlayfs whiteouts.
ORDINARY_NAMES = [
    ".pwd.lock", ".bash_history", ".ash_history", ".sh_history", ".zsh_history", ".python_history", ".lesshst",
    ".viminfo", ".wget-hsts", ".node_repl_history", ".mysql_history", ".psql_history", ".rediscli_history",
    ".sudo_as_admin_successful", ".keep", ".gitkeep", ".updated", ".lock",
]
#: Editors' swap and backup files, and the overlay snapshotter's whiteouts.
ORDINARY_SUFFIXES = (".swp", ".swx", ".swo", ".tmp", "~")
WHITEOUT = ".wh."
#: Home directories, where dot-names are how configuration is named.
HOMES = ("/root/", "/home/")
#: Syscalls (Falco) and hooks that create a directory.
MKDIRS = frozenset({"mkdir", "mkdirat"})


def hidden_name(path: str, params: dict[str, Any]) -> str:
    """The first dot-name in ``path`` (a hidden file, or a file in a hidden directory), '' for none or ordinary."""
    if path.startswith(HOMES):
        return ""
    for part in path.split("/"):
        if part.startswith(".") and part not in (".", ".."):
            ordinary = part in params["ordinary_names"] or part.endswith(ORDINARY_SUFFIXES) or part.startswith(WHITEOUT)
            return "" if ordinary else part
    return ""


def created_path(event: Event) -> str:
    """The path the event creates: an open that creates, a mkdir, or a rename's new name."""
    if event.kind == "process.syscall":
        return event.target.path if event.action in MKDIRS else ""
    if event.file.other_path:
        return event.file.other_path
    return event.target.path or event.file.path if "create" in event.file.access else ""


def creates_hidden(event: Event, params: dict[str, Any]) -> bool:
    return bool(hidden_name(created_path(event), params)) and program_name(event) not in params["allowed_programs"]


def hidden_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    path = created_path(event)
    in_container = bool(event.container.id or event.k8s.container_id)
    executable = event.file.mode >= 0 and bool(event.file.mode & 0o111)
    return {"exe": event.actor.exe, "file": path, "hidden": hidden_name(path, params), "executable": executable,
            "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.hidden_file_created",
    title="Hidden file or directory created",
    alert_title="{program} created hidden {file} in {where}",
    description=(
        "A process created a file or directory whose name starts with a dot, or renamed one to such a name, "
        "outside home directories (where dot-names are ordinary configuration). Droppers hide payloads and "
        "staging directories this way (/tmp/.ICE-unix/.x, /dev/shm/.cache, /usr/bin/.sshd); the alert says "
        "whether the file was created executable. Locks, histories, editor swap files and overlay whiteouts are "
        "not reported. On vigil's sensor, creations under its write-watched directories are seen."
    ),
    severity="low",
    mitre=["T1564.001"],
    tags=["runtime", "defense_evasion"],
    references=["https://attack.mitre.org/techniques/T1564/001/"],
    false_positives=["Applications keeping state in dot-directories outside home directories (add the names to "
                     "ordinary_names)."],
    kinds=["file.write", "process.syscall"],
    actions={"process.syscall": MKDIRS},
    params={"ordinary_names": ORDINARY_NAMES, "allowed_programs": ["dpkg", "rpm", "apk", "containerd", "dockerd"]},
    match=creates_hidden,
    context=hidden_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{where}/{hidden}",
    examples=[
        Example(
            name="an executable created as /usr/bin/.sshd in a pod (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "file_write", "time_ns": EXAMPLE_START_NS, "pid": 5000, "tid": 5000,
                           "ppid": 4990, "uid": 0, "gid": 0, "comm": "curl", "cgroup_id": 7308,
                           "path": "/usr/bin/.sshd", "flags": 0o1101, "mode": 0o755}),
        ),
        Example(
            name="Falco: a hidden directory made under /tmp",
            source="falco",
            fires=True,
            record=falco_record("Create Hidden Files or Directories", "mkdir",
                                {"proc.exepath": "/bin/mkdir", "proc.name": "mkdir", "proc.cmdline": "mkdir /tmp/.x",
                                 "evt.arg.path": "/tmp/.x"}, priority="Notice"),
        ),
        Example(
            name="a payload renamed to a dot-name on a node (Falco)",
            source="falco",
            fires=True,
            record=falco_record("Create Hidden Files or Directories", "rename",
                                {"proc.exepath": "/bin/mv", "proc.name": "mv", "fs.path.name": "/dev/shm/x",
                                 "fs.path.target": "/dev/shm/.cache"}, priority="Notice", host=True),
        ),
        Example(
            name="shadow-utils taking its /etc/.pwd.lock (eBPF sensor)",
            source="ebpf",
            fires=False,
            record=in_pod({"type": "file_write", "time_ns": EXAMPLE_START_NS, "pid": 5001, "tid": 5001,
                           "ppid": 4990, "uid": 0, "gid": 0, "comm": "useradd", "cgroup_id": 7308,
                           "path": "/etc/.pwd.lock", "flags": 0o1101, "mode": 0o600}),
        ),
        Example(
            name="pip creating its cache in root's home",
            source="falco",
            fires=False,
            record=falco_record("Custom open audit", "openat",
                                {"proc.exepath": "/usr/bin/pip", "proc.name": "pip", "fd.name": "/root/.cache/pip/x",
                                 "evt.arg.flags": "O_WRONLY|O_CREAT|O_TRUNC"}),
        ),
        Example(
            name="a hidden file opened for reading",
            source="falco",
            fires=False,
            record=falco_record("Custom open audit", "openat",
                                {"proc.exepath": "/usr/bin/cat", "proc.name": "cat", "fd.name": "/tmp/.x",
                                 "evt.arg.flags": "O_RDONLY"}),
        ),
    ],
)
