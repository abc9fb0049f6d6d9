"""Reconnaissance of the kernel from a container or on a node: the ASLR setting, kernel symbol addresses, the
scheduler's view of every process on the node. Exploit kits read these before they pick an exploit."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Files that tell an exploit about the kernel or the node, by what they reveal.
RECON_FILES = {
    "/proc/sys/kernel/randomize_va_space": "ASLR setting",
    "/proc/kallsyms": "kernel symbol addresses",
    "/proc/sched_debug": "scheduler debug (every process and cgroup on the node)",
    "/sys/kernel/debug/sched/debug": "scheduler debug (every process and cgroup on the node)",
    "/proc/modules": "loaded kernel modules",
    "/sys/kernel/security/lsm": "active security modules",
}
#: What a node's own processes may read for reasons of their own (lsmod, LSM tooling), so only these count there.
NODE_RECON_FILES = frozenset({"/proc/sys/kernel/randomize_va_space", "/proc/kallsyms", "/proc/sched_debug",
                              "/sys/kernel/debug/sched/debug"})
#: Node agents read these routinely (monitoring, the sensors themselves).
AGENTS = frozenset({"node_exporter", "node-exporter", "kubelet", "cadvisor", "falco", "tetragon", "vigil",
                    "datadog-agent", "system-probe", "telegraf", "collectd", "perf", "bpftool", "systemd-udevd"})


def recon_target(event: Event) -> str:
    path = event.target.path or event.file.path
    return RECON_FILES.get(path, "")


def in_container(event: Event) -> bool:
    return bool(event.container.id or event.k8s.container_id)


def reads_recon(event: Event) -> bool:
    if program_name(event) in AGENTS or "write" in event.file.access or not recon_target(event):
        return False
    return in_container(event) or (event.target.path or event.file.path) in NODE_RECON_FILES


def recon_context(event: Event) -> dict[str, Any]:
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe,
            "file": event.target.path or event.file.path, "what": recon_target(event),
            "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container(event) else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.kernel_recon_read",
    title="Kernel reconnaissance read",
    alert_title="{program} read the {what} in {where}",
    description=(
        "A process in a container read the ASLR setting, the kernel's symbol addresses, the scheduler's debug "
        "view (which lists every process and cgroup on the node, so other containers' processes), the loaded "
        "modules or the active security modules; or a node process other than a known agent read the ASLR "
        "setting, the symbols or the scheduler's view. Applications have no use for these; exploit kits and "
        "container escape scripts check them first. Low on its own: an input to the investigation."
    ),
    severity="low",
    mitre=["T1082", "T1057"],
    tags=["runtime", "discovery"],
    references=["https://attack.mitre.org/techniques/T1082/"],
    false_positives=["Monitoring agents in containers that are not in the agent list."],
    kinds=["file.open"],
    paths=list(RECON_FILES),
    match=reads_recon,
    context=recon_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{where}/{file}",
    examples=[
        Example(
            name="Falco: the ASLR setting read by a shell in a container",
            source="falco",
            fires=True,
            record=falco_record(
                "Custom kernel setting audit", "openat",
                {"proc.exepath": "/bin/cat", "proc.name": "cat",
                 "proc.cmdline": "cat /proc/sys/kernel/randomize_va_space",
                 "fd.name": "/proc/sys/kernel/randomize_va_space", "evt.arg.flags": "O_RDONLY"},
            ),
        ),
        Example(
            name="scheduler debug read (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/python3", arguments="recon.py",
                body=kprobe("security_file_permission", {"file_arg": {"path": "/proc/sched_debug"}}, {"int_arg": 4})),
        ),
        Example(
            name="sched_debug read by cat on the node (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/cat", arguments="/proc/sched_debug", host=True,
                body=kprobe("security_file_permission", {"file_arg": {"path": "/proc/sched_debug"}}, {"int_arg": 4})),
        ),
        Example(
            name="lsmod reading the modules on the node (not node reconnaissance)",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/sbin/lsmod", host=True,
                body=kprobe("security_file_permission", {"file_arg": {"path": "/proc/modules"}}, {"int_arg": 4})),
        ),
        Example(
            name="node_exporter reading the modules on the node",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/bin/node_exporter", host=True,
                body=kprobe("security_file_permission", {"file_arg": {"path": "/proc/modules"}}, {"int_arg": 4})),
        ),
        Example(
            name="reading the application's configuration",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/python3",
                body=kprobe("security_file_permission", {"file_arg": {"path": "/app/config.yaml"}}, {"int_arg": 4})),
        ),
    ],
)
