"""An interactive shell in a container: someone (or something) is typing commands inside a workload."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "csh", "tcsh", "fish"})


def has_terminal(event: Event) -> bool:
    """The shell has a controlling terminal (only sources that report one say so: Falco's ``proc.tty``)."""
    return event.actor.tty > 0


def is_interactive_shell(event: Event) -> bool:
    """A shell in a container that is not the entrypoint and runs no script or ``-c`` command: a terminal
    (when the sensor reports one) or a shell started with options only (``bash``, ``sh -i``, ``bash -l``)."""
    if not (event.k8s.container_id or event.container.id) or program_name(event) not in SHELLS:
        return False
    if event.actor.container_pid == 1:  # the container's entrypoint (0: the source does not say)
        return False
    if has_terminal(event):
        return True
    args = event.actor.args  # argv: unknown (empty) is not evidence of an interactive shell
    return bool(args) and all(arg.startswith("-") and arg != "-c" for arg in args[1:])


def shell_context(event: Event) -> dict[str, Any]:
    return {
        "exe": event.actor.exe,
        "parent_exe": event.actor.parent_exe,
        "container": event.k8s.container_name,
        "where": container_label(event),
        "image": event.k8s.image,
        "terminal": has_terminal(event),
    }


DETECTION = EventDetection(
    id="runtime.shell_in_container",
    title="Interactive shell in a container",
    alert_title="Interactive shell {program} in {where}",
    description=(
        "A shell started in a running container without a script or command to run: someone has a prompt inside "
        "the workload, typically through kubectl exec or a compromised application. Production containers run "
        "their entrypoint, not people; an interactive shell is how attackers explore, read mounted secrets and "
        "stage tools. Entrypoint wrappers (`sh -c ...` as the container's first process) are not reported."
    ),
    severity="medium",
    mitre=["T1059.004", "T1609"],
    tags=["runtime", "execution", "container"],
    references=["https://attack.mitre.org/techniques/T1059/004/", "https://falco.org/docs/rules/default-rules/"],
    false_positives=["Operators debugging a workload with kubectl exec; check who ran exec on that pod."],
    kinds=["process.exec"],
    exe_names=SHELLS,
    match=is_interactive_shell,
    context=shell_context,
    dedup="{cluster}/{namespace}/{pod}/{container}/{exe}",
    examples=[
        Example(
            name="bash exec'd into a pod (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/bin/bash", container_pid=23),
        ),
        Example(
            name="sh -i started by a web shell (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/bin/sh", arguments="-i", parent="/usr/local/bin/php-fpm"),
        ),
        Example(
            name="Falco: terminal shell in container",
            source="falco",
            fires=True,
            record=falco_record(
                "Terminal shell in container", "execve",
                {"proc.exepath": "/bin/bash", "proc.name": "bash", "proc.cmdline": "bash ", "proc.tty": 34816,
                 "proc.pname": "runc", "evt.arg.flags": "EXE_WRITABLE|EXE_LOWER_LAYER"},
            ),
        ),
        Example(
            name="entrypoint wrapper sh -c as the container's first process",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/bin/sh", arguments='-c "exec nginx -g daemon off;"', container_pid=1),
        ),
        Example(
            name="a script run by the application",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/sh", arguments="lifecycle.sh", parent="/usr/bin/python3"),
        ),
        Example(
            name="a shell on the node itself",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/bin/bash", parent="/usr/sbin/sshd", host=True),
        ),
    ],
)
