"""userfaultfd(2) called by a user other than root: page faults handed to a user-space process, the primitive that
makes kernel use-after-free races reliable to exploit; ordinary programs never call it."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod

#: Programs that handle their own page faults by design: live migration of containers and virtual machines.
FAULT_HANDLERS = ["criu", "qemu-system-x86_64", "qemu-system-aarch64", "qemu-kvm", "firecracker", "cloud-hypervisor"]


def unprivileged_userfaultfd(event: Event, params: dict[str, Any]) -> bool:
    return (event.action == "userfaultfd" and event.actor.uid > 0
            and program_name(event) not in params["allowed_programs"])


def userfaultfd_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "uid": event.actor.uid,
            "command": " ".join(event.actor.args), "node": event.node,
            "where": container_label(event) if in_container else f"node {event.node}"}


def _userfaultfd(comm: str, uid: int) -> dict[str, Any]:
    return in_pod({"type": "userfaultfd", "time_ns": EXAMPLE_START_NS, "pid": 7301, "tid": 7301, "ppid": 7300,
                   "uid": uid, "gid": uid, "comm": comm, "cgroup_id": 7301, "flags": 0})


DETECTION = EventDetection(
    id="runtime.userfaultfd_by_non_root",
    title="userfaultfd called by a non-root user",
    alert_title="{program} in {where} called userfaultfd as uid {uid}",
    description=(
        "A process of a user other than root created a userfaultfd: the kernel then stops a thread that touches "
        "a registered page and lets this process decide when it continues. Kernel exploits use that pause to win "
        "use-after-free and double-fetch races reliably, which is why distributions turn unprivileged userfaultfd "
        "off (vm.unprivileged_userfaultfd). Ordinary programs never call it; live-migration tools (CRIU, QEMU, "
        "Firecracker) in `allowed_programs` do. The sensor records the call whether or not the kernel allows it."
    ),
    severity="medium",
    mitre=["T1068"],
    tags=["runtime", "privilege_escalation"],
    references=["https://man7.org/linux/man-pages/man2/userfaultfd.2.html", "https://attack.mitre.org/techniques/T1068/"],
    false_positives=["Live migration or snapshotting tools not in the allow-list."],
    kinds=["process.syscall"],
    actions={"process.syscall": ["userfaultfd"]},
    params={"allowed_programs": FAULT_HANDLERS},
    match=unprivileged_userfaultfd,
    context=userfaultfd_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{program}",
    examples=[
        Example(
            name="an exploit running as nobody in a pod (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=_userfaultfd("exploit", 65534),
        ),
        Example(
            name="Falco: userfaultfd by uid 1000",
            source="falco",
            fires=True,
            record=falco_record("Unprivileged Delegation of Page Faults Handling to a Userspace Process",
                                "userfaultfd", {"proc.exepath": "/tmp/x", "proc.name": "x", "proc.cmdline": "x",
                                                "user.uid": 1000, "user.name": "app"}),
        ),
        Example(
            name="CRIU restoring a process lazily",
            source="ebpf",
            fires=False,
            record=_userfaultfd("criu", 1000),
        ),
        Example(
            name="root's userfaultfd",
            source="falco",
            fires=False,
            record=falco_record("Custom userfaultfd audit", "userfaultfd",
                                {"proc.exepath": "/usr/bin/qemu-img", "proc.name": "qemu-img", "proc.cmdline": "q"}),
        ),
    ],
)
