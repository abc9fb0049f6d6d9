"""A container opening one of the node's disks as a raw block device: every file on it, the node's included, read
or written past every permission and mount. Only privileged containers can, which is why escapes use it."""

import re
from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Disks and partitions as the kernel names their device nodes (SCSI/SATA, NVMe, virtio, Xen, IDE, MMC, device
#: mapper and LVM, software RAID).
BLOCK_DEVICE = re.compile(r"^/dev/(sd[a-z]+\d*|nvme\d+n\d+(p\d+)?|vd[a-z]+\d*|xvd[a-z]+\d*|hd[a-z]+\d*|"
                          r"mmcblk\d+(p\d+)?|dm-\d+|mapper/.+|md\d+)$")
#: Disk debuggers opening a device are runtime.debugfs_in_container's.
DISK_DEBUGGERS = frozenset({"debugfs", "xfs_db", "fsdb"})
#: Storage plugins format, check and grow the volumes they attach (CSI node plugins run these in containers).
STORAGE_TOOLS = ["blkid", "mkfs", "mkfs.ext4", "mkfs.xfs", "mke2fs", "e2fsck", "fsck", "fsck.ext4", "xfs_repair",
                 "resize2fs", "xfs_growfs", "mount", "umount", "lsblk", "udevadm", "lvm", "cryptsetup", "multipath",
                 "iscsiadm", "blockdev", "nvme", "smartctl", "node-problem-detector"]


def device_path(event: Event) -> str:
    path = event.target.path or event.file.path
    return path if BLOCK_DEVICE.match(path) else ""


def opens_disk(event: Event, params: dict[str, Any]) -> bool:
    if not (event.container.id or event.k8s.container_id) or not device_path(event):
        return False
    program = program_name(event)
    return program not in DISK_DEBUGGERS and program not in params["allowed_programs"]


def disk_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "device": device_path(event),
            "how": "write" if event.kind == "file.write" else "read", "command": " ".join(event.actor.args),
            "where": container_label(event), "image": event.k8s.image or event.container.image}


DETECTION = EventDetection(
    id="runtime.block_device_access_in_container",
    title="Node disk opened as a block device in a container",
    alert_title="{program} opened {device} ({how}) in {where}",
    description=(
        "A process in a container opened a disk or partition device (/dev/sda1, /dev/nvme0n1p1, /dev/vda, a "
        "device-mapper volume). A privileged container sees the node's disks; reading one gives every file on "
        "the node (kubelet's credentials, other pods' volumes, /etc/shadow) and writing one changes them past "
        "every permission: a container escape. Storage plugins that format and grow volumes, and disk debuggers "
        "(reported by runtime.debugfs_in_container), are not reported here."
    ),
    severity="high",
    mitre=["T1611", "T1006"],
    tags=["runtime", "container_escape", "privilege_escalation"],
    references=["https://attack.mitre.org/techniques/T1006/", "https://attack.mitre.org/techniques/T1611/"],
    false_positives=["CSI node plugins and backup agents using tools not in allowed_programs."],
    kinds=["file.open", "file.write"],
    paths=["/dev/*"],
    params={"allowed_programs": STORAGE_TOOLS},
    match=opens_disk,
    context=disk_context,
    dedup="{cluster}/{namespace}/{pod}/{where}/{device}",
    examples=[
        Example(
            name="Falco: dd reading the node's disk from a privileged container",
            source="falco",
            fires=True,
            record=falco_record("Custom device audit", "openat",
                                {"proc.exepath": "/bin/dd", "proc.name": "dd", "proc.cmdline": "dd if=/dev/sda1",
                                 "fd.name": "/dev/sda1", "evt.arg.flags": "O_RDONLY"}),
        ),
        Example(
            name="python opening an NVMe partition (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record("process_kprobe", binary="/usr/bin/python3",
                                   body=kprobe("security_file_permission",
                                               {"file_arg": {"path": "/dev/nvme0n1p1"}}, {"int_arg": 4})),
        ),
        Example(
            name="a CSI plugin's blkid probing a volume (eBPF sensor)",
            source="ebpf",
            fires=False,
            record=in_pod({"type": "open", "time_ns": EXAMPLE_START_NS, "pid": 5400, "tid": 5400, "ppid": 5390,
                           "uid": 0, "gid": 0, "comm": "blkid", "cgroup_id": 7311, "path": "/dev/xvdba",
                           "flags": 0, "mode": 0}),
        ),
        Example(
            name="a terminal device is not a disk",
            source="falco",
            fires=False,
            record=falco_record("Custom device audit", "openat",
                                {"proc.exepath": "/bin/sh", "proc.name": "sh", "fd.name": "/dev/tty",
                                 "evt.arg.flags": "O_RDWR"}),
        ),
    ],
)
