"""debugfs run in a container: the filesystem debugger reads and writes a disk's files directly, past every
permission, so from a privileged container it edits the node's disk."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

DISK_DEBUGGERS = frozenset({"debugfs", "xfs_db", "fsdb"})


def runs_debugger(event: Event) -> bool:
    return bool(event.container.id or event.k8s.container_id) and program_name(event) in DISK_DEBUGGERS


def debugfs_context(event: Event) -> dict[str, Any]:
    device = next((arg for arg in event.actor.args[1:] if arg.startswith("/dev/")), "")
    return {"exe": event.actor.exe, "tool": program_name(event), "device": device,
            "command": " ".join(event.actor.args), "where": container_label(event),
            "image": event.k8s.image or event.container.image}


DETECTION = EventDetection(
    id="runtime.debugfs_in_container",
    title="Filesystem debugger in a container",
    alert_title="{tool} run in {where} {device}",
    description=(
        "debugfs (or xfs_db) ran in a container. It opens a block device and reads or changes any file on it "
        "regardless of permissions; in a privileged container, `debugfs /dev/sda1` reads the node's /etc/shadow "
        "and kubelet credentials or writes its cron: a well-known escape that needs no mount."
    ),
    severity="high",
    mitre=["T1611", "T1006"],
    tags=["runtime", "privilege_escalation", "container_escape"],
    references=["https://attack.mitre.org/techniques/T1611/", "https://attack.mitre.org/techniques/T1006/"],
    false_positives=["Storage recovery done by an operator from a debug pod."],
    kinds=["process.exec"],
    exe_names=DISK_DEBUGGERS,
    match=runs_debugger,
    context=debugfs_context,
    dedup="{cluster}/{namespace}/{pod}/{where}/{tool}",
    examples=[
        Example(
            name="debugfs on the node's disk (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/sbin/debugfs", arguments="-w /dev/nvme0n1p1", parent="/bin/bash"),
        ),
        Example(
            name="Falco: debugfs launched in a privileged container",
            source="falco",
            fires=True,
            record=falco_record(
                "Debugfs Launched in Privileged Container", "execve",
                {"proc.exepath": "/usr/sbin/debugfs", "proc.name": "debugfs", "proc.cmdline": "debugfs /dev/sda1"},
            ),
        ),
        Example(
            name="fsck checking a volume in a container",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/sbin/fsck.ext4", arguments="-n /dev/nvme1n1"),
        ),
        Example(
            name="debugfs on the node itself",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/sbin/debugfs", arguments="-R stats /dev/sda1", host=True),
        ),
    ],
)
