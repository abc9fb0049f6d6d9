"""Another process's memory, or the kernel's, opened directly: /proc/<pid>/mem, /proc/kcore, /dev/mem. Reading it
steals secrets; writing it injects code."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

KERNEL_MEMORY = frozenset({"/proc/kcore", "/dev/mem", "/dev/kmem", "/dev/port"})
#: Debuggers and profilers read other processes' memory as their job (set to your own in a tuning file).
DEBUGGERS = ["gdb", "lldb", "py-spy", "rbspy", "perf", "criu", "gcore", "async-profiler", "pyroscope", "parca-agent"]


def memory_target(event: Event) -> str:
    """``kernel memory`` or ``process memory`` for the file the event opens, '' for anything else."""
    path = event.target.path or event.file.path
    if path in KERNEL_MEMORY:
        return "kernel memory"
    parts = path.split("/")
    if len(parts) == 4 and parts[1] == "proc" and parts[3] == "mem" and parts[2] not in ("self", "thread-self",
                                                                                        str(event.actor.pid)):
        return "process memory"
    return ""


def opens_memory(event: Event, params: dict[str, Any]) -> bool:
    return bool(memory_target(event)) and program_name(event) not in params["allowed_programs"]


def memory_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    writes = bool(set(event.file.access) & {"write", "truncate", "append"}) or event.kind == "file.write"
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe,
            "what": memory_target(event), "file": event.target.path or event.file.path,
            "access": "write (code injection)" if writes else "read", "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.process_memory_access",
    title="Process or kernel memory opened directly",
    alert_title="{program} opened {what} {file} for {access} in {where}",
    description=(
        "A process opened another process's memory file (/proc/<pid>/mem) or the kernel's memory (/proc/kcore, "
        "/dev/mem, /dev/kmem). Reading it dumps credentials and keys out of running programs; writing it injects "
        "code into them without ptrace (and into node processes from a pod that shares the node's PID "
        "namespace). Debuggers and profilers in `allowed_programs` are not reported."
    ),
    severity="high",
    mitre=["T1055.009", "T1003.007", "T1003"],
    tags=["runtime", "credential_access", "defense_evasion", "privilege_escalation"],
    references=["https://attack.mitre.org/techniques/T1055/009/", "https://attack.mitre.org/techniques/T1003/007/"],
    false_positives=["Profilers and crash reporters not in the allow-list."],
    kinds=["file.open", "file.write"],
    paths=["*/mem", *KERNEL_MEMORY],
    params={"allowed_programs": DEBUGGERS},
    match=opens_memory,
    context=memory_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{program}/{what}",
    examples=[
        Example(
            name="another process's memory opened for writing (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "open", "time_ns": EXAMPLE_START_NS, "pid": 6601, "tid": 6601, "ppid": 6600,
                           "uid": 0, "gid": 0, "comm": "python3", "cgroup_id": 7301, "flags": 2, "mode": 0,
                           "path": "/proc/1/mem", "repeats": 0}),
        ),
        Example(
            name="Falco: /proc/kcore read",
            source="falco",
            fires=True,
            record=falco_record(
                "Kcore read", "openat",
                {"proc.exepath": "/bin/dd", "proc.name": "dd", "proc.cmdline": "dd if=/proc/kcore of=/tmp/k",
                 "fd.name": "/proc/kcore", "evt.arg.flags": "O_RDONLY"},
            ),
        ),
        Example(
            name="a process reading its own memory",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/python3",
                body=kprobe("security_file_permission", {"file_arg": {"path": "/proc/self/mem"}}, {"int_arg": 4})),
        ),
        Example(
            name="gdb attaching on purpose",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/gdb", arguments="-p 1",
                body=kprobe("security_file_permission", {"file_arg": {"path": "/proc/1/mem"}}, {"int_arg": 4})),
        ),
    ],
)
