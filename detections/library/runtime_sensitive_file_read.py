"""/etc/shadow or a service-account token read by a process with no business reading it."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

SHADOW_FILES = frozenset({"/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-"})
#: Programs that read the password hashes as part of logging someone in or changing accounts: OpenSSH 9.8+ checks
#: passwords in its per-connection sshd-session, systemd 255+ runs units' PAM sessions in systemd-executor, and
#: cron and atd run PAM's account checks for each job (Falco's users report each of them). ``shadow_readers`` in the
#: tuning file replaces the list.
SHADOW_READERS = sorted({
    "login", "sshd", "sshd-session", "sshd-auth", "su", "sudo", "runuser", "passwd", "chpasswd", "chage",
    "unix_chkpwd", "useradd", "usermod", "userdel", "groupadd", "groupmod", "gpasswd", "newgrp", "sg", "pwck", "grpck",
    "vipw", "newusers", "systemd", "systemd-logind", "systemd-executor", "shadowconfig", "cron", "crond", "atd",
})
#: Where kubelet mounts service-account tokens (``/var/run`` is ``/run``): the default, EKS's IRSA and
#: projected-volume tokens.
TOKEN_DIRS = ("/run/secrets/kubernetes.io/serviceaccount/", "/run/secrets/eks.amazonaws.com/serviceaccount/",
              "/run/secrets/tokens/")
#: Tools people and scripts use to look at or copy a file: an application reads its token through its
#: Kubernetes client library, not through these.
TOKEN_SNOOPERS = frozenset({
    "cat", "head", "tail", "less", "more", "base64", "xxd", "od", "hexdump", "strings", "grep", "awk", "sed",
    "cp", "tar", "dd", "vi", "vim", "nano", "tee", "curl", "wget", "nc", "ncat", "sh", "bash", "dash", "zsh",
})


def sensitive_kind(path: str) -> str:
    """``shadow`` or ``service-account token`` for a sensitive path, '' otherwise."""
    if path in SHADOW_FILES:
        return "shadow"
    path = path[4:] if path.startswith("/var/run/") else path
    if path.startswith(TOKEN_DIRS) and path.rpartition("/")[2] == "token":
        return "service-account token"
    return ""


def read_path(event: Event) -> str:
    """The sensitive file this event reads: the opened file, or a file named on a reading tool's command line."""
    if event.kind == "file.open":
        return event.target.path if sensitive_kind(event.target.path) else ""
    if program_name(event) in TOKEN_SNOOPERS:
        return next((arg for arg in event.actor.args if sensitive_kind(arg)), "")
    return ""


def unexpected_read(event: Event, params: Mapping[str, Any]) -> bool:
    path = read_path(event)
    if not path:
        return False
    program = program_name(event)
    if sensitive_kind(path) == "shadow":
        return program not in params["shadow_readers"]
    return program in TOKEN_SNOOPERS


def read_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    path = read_path(event)
    return {"exe": event.actor.exe, "file": path, "what": sensitive_kind(path), "command": " ".join(event.actor.args),
            "container": event.k8s.container_name, "node": event.node}


DETECTION = EventDetection(
    id="runtime.sensitive_file_read",
    title="Password hashes or a service-account token read by an unexpected process",
    alert_title="{program} read {what} {file} in {namespace}/{pod} on {node}",
    description=(
        "/etc/shadow was read by something other than the login and account tools, or a mounted Kubernetes "
        "service-account token was read by a shell or file tool rather than by the application's client library. "
        "Password hashes are cracked offline; a token is the pod's identity against the API server, and stealing "
        "it is the usual first step from a compromised pod into the cluster."
    ),
    severity="high",
    mitre=["T1003.008", "T1528", "T1552.001"],
    tags=["runtime", "credential_access"],
    references=["https://attack.mitre.org/techniques/T1528/", "https://attack.mitre.org/techniques/T1003/008/"],
    false_positives=["Operators inspecting a token while debugging RBAC; backup agents reading /etc (add them to "
                     "shadow_readers); scripts that read their own pod's token with cat (except the pod in the "
                     "tuning file)."],
    kinds=["file.open", "process.exec"],
    paths={"file.open": ["*/token", *SHADOW_FILES]},
    exe_names={"process.exec": TOKEN_SNOOPERS},
    params={"shadow_readers": SHADOW_READERS},
    match=unexpected_read,
    context=read_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{exe}/{file}",
    examples=[
        Example(
            name="cat of the service-account token (Tetragon exec)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/bin/cat", arguments="/var/run/secrets/kubernetes.io/serviceaccount/token",
                                   parent="/bin/sh"),
        ),
        Example(
            name="/etc/shadow opened by python (Tetragon kprobe)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/python3", arguments="-c open('/etc/shadow').read()",
                body=kprobe("security_file_permission", {"file_arg": {"path": "/etc/shadow"}}, {"int_arg": 4}),
            ),
        ),
        Example(
            name="Falco: read sensitive file untrusted",
            source="falco",
            fires=True,
            record=falco_record(
                "Read sensitive file untrusted", "openat",
                {"proc.exepath": "/usr/bin/head", "proc.name": "head", "proc.cmdline": "head -c 64 /etc/shadow",
                 "fd.name": "/etc/shadow", "evt.is_open_read": True, "evt.arg.flags": "O_RDONLY"},
            ),
        ),
        Example(
            name="the application reading its token through its client library",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/local/bin/controller", container_pid=1,
                body=kprobe("security_file_permission",
                            {"file_arg": {"path": "/run/secrets/kubernetes.io/serviceaccount/..data/token"}},
                            {"int_arg": 4}),
            ),
        ),
        Example(
            name="OpenSSH's per-connection sshd-session checking a password on the node",
            source="falco",
            fires=False,
            record=falco_record(
                "Custom file audit", "openat",
                {"proc.exepath": "/usr/lib/openssh/sshd-session", "proc.name": "sshd-session",
                 "fd.name": "/etc/shadow", "evt.arg.flags": "O_RDONLY"},
                host=True,
            ),
        ),
        Example(
            name="sshd reading /etc/shadow on the node",
            source="falco",
            fires=False,
            record=falco_record(
                "Custom file audit", "openat",
                {"proc.exepath": "/usr/sbin/sshd", "proc.name": "sshd", "fd.name": "/etc/shadow",
                 "evt.arg.flags": "O_RDONLY"},
                host=True,
            ),
        ),
    ],
)
