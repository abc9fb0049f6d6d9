"""A container process entering other namespaces (nsenter, setns): the way out of a container onto the node."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Container runtimes join namespaces to start and exec processes in containers; that is their job. runc does it
#: as its init (``runc:[1:CHILD]``, ``runc:[2:INIT]``), which sensors without an executable path name by that name.
RUNTIMES = ("runc", "crun", "containerd-shim", "conmon", "youki", "runsc")
#: setns(2)'s nstype for the mount and network namespaces (CLONE_NEWNS | CLONE_NEWNET).
_MNT_NET = 0x40020000


def sensor_setns(comm: str) -> dict[str, Any]:
    """The eBPF sensor's record of a setns into the mount and network namespaces by ``comm`` in a pod."""
    return in_pod({"type": "ns_change", "time_ns": EXAMPLE_START_NS, "pid": 6100, "tid": 6100, "ppid": 6090,
                   "uid": 0, "gid": 0, "comm": comm, "cgroup_id": 7301, "call": "setns", "flags": _MNT_NET,
                   "namespaces": ["mnt", "net"], "fd": 3})


def enters_namespaces(event: Event) -> bool:
    if not (event.k8s.container_id or event.container.id):  # with or without pod metadata
        return False
    program = program_name(event)
    if event.kind == "process.exec":
        return program == "nsenter"
    return event.action == "setns" and not program.startswith(RUNTIMES)


def targets_host_init(event: Event) -> bool:
    """``nsenter -t 1`` / ``--target=1``: the namespaces of PID 1, the node's init when the pod shares its PIDs."""
    args = event.actor.args
    return any(
        arg in ("--target=1", "-t1") or (arg in ("-t", "--target") and args[i + 1 : i + 2] == ["1"])
        for i, arg in enumerate(args)
    )


def namespace_context(event: Event) -> dict[str, Any]:
    return {"exe": event.actor.exe, "how": "nsenter" if event.kind == "process.exec" else "setns",
            "command": " ".join(event.actor.args), "host_init_target": targets_host_init(event),
            "container": event.k8s.container_name, "image": event.k8s.image}


DETECTION = EventDetection(
    id="runtime.nsenter_host_namespaces",
    title="Container process entering other namespaces",
    alert_title="{program} entered other namespaces ({how}) from {namespace}/{pod}",
    description=(
        "A process in a container ran nsenter or called setns to join other namespaces. From a pod that shares "
        "the node's PID namespace (hostPID) or holds CAP_SYS_ADMIN, `nsenter -t 1 -m -u -i -n sh` gives a root "
        "shell on the node: the standard escape from a privileged pod. Container runtimes joining namespaces to "
        "start processes are not reported."
    ),
    severity="critical",
    mitre=["T1611"],
    tags=["runtime", "privilege_escalation", "container_escape"],
    references=["https://attack.mitre.org/techniques/T1611/", "https://man7.org/linux/man-pages/man1/nsenter.1.html"],
    false_positives=["Node debugging pods (kubectl debug node/..., node-shell) used by operators on purpose."],
    kinds=["process.exec", "process.ns_change"],
    exe_names={"process.exec": ["nsenter"]},
    actions={"process.ns_change": ["setns"]},
    match=enters_namespaces,
    context=namespace_context,
    dedup="{cluster}/{namespace}/{pod}/{container}/{how}",
    examples=[
        Example(
            name="nsenter into the node's init namespaces (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/nsenter", arguments="-t 1 -m -u -i -n -p -- bash",
                                   parent="/bin/sh"),
        ),
        Example(
            name="setns syscall from a container process (Tetragon kprobe)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/tmp/escape", body=kprobe("__x64_sys_setns", {"int_arg": 3}, {"int_arg": 0}),
            ),
        ),
        Example(
            name="Falco: change thread namespace",
            source="falco",
            fires=True,
            record=falco_record(
                "Change thread namespace", "setns",
                {"proc.exepath": "/usr/bin/nsenter", "proc.name": "nsenter", "proc.cmdline": "nsenter --target=1 -a",
                 "proc.pname": "bash", "evt.res": "SUCCESS"},
                priority="Notice",
            ),
        ),
        Example(
            name="a workload process joining other namespaces (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=sensor_setns("escape"),
        ),
        Example(
            name="busybox's nsenter applet (Falco)",
            source="falco",
            fires=True,
            record=falco_record(
                "Run shell untrusted", "execve",
                {"proc.exepath": "/bin/busybox", "proc.name": "nsenter", "proc.cmdline": "nsenter -t 1 -m sh"},
            ),
        ),
        Example(
            name="runc's init joining the container's namespaces as it starts it (eBPF sensor)",
            source="ebpf",
            fires=False,
            record=sensor_setns("runc:[1:CHILD]"),
        ),
        Example(
            name="runc joining the container's namespaces for an exec",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/runc", arguments="init",
                body=kprobe("__x64_sys_setns", {"int_arg": 5}, {"int_arg": 0x20000}),
            ),
        ),
        Example(
            name="nsenter by an administrator on the node",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/nsenter", arguments="-t 4242 -n ip addr", host=True),
        ),
    ],
)
