"""A regular file created directly under /dev: rootkits and implants hide their files among device nodes, where
nobody looks."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Files under /dev that programs open with O_CREAT as a matter of course.
ORDINARY = frozenset({"/dev/null", "/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/random", "/dev/urandom",
                      "/dev/console", "/dev/kmsg", "/dev/zero", "/dev/full", "/dev/ptmx", "/dev/tty", "/dev/log"})
#: Device managers and the container runtime create entries there as their job.
DEVICE_MANAGERS = frozenset({"udevd", "systemd-udevd", "blkid", "rename_device", "update_engine", "sgdisk",
                             "systemd", "kubelet", "containerd", "dockerd", "lvm", "dmeventd", "multipathd"})


def created_in_dev(event: Event) -> str:
    """The file created directly in /dev ('' for anything else)."""
    path = event.target.path or event.file.path
    if "create" not in event.file.access or path.rpartition("/")[0] != "/dev":
        return ""
    if path in ORDINARY or path.startswith(("/dev/tty", "/dev/pts")):
        return ""
    program = program_name(event)
    return "" if program in DEVICE_MANAGERS or program.startswith(("runc", "crun")) else path


def dev_context(event: Event) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "file": created_in_dev(event),
            "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.file_created_in_dev",
    title="File created under /dev",
    alert_title="{program} created {file} in {where}",
    description=(
        "A process other than a device manager created a file directly under /dev, in a container or on a node. "
        "/dev holds device nodes made by udev and the container runtime; a regular file there is a hiding place "
        "for implants and their configuration (rootkits have used /dev for decades)."
    ),
    severity="medium",
    mitre=["T1564.001", "T1543"],
    tags=["runtime", "defense_evasion", "persistence"],
    references=["https://attack.mitre.org/techniques/T1564/001/"],
    false_positives=["Drivers' installers creating device configuration files under /dev."],
    kinds=["file.write"],
    paths=["/dev/*"],
    match=lambda event: bool(created_in_dev(event)),
    context=dev_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{file}",
    examples=[
        Example(
            name="Falco: a file created below /dev",
            source="falco",
            fires=True,
            record=falco_record(
                "Create files below dev", "openat",
                {"proc.exepath": "/tmp/x", "proc.name": "x", "fd.name": "/dev/.udev-cache",
                 "evt.arg.flags": "O_WRONLY|O_CREAT"},
                host=True, priority="Error",
            ),
        ),
        Example(
            name="a file created under /dev in a container (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/bin/sh", arguments="-c echo x > /dev/.cfg",
                body=kprobe("__x64_sys_openat", {"int_arg": -100}, {"string_arg": "/dev/.cfg"}, {"int_arg": 0o101})),
        ),
        Example(
            name="writing to /dev/null",
            source="falco",
            fires=False,
            record=falco_record(
                "Create files below dev", "openat",
                {"proc.exepath": "/bin/sh", "proc.name": "sh", "fd.name": "/dev/null",
                 "evt.arg.flags": "O_WRONLY|O_CREAT"},
            ),
        ),
        Example(
            name="a file in /dev/shm (a directory below /dev)",
            source="falco",
            fires=False,
            record=falco_record(
                "Custom file audit", "openat",
                {"proc.exepath": "/usr/bin/python3", "proc.name": "python3", "fd.name": "/dev/shm/pym-1",
                 "evt.arg.flags": "O_RDWR|O_CREAT"},
            ),
        ),
    ],
)
