"""A symbolic or hard link made to a sensitive file or directory (/etc/shadow, sudoers, /, /root): a way to read
or overwrite it through a path that a careless privileged program or a mount will follow."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

SENSITIVE_FILES = frozenset({"/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/pam.conf",
                             "/etc/security/pwquality.conf", "/etc/passwd", "/etc/kubernetes/admin.conf"})
#: Directories a symbolic link may point at to expose everything below them.
SENSITIVE_DIRS = frozenset({"/", "/etc", "/etc/", "/root", "/root/", "/etc/kubernetes", "/var/lib/kubelet"})
LINK_ACTIONS = ("link", "linkat", "symlink", "symlinkat", "path_link", "path_symlink", "security_path_link",
                "security_path_symlink")
LINK_TOOLS = frozenset({"ln", "cp", "busybox"})


def linked_target(event: Event) -> str:
    """The sensitive file or directory a link event (or ``ln`` command) points at ('' for none)."""
    if event.kind == "process.exec":
        if program_name(event) != "ln":
            return ""
        paths = [arg for arg in event.actor.args[1:] if not arg.startswith("-")]
        candidates = paths[:1]
    elif event.action in LINK_ACTIONS:
        candidates = [event.file.other_path, event.target.path or event.file.path]
    else:
        return ""
    symbolic = "sym" in event.action or "-s" in event.actor.args[1:] or any(
        arg.startswith("-") and not arg.startswith("--") and "s" in arg for arg in event.actor.args[1:])
    return next((path for path in candidates if path in SENSITIVE_FILES or (symbolic and path in SENSITIVE_DIRS)), "")


def link_context(event: Event) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "target": linked_target(event),
            "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.sensitive_file_link",
    title="Link created to a sensitive file or directory",
    alert_title="{program} linked {target} in {where}",
    description=(
        "A symbolic or hard link was made to /etc/shadow, sudoers, PAM configuration or the cluster admin "
        "kubeconfig, or a symbolic link to /, /etc, /root or the kubelet's directory, in a container or on a node. "
        "Links let an attacker read or overwrite a protected file through a path that a privileged program, a "
        "log collector or a volume mount will follow (symlink-exchange escapes, CVE-2021-25741)."
    ),
    severity="medium",
    mitre=["T1555", "T1611", "T1222"],
    tags=["runtime", "credential_access", "privilege_escalation"],
    references=["https://attack.mitre.org/techniques/T1555/", "https://nvd.nist.gov/vuln/detail/CVE-2021-25741"],
    false_positives=["Images that link configuration into /etc at start."],
    kinds=["file.write", "process.exec"],
    exe_names={"process.exec": ["ln"]},
    actions={"file.write": LINK_ACTIONS},
    match=lambda event: bool(linked_target(event)),
    context=link_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{target}",
    examples=[
        Example(
            name="Falco: symlink over /etc/shadow",
            source="falco",
            fires=True,
            record=falco_record(
                "Create Symlink Over Sensitive Files", "symlinkat",
                {"proc.exepath": "/bin/ln", "proc.name": "ln", "proc.cmdline": "ln -s /etc/shadow /tmp/s",
                 "fs.path.name": "/tmp/s", "fs.path.target": "/etc/shadow"},
            ),
        ),
        Example(
            name="ln -s / into a log directory (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/bin/ln", arguments="-s / /var/log/pods/x/root"),
        ),
        Example(
            name="a hard link to sudoers (Tetragon hook on link)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/bin/ln", arguments="/etc/sudoers /tmp/s",
                body=kprobe("__x64_sys_link", {"string_arg": "/etc/sudoers"}, {"string_arg": "/tmp/s"})),
        ),
        Example(
            name="a hard link to / is not possible, and ln without -s to /etc is refused: not reported",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/bin/ln", arguments="/etc /tmp/etc"),
        ),
        Example(
            name="a link to the application's configuration",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/bin/ln", arguments="-sf /config/app.yaml /app/app.yaml"),
        ),
    ],
)
