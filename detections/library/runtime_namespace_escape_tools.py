"""unshare, chroot or pivot_root in a container: new namespaces (a user namespace grants CAP_SYS_ADMIN inside it)
or a new root are the first moves of the container escapes that mount cgroups or the node's disk."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

TOOLS = frozenset({"unshare", "chroot", "pivot_root"})
#: The calls as sources name them: the syscall (eBPF, Falco), or the hooked kernel function (Tetragon kprobes).
CALLS = frozenset({"unshare", "chroot", "pivot_root"})
HOOKS = frozenset(f"__{arch}_sys_{call}" for arch in ("x64", "arm64") for call in ("chroot", "pivot_root"))
#: Container runtimes create the container's namespaces and root; runc does it as its init (``runc:[1:CHILD]``).
RUNTIMES = ("runc", "crun", "containerd-shim", "conmon", "youki", "runsc")


def call_name(event: Event) -> str:
    """unshare, chroot or pivot_root: the program run, or the syscall made."""
    if event.kind == "process.exec":
        program = program_name(event)
        return program if program in TOOLS else ""
    action = event.action.rpartition("_sys_")[2] if event.kind == "process.hook" else event.action
    return action if action in CALLS else ""


def escapes_namespaces(event: Event, params: dict[str, Any]) -> bool:
    if not (event.container.id or event.k8s.container_id) or not call_name(event):
        return False
    program = program_name(event)
    return not program.startswith(RUNTIMES) and program not in params["allowed_programs"]


def escape_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "call": call_name(event), "namespaces": event.target.name,
            "command": " ".join(event.actor.args), "where": container_label(event),
            "container": event.k8s.container_name or event.container.name, "image": event.k8s.image}


def sensor_unshare(comm: str) -> dict[str, Any]:
    """The eBPF sensor's record of unshare(CLONE_NEWUSER | CLONE_NEWNS) by ``comm`` in a pod."""
    return in_pod({"type": "ns_change", "time_ns": EXAMPLE_START_NS, "pid": 6200, "tid": 6200, "ppid": 6190,
                   "uid": 1000, "gid": 1000, "comm": comm, "cgroup_id": 7302, "call": "unshare",
                   "flags": 0x10020000, "namespaces": ["user", "mnt"], "fd": -1})


DETECTION = EventDetection(
    id="runtime.namespace_escape_tools",
    title="unshare, chroot or pivot_root in a container",
    alert_title="{program} called {call} in {where}",
    description=(
        "A process in a container ran unshare, chroot or pivot_root, or made those calls. An unprivileged "
        "process that unshares a user namespace holds CAP_SYS_ADMIN in it, which is what the cgroup "
        "release_agent and filesystem-context escapes (CVE-2022-0492, CVE-2022-0185) need; chroot into a mounted "
        "host disk or /proc/1/root gives a shell on the node's filesystem. Container runtimes setting up the "
        "container, and sandboxes listed in allowed_programs (browsers, rootless builders), are not reported."
    ),
    severity="high",
    mitre=["T1611", "T1610"],
    tags=["runtime", "privilege_escalation", "container_escape"],
    references=["https://attack.mitre.org/techniques/T1611/", "https://man7.org/linux/man-pages/man2/unshare.2.html"],
    false_positives=["Sandboxing programs not in allowed_programs (browsers' sandboxes, rootless image builders)."],
    kinds=["process.exec", "process.ns_change", "process.syscall", "process.hook"],
    exe_names={"process.exec": TOOLS},
    actions={"process.ns_change": ["unshare"], "process.syscall": ["chroot", "pivot_root"], "process.hook": HOOKS},
    params={"allowed_programs": ["chrome", "chromium", "chromium-browser", "headless_shell", "bwrap", "nsjail",
                                 "firejail", "buildkitd", "buildkit-runc", "rootlesskit", "buildah", "kaniko",
                                 "executor"]},
    match=escapes_namespaces,
    context=escape_context,
    dedup="{cluster}/{namespace}/{pod}/{where}/{call}/{program}",
    examples=[
        Example(
            name="unshare -Urm sh in a pod (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/unshare", arguments="-UrmC bash", parent="/bin/sh"),
        ),
        Example(
            name="an exploit unsharing a user and mount namespace (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=sensor_unshare("exploit"),
        ),
        Example(
            name="Falco: chroot into the node's root through /proc/1/root",
            source="falco",
            fires=True,
            record=falco_record("Custom chroot audit", "chroot",
                                {"proc.exepath": "/usr/sbin/chroot", "proc.name": "chroot",
                                 "proc.cmdline": "chroot /proc/1/root sh"}),
        ),
        Example(
            name="pivot_root syscall from a container process (Tetragon kprobe)",
            source="tetragon",
            fires=True,
            record=tetragon_record("process_kprobe", binary="/tmp/x",
                                   body=kprobe("__x64_sys_pivot_root", {"string_arg": "/mnt"},
                                               {"string_arg": "/mnt/old"})),
        ),
        Example(
            name="runc's init creating the container's namespaces (eBPF sensor)",
            source="ebpf",
            fires=False,
            record=sensor_unshare("runc:[1:CHILD]"),
        ),
        Example(
            name="chromium's sandbox in a headless-browser pod (eBPF sensor)",
            source="ebpf",
            fires=False,
            record=sensor_unshare("chrome"),
        ),
        Example(
            name="unshare run by an administrator on the node",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/unshare", arguments="-n ip a", host=True),
        ),
    ],
)
