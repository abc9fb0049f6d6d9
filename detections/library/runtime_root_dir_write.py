"""A file written directly under / or under root's home: places no service writes to, where intruders drop tools
and state (/.x, /root/payload) and change root's configuration."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod

#: What root's programs keep in its home as a matter of course: histories, caches, tool state.
ORDINARY = [
    "/root/.bash_history", "/root/.ash_history", "/root/.sh_history", "/root/.zsh_history", "/root/.python_history",
    "/root/.lesshst", "/root/.viminfo", "/root/.wget-hsts", "/root/.node_repl_history", "/root/.mysql_history",
    "/root/.psql_history", "/root/.rediscli_history", "/root/.cache/", "/root/.config/", "/root/.local/",
    "/root/.npm/", "/root/.m2/", "/root/.gradle/", "/root/.cargo/", "/root/.rustup/", "/root/.kube/cache/",
    "/root/.kube/http-cache/", "/root/.pki/", "/root/.gnupg/", "/root/go/pkg/", "/root/.ansible/",
]
#: Reported by other detections: start-up files and authorized keys (persistence), the SSH directory.
SHELL_START_FILES = frozenset({".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile", ".zshrc",
                               ".zshenv", ".zprofile", ".zlogin", ".cshrc", ".tcshrc", ".login"})


def root_path(event: Event, params: dict[str, Any]) -> str:
    """The written path when it is directly under / or under /root (and not ordinary or another report's)."""
    path = event.target.path or event.file.path
    if path.startswith("/root/"):
        if path.startswith("/root/.ssh/") or path.rpartition("/")[2] in SHELL_START_FILES:
            return ""
        return "" if path.startswith(tuple(params["ordinary_paths"])) else path
    return path if path.count("/") == 1 and len(path) > 1 else ""


def writes_root(event: Event, params: dict[str, Any]) -> bool:
    return bool(root_path(event, params)) and program_name(event) not in params["allowed_programs"]


def root_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "file": root_path(event, params), "change": event.action,
            "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


def sensor_write(comm: str, path: str) -> dict[str, Any]:
    return in_pod({"type": "file_write", "time_ns": EXAMPLE_START_NS, "pid": 5100, "tid": 5100, "ppid": 5090,
                   "uid": 0, "gid": 0, "comm": comm, "cgroup_id": 7309, "path": path, "flags": 0o1101,
                   "mode": 0o644})


DETECTION = EventDetection(
    id="runtime.root_dir_write",
    title="File written under / or root's home",
    alert_title="{program} wrote {file} in {where}",
    description=(
        "A process wrote a file directly under the root directory, or under /root other than the histories, "
        "caches and tool state kept there. No service writes to either; intruders drop tools and keep state "
        "there and change root's configuration. Root's shell start-up files and authorized keys are "
        "runtime.node_persistence_write's, its SSH directory runtime.ssh_directory_access's."
    ),
    severity="low",
    mitre=["T1105", "T1546"],
    tags=["runtime", "persistence", "defense_evasion"],
    references=["https://attack.mitre.org/techniques/T1105/"],
    false_positives=["Tools that keep state in /root not in ordinary_paths; images whose processes run in /root."],
    kinds=["file.write"],
    params={"ordinary_paths": ORDINARY, "allowed_programs": ["dpkg", "rpm", "apk", "containerd", "dockerd"]},
    match=writes_root,
    context=root_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{where}/{file}",
    examples=[
        Example(name="a payload written to /root in a pod (eBPF sensor)", source="ebpf", fires=True,
                record=sensor_write("curl", "/root/xmrig")),
        Example(
            name="Falco: a file created directly under / on a node",
            source="falco",
            fires=True,
            record=falco_record("Write below root", "openat",
                                {"proc.exepath": "/usr/bin/python3", "proc.name": "python3", "fd.name": "/.x",
                                 "evt.arg.flags": "O_WRONLY|O_CREAT|O_TRUNC"}, priority="Error", host=True),
        ),
        Example(name="bash writing root's history", source="ebpf", fires=False,
                record=sensor_write("bash", "/root/.bash_history")),
        Example(name="pip filling its cache", source="ebpf", fires=False,
                record=sensor_write("pip", "/root/.cache/pip/http/x")),
        Example(name="root's .bashrc changed (runtime.node_persistence_write's)", source="ebpf", fires=False,
                record=sensor_write("sh", "/root/.bashrc")),
        Example(name="a file written in /tmp", source="ebpf", fires=False, record=sensor_write("sh", "/tmp/x")),
    ],
)
