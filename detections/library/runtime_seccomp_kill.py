"""A seccomp filter killed or trapped a process in a container: it made a system call its profile forbids."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.fixtures import in_pod
from vigil.sources.kernel_audit.fixtures import kernel_audit_record

#: Verdicts that stop the process (kill) or deliver SIGSYS to it (trap), as opposed to failing the call.
STOPPING = frozenset({"kill_process", "kill_thread", "trap"})


def stopped_in_container(event: Event) -> bool:
    return event.action in STOPPING and bool(event.k8s.container_id or event.container.id or event.k8s.pod)


def seccomp_context(event: Event) -> dict[str, Any]:
    return {"syscall": event.target.name, "verdict": event.action, "exe": event.actor.exe,
            "container": event.k8s.container_name, "image": event.k8s.image}


def seccomp_line(code: str, syscall: int = 165, serial: int = 77) -> dict[str, Any]:
    """A kernel SECCOMP record (syscall 165 is mount on x86_64) of a process in a pod."""
    body = (f"audit(1741069338.120:{serial}): auid=4294967295 uid=1000 gid=1000 ses=4294967295 pid=4242 "
            f'comm="python3" exe="/usr/bin/python3.11" sig=31 arch=c000003e syscall={syscall} compat=0 '
            f"ip=0x7f7b2c51e9bb code={code}")
    return kernel_audit_record(1326, body)


DETECTION = EventDetection(
    id="runtime.seccomp_kill",
    title="Seccomp killed or trapped a container process",
    alert_title="seccomp {verdict} of {program} on {syscall} in {namespace}/{pod}",
    description=(
        "The kernel's seccomp filter killed a process in a container, or sent it SIGSYS, for a system call its "
        "profile forbids (from the kernel's SECCOMP audit records, or the eBPF sensor seeing the SIGSYS). "
        "Workloads do not call what they are known to need to avoid; exploits and post-exploitation tools "
        "(unshare, mount, keyctl, bpf, ptrace) do, and so does a workload under a profile that is too tight."
    ),
    severity="medium",
    mitre=["T1611", "T1068"],
    tags=["runtime", "seccomp", "kernel"],
    references=[
        "https://man7.org/linux/man-pages/man2/seccomp.2.html",
        "https://kubernetes.io/docs/tutorials/security/seccomp/",
    ],
    false_positives=["A new release of the workload calling something its seccomp profile has not learned yet."],
    kinds=["kernel.seccomp"],
    actions=STOPPING,
    match=stopped_in_container,
    context=seccomp_context,
    dedup="{cluster}/{namespace}/{pod}/{container}/{syscall}",
    examples=[
        Example(name="kill_process on mount (kernel audit)", source="kernel-audit", fires=True,
                record=in_pod(seccomp_line("0x80000000"))),
        Example(name="SIGSYS trap seen by the eBPF sensor", source="ebpf", fires=True, record=in_pod({
            "type": "seccomp", "time_ns": 1741069338120000000, "pid": 4242, "tid": 4242, "uid": 1000, "gid": 1000,
            "comm": "exploit", "syscall": 272, "syscall_name": "unshare", "arch": "x86_64", "action": "trap",
            "data": 0})),
        Example(name="an errno verdict fails the call without stopping the process", source="kernel-audit",
                fires=False, record=in_pod(seccomp_line("0x50001"))),
        Example(name="a systemd service on the host killed by its filter", source="kernel-audit", fires=False,
                record=seccomp_line("0x80000000")),
    ],
)
