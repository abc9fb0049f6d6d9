"""process_vm_writev(2) into another process: writing code or data straight into its memory, without ptrace or
/proc/<pid>/mem."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod

#: Debuggers and checkpoint tools that write other processes' memory as their job (set your own in a tuning file).
DEBUGGERS = ["gdb", "lldb", "lldb-server", "criu", "rr", "frida-server"]


def writes_other_process(event: Event, params: dict[str, Any]) -> bool:
    return event.action == "process_vm_writev" and program_name(event) not in params["allowed_programs"]


def injection_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe,
            "target_pid": event.target.name or "another process", "command": " ".join(event.actor.args),
            "node": event.node, "where": container_label(event) if in_container else f"node {event.node}"}


def _vm_write(comm: str, target_pid: int) -> dict[str, Any]:
    return in_pod({"type": "process_vm_write", "time_ns": EXAMPLE_START_NS, "pid": 7401, "tid": 7401, "ppid": 7400,
                   "uid": 0, "gid": 0, "comm": comm, "cgroup_id": 7301, "target_pid": target_pid, "iovecs": 1})


DETECTION = EventDetection(
    id="runtime.process_vm_write_injection",
    title="Memory of another process written with process_vm_writev",
    alert_title="{program} in {where} wrote into the memory of process {target_pid}",
    description=(
        "A process wrote into another process's memory with process_vm_writev. That injects code or patches data "
        "in a running program (its credentials checks, its configuration, a shellcode trampoline) without the "
        "ptrace attach that debuggers make and detections watch, and from a pod sharing the node's PID namespace "
        "it reaches node processes. Debuggers and checkpoint tools in `allowed_programs` are not reported. The "
        "sensor records writes into processes other than the caller only."
    ),
    severity="high",
    mitre=["T1055"],
    tags=["runtime", "defense_evasion", "privilege_escalation"],
    references=["https://attack.mitre.org/techniques/T1055/", "https://man7.org/linux/man-pages/man2/process_vm_writev.2.html"],
    false_positives=["Debuggers and instrumentation agents not in the allow-list."],
    kinds=["process.syscall"],
    actions={"process.syscall": ["process_vm_writev"]},
    params={"allowed_programs": DEBUGGERS},
    match=writes_other_process,
    context=injection_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{program}/{target_pid}",
    examples=[
        Example(
            name="an injector writing into another process in a pod (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=_vm_write("inject", 1),
        ),
        Example(
            name="Falco: process_vm_writev from a container",
            source="falco",
            fires=True,
            record=falco_record("Custom process_vm_writev audit", "process_vm_writev",
                                {"proc.exepath": "/tmp/inj", "proc.name": "inj", "proc.cmdline": "inj 812"}),
        ),
        Example(
            name="gdb setting a breakpoint",
            source="ebpf",
            fires=False,
            record=_vm_write("gdb", 812),
        ),
        Example(
            name="Falco: a process reading another's memory (process_vm_readv)",
            source="falco",
            fires=False,
            record=falco_record("Custom process_vm_readv audit", "process_vm_readv",
                                {"proc.exepath": "/usr/bin/py-spy", "proc.name": "py-spy", "proc.cmdline": "py-spy"}),
        ),
    ],
)
