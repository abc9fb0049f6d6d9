"""A setuid or setgid binary run in a container changed the process's effective user or group: privilege
gained through the file system rather than granted by the pod spec. Binaries expected to do so in a
namespace are listed in ``allowed_binaries`` (globs over the executable's path), none by default."""

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.fixtures import in_pod

SETID_EXECS = frozenset({"setuid_exec", "setgid_exec"})


def unexpected_setid_exec(event: Event, params: Mapping[str, Any]) -> bool:
    if event.action not in SETID_EXECS or not (event.k8s.container_id or event.container.id or event.k8s.pod):
        return False
    return not any(fnmatchcase(event.actor.exe, pattern) for pattern in params["allowed_binaries"])


def setid_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    actor = event.actor
    return {"exe": actor.exe, "command": " ".join(actor.args), "uid": actor.uid, "euid": actor.euid, "gid": actor.gid,
            "egid": actor.egid,
            "container": event.k8s.container_name, "image": event.k8s.image}


def exec_record(exe: str, uid: int = 1000, euid: int = 1000, gid: int = 1000, egid: int = 1000) -> dict[str, Any]:
    """An eBPF sensor exec record in a pod (the kernel's real and effective ids after exec)."""
    return in_pod({"type": "exec", "time_ns": 1741069338500000000, "pid": 4300, "tid": 4300, "ppid": 4242,
                   "uid": uid, "gid": gid, "euid": euid, "egid": egid, "comm": exe.rsplit("/", 1)[-1], "exe": exe,
                   "args": [exe.rsplit("/", 1)[-1], "-i"], "cwd": "/app", "parent_exe": "/bin/sh"})


DETECTION = EventDetection(
    id="runtime.setuid_exec_in_container",
    title="setuid or setgid binary executed in a container",
    alert_title="{exe} ran as euid {euid}/egid {egid} for uid {uid}/gid {gid} in {namespace}/{pod}",
    description=(
        "A process in a container executed a binary whose setuid or setgid bit changed its effective user or "
        "group (the eBPF sensor compares real and effective ids after exec). Containers that run as a "
        "non-root user should stay that user; sudo, su, a planted setuid copy of a shell or a vulnerable "
        "setuid helper (pkexec) are how an attacker in the container becomes root there, the step before "
        "most escapes. allowPrivilegeEscalation: false prevents it."
    ),
    severity="medium",
    params={"allowed_binaries": []},
    mitre=["T1548.001"],
    tags=["runtime", "privilege-escalation", "ebpf"],
    references=[
        "https://attack.mitre.org/techniques/T1548/001/",
        "https://kubernetes.io/docs/tasks/configure-pod-container/security-context/",
    ],
    false_positives=["Images whose entrypoint drops or switches users through a setuid helper (gosu is not one)."],
    kinds=["process.exec"],
    actions=SETID_EXECS,
    match=unexpected_setid_exec,
    context=setid_context,
    dedup="{cluster}/{namespace}/{pod}/{container}/{exe}",
    examples=[
        Example(name="sudo to root", source="ebpf", fires=True, record=exec_record("/usr/bin/sudo", euid=0)),
        Example(name="a setgid copy of a shell in /tmp", source="ebpf", fires=True,
                record=exec_record("/tmp/.x/sh", egid=0)),
        Example(name="an ordinary exec as the container's user", source="ebpf", fires=False,
                record=exec_record("/usr/bin/python3")),
        Example(name="root running a setuid binary changes nothing", source="ebpf", fires=False,
                record=exec_record("/usr/bin/passwd", uid=0, euid=0, gid=0, egid=0)),
    ],
)
