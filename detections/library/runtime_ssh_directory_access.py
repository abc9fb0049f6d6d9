"""An SSH directory's files (known_hosts, config, authorized_keys) read or changed by a program that is not an SSH
tool: harvesting where this machine's users log in to, or planting a way in. Private keys are
runtime.credential_file_access's, authorized_keys writes runtime.node_persistence_write's."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Programs that read and keep SSH directories as their job.
SSH_TOOLS = frozenset({"ssh", "sshd", "scp", "sftp", "sftp-server", "ssh-agent", "ssh-add", "ssh-keygen",
                       "ssh-keyscan", "ssh-copy-id", "git", "git-remote-ht", "rsync", "ansible", "mosh-server",
                       "google_guest_ag", "google_accounts", "waagent", "cloud-init", "ec2-instance-co"})
#: Where the node keeps the files of other reports (private keys are credentials; authorized_keys is persistence).
PRIVATE_KEY_PREFIX = "id_"
AUTHORIZED_KEYS = ("authorized_keys", "authorized_keys2")


def ssh_file(event: Event) -> str:
    """The SSH directory entry the event touches ('' for none, or for what other detections report)."""
    path = event.target.path or event.file.path
    if "/.ssh/" not in path and not path.endswith("/.ssh"):
        return ""
    name = path.rpartition("/")[2]
    if (name.startswith(PRIVATE_KEY_PREFIX) and not name.endswith(".pub")) or name.endswith(".pem"):
        return ""  # runtime.credential_file_access's
    if event.kind == "file.write" and name in AUTHORIZED_KEYS:
        return ""  # runtime.node_persistence_write's
    return path


def touches_ssh(event: Event) -> bool:
    return bool(ssh_file(event)) and program_name(event) not in SSH_TOOLS


def ssh_context(event: Event) -> dict[str, Any]:
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "file": ssh_file(event),
            "how": "changed" if event.kind == "file.write" else "read", "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


DETECTION = EventDetection(
    id="runtime.ssh_directory_access",
    title="SSH directory read or changed by a non-SSH program",
    alert_title="{program} {how} {file} in {where}",
    description=(
        "A program that is not an SSH client, server or key tool read or changed a file in an SSH directory "
        "(~/.ssh or /root/.ssh): known_hosts and config list where this machine's users log in to (the map for "
        "lateral movement), and a changed config can run a ProxyCommand at the next login. Private keys are "
        "reported by runtime.credential_file_access, new authorized keys by runtime.node_persistence_write."
    ),
    severity="medium",
    mitre=["T1552.004", "T1021.004", "T1018"],
    tags=["runtime", "discovery", "credential_access", "lateral_movement"],
    references=["https://attack.mitre.org/techniques/T1552/004/"],
    false_positives=["Backup agents and configuration management that are not in the SSH tool list."],
    kinds=["file.open", "file.write"],
    paths=["*/.ssh/*", "*/.ssh"],
    match=touches_ssh,
    context=ssh_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{exe}/{file}",
    examples=[
        Example(
            name="Falco: cat reading root's known_hosts on a node",
            source="falco",
            fires=True,
            record=falco_record("Read ssh information", "openat",
                                {"proc.exepath": "/usr/bin/cat", "proc.name": "cat",
                                 "proc.cmdline": "cat /root/.ssh/known_hosts", "fd.name": "/root/.ssh/known_hosts",
                                 "evt.arg.flags": "O_RDONLY"}, priority="Error", host=True),
        ),
        Example(
            name="a python script reading a user's ssh config in a pod (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "open", "time_ns": EXAMPLE_START_NS, "pid": 4800, "tid": 4800, "ppid": 4790,
                           "uid": 0, "gid": 0, "comm": "python3", "cgroup_id": 7306, "path": "/root/.ssh/config",
                           "flags": 0, "mode": 0}),
        ),
        Example(
            name="a config written into .ssh by a shell (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record("process_kprobe", binary="/bin/bash", host=True,
                                   body=kprobe("security_file_permission",
                                               {"file_arg": {"path": "/home/ops/.ssh/config"}}, {"int_arg": 2})),
        ),
        Example(
            name="ssh reading known_hosts",
            source="falco",
            fires=False,
            record=falco_record("Custom open audit", "openat",
                                {"proc.exepath": "/usr/bin/ssh", "proc.name": "ssh",
                                 "fd.name": "/root/.ssh/known_hosts", "evt.arg.flags": "O_RDONLY"}, host=True),
        ),
        Example(
            name="a private key read (runtime.credential_file_access's)",
            source="falco",
            fires=False,
            record=falco_record("Custom open audit", "openat",
                                {"proc.exepath": "/usr/bin/cat", "proc.name": "cat", "fd.name": "/root/.ssh/id_ed25519",
                                 "evt.arg.flags": "O_RDONLY"}, host=True),
        ),
    ],
)
