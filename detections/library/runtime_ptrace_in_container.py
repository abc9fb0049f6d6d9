"""A container process attaching to another process with ptrace: reading or rewriting its memory."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record


def attaches(event: Event) -> bool:
    """A ptrace in a container, unless it is PTRACE_TRACEME (a process asking to be traced by its parent).
    Sources name the request as the action (``attach``, ``poketext``…) when they know it."""
    return bool(event.k8s.container_id or event.container.id) and event.action != "traceme"


def ptrace_context(event: Event) -> dict[str, Any]:
    return {"exe": event.actor.exe, "request": event.action, "traced_pid": event.target.name,
            "command": " ".join(event.actor.args), "container": event.k8s.container_name, "image": event.k8s.image}


DETECTION = EventDetection(
    id="runtime.ptrace_in_container",
    title="ptrace from a container",
    alert_title="{program} used ptrace ({request}) in {namespace}/{pod}",
    description=(
        "A process in a container called ptrace to attach to, read or write another process. Attackers inject "
        "code into running processes, steal credentials from their memory, and from a pod sharing the node's "
        "PID namespace they can inject into node processes. Production workloads have no reason to trace."
    ),
    severity="high",
    mitre=["T1055.008"],
    tags=["runtime", "defense_evasion", "privilege_escalation", "credential_access"],
    references=["https://attack.mitre.org/techniques/T1055/008/"],
    false_positives=["Debuggers and profilers (gdb, strace, py-spy) run in a container by a developer."],
    kinds=["process.ptrace"],
    match=attaches,
    context=ptrace_context,
    dedup="{cluster}/{namespace}/{pod}/{container}/{exe}",
    examples=[
        Example(
            name="PTRACE_ATTACH from a container (Tetragon kprobe)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/tmp/inject", arguments="1",
                body=kprobe("__x64_sys_ptrace", {"long_arg": 16}, {"long_arg": 1}, returned=0),
            ),
        ),
        Example(
            name="Falco: PTRACE attached to process",
            source="falco",
            fires=True,
            record=falco_record(
                "PTRACE attached to process", "ptrace",
                {"proc.exepath": "/usr/bin/gdb", "proc.name": "gdb", "proc.cmdline": "gdb -p 1",
                 "evt.arg.request": "PTRACE_ATTACH", "evt.res": "SUCCESS"},
            ),
        ),
        Example(
            name="PTRACE_TRACEME",
            source="falco",
            fires=False,
            record=falco_record(
                "Custom ptrace audit", "ptrace",
                {"proc.exepath": "/usr/bin/app", "proc.name": "app", "evt.arg.request": "PTRACE_TRACEME"},
            ),
        ),
        Example(
            name="strace by an administrator on the node",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_kprobe", binary="/usr/bin/strace", arguments="-p 4242", host=True,
                                   body=kprobe("__x64_sys_ptrace", {"long_arg": 16429}, {"long_arg": 4242})),
        ),
    ],
)
