"""A program directory changed at run time: a binary written, replaced, renamed or removed, or a directory made,
under /bin, /sbin, /usr/bin, /usr/local/bin or the library directories."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import IMAGE_BUILDERS, built_by_image_builder
from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Where a container sees the node's filesystem through a hostPath mount.
HOST_MOUNTS = ("/host", "/hostfs", "/rootfs", "/node", "/host-root")
BINARY_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/local/bin/", "/usr/local/sbin/", "/lib/",
               "/lib64/", "/usr/lib/", "/usr/lib64/", "/usr/local/lib/", "/boot/")
#: Package managers and language installers put programs there as their job.
INSTALLERS = frozenset({
    "dpkg", "apt", "apt-get", "unattended-upgr", "yum", "dnf", "microdnf", "rpm", "apk", "zypper", "pacman", "pip",
    "pip3", "npm", "gem", "cargo", "go", "install", "update-alternat", "ldconfig", "ldconfig.real", "snapd",
    "mkinitramfs", "update-initramf", "depmod", "kubelet", "containerd", "dockerd",
})
#: Syscalls that make a directory (``process.syscall`` events; the other changes are ``file.write``).
MKDIRS = ("mkdir", "mkdirat")


def node_path(path: str) -> str:
    for mount in HOST_MOUNTS:
        if path.startswith(mount + "/"):
            return path[len(mount) :]
    return path


def changed_binary_path(event: Event) -> str:
    """The path under a binary directory this write changes (either name of a rename), else ''."""
    for path in (event.target.path or event.file.path, event.file.other_path):
        if path and node_path(path).startswith(BINARY_DIRS):
            return path
    return ""


def changes_binaries(event: Event, params: Mapping[str, Any]) -> bool:
    if event.kind == "process.syscall" and event.action not in MKDIRS:
        return False
    path = changed_binary_path(event)
    if not path or program_name(event) in INSTALLERS:
        return False
    if node_path(path) == path and built_by_image_builder(event, params["builder_images"]):
        return False  # an image builder writing the image it builds, in its own root
    ancestors = {event.actor.parent_exe.rpartition("/")[2], event.actor.grandparent_exe.rpartition("/")[2]}
    return not ancestors & INSTALLERS  # a package's maintainer script


def binary_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    path = changed_binary_path(event)
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "file": path,
            "change": event.action, "through_host_mount": node_path(path) != path,
            "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.binary_dir_write",
    title="Program or library directory modified at run time",
    alert_title="{program} changed {file} ({change}) in {where}",
    description=(
        "A process other than a package manager wrote, replaced, renamed, removed or re-permissioned a file, or "
        "made a directory, under "
        "a program or library directory (/bin, /sbin, /usr/bin, /usr/local/bin, /lib, /usr/lib, /boot), in a "
        "container or on a node, directly or through a hostPath mount. Replacing a system binary (ps, ls, sshd) "
        "or a library is how rootkits and backdoors hide; in a container it is drift from the image. Image "
        "builders building an image in their own root (builder_images) are not reported."
    ),
    severity="high",
    mitre=["T1543", "T1036.005", "T1574"],
    tags=["runtime", "persistence", "defense_evasion", "drift"],
    references=["https://attack.mitre.org/techniques/T1036/005/", "https://falco.org/docs/rules/default-rules/"],
    false_positives=["Image builds running in pods: the builder images (kaniko, buildkit, buildah, podman) are not "
                     "reported in their own root (builder_images); entrypoints that install a binary at start."],
    params={"builder_images": IMAGE_BUILDERS},
    kinds=["file.write", "process.syscall"],
    actions={"process.syscall": MKDIRS},
    match=changes_binaries,
    context=binary_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{file}",
    examples=[
        Example(
            name="Falco: a file opened for writing under /usr/bin",
            source="falco",
            fires=True,
            record=falco_record(
                "Write below binary dir", "openat",
                {"proc.exepath": "/bin/cp", "proc.name": "cp", "proc.cmdline": "cp /tmp/ps /usr/bin/ps",
                 "fd.name": "/usr/bin/ps", "evt.arg.flags": "O_WRONLY|O_CREAT|O_TRUNC"},
                priority="Error",
            ),
        ),
        Example(
            name="Falco: a binary renamed into /bin",
            source="falco",
            fires=True,
            record=falco_record(
                "Modify binary dirs", "renameat2",
                {"proc.exepath": "/bin/mv", "proc.name": "mv", "proc.cmdline": "mv /tmp/x /bin/ls",
                 "fs.path.name": "/tmp/x", "fs.path.target": "/bin/ls"},
                priority="Error",
            ),
        ),
        Example(
            name="a binary renamed over /usr/bin/ps in a pod (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "file_change", "time_ns": EXAMPLE_START_NS, "pid": 7601, "tid": 7601,
                           "ppid": 7600, "uid": 0, "gid": 0, "comm": "mv", "cgroup_id": 7301, "call": "rename",
                           "mode": 0, "owner": -1, "group": -1, "path": "/tmp/ps", "other_path": "/usr/bin/ps"}),
        ),
        Example(
            name="Falco: a directory made under /usr/local/bin",
            source="falco",
            fires=True,
            record=falco_record(
                "Mkdir binary dirs", "mkdirat",
                {"proc.exepath": "/bin/mkdir", "proc.name": "mkdir", "proc.cmdline": "mkdir /usr/local/bin/.x",
                 "fs.path.name": "/usr/local/bin/.x"},
                priority="Error",
            ),
        ),
        Example(
            name="a kaniko build copying a binary into the image's /usr/local/bin (eBPF sensor)",
            source="ebpf",
            fires=False,
            record=in_pod({"type": "file_write", "time_ns": EXAMPLE_START_NS, "pid": 7603, "tid": 7603,
                           "ppid": 7600, "uid": 0, "gid": 0, "comm": "cp", "cgroup_id": 7301, "flags": 0o1101,
                           "mode": 0o755, "path": "/usr/local/bin/healthcheck", "repeats": 0},
                          namespace="ci", pod="kaniko-x7k2p", container="build",
                          image="gcr.io/kaniko-project/executor:v1.23.2-debug"),
        ),
        Example(
            name="a directory made in the application's data directory (eBPF sensor)",
            source="ebpf",
            fires=False,
            record=in_pod({"type": "file_change", "time_ns": EXAMPLE_START_NS, "pid": 7602, "tid": 7602,
                           "ppid": 7600, "uid": 0, "gid": 0, "comm": "app", "cgroup_id": 7301, "call": "mkdir",
                           "mode": 0o755, "owner": -1, "group": -1, "path": "/etc/app/cache", "other_path": ""}),
        ),
        Example(
            name="the node's sshd replaced through a hostPath mount (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/bin/cp", arguments="/tmp/sshd /host/usr/sbin/sshd",
                body=kprobe("security_file_permission", {"file_arg": {"path": "/host/usr/sbin/sshd"}}, {"int_arg": 2})),
        ),
        Example(
            name="apt-get installing a package",
            source="falco",
            fires=False,
            record=falco_record(
                "Write below binary dir", "openat",
                {"proc.exepath": "/usr/bin/dpkg", "proc.name": "dpkg", "proc.cmdline": "dpkg --unpack curl.deb",
                 "fd.name": "/usr/bin/curl.dpkg-new", "evt.arg.flags": "O_WRONLY|O_CREAT"},
                priority="Error",
            ),
        ),
        Example(
            name="writing the application's log",
            source="falco",
            fires=False,
            record=falco_record(
                "Custom file audit", "openat",
                {"proc.exepath": "/usr/sbin/nginx", "proc.name": "nginx", "fd.name": "/var/log/nginx/access.log",
                 "evt.arg.flags": "O_WRONLY|O_APPEND"},
            ),
        ),
    ],
)
