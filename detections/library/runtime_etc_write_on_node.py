"""A file under a node's /etc changed by a program that does not manage the node's configuration: an intruder or
a stray script reconfiguring the node (name resolution, accounts, services)."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS

#: Files under /etc that decide what runs or who logs in, and the kubelet's: reported at high by
#: runtime.node_persistence_write and runtime.static_pod_manifest_write.
CONTROL_PREFIXES = ("/etc/cron", "/etc/anacrontab", "/etc/systemd/", "/etc/ld.so.preload", "/etc/ld.so.conf",
                    "/etc/profile", "/etc/bash.bashrc", "/etc/bashrc", "/etc/zsh/", "/etc/csh.", "/etc/environment",
                    "/etc/sudoers", "/etc/rc", "/etc/init.d/", "/etc/update-motd.d/", "/etc/pam.d/", "/etc/apt/",
                    "/etc/yum.repos.d/", "/etc/zypp/", "/etc/apk/", "/etc/kubernetes/", "/etc/default/kubelet",
                    "/etc/sysconfig/kubelet")
#: Programs that manage a node's /etc (process names as the kernel cuts them to 15 characters).
MANAGERS = [
    "dpkg", "apt", "apt-get", "unattended-upgr", "yum", "dnf", "microdnf", "rpm", "apk", "zypper", "pacman", "snapd",
    "systemd", "systemctl", "systemd-resolve", "systemd-network", "systemd-timesyn", "systemd-hostnam",
    "systemd-tmpfile", "systemd-sysuser", "systemd-machine", "NetworkManager", "dhclient", "dhcpcd", "resolvconf",
    "netplan", "chronyd", "ntpd", "hwclock", "ldconfig", "ldconfig.real", "update-ca-certi", "update-alternat",
    "cloud-init", "kubelet", "kubeadm", "containerd", "dockerd", "useradd", "usermod", "userdel", "groupadd",
    "groupmod", "groupdel", "passwd", "chpasswd", "chage", "gpasswd", "newusers", "vipw", "visudo", "ansible",
    "puppet", "chef-client", "salt-minion", "google_guest_ag", "google_accounts", "waagent", "amazon-ssm-agen",
    "iscsid", "multipathd", "lvm", "mdadm", "sshd", "ssh-keygen",
]


def etc_path(event: Event) -> str:
    path = event.target.path or event.file.path
    if not path.startswith("/etc/") or path.startswith(CONTROL_PREFIXES):
        return ""
    return path


def writes_node_etc(event: Event, params: dict[str, Any]) -> bool:
    if event.container.id or event.k8s.container_id or not etc_path(event):
        return False  # in a container: runtime.etc_write_in_container's
    managers = params["allowed_programs"]
    lineage = (program_name(event), event.actor.parent_exe.rpartition("/")[2],
               event.actor.grandparent_exe.rpartition("/")[2])
    return not any(name in managers for name in lineage)  # a manager, or its helper or maintainer script


def etc_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "file": etc_path(event), "change": event.action,
            "command": " ".join(event.actor.args), "parent_exe": event.actor.parent_exe, "auid": event.actor.auid,
            "node": event.node}


def sensor_write(comm: str, path: str) -> dict[str, Any]:
    """The eBPF sensor's record of ``comm`` opening ``path`` to write on the node."""
    return {"type": "file_write", "time_ns": EXAMPLE_START_NS, "pid": 5200, "tid": 5200, "ppid": 5190, "uid": 0,
            "gid": 0, "comm": comm, "cgroup_id": 1, "path": path, "flags": 0o1101, "mode": 0o644, "node": "worker-1"}


DETECTION = EventDetection(
    id="runtime.etc_write_on_node",
    title="File under a node's /etc modified",
    alert_title="{program} modified {file} on node {node}",
    description=(
        "A process on a node, outside any container, wrote a file under /etc and neither it nor its parent is a "
        "package manager, configuration-management agent, account tool or the node's own network, time and "
        "boot services. Nodes are configured when they are built; a change later is an intruder redirecting name "
        "resolution (/etc/hosts), adding trust (/etc/ssl) or reconfiguring services. Low, because operators do "
        "edit nodes; files that run code or grant access are reported at high by runtime.node_persistence_write."
    ),
    severity="low",
    mitre=["T1565.001", "T1543"],
    tags=["runtime", "persistence", "defense_evasion", "node"],
    references=["https://attack.mitre.org/techniques/T1565/001/"],
    false_positives=["Operators editing configuration by hand; agents not in allowed_programs."],
    kinds=["file.write"],
    paths=["/etc/*"],
    params={"allowed_programs": MANAGERS},
    match=writes_node_etc,
    context=etc_context,
    dedup="{cluster}/{node}/{file}",
    examples=[
        Example(name="a script rewriting the node's /etc/hosts (eBPF sensor)", source="ebpf", fires=True,
                record=sensor_write("python3", "/etc/hosts")),
        Example(
            name="Falco: a certificate added to the node's trust store by cp",
            source="falco",
            fires=True,
            record=falco_record("Write below etc", "openat",
                                {"proc.exepath": "/bin/cp", "proc.name": "cp", "proc.pname": "bash",
                                 "fd.name": "/etc/ssl/certs/evil.pem", "evt.arg.flags": "O_WRONLY|O_CREAT|O_TRUNC"},
                                priority="Error", host=True),
        ),
        Example(name="systemd-resolved writing resolv.conf", source="ebpf", fires=False,
                record=sensor_write("systemd-resolve", "/etc/resolv.conf")),
        Example(name="a cron file (runtime.node_persistence_write's)", source="ebpf", fires=False,
                record=sensor_write("python3", "/etc/cron.d/x")),
        Example(
            name="a package's maintainer script (Falco)",
            source="falco",
            fires=False,
            record=falco_record("Write below etc", "openat",
                                {"proc.exepath": "/bin/sed", "proc.name": "sed", "proc.pexepath": "/usr/bin/dpkg",
                                 "proc.pname": "dpkg", "fd.name": "/etc/default/grub",
                                 "evt.arg.flags": "O_WRONLY|O_CREAT|O_TRUNC"}, host=True),
        ),
    ],
)
