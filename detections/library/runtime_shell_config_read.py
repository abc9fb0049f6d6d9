"""Shell start-up files read by a program that is not a shell: reading them for the aliases, paths and secrets
people export there, or before changing them to run code at the next login."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Start-up files by name (in any home directory) and by path (system-wide).
START_FILE_NAMES = frozenset({".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile", ".zshrc",
                              ".zshenv", ".zprofile", ".zlogin", ".zlogout", ".cshrc", ".tcshrc", ".login",
                              ".logout", ".kshrc", ".mkshrc"})
START_FILES = frozenset({"/etc/profile", "/etc/bashrc", "/etc/bash.bashrc", "/etc/zshrc", "/etc/zprofile",
                         "/etc/zshenv", "/etc/zlogin", "/etc/csh.cshrc", "/etc/csh.login", "/etc/environment"})
START_DIRS = ("/etc/profile.d/", "/etc/zsh/")
SHELLS = ["sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "busybox", "login", "su",
          "sudo", "sshd", "systemd", "systemd-environ", "pam_env", "cron", "crond", "dpkg", "rpm", "apk"]


def start_file(event: Event) -> str:
    path = event.target.path or event.file.path
    if path in START_FILES or path.startswith(START_DIRS) or path.rpartition("/")[2] in START_FILE_NAMES:
        return path
    return ""


def reads_start_file(event: Event, params: dict[str, Any]) -> bool:
    if "write" in event.file.access or not start_file(event):
        return False  # writes are runtime.node_persistence_write's
    return program_name(event) not in params["allowed_programs"]


def start_file_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "file": start_file(event), "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.shell_config_read",
    title="Shell start-up file read by a non-shell program",
    alert_title="{program} read {file} in {where}",
    description=(
        "A program other than a shell or a login program read a shell start-up file (~/.bashrc, ~/.profile, "
        "/etc/profile, /etc/profile.d, …). Shells read these as they start; another program reading them is "
        "harvesting the secrets and paths people export there, or preparing to append a command that runs at "
        "every login. Low: editors and configuration tools read them too. Writes are "
        "runtime.node_persistence_write's."
    ),
    severity="low",
    mitre=["T1546.004", "T1552.001"],
    tags=["runtime", "discovery", "persistence", "credential_access"],
    references=["https://attack.mitre.org/techniques/T1546/004/"],
    false_positives=["Editors, dotfile managers and configuration management reading the files."],
    kinds=["file.open"],
    paths=[*START_FILES, *(f"{d}*" for d in START_DIRS), *START_FILE_NAMES,
           *(f"*/{name}" for name in START_FILE_NAMES)],
    params={"allowed_programs": SHELLS},
    match=reads_start_file,
    context=start_file_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{exe}/{file}",
    examples=[
        Example(
            name="Falco: cat reading root's .bashrc in a container",
            source="falco",
            fires=True,
            record=falco_record("Read Shell Configuration File", "openat",
                                {"proc.exepath": "/usr/bin/cat", "proc.name": "cat",
                                 "proc.cmdline": "cat /root/.bashrc", "fd.name": "/root/.bashrc",
                                 "evt.arg.flags": "O_RDONLY"}),
        ),
        Example(
            name="a python script reading /etc/profile on a node (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record("process_kprobe", binary="/usr/bin/python3", host=True,
                                   body=kprobe("security_file_permission", {"file_arg": {"path": "/etc/profile"}},
                                               {"int_arg": 4})),
        ),
        Example(
            name="bash reading its start-up file",
            source="falco",
            fires=False,
            record=falco_record("Custom open audit", "openat",
                                {"proc.exepath": "/bin/bash", "proc.name": "bash", "fd.name": "/root/.bashrc",
                                 "evt.arg.flags": "O_RDONLY"}),
        ),
        Example(
            name="an application reading its own configuration",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_kprobe", binary="/usr/bin/python3",
                                   body=kprobe("security_file_permission", {"file_arg": {"path": "/app/profile.yaml"}},
                                               {"int_arg": 4})),
        ),
    ],
)
