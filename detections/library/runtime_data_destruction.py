"""Disks or bulk data destroyed: shred, wipefs, mkfs over a device, dd of zeros onto a disk."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

WIPERS = frozenset({"shred", "wipefs", "wipe", "srm", "blkdiscard", "sfill", "sdelete"})
FORMATTERS = frozenset({"mkfs", "mke2fs", "mkfs.ext2", "mkfs.ext3", "mkfs.ext4", "mkfs.xfs", "mkfs.btrfs",
                        "mkfs.vfat", "mkswap"})
#: Storage provisioners format new volumes as their job (CSI node plugins, the kubelet's mounter).
PROVISIONERS = ("csi", "kubelet", "safe_format", "mount", "cloud-init", "ignition", "systemd-makefs",
                "systemd-growfs", "kubeadm", "lvm")


def destroys(event: Event) -> str:
    """The destructive tool the event runs ('' for none)."""
    program = program_name(event)
    args = event.actor.args[1:]
    if program in WIPERS:
        return program
    if program in FORMATTERS or program.startswith("mkfs."):
        ancestors = f"{event.actor.parent_exe} {event.actor.grandparent_exe}".lower()
        return "" if any(name in ancestors for name in PROVISIONERS) else program
    if program == "dd":
        source = next((arg[3:] for arg in args if arg.startswith("if=")), "")
        target = next((arg[3:] for arg in args if arg.startswith("of=")), "")
        return "dd" if source in ("/dev/zero", "/dev/urandom", "/dev/random") and target.startswith("/dev/") else ""
    return ""


def destruction_context(event: Event) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "tool": destroys(event), "command": " ".join(event.actor.args),
            "parent_exe": event.actor.parent_exe,
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.data_destruction",
    title="Disk or bulk data destroyed",
    alert_title="{tool} run in {where}: {command}",
    description=(
        "A wiping tool (shred, wipefs, blkdiscard), a filesystem formatter (mkfs, mke2fs) not run by a storage "
        "provisioner, or dd writing zeros or random data onto a device ran in a container or on a node. "
        "Destroying data is the last stage of an attack (ransom, sabotage) and a way to erase evidence."
    ),
    severity="high",
    mitre=["T1485", "T1561"],
    tags=["runtime", "impact"],
    references=["https://attack.mitre.org/techniques/T1485/", "https://attack.mitre.org/techniques/T1561/"],
    false_positives=["Storage tooling outside the known provisioners that formats or wipes volumes on purpose."],
    kinds=["process.exec"],
    exe_names=WIPERS | FORMATTERS | {"dd"},
    match=lambda event: bool(destroys(event)),
    context=destruction_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{tool}",
    examples=[
        Example(
            name="shred of a database file (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/shred", arguments="-n 3 -u /var/lib/postgresql/data/base/1",
                                   parent="/bin/sh"),
        ),
        Example(
            name="Falco: dd of zeros onto the node's disk",
            source="falco",
            fires=True,
            record=falco_record(
                "Remove Bulk Data from Disk", "execve",
                {"proc.exepath": "/bin/dd", "proc.name": "dd", "proc.cmdline": "dd if=/dev/zero of=/dev/sda bs=1M"},
            ),
        ),
        Example(
            name="a CSI node plugin formatting a new volume",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/sbin/mkfs.ext4", arguments="-F /dev/nvme1n1",
                                   parent="/bin/aws-ebs-csi-driver"),
        ),
        Example(
            name="dd copying a file",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/bin/dd", arguments="if=/data/a of=/backup/a bs=4M"),
        ),
    ],
)
