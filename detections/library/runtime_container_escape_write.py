"""A write to a kernel hook that runs a program on the node (cgroup release_agent, core_pattern): an escape."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Files whose content the kernel runs as a root program on the node: a cgroup v1 release agent, the core
#: dump handler, the hotplug helper, the module loader path.
ESCAPE_FILES = ("/release_agent", "/proc/sys/kernel/core_pattern", "/sys/kernel/uevent_helper",
                "/proc/sys/kernel/modprobe")
ESCAPE_WORDS = ("release_agent", "core_pattern", "uevent_helper", "kernel/modprobe")
#: Container runtimes open their own binary through /proc/<pid>/exe as they start a container.
RUNTIMES = ("runc", "crun", "containerd-shim", "conmon", "youki", "runsc", "docker", "dockerd")


def overwrites_runtime(event: Event) -> bool:
    """An open for writing of a process's executable through /proc/<pid>/exe (or /proc/self/exe): from a container,
    the host's runc binary when runc is the process behind it (CVE-2019-5736)."""
    parts = (event.target.path or event.file.path).split("/")
    is_exe_link = len(parts) == 4 and parts[1] == "proc" and parts[3] == "exe"
    return is_exe_link and bool(event.container.id or event.k8s.container_id) and not program_name(
        event).startswith(RUNTIMES)


def escape_target(event: Event) -> str:
    """The hook file written: by a file write, or named in a shell command that writes it (``echo … > …``)."""
    if event.kind == "file.write":
        path = event.target.path
        return path if path.endswith(ESCAPE_FILES) or overwrites_runtime(event) else ""
    command = " ".join(event.actor.args)
    if ">" not in command and program_name(event) != "tee" and "tee" not in event.actor.args:
        return ""
    for word in command.replace(">", " ").split():
        if any(marker in word for marker in ESCAPE_WORDS):
            return word
    return ""


def escape_context(event: Event) -> dict[str, Any]:
    return {"exe": event.actor.exe, "file": escape_target(event), "command": " ".join(event.actor.args),
            "container": event.k8s.container_name, "image": event.k8s.image, "node": event.node}


DETECTION = EventDetection(
    id="runtime.container_escape_write",
    title="Write to a kernel hook used for container escapes",
    alert_title="{program} wrote {file} in {namespace}/{pod} on {node}",
    description=(
        "A process wrote a cgroup release_agent, /proc/sys/kernel/core_pattern, the uevent helper or the modprobe "
        "path. The kernel runs what these files name as root in the node's namespaces, so writing them from a "
        "privileged container runs attacker code on the node (the cgroup release_agent escape, CVE-2022-0492, "
        "and core_pattern pipes), or opened a process's executable through /proc/<pid>/exe for writing from a "
        "container, which overwrites the node's runc binary when runc is behind it (CVE-2019-5736)."
    ),
    severity="critical",
    mitre=["T1611"],
    tags=["runtime", "privilege_escalation", "container_escape"],
    references=["https://attack.mitre.org/techniques/T1611/", "https://nvd.nist.gov/vuln/detail/CVE-2022-0492"],
    false_positives=["Node set-up tooling configuring a crash handler (systemd-coredump, apport) on the node."],
    kinds=["file.write", "process.exec"],
    paths={"file.write": [*(f"*{name}" for name in ESCAPE_FILES), "*/exe"]},
    match=lambda event: bool(escape_target(event)),
    context=escape_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{file}",
    examples=[
        Example(
            name="release_agent set by a shell (Tetragon exec)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/bin/sh", arguments='-c "echo /cmd > /tmp/cgrp/release_agent"',
                                   parent="/bin/bash"),
        ),
        Example(
            name="core_pattern written (Tetragon kprobe)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/bin/busybox", arguments="tee /proc/sys/kernel/core_pattern",
                body=kprobe("security_file_permission",
                            {"file_arg": {"path": "/proc/sys/kernel/core_pattern"}}, {"int_arg": 2}),
            ),
        ),
        Example(
            name="Falco: detect release_agent file container escapes",
            source="falco",
            fires=True,
            record=falco_record(
                "Detect release_agent File Container Escapes", "openat",
                {"proc.exepath": "/bin/bash", "proc.name": "bash", "fd.name": "/sys/fs/cgroup/rdma/release_agent",
                 "evt.arg.flags": "O_WRONLY|O_CREAT|O_TRUNC", "evt.res": "SUCCESS"},
                priority="Critical",
            ),
        ),
        Example(
            name="Falco: the runtime's binary opened for writing through /proc/self/exe",
            source="falco",
            fires=True,
            record=falco_record(
                "Modify Container Entrypoint", "openat",
                {"proc.exepath": "/tmp/exploit", "proc.name": "exploit", "fd.name": "/proc/self/exe",
                 "evt.arg.flags": "O_WRONLY|O_TRUNC"},
            ),
        ),
        Example(
            name="reading core_pattern",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/bin/cat", arguments="/proc/sys/kernel/core_pattern"),
        ),
        Example(
            name="reading the release_agent",
            source="falco",
            fires=False,
            record=falco_record(
                "Custom file audit", "openat",
                {"proc.exepath": "/bin/cat", "proc.name": "cat", "fd.name": "/sys/fs/cgroup/rdma/release_agent",
                 "evt.arg.flags": "O_RDONLY"},
            ),
        ),
    ],
)
