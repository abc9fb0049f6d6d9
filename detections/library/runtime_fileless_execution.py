"""Code run without a file on disk: a program whose executable was deleted after it started, or an interpreter
creating an anonymous memory file (memfd_create) to load an executable into."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import tetragon_record

#: Programs that have no business creating executable memory files: shells, interpreters and download tools are
#: the loaders of fileless payloads (``os.memfd_create`` + ``execve("/proc/self/fd/N")``).
LOADERS = frozenset({"sh", "bash", "dash", "ash", "zsh", "python", "python2", "python3", "perl", "ruby", "php",
                     "lua", "curl", "wget", "busybox"})
#: How a deleted executable shows: the kernel's suffix on its path, or the sensor's flag.
DELETED_SUFFIX = " (deleted)"


def interpreter_program(event: Event) -> str:
    """The interpreter's name without its version (``python3.12`` is ``python3``)."""
    program = program_name(event)
    if not program.startswith(("python", "perl", "ruby", "php")):
        return program
    return program.rstrip("0123456789.") or program


def fileless_kind(event: Event) -> str:
    """``deleted executable``, ``memory file by <program>``, or '' for neither."""
    if event.kind == "process.exec":
        deleted = "deleted" in event.actor.exe_flags or event.actor.exe.endswith(DELETED_SUFFIX)
        # Executions from a memory file are runtime.exec_from_tmp's: not reported twice.
        return "deleted executable" if deleted and "from_memfd" not in event.actor.exe_flags else ""
    program = interpreter_program(event)
    in_container = bool(event.container.id or event.k8s.container_id)
    return f"memory file by {program}" if in_container and program in LOADERS else ""


def fileless_context(event: Event) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "how": fileless_kind(event),
            "memfd_name": event.target.name if event.kind == "memfd.create" else "",
            "command": " ".join(event.actor.args), "parent_exe": event.actor.parent_exe,
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.fileless_execution",
    title="Fileless execution: deleted executable or memory file created by an interpreter",
    alert_title="{how} ({program}) in {where}",
    description=(
        "A process ran from an executable that was deleted (the kernel marks it '(deleted)'; a sensor may flag it), "
        "or a shell, interpreter or download tool in a container created an anonymous memory file with "
        "memfd_create, the first step of loading an ELF payload that never touches the disk. Malware deletes "
        "itself after it starts and loads from memory to leave nothing for file scanners or forensics. Execution "
        "straight from a memory file is runtime.exec_from_tmp's."
    ),
    severity="high",
    mitre=["T1620", "T1070.004", "T1027"],
    tags=["runtime", "defense_evasion", "fileless"],
    references=["https://attack.mitre.org/techniques/T1620/", "https://man7.org/linux/man-pages/man2/memfd_create.2.html"],
    false_positives=["Programs that upgrade their own binary in place and keep running (the old one is deleted)."],
    kinds=["process.exec", "memfd.create"],
    exe_names={"memfd.create": LOADERS | {"python3.8", "python3.9", "python3.10", "python3.11", "python3.12",
                                          "python3.13", "perl5"}},
    match=lambda event: bool(fileless_kind(event)),
    context=fileless_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{how}/{exe}",
    examples=[
        Example(
            name="python creating a memory file (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "memfd_create", "time_ns": EXAMPLE_START_NS, "pid": 4501, "tid": 4501, "ppid": 4500,
                           "uid": 0, "gid": 0, "comm": "python3", "cgroup_id": 7301, "flags": 1, "name": ""}),
        ),
        Example(
            name="Falco: a deleted executable running",
            source="falco",
            fires=True,
            record=falco_record(
                "Drop and execute new binary in container", "execve",
                {"proc.exepath": "/tmp/.x/kworker (deleted)", "proc.name": "kworker", "proc.cmdline": "kworker",
                 "evt.arg.flags": "EXE_WRITABLE|EXE_UPPER_LAYER"},
                priority="Critical",
            ),
        ),
        Example(
            name="Falco: memfd_create by perl",
            source="falco",
            fires=True,
            record=falco_record(
                "Fileless memfd", "memfd_create",
                {"proc.exepath": "/usr/bin/perl", "proc.name": "perl", "proc.cmdline": "perl -e ...",
                 "evt.arg.name": ""},
            ),
        ),
        Example(
            name="a JVM creating a memory file",
            source="ebpf",
            fires=False,
            record=in_pod({"type": "memfd_create", "time_ns": EXAMPLE_START_NS, "pid": 4502, "tid": 4502, "ppid": 1,
                           "uid": 1000, "gid": 1000, "comm": "java", "cgroup_id": 7301, "flags": 1,
                           "name": "doublemapper"}),
        ),
        Example(
            name="an ordinary program start",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/sbin/nginx", arguments="-g daemon off;"),
        ),
    ],
)
