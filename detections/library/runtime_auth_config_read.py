"""sudoers or PAM configuration read by a program that does not log anyone in: working out who may become root and
how authentication is done, before abusing or changing it."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: What each file decides: who may run what as root, and how every login is authenticated.
AUTH_FILES = (("/etc/sudoers", "sudo rules"), ("/etc/pam.conf", "PAM configuration"),
              ("/etc/pam.d/", "PAM configuration"), ("/etc/security/", "PAM configuration"))
_PREFIXES = tuple(prefix for prefix, _ in AUTH_FILES)
#: Programs that authenticate or switch users (every PAM application reads /etc/pam.d), and their managers.
AUTHENTICATORS = [
    "sudo", "sudoedit", "visudo", "sudoreplay", "su", "runuser", "login", "sshd", "passwd", "chpasswd", "chsh",
    "chfn", "chage", "newgrp", "useradd", "usermod", "userdel", "groupadd", "groupmod", "newusers", "unix_chkpwd",
    "cron", "crond", "atd", "systemd", "systemd-logind", "(sd-pam)", "systemd-user-se", "polkitd", "pkexec",
    "gdm-session-wor", "lightdm", "vlock", "screen", "dpkg", "apt", "apt-get", "yum", "dnf", "rpm", "apk",
    "pam-auth-update", "authselect", "cloud-init", "google_guest_ag", "google_accounts", "waagent", "sssd",
]


def auth_file(event: Event) -> str:
    path = event.target.path or event.file.path
    return path if path.startswith(_PREFIXES) else ""


def reads_auth_config(event: Event, params: dict[str, Any]) -> bool:
    if not auth_file(event) or "write" in event.file.access:
        return False  # writes are runtime.node_persistence_write's and runtime.etc_write_in_container's
    return program_name(event) not in params["allowed_programs"]


def auth_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    path = auth_file(event)
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "file": path,
            "what": next(what for prefix, what in AUTH_FILES if path.startswith(prefix)),
            "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.auth_config_read",
    title="sudoers or PAM configuration read by an unexpected program",
    alert_title="{program} read the {what} ({file}) in {where}",
    description=(
        "A program that neither authenticates users nor manages accounts read /etc/sudoers, /etc/sudoers.d, "
        "/etc/pam.conf, /etc/pam.d or /etc/security. sudo, su, sshd, login, cron and the other PAM applications "
        "read these at every login; anything else reading them (a web server, a script, cat) is working out who "
        "may become root and how logins are checked, before abusing a sudo rule or planting a PAM module. "
        "Containers and nodes alike; writes are reported by the persistence and /etc write detections."
    ),
    severity="medium",
    mitre=["T1548.003", "T1556.003", "T1082"],
    tags=["runtime", "discovery", "privilege_escalation", "credential_access"],
    references=["https://attack.mitre.org/techniques/T1548/003/", "https://attack.mitre.org/techniques/T1556/003/"],
    false_positives=["Compliance scanners and configuration management that are not in allowed_programs."],
    kinds=["file.open"],
    paths=[f"{prefix}*" for prefix in _PREFIXES],
    params={"allowed_programs": AUTHENTICATORS},
    match=reads_auth_config,
    context=auth_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{exe}/{file}",
    examples=[
        Example(
            name="Falco: cat reading sudoers in a container",
            source="falco",
            fires=True,
            record=falco_record("Read sensitive file untrusted", "openat",
                                {"proc.exepath": "/usr/bin/cat", "proc.name": "cat", "proc.cmdline": "cat /etc/sudoers",
                                 "fd.name": "/etc/sudoers", "evt.arg.flags": "O_RDONLY"}),
        ),
        Example(
            name="a web server reading a PAM file on a node (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record("process_kprobe", binary="/usr/sbin/nginx", host=True,
                                   body=kprobe("security_file_permission", {"file_arg": {"path": "/etc/pam.d/sshd"}},
                                               {"int_arg": 4})),
        ),
        Example(
            name="a python process reading sudoers.d (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "open", "time_ns": EXAMPLE_START_NS, "pid": 4900, "tid": 4900, "ppid": 4890,
                           "uid": 0, "gid": 0, "comm": "python3", "cgroup_id": 7307,
                           "path": "/etc/sudoers.d/90-cloud-init-users", "flags": 0, "mode": 0}),
        ),
        Example(
            name="sudo reading its rules",
            source="falco",
            fires=False,
            record=falco_record("Custom open audit", "openat",
                                {"proc.exepath": "/usr/bin/sudo", "proc.name": "sudo", "fd.name": "/etc/sudoers",
                                 "evt.arg.flags": "O_RDONLY"}, host=True),
        ),
        Example(
            name="sshd reading its PAM stack",
            source="falco",
            fires=False,
            record=falco_record("Custom open audit", "openat",
                                {"proc.exepath": "/usr/sbin/sshd", "proc.name": "sshd", "fd.name": "/etc/pam.d/sshd",
                                 "evt.arg.flags": "O_RDONLY"}, host=True),
        ),
    ],
)
