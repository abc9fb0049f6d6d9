"""A container mounting a filesystem: with a node's block device, that is the node's disk inside the pod."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Container runtimes by program name. runc's init renames itself ``runc:[0:PARENT]``, ``runc:[1:CHILD]`` and
#: ``runc:[2:INIT]`` while it sets the container up (proc, mqueue, the root filesystem, pivot_root): those mounts
#: are the runtime's, made in the container's cgroup before the workload runs, and sensors that see no
#: executable path for a mount name the process by that name.
RUNTIMES = ("runc", "crun", "containerd-shim", "conmon", "youki", "runsc")
#: Block devices of a node's disks, as mount(8) takes them.
HOST_DEVICES = ("/dev/sd", "/dev/vd", "/dev/xvd", "/dev/nvme", "/dev/hd", "/dev/dm-", "/dev/mapper/", "/dev/root",
                "/dev/disk/")


def sensor_mount(comm: str, source: str, target: str, fstype: str) -> dict[str, Any]:
    """The eBPF sensor's record of a mount syscall (it names the process by its comm) in a pod's container."""
    return in_pod({"type": "mount", "time_ns": EXAMPLE_START_NS, "pid": 5120, "tid": 5120, "ppid": 5101,
                   "uid": 0, "gid": 0, "comm": comm, "cgroup_id": 7301, "flags": 0, "source": source,
                   "target": target, "fstype": fstype})


def is_runtime(program: str) -> bool:
    """The container runtime itself (``runc``, its init ``runc:[2:INIT]``, the shim…), not the workload."""
    return program.startswith(RUNTIMES)


def mounts_filesystem(event: Event) -> bool:
    """A mount syscall in a container (not by its runtime setting the container up), or the mount program given
    a node block device. A container without pod metadata is still a container."""
    if not (event.k8s.container_id or event.container.id):
        return False
    program = program_name(event)
    if event.kind == "fs.mount":
        return not is_runtime(program)
    return program == "mount" and any(arg.startswith(HOST_DEVICES) for arg in event.actor.args)


def mount_context(event: Event) -> dict[str, Any]:
    device = next((arg for arg in event.actor.args if arg.startswith(HOST_DEVICES)), "")
    return {"exe": event.actor.exe, "device": event.target.name or device, "mount_point": event.target.path,
            "command": " ".join(event.actor.args), "container": event.k8s.container_name, "image": event.k8s.image}


DETECTION = EventDetection(
    id="runtime.host_mount_in_container",
    title="Filesystem mounted from inside a container",
    alert_title="{program} mounted {device} in {namespace}/{pod}",
    description=(
        "A process in a container mounted a filesystem, or ran mount on a node block device. Only privileged "
        "containers (CAP_SYS_ADMIN) can, and mounting the node's disk gives read and write access to the node's "
        "root filesystem: kubelet credentials, other pods' data, and a path to running code on the node."
    ),
    severity="critical",
    mitre=["T1611"],
    tags=["runtime", "privilege_escalation", "container_escape"],
    references=["https://attack.mitre.org/techniques/T1611/", "https://falco.org/docs/rules/default-rules/"],
    false_positives=["Storage drivers (CSI node plugins) mounting volumes from privileged pods on purpose."],
    kinds=["fs.mount", "process.exec"],
    exe_names={"process.exec": ["mount"]},
    match=mounts_filesystem,
    context=mount_context,
    dedup="{cluster}/{namespace}/{pod}/{container}/{device}",
    examples=[
        Example(
            name="mount of the node's disk (Tetragon exec)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/bin/mount", arguments="/dev/sda1 /mnt/host", parent="/bin/bash"),
        ),
        Example(
            name="mount syscall in a container (Tetragon kprobe)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/bin/mount", arguments="-t ext4 /dev/nvme0n1p1 /host",
                body=kprobe("__x64_sys_mount", {"string_arg": "/dev/nvme0n1p1"}, {"string_arg": "/host"},
                            {"string_arg": "ext4"}, {"int_arg": 0}),
            ),
        ),
        Example(
            name="Falco: mount syscall in a container",
            source="falco",
            fires=True,
            record=falco_record(
                "Mount in container", "mount",
                {"proc.exepath": "/usr/bin/mount", "proc.name": "mount", "proc.cmdline": "mount /dev/xvda1 /mnt",
                 "evt.arg.dev": "/dev/xvda1", "evt.arg.dir": "/mnt", "evt.res": "SUCCESS"},
            ),
        ),
        Example(
            name="the workload's own mount of the node's disk (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=sensor_mount("mount", "/dev/nvme0n1p1", "/mnt/host", "ext4"),
        ),
        Example(
            name="busybox's mount applet given the node's disk (Falco)",
            source="falco",
            fires=True,
            record=falco_record(
                "Launch Privileged Container", "execve",
                {"proc.exepath": "/bin/busybox", "proc.name": "mount", "proc.cmdline": "mount /dev/sda1 /h"},
            ),
        ),
        Example(
            name="runc's init mounting proc while it sets the container up (eBPF sensor)",
            source="ebpf",
            fires=False,
            record=sensor_mount("runc:[2:INIT]", "proc", "/proc", "proc"),
        ),
        Example(
            name="runc's init mounting the container's root filesystem (eBPF sensor)",
            source="ebpf",
            fires=False,
            record=sensor_mount("runc:[2:INIT]", "/run/containerd/io.containerd.runtime.v2.task/k8s.io/3f1c/rootfs",
                                "/run/containerd/io.containerd.runtime.v2.task/k8s.io/3f1c/rootfs", ""),
        ),
        Example(
            name="listing mounts in a container",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/bin/mount", parent="/bin/sh"),
        ),
        Example(
            name="kubelet mounting a volume on the node",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/mount", arguments="-t tmpfs tmpfs /var/lib/kubelet/pods/x",
                host=True, body=kprobe("__x64_sys_mount", {"string_arg": "tmpfs"}, {"string_arg": "/var/lib/kubelet"}),
            ),
        ),
    ],
)
