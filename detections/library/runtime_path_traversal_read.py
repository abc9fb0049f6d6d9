"""A file under /etc or in an SSH directory opened through a path spelled with ``..`` components by a program that
is no shell or file tool: a web application serving ``../../../etc/passwd`` (Falco's "Directory traversal
monitored file read")."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod

#: Programs a person types paths into: ``cat ../../etc/hosts`` in a shell is navigation, not an exploit.
INTERACTIVE = ["sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "cat", "less", "more",
               "head", "tail", "vi", "vim", "nvim", "nano", "view", "grep", "ls", "cp", "diff", "stat", "file"]


def traversal_target(path: str) -> bool:
    """A file a path traversal reads for: anything under /etc (accounts, secrets, configuration) or in an SSH
    directory (keys, authorized_keys)."""
    return path.startswith("/etc/") or "/.ssh/" in path


def traversal_read(event: Event, params: dict[str, Any]) -> bool:
    return (event.file.traversal and traversal_target(event.target.path or event.file.path)
            and program_name(event) not in params["allowed_programs"])


def traversal_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    container = event.container.id or event.k8s.container_id
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe,
            "path": event.file.path or event.target.path, "command": " ".join(event.actor.args),
            "where": container_label(event) if container else f"node {event.node}", "node": event.node,
            "image": event.k8s.image or event.container.image}


def _open(comm: str, path: str, traversal: bool = True) -> dict[str, Any]:
    record = {"type": "open", "time_ns": EXAMPLE_START_NS, "pid": 6120, "tid": 6121, "ppid": 6100, "uid": 33,
              "gid": 33, "comm": comm, "cgroup_id": 7301, "flags": 0o100000, "mode": 0, "path": path, "repeats": 0}
    return in_pod({**record, "traversal": True} if traversal else record)


DETECTION = EventDetection(
    id="runtime.path_traversal_read",
    title="File read through a path traversal",
    alert_title="{program} in {where} read {path} through a path with ..",
    description=(
        "A program that is no shell or file tool opened a file under /etc or in an SSH directory through a path "
        "spelled with `..` components (`/var/www/html/../../../etc/passwd`). Web applications that join a "
        "request's file name to their document root without checking it do exactly this when attacked: the "
        "attacker reads accounts, configuration with credentials, or private keys. Programs rarely climb into "
        "/etc this way on their own."
    ),
    severity="high",
    mitre=["T1083", "T1552.001", "T1190"],
    tags=["runtime", "initial_access", "credential_access", "discovery"],
    references=["https://owasp.org/www-community/attacks/Path_Traversal", "https://attack.mitre.org/techniques/T1190/"],
    false_positives=["A program that finds its configuration relative to its own directory and climbs to /etc."],
    kinds=["file.open"],
    paths=["/etc/*", "*/.ssh/*"],
    params={"allowed_programs": INTERACTIVE},
    match=traversal_read,
    context=traversal_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{program}/{path}",
    examples=[
        Example(name="a web server reading /etc/passwd through ../ (eBPF sensor)", source="ebpf", fires=True,
                record=_open("php-fpm8.2", "/etc/passwd")),
        Example(name="a Node.js app reading a user's key through ../", source="ebpf", fires=True,
                record=_open("node", "/home/app/.ssh/id_ed25519")),
        Example(
            name="Falco: Directory traversal monitored file read",
            source="falco",
            fires=True,
            record=falco_record("Directory traversal monitored file read", "openat",
                                {"proc.exepath": "/usr/sbin/nginx", "proc.name": "nginx", "fd.name": "/etc/shadow",
                                 "fd.nameraw": "/usr/share/nginx/html/../../../../etc/shadow",
                                 "evt.arg.flags": "O_RDONLY"}),
        ),
        Example(name="cat ../../etc/hosts typed in a shell", source="ebpf", fires=False,
                record=_open("cat", "/etc/hosts")),
        Example(name="/etc/passwd read by its own name", source="ebpf", fires=False,
                record=_open("php-fpm8.2", "/etc/passwd", traversal=False)),
        Example(name="a traversal that stays in the document root", source="ebpf", fires=False,
                record=_open("nginx", "/usr/share/nginx/html/index.html")),
    ],
)
