"""A process asking to be traced by its parent (PTRACE_TRACEME) so that no debugger or sensor can attach to it:
a common anti-analysis trick of malware."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Debuggers and sandboxes start their children with PTRACE_TRACEME as their job.
TRACERS = frozenset({"gdb", "lldb", "strace", "ltrace", "valgrind", "rr", "proot", "gvisor", "runsc", "criu"})


def anti_debug(event: Event) -> bool:
    if event.action != "traceme":
        return False
    return program_name(event) not in TRACERS and event.actor.parent_exe.rpartition("/")[2] not in TRACERS


def antidebug_context(event: Event) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe,
            "parent_exe": event.actor.parent_exe, "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.ptrace_antidebug",
    title="Anti-debugging: PTRACE_TRACEME outside a debugger",
    alert_title="{program} made itself untraceable (PTRACE_TRACEME) in {where}",
    description=(
        "A process called ptrace(PTRACE_TRACEME) without a debugger or tracer as its parent. A process can have "
        "one tracer only: by taking that slot for itself, malware keeps debuggers and analysts from attaching "
        "and detects when it is being analysed. Legitimate programs leave this to debuggers."
    ),
    severity="medium",
    mitre=["T1622"],
    tags=["runtime", "defense_evasion"],
    references=["https://attack.mitre.org/techniques/T1622/", "https://man7.org/linux/man-pages/man2/ptrace.2.html"],
    false_positives=["Sandboxes and tracers not in the list that start children traced."],
    kinds=["process.ptrace"],
    actions=["traceme"],
    match=anti_debug,
    context=antidebug_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{exe}",
    examples=[
        Example(
            name="Falco: PTRACE_TRACEME by a dropped binary",
            source="falco",
            fires=True,
            record=falco_record(
                "PTRACE anti-debug attempt", "ptrace",
                {"proc.exepath": "/tmp/.x/kdevtmpfsi", "proc.name": "kdevtmpfsi", "proc.cmdline": "kdevtmpfsi",
                 "evt.arg.request": "PTRACE_TRACEME"},
                priority="Notice",
            ),
        ),
        Example(
            name="PTRACE_TRACEME seen by a Tetragon hook",
            source="tetragon",
            fires=True,
            record=tetragon_record("process_kprobe", binary="/tmp/implant",
                                   body=kprobe("__x64_sys_ptrace", {"int_arg": 0}, {"int_arg": 0})),
        ),
        Example(
            name="strace starting the program it traces",
            source="falco",
            fires=False,
            record=falco_record(
                "PTRACE anti-debug attempt", "ptrace",
                {"proc.exepath": "/usr/bin/ls", "proc.name": "ls", "proc.pexepath": "/usr/bin/strace",
                 "proc.pname": "strace", "evt.arg.request": "PTRACE_TRACEME"},
                priority="Notice",
            ),
        ),
        Example(
            name="a debugger attaching (runtime.ptrace_in_container's)",
            source="falco",
            fires=False,
            record=falco_record(
                "PTRACE attached to process", "ptrace",
                {"proc.exepath": "/usr/bin/gdb", "proc.name": "gdb", "evt.arg.request": "PTRACE_ATTACH"},
            ),
        ),
    ],
)
