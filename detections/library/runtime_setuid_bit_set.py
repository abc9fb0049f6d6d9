"""The setuid or setgid bit set on a file: a program that will run as its owner (root) for anyone who runs it."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

S_ISUID, S_ISGID = 0o4000, 0o2000
CHMODS = frozenset({"chmod", "fchmod", "fchmodat", "fchmodat2", "path_chmod", "security_path_chmod"})
#: Programs that set these bits as their job (package managers installing sudo, ping, …).
INSTALLERS = frozenset({"dpkg", "apt", "apt-get", "yum", "dnf", "microdnf", "rpm", "apk", "zypper", "pacman",
                        "install", "kubelet", "k3s-agent", "hyperkube", "containerd", "dockerd"})


def sets_special_bits(event: Event) -> str:
    """``setuid``, ``setgid`` or ``setuid+setgid`` for the bits a chmod sets, '' otherwise."""
    if event.action not in CHMODS and not (event.kind == "process.exec" and program_name(event) == "chmod"):
        return ""
    if program_name(event) in INSTALLERS or event.actor.parent_exe.rpartition("/")[2] in INSTALLERS:
        return ""
    mode = event.file.mode if event.kind == "file.write" else symbolic_mode(event.actor.args[1:])
    bits = [name for bit, name in ((S_ISUID, "setuid"), (S_ISGID, "setgid")) if mode > 0 and mode & bit]
    return "+".join(bits)


def symbolic_mode(args: list[str]) -> int:
    """The special bits a chmod command line sets: ``u+s``/``g+s``/``+s`` or an octal mode of four digits."""
    mode = next((arg for arg in args if not arg.startswith("-")), "")
    if mode.isdigit() and len(mode) >= 4:
        return int(mode, 8)
    if "+" in mode and "s" in mode.partition("+")[2]:
        who = mode.partition("+")[0] or "ug"
        return (S_ISUID if "u" in who or "a" in who else 0) | (S_ISGID if "g" in who or "a" in who else 0)
    return 0


def setuid_context(event: Event) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    if event.kind == "process.exec":
        path = event.actor.args[-1] if len(event.actor.args) > 2 else ""
    else:
        path = event.target.path or event.file.path
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "bits": sets_special_bits(event),
            "file": path, "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.setuid_bit_set",
    title="Setuid or setgid bit set on a file",
    alert_title="{program} set {bits} on {file} in {where}",
    description=(
        "A chmod set the setuid or setgid bit on a file, in a container or on a node, outside a package "
        "installation. A setuid-root copy of a shell or an interpreter is a privilege-escalation backdoor: any "
        "user who runs it becomes root, and written to a hostPath it works on the node."
    ),
    severity="medium",
    mitre=["T1548.001"],
    tags=["runtime", "privilege_escalation", "persistence"],
    references=["https://attack.mitre.org/techniques/T1548/001/"],
    false_positives=["Image builds and entrypoints that set the bit on a helper they ship."],
    kinds=["file.write", "process.exec"],
    exe_names={"process.exec": ["chmod"]},
    actions={"file.write": CHMODS},
    match=lambda event: bool(sets_special_bits(event)),
    context=setuid_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{file}",
    examples=[
        Example(
            name="chmod u+s on a copy of bash (Tetragon hook)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/bin/chmod", arguments="u+s /tmp/.sh",
                body=kprobe("security_path_chmod", {"path_arg": {"path": "/tmp/.sh"}}, {"int_arg": 0o104755})),
        ),
        Example(
            name="Falco: chmod 4755 on the node through a hostPath mount",
            source="falco",
            fires=True,
            record=falco_record(
                "Set Setuid or Setgid bit", "execve",
                {"proc.exepath": "/bin/chmod", "proc.name": "chmod", "proc.cmdline": "chmod 4755 /host/tmp/rootsh"},
                priority="Notice",
            ),
        ),
        Example(
            name="chmod +x on a script",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/bin/chmod", arguments="+x run.sh",
                body=kprobe("security_path_chmod", {"path_arg": {"path": "/app/run.sh"}}, {"int_arg": 0o100755})),
        ),
        Example(
            name="dpkg installing sudo",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/dpkg", arguments="-i sudo.deb", host=True,
                body=kprobe("security_path_chmod", {"path_arg": {"path": "/usr/bin/sudo"}}, {"int_arg": 0o104755})),
        ),
    ],
)
