"""A non-root process changing its user id outside the programs whose job that is: an attempt to become root (or
someone else) with a capability or a bug it should not have."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

UID_CALLS = frozenset({"setuid", "setreuid", "setresuid", "setfsuid"})
#: Setuid programs, login services and runtimes change ids as their job (they run with euid 0).
KNOWN = frozenset({
    "sudo", "su", "sudoedit", "doas", "pkexec", "passwd", "chsh", "chfn", "newgrp", "sg", "login", "sshd", "cron",
    "crond", "atd", "ping", "ping6", "mount", "umount", "fusermount", "fusermount3", "unix_chkpwd", "dbus-daemon",
    "polkitd", "gosu", "su-exec", "setpriv", "runuser", "systemd", "containerd", "dockerd", "conmon", "bwrap",
    "newuidmap", "newgidmap", "postdrop", "sendmail", "exim4",
})


def changes_uid(event: Event) -> bool:
    """A uid-changing call by a process whose real uid is not root, to ids other than its own (when known)."""
    if event.action not in UID_CALLS or event.actor.uid <= 0:
        return False
    program = program_name(event)
    if program in KNOWN or program.startswith(("runc", "crun")):
        return False
    if not event.target.name:
        return True  # the source does not say which ids (Falco, Tetragon): the call is what matters
    ids = [part for part in event.target.name.split(",") if part != "-1"]  # -1 leaves an id unchanged
    return any(part != str(event.actor.uid) for part in ids)


def setuid_context(event: Event) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "call": event.action,
            "uid": event.actor.uid, "to": event.target.name or "unknown", "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.setuid_by_non_root",
    title="User id changed by a non-root process",
    alert_title="{program} (uid {uid}) called {call} to {to} in {where}",
    description=(
        "A process running as a non-root user called setuid, setreuid, setresuid or setfsuid to another id, and "
        "it is not one of the setuid programs, login services or runtimes whose job that is. Such a call only "
        "works with CAP_SETUID or a saved root id: a process that gained one (an exploited setuid binary, a "
        "container with added capabilities) uses it to become root."
    ),
    severity="medium",
    mitre=["T1548.001", "T1068"],
    tags=["runtime", "privilege_escalation"],
    references=["https://attack.mitre.org/techniques/T1548/001/", "https://falco.org/docs/rules/default-rules/"],
    false_positives=["Daemons started as a user with CAP_SETUID that switch users by design."],
    kinds=["process.setid"],
    actions=UID_CALLS,
    match=changes_uid,
    context=setuid_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{exe}/{to}",
    examples=[
        Example(
            name="setuid(0) from uid 1000 (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "setid", "time_ns": EXAMPLE_START_NS, "pid": 4501, "tid": 4501, "ppid": 4500,
                           "uid": 1000, "gid": 1000, "comm": "exploit", "cgroup_id": 7301, "call": "setuid",
                           "ids": [0]}),
        ),
        Example(
            name="Falco: setuid by a web user's process",
            source="falco",
            fires=True,
            record=falco_record(
                "Non sudo setuid", "setuid",
                {"proc.exepath": "/tmp/x", "proc.name": "x", "proc.cmdline": "x", "user.uid": 33,
                 "user.name": "www-data", "evt.arg.uid": "root"},
                priority="Notice",
            ),
        ),
        Example(
            name="root dropping to a service user",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_kprobe", binary="/usr/sbin/nginx", uid=0,
                                   body=kprobe("__x64_sys_setuid", {"int_arg": 101})),
        ),
        Example(
            name="sudo run by a user",
            source="ebpf",
            fires=False,
            record=in_pod({"type": "setid", "time_ns": EXAMPLE_START_NS, "pid": 4502, "tid": 4502, "ppid": 4500,
                           "uid": 1000, "gid": 1000, "comm": "sudo", "cgroup_id": 7301, "call": "setresuid",
                           "ids": [0, 0, 0]}),
        ),
        Example(
            name="setresuid(-1, -1, -1) changes nothing",
            source="ebpf",
            fires=False,
            record=in_pod({"type": "setid", "time_ns": EXAMPLE_START_NS, "pid": 4504, "tid": 4504, "ppid": 4500,
                           "uid": 1000, "gid": 1000, "comm": "app", "cgroup_id": 7301, "call": "setresuid",
                           "ids": [-1, -1, -1]}),
        ),
        Example(
            name="a process setting its own uid again",
            source="ebpf",
            fires=False,
            record=in_pod({"type": "setid", "time_ns": EXAMPLE_START_NS, "pid": 4503, "tid": 4503, "ppid": 4500,
                           "uid": 1000, "gid": 1000, "comm": "app", "cgroup_id": 7301, "call": "setuid",
                           "ids": [1000]}),
        ),
    ],
)
