"""A write that weakens or takes over the kernel's own defences: ASLR switched off, the magic SysRq key armed or
triggered, a cgroup's release notification armed, the dynamic loader replaced."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

HOST_MOUNTS = ("/host", "/hostfs", "/rootfs", "/node", "/host-root")
#: Files whose change weakens the kernel, by what the change does (release_agent and core_pattern are
#: runtime.container_escape_write's).
TAMPER_FILES = {
    "/proc/sys/kernel/randomize_va_space": "ASLR setting",
    "/proc/sys/kernel/sysrq": "SysRq setting",
    "/proc/sysrq-trigger": "SysRq trigger",
    "/proc/sys/kernel/kptr_restrict": "kernel pointer protection",
    "/proc/sys/kernel/dmesg_restrict": "kernel log protection",
    "/proc/sys/kernel/yama/ptrace_scope": "ptrace protection",
    "/proc/sys/kernel/unprivileged_bpf_disabled": "unprivileged eBPF protection",
    "/proc/sys/vm/mmap_min_addr": "null-page protection",
}
#: The dynamic loader every program runs through: replacing it runs code in every process.
LOADER_PREFIXES = ("/lib/ld-linux", "/lib64/ld-linux", "/lib/ld-musl", "/usr/lib/ld-linux", "/usr/lib64/ld-linux",
                   "/lib/x86_64-linux-gnu/ld-linux", "/lib/aarch64-linux-gnu/ld-linux",
                   "/usr/lib/x86_64-linux-gnu/ld-linux", "/usr/lib/aarch64-linux-gnu/ld-linux")
INSTALLERS = frozenset({"dpkg", "apt", "apt-get", "yum", "dnf", "microdnf", "rpm", "apk", "zypper", "pacman",
                        "systemd-sysctl", "sysctl", "tuned", "kubelet"})


def node_path(path: str) -> str:
    for mount in HOST_MOUNTS:
        if path.startswith(mount + "/"):
            return path[len(mount) :]
    return path


def tampering(path: str) -> str:
    """What a write to ``path`` tampers with ('' for nothing)."""
    path = node_path(path)
    if path in TAMPER_FILES:
        return TAMPER_FILES[path]
    if path.startswith("/sys/fs/cgroup/") and path.endswith("/notify_on_release"):
        return "cgroup release notification"
    return "dynamic loader" if path.startswith(LOADER_PREFIXES) else ""


def tampered_path(event: Event) -> str:
    """The protected file the write changes: the file written, or the new name of a rename or link onto it."""
    return next((path for path in (event.target.path or event.file.path, event.file.other_path)
                 if path and tampering(path)), "")


def tampers(event: Event) -> bool:
    return bool(tampered_path(event)) and program_name(event) not in INSTALLERS


def tamper_context(event: Event) -> dict[str, Any]:
    path = tampered_path(event)
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "file": path,
            "what": tampering(path), "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.kernel_tampering_write",
    title="Kernel protection changed or dynamic loader replaced",
    alert_title="{program} wrote the {what} ({file}) in {where}",
    description=(
        "A process wrote a kernel setting that protects the node (ASLR, kernel pointer and log restrictions, "
        "ptrace scope, unprivileged eBPF), armed or triggered the magic SysRq key (which can crash or reboot the "
        "node), set a cgroup's notify_on_release (the first half of the release_agent escape), or replaced the "
        "dynamic loader that every program runs through. None of this is a workload's business; sysctl, tuned and "
        "package managers are not reported."
    ),
    severity="high",
    mitre=["T1562.001", "T1611", "T1574.006", "T1529"],
    tags=["runtime", "defense_evasion", "privilege_escalation", "container_escape"],
    references=["https://attack.mitre.org/techniques/T1562/001/", "https://docs.kernel.org/admin-guide/sysrq.html"],
    false_positives=["Node tuning daemons other than sysctl and tuned writing these settings at boot."],
    kinds=["file.write"],
    match=tampers,
    context=tamper_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{file}",
    examples=[
        Example(
            name="ASLR switched off (Falco)",
            source="falco",
            fires=True,
            record=falco_record(
                "Custom kernel setting audit", "openat",
                {"proc.exepath": "/bin/bash", "proc.name": "bash",
                 "proc.cmdline": "bash -c echo 0 > /proc/sys/kernel/randomize_va_space",
                 "fd.name": "/proc/sys/kernel/randomize_va_space", "evt.arg.flags": "O_WRONLY|O_TRUNC"},
            ),
        ),
        Example(
            name="notify_on_release armed in a mounted cgroup (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/bin/sh", arguments="-c echo 1 > /sys/fs/cgroup/rdma/x/notify_on_release",
                body=kprobe("security_file_permission",
                            {"file_arg": {"path": "/sys/fs/cgroup/rdma/x/notify_on_release"}}, {"int_arg": 2})),
        ),
        Example(
            name="Falco: a file renamed over the dynamic loader",
            source="falco",
            fires=True,
            record=falco_record(
                "Custom loader audit", "renameat2",
                {"proc.exepath": "/bin/mv", "proc.name": "mv", "proc.cmdline": "mv /tmp/ld /lib64/ld-linux-x86-64.so.2",
                 "fs.path.name": "/tmp/ld", "fs.path.target": "/lib64/ld-linux-x86-64.so.2"},
            ),
        ),
        Example(
            name="sysctl applying the node's settings at boot",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/lib/systemd/systemd-sysctl", host=True,
                body=kprobe("security_file_permission", {"file_arg": {"path": "/proc/sys/kernel/sysrq"}},
                            {"int_arg": 2})),
        ),
        Example(
            name="reading the ASLR setting",
            source="falco",
            fires=False,
            record=falco_record(
                "Custom kernel setting audit", "openat",
                {"proc.exepath": "/bin/cat", "proc.name": "cat", "fd.name": "/proc/sys/kernel/randomize_va_space",
                 "evt.arg.flags": "O_RDONLY"},
            ),
        ),
    ],
)
