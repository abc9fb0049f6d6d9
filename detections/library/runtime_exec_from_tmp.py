"""A program executed from a world-writable scratch directory or from memory: code that no image shipped."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

#: Scratch directories anyone can write: a program run from here was put there at run time.
SCRATCH_DIRS = ("/tmp/", "/var/tmp/", "/dev/shm/")
#: How a program executed from an anonymous memory file (memfd_create + fexecve) shows as its executable.
MEMORY_EXECUTABLES = ("memfd:", "/memfd:", "/proc/self/fd/")
#: runc 1.1.12 and later copy their own binary into a sealed memory file and re-exec it as ``runc init`` at every
#: container start and exec (the fix for CVE-2024-21626): the most reported false positive of Falco's memfd rule.
RUNC_CLONE = "memfd:runc_cloned:/proc/self/exe"


def is_runc_clone(event: Event) -> bool:
    """runc's own ``init`` re-executed from its sealed copy."""
    exe = event.actor.exe.removeprefix("/").removesuffix(" (deleted)")
    return exe == RUNC_CLONE and event.actor.args[1:] == ["init"]


def where_executed(event: Event) -> str:
    """``memory`` or the scratch directory the executable ran from, '' for anything else."""
    exe = event.actor.exe
    if exe.startswith(MEMORY_EXECUTABLES) or "from_memfd" in event.actor.exe_flags:
        return "" if is_runc_clone(event) else "memory"
    if not (event.k8s.container_id or event.container.id) and not exe.startswith("/dev/shm/"):
        return ""  # on nodes, installers and build tools run from /tmp; /dev/shm has no such excuse
    return next((directory for directory in SCRATCH_DIRS if exe.startswith(directory)), "")


def exec_context(event: Event) -> dict[str, Any]:
    return {"exe": event.actor.exe, "ran_from": where_executed(event), "command": " ".join(event.actor.args),
            "parent_exe": event.actor.parent_exe, "container": event.k8s.container_name, "image": event.k8s.image,
            "node": event.node}


DETECTION = EventDetection(
    id="runtime.exec_from_tmp",
    title="Program executed from /tmp, /dev/shm or memory",
    alert_title="{exe} executed from {ran_from} in {namespace}/{pod} on {node}",
    description=(
        "A program ran from /tmp, /var/tmp or /dev/shm inside a container, from /dev/shm on a node, or from an "
        "anonymous memory file (memfd). Downloaded payloads, miners and implants are dropped in writable scratch "
        "space or executed straight from memory to leave nothing on disk; images install their programs elsewhere. "
        "runc's own sealed copy (memfd runc_cloned:/proc/self/exe run as runc init, runc 1.1.12+) is not reported."
    ),
    severity="high",
    mitre=["T1105", "T1620"],
    tags=["runtime", "execution", "drift", "fileless"],
    references=["https://attack.mitre.org/techniques/T1620/", "https://falco.org/docs/rules/default-rules/"],
    false_positives=["Test runners or JIT tooling that compile helpers into /tmp inside application containers."],
    kinds=["process.exec"],
    match=lambda event: bool(where_executed(event)),
    context=exec_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{exe}",
    examples=[
        Example(
            name="downloaded binary run from /tmp in a pod (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/tmp/kdevtmpfsi", parent="/bin/sh", parent_arguments="-c ./run.sh"),
        ),
        Example(
            name="fileless execution from a memfd (Falco)",
            source="falco",
            fires=True,
            record=falco_record(
                "Fileless execution via memfd_create", "execve",
                {"proc.exepath": "memfd:payload", "proc.name": "3", "proc.cmdline": "3 -q",
                 "evt.arg.flags": "EXE_WRITABLE|EXE_FROM_MEMFD", "proc.pname": "python3"},
                priority="Critical",
            ),
        ),
        Example(
            name="runc 1.1.12+ re-executing its sealed copy as runc init at a container start (Falco)",
            source="falco",
            fires=False,
            record=falco_record(
                "Fileless execution via memfd_create", "execve",
                {"proc.exepath": "memfd:runc_cloned:/proc/self/exe", "proc.name": "5", "proc.cmdline": "5 init",
                 "evt.arg.flags": "EXE_WRITABLE|EXE_FROM_MEMFD", "proc.pname": "runc"},
                priority="Critical", host=True,
            ),
        ),
        Example(
            name="a payload in a memory file named like runc's, run with other arguments",
            source="falco",
            fires=True,
            record=falco_record(
                "Fileless execution via memfd_create", "execve",
                {"proc.exepath": "memfd:runc_cloned:/proc/self/exe", "proc.name": "5", "proc.cmdline": "5 -c x",
                 "evt.arg.flags": "EXE_WRITABLE|EXE_FROM_MEMFD", "proc.pname": "sh"},
                priority="Critical", host=True,
            ),
        ),
        Example(
            name="/dev/shm on a node",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/dev/shm/.x/sshd", parent="/bin/bash", host=True),
        ),
        Example(
            name="the application binary",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/sbin/nginx", arguments="-g daemon off;", container_pid=1),
        ),
        Example(
            name="a probe reading a file in /tmp (the program is cat)",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/bin/cat", arguments="/tmp/healthy"),
        ),
        Example(
            name="a build tool on a node running from /tmp",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/tmp/go-build123/b001/exe/main", parent="/usr/local/go/bin/go", host=True),
        ),
    ],
)
