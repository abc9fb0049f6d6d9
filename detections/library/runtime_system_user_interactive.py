"""A system account (www-data, nobody, daemon, a service's own uid) running commands on a terminal: someone got
a shell as the service, typically by upgrading a web shell to a pty."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record

#: A pseudo-terminal (/dev/pts/N, major 136) as a sensor reports the controlling terminal's device number.
PTS = 136 << 8


def is_system_uid(uid: int, params: dict[str, Any]) -> bool:
    """Accounts below the first login uid (1-999 by default) and the named extra ones (nobody is 65534)."""
    return 0 < uid <= params["max_system_uid"] or str(uid) in params["extra_system_uids"]


def interactive_system_user(event: Event, params: dict[str, Any]) -> bool:
    if event.actor.tty <= 0 or not is_system_uid(event.actor.uid, params):
        return False
    return program_name(event) not in params["allowed_programs"]


def interactive_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event), "uid": event.actor.uid, "tty": event.actor.tty,
            "command": " ".join(event.actor.args), "parent_exe": event.actor.parent_exe,
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


def falco_exec(uid: int, user: str, tty: int, program: str = "id", host: bool = False) -> dict[str, Any]:
    return falco_record(
        "System user interactive", "execve",
        {"proc.exepath": f"/usr/bin/{program}", "proc.name": program, "proc.cmdline": program,
         "proc.pname": "bash", "user.uid": uid, "user.name": user, "proc.tty": tty},
        priority="Informational", host=host,
    )


DETECTION = EventDetection(
    id="runtime.system_user_interactive",
    title="System account running commands on a terminal",
    alert_title="{program} run on a terminal by system uid {uid} in {where}",
    description=(
        "A program started with a controlling terminal by a system account: a uid below the first login uid "
        "(www-data, daemon, a service's own account) or nobody. Services run without a terminal; a system "
        "account on a pty is someone who turned a web shell or an exploited service into an interactive shell "
        "(python -c 'import pty; pty.spawn(\"/bin/bash\")', script /dev/null). Needs a source that reports the "
        "terminal (Falco's proc.tty)."
    ),
    severity="medium",
    mitre=["T1059.004", "T1078.003"],
    tags=["runtime", "execution"],
    references=["https://attack.mitre.org/techniques/T1059/004/"],
    false_positives=["Operators switching to a service account on purpose (su -s /bin/bash www-data) to debug."],
    kinds=["process.exec"],
    params={"max_system_uid": 999, "extra_system_uids": ["65534"], "allowed_programs": ["sudo", "su", "login"]},
    match=interactive_system_user,
    context=interactive_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{uid}",
    examples=[
        Example(name="Falco: www-data running id on a pty", source="falco", fires=True,
                record=falco_exec(33, "www-data", PTS + 1)),
        Example(name="Falco: nobody running a shell on a pty on the node", source="falco", fires=True,
                record=falco_exec(65534, "nobody", PTS, "bash", host=True)),
        Example(name="www-data running a program without a terminal (a CGI script)", source="falco", fires=False,
                record=falco_exec(33, "www-data", 0)),
        Example(name="a login user on a terminal", source="falco", fires=False,
                record=falco_exec(1000, "alice", PTS + 2)),
        Example(name="root on a terminal (kubectl exec -it)", source="falco", fires=False,
                record=falco_exec(0, "root", PTS + 3)),
    ],
)
