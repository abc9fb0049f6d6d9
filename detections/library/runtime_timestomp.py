"""Timestomping: a file's times set to a chosen moment (``touch -d``, ``touch -r``, utimensat with explicit
times), so a planted binary or edited configuration looks as old as its neighbours."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import tetragon_record

#: The calls that set a file's times (the eBPF sensor records them on watched paths only with explicit times,
#: naming the times in ``target.name``: ``mtime=<UTC time>`` or ``atime``).
TIME_CALLS = frozenset({"utimensat", "utimes", "futimesat", "utime"})
#: Programs that copy a file's times as their job: package managers, archivers and copiers preserving times
#: (dpkg, tar x, cp -p, rsync -t, install -p). An intruder's touch is not among them.
PRESERVERS = frozenset({
    "dpkg", "apt", "apt-get", "unattended-upgr", "rpm", "yum", "dnf", "microdnf", "apk", "zypper", "pacman", "tar",
    "gtar", "bsdtar", "cpio", "unzip", "cp", "mv", "rsync", "install", "pip", "pip3", "npm", "gem", "ldconfig",
    "containerd", "dockerd", "kubelet", "systemd", "systemd-tmpfile", "chronyd", "logrotate",
})
#: touch's short options that set times from a date, a timestamp or another file (-d, -t, -r), also in a
#: cluster (``-cd``); the long forms are matched by their names.
TOUCH_TIME_OPTIONS = frozenset("dtr")
TOUCH_LONG_OPTIONS = ("--date", "--reference")


def touch_sets_times(args: list[str]) -> bool:
    """Whether touch's arguments set explicit times (not "now")."""
    for arg in args:
        if arg == "--":
            return False
        if arg.startswith(TOUCH_LONG_OPTIONS):
            return True
        if arg.startswith("-") and not arg.startswith("--") and TOUCH_TIME_OPTIONS & set(arg[1:]):
            return True
    return False


def stomped(event: Event) -> str:
    """How the event sets explicit times: ``touch`` (the command, in a container), the call's name (a watched
    file's times set by a program whose job is not to preserve them), or '' for neither."""
    if event.kind == "process.exec":
        in_container = bool(event.container.id or event.k8s.container_id)
        touches = program_name(event) == "touch" and touch_sets_times(event.actor.args[1:])
        return "touch" if in_container and touches else ""
    explicit = event.target.name.startswith("mtime=") or event.target.name == "atime"
    if event.action not in TIME_CALLS or not explicit or program_name(event) in PRESERVERS:
        return ""
    return event.action


def timestomp_context(event: Event) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "how": stomped(event),
            "file": event.target.path or event.file.path or " ".join(event.actor.args[1:]),
            "times": event.target.name if event.kind == "file.write" else "", "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


def _utimensat(comm: str, path: str, mtime: int) -> dict[str, Any]:
    """The eBPF sensor's record of explicit times set on a watched path."""
    return in_pod({"type": "file_change", "time_ns": EXAMPLE_START_NS, "pid": 7801, "tid": 7801, "ppid": 7800,
                   "uid": 0, "gid": 0, "comm": comm, "cgroup_id": 7301, "call": "utimensat", "mode": 0,
                   "owner": -1, "group": -1, "path": path, "other_path": "", "mtime": mtime})


DETECTION = EventDetection(
    id="runtime.timestomp",
    title="File times set to a chosen moment (timestomping)",
    alert_title="{program} set the times of {file} ({how}) in {where}",
    description=(
        "A program set a file's access or modification time to a chosen moment instead of now: touch -d, -t or "
        "-r in a container, or utimensat/utimes with explicit times on a watched path (/etc, binary and library "
        "directories, root's home) by a program that is not a package manager, archiver or copier preserving "
        "times. Intruders backdate the binaries they plant and the configuration they edit so that a listing by "
        "time, or a forensic timeline, passes over them."
    ),
    severity="medium",
    mitre=["T1070.006"],
    tags=["runtime", "defense_evasion"],
    references=["https://attack.mitre.org/techniques/T1070/006/",
                "https://man7.org/linux/man-pages/man2/utimensat.2.html"],
    false_positives=["Build steps that pin file times for reproducible images (touch -d @SOURCE_DATE_EPOCH) run in "
                     "a container; configuration tools that copy a template's times."],
    kinds=["file.write", "process.exec"],
    exe_names={"process.exec": {"touch", "busybox"}},
    match=lambda event: bool(stomped(event)),
    context=timestomp_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{program}/{file}",
    examples=[
        Example(
            name="a planted binary backdated in a pod (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=_utimensat("touch", "/usr/bin/kworkerd", 1_546_300_800),
        ),
        Example(
            name="touch -r copying /bin/ls's times onto a dropped file (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/touch", arguments="-r /bin/ls /usr/bin/kworkerd"),
        ),
        Example(
            name="touch -cd backdating a cron file (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/touch", arguments="-cd '2019-01-01 00:00' /etc/cron.d/sync"),
        ),
        Example(
            name="touch -d pinning times in a build on the node (Tetragon)",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/touch", arguments="-d @0 build/out.tar", host=True),
        ),
        Example(
            name="dpkg setting an unpacked binary's times (eBPF sensor)",
            source="ebpf",
            fires=False,
            record=_utimensat("dpkg", "/usr/bin/top", 1_546_300_800),
        ),
        Example(
            name="an ordinary touch (Tetragon)",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/touch", arguments="/tmp/ready"),
        ),
    ],
)
