"""Accounts or passwords changed on a node by hand: a new login for the intruder, a changed root password."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

ACCOUNT_TOOLS = frozenset({
    "useradd", "usermod", "userdel", "adduser", "deluser", "groupadd", "groupmod", "groupdel", "addgroup",
    "delgroup", "gpasswd", "passwd", "chpasswd", "chgpasswd", "chage", "chsh", "chfn", "newusers", "vipw", "vigr",
    "pwconv", "grpconv",
})
#: Node services that manage accounts as their job (cloud agents creating the operators' logins, cron, packages).
MANAGERS = frozenset({"cron", "crond", "anacron", "systemd", "cloud-init", "google_accounts", "google_guest_ag",
                      "waagent", "amazon-ssm-agen", "ssm-agent-worker", "dpkg", "apt-get", "yum", "dnf", "rpm",
                      "run-parts", "puppet", "chef-client", "ansible", "salt-minion", "oslogin"})
#: Read-only invocations.
READ_ONLY = (("passwd", "-S"), ("useradd", "-D"), ("chage", "-l"), ("chage", "--list"))


def changes_accounts(event: Event) -> bool:
    if event.container.id or event.k8s.container_id:
        return False  # images create their users at build or start; the node is what matters here
    program = program_name(event)
    if program not in ACCOUNT_TOOLS:
        return False
    ancestors = {event.actor.parent_exe.rpartition("/")[2], event.actor.grandparent_exe.rpartition("/")[2]}
    if ancestors & MANAGERS:
        return False
    return not any(program == tool and option in event.actor.args[1:] for tool, option in READ_ONLY)


def account_context(event: Event) -> dict[str, Any]:
    return {"exe": event.actor.exe, "tool": program_name(event), "command": " ".join(event.actor.args),
            "parent_exe": event.actor.parent_exe, "uid": event.actor.uid, "auid": event.actor.auid,
            "node": event.node}


DETECTION = EventDetection(
    id="runtime.user_management_on_node",
    title="Account management on a node",
    alert_title="{tool} run on node {node}: {command}",
    description=(
        "An account tool (useradd, usermod, passwd, chpasswd, gpasswd, …) changed users, groups or passwords on a "
        "node outside cloud agents, cron and package installs. Kubernetes nodes are not managed by hand: a new "
        "account or a changed password there is persistence for whoever got onto the node."
    ),
    severity="medium",
    mitre=["T1136.001", "T1098"],
    tags=["runtime", "persistence", "node"],
    references=["https://attack.mitre.org/techniques/T1136/001/"],
    false_positives=["Break-glass administration of a node by an operator."],
    kinds=["process.exec"],
    exe_names=ACCOUNT_TOOLS,
    match=changes_accounts,
    context=account_context,
    dedup="{cluster}/{node}/{tool}/{command}",
    examples=[
        Example(
            name="a root account added on the node (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/sbin/useradd", arguments="-o -u 0 -m sysadm", host=True,
                                   parent="/bin/bash"),
        ),
        Example(
            name="Falco: root's password changed with chpasswd",
            source="falco",
            fires=True,
            record=falco_record(
                "User mgmt binaries", "execve",
                {"proc.exepath": "/usr/sbin/chpasswd", "proc.name": "chpasswd", "proc.cmdline": "chpasswd",
                 "proc.pexepath": "/bin/bash", "proc.pname": "bash"},
                host=True, priority="Notice",
            ),
        ),
        Example(
            name="passwd -S only shows the status",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/passwd", arguments="-S root", host=True),
        ),
        Example(
            name="an image's entrypoint creating its user in a container",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/sbin/useradd", arguments="-r app"),
        ),
    ],
)
