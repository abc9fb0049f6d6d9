"""Credentials read from files that are not the reader's own: SSH private keys, cloud provider credentials, cluster
administrator and kubelet credentials, other pods' service-account tokens, processes' environments."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

HOST_MOUNTS = ("/host", "/hostfs", "/rootfs", "/node", "/host-root")
#: Credential files by where they sit (after any hostPath mount prefix): (test, kind, programs that own them).
SSH_TOOLS = frozenset({"ssh", "sshd", "scp", "sftp", "ssh-agent", "ssh-add", "ssh-keygen", "ssh-keyscan",
                       "sftp-server", "git", "git-remote-ht", "ansible"})
CLOUD_TOOLS = frozenset({"aws", "gcloud", "gsutil", "bq", "az", "terraform", "python", "python3"})
CLUSTER_TOOLS = frozenset({"kubelet", "kube-apiserver", "kube-controller", "kube-controller-manager",
                           "kube-scheduler", "kube-proxy", "kubeadm", "etcd", "kubectl", "helm", "containerd"})
CLOUD_FILES = ("/.aws/credentials", "/.aws/config", "/.config/gcloud/credentials.db",
               "/.config/gcloud/application_default_credentials.json", "/.config/gcloud/access_tokens.db",
               "/.azure/accessTokens.json", "/.azure/msal_token_cache.json", "/.docker/config.json")
CLUSTER_FILES = ("/etc/kubernetes/admin.conf", "/etc/kubernetes/super-admin.conf",
                 "/etc/kubernetes/controller-manager.conf", "/etc/kubernetes/scheduler.conf",
                 "/etc/kubernetes/kubelet.conf", "/etc/kubernetes/pki/", "/var/lib/kubelet/pki/",
                 "/var/lib/kubelet/kubeconfig", "/etc/kubernetes/bootstrap-kubelet.conf")
#: Tools people and scripts use to look at or copy a file.
READERS = frozenset({
    "cat", "head", "tail", "less", "more", "base64", "xxd", "od", "hexdump", "strings", "grep", "awk", "sed", "cp",
    "tar", "dd", "vi", "vim", "nano", "tee", "curl", "wget", "nc", "ncat", "sh", "bash", "dash", "zsh", "scp",
})


_MOUNT_PREFIXES = tuple(f"{mount}/" for mount in HOST_MOUNTS)
#: Where credential files can be, for one C-level test before the finer ones (most opens are elsewhere).
_PLACES = ("/root/", "/home/", "/etc/kubernetes/", "/var/lib/kubelet/", "/proc/")
#: Every path :func:`credential_kind` names (the prefilter): in an SSH directory, a cloud tool's file, the cluster's
#: and the kubelet's files, /proc; also through a host mount.
CREDENTIAL_PATHS = ["*/.ssh/*", *(f"*{name}" for name in CLOUD_FILES),
                    *(f"{mount}{place}*" for mount in ("", *HOST_MOUNTS)
                      for place in ("/etc/kubernetes/", "/var/lib/kubelet/", "/proc/"))]


def node_path(path: str) -> str:
    """The path as the node names it: a container's hostPath mount prefix taken off."""
    if path.startswith(_MOUNT_PREFIXES):
        return path[path.index("/", 1) :]
    return path


def credential_kind(path: str) -> str:
    """What kind of credential ``path`` holds ('' for none)."""
    path = node_path(path)
    if not path.startswith(_PLACES) and "/." not in path:
        return ""
    name = path.rpartition("/")[2]
    if "/.ssh/" in path and ((name.startswith("id_") and not name.endswith(".pub")) or name.endswith(".pem")):
        return "ssh private key"
    if path.endswith(CLOUD_FILES):
        return "cloud credentials"
    if path.startswith(CLUSTER_FILES) and not path.endswith(".crt"):
        return "cluster credentials"
    if path.startswith("/var/lib/kubelet/pods/") and path.endswith("/token"):
        return "another pod's service-account token"
    if path.startswith("/proc/") and name == "environ" and path.count("/") == 3:
        return "process environment"
    return ""


def owners(kind: str) -> frozenset[str]:
    """The programs whose own credentials these are."""
    return {"ssh private key": SSH_TOOLS, "cloud credentials": CLOUD_TOOLS,
            "cluster credentials": CLUSTER_TOOLS}.get(kind, frozenset({"kubelet"}))


def credential_path(event: Event) -> str:
    """The credential file the event reads: the opened file, or a file named on a reading tool's command line."""
    if event.kind == "file.open":
        path = event.target.path or event.file.path
        return path if credential_kind(path) else ""
    if program_name(event) in READERS:
        return next((arg for arg in event.actor.args[1:] if credential_kind(arg)), "")
    return ""


def reads_credentials(event: Event) -> bool:
    path = credential_path(event)
    if not path or program_name(event) in owners(credential_kind(path)):
        return False
    if credential_kind(path) != "process environment":
        return True
    # Node tools (ps e, monitoring agents) read environments on hosts; in a container it is a secret hunt.
    in_container = bool(event.container.id or event.k8s.container_id)
    return in_container and path not in ("/proc/self/environ", f"/proc/{event.actor.pid}/environ")


def credential_context(event: Event) -> dict[str, Any]:
    path = credential_path(event)
    in_container = bool(event.container.id or event.k8s.container_id)
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "file": path,
            "what": credential_kind(path), "command": " ".join(event.actor.args),
            "where": container_label(event) if in_container else f"node {event.node}", "node": event.node}


def open_record(program: str, path: str) -> dict[str, Any]:
    """The eBPF sensor's record of ``program`` opening ``path`` to read, in a pod."""
    return in_pod({"type": "open", "time_ns": EXAMPLE_START_NS, "pid": 7790, "tid": 7790, "ppid": 7770, "uid": 0,
                   "gid": 0, "comm": program, "cgroup_id": 7301, "flags": 0, "mode": 0, "path": path, "repeats": 0})


DETECTION = EventDetection(
    id="runtime.credential_file_access",
    title="Credentials read by a program they do not belong to",
    alert_title="{program} read {what} {file} in {where}",
    description=(
        "A process read a credential file that is not its own: an SSH private key (not by ssh), cloud provider "
        "credentials (~/.aws, gcloud, Azure, registry logins), the cluster's administrator, controller or kubelet "
        "credentials and PKI keys, another pod's service-account token under /var/lib/kubelet/pods, or another "
        "process's environment (/proc/<pid>/environ, where secrets are passed). Credential theft is the step from "
        "one compromised container to the cluster and the cloud account."
    ),
    severity="high",
    mitre=["T1552.001", "T1552.004", "T1528", "T1552.007"],
    tags=["runtime", "credential_access"],
    references=["https://attack.mitre.org/techniques/T1552/001/", "https://attack.mitre.org/techniques/T1552/004/"],
    false_positives=["Backup agents reading whole home directories; debugging sessions on a control-plane node."],
    kinds=["file.open", "process.exec"],
    paths={"file.open": CREDENTIAL_PATHS},
    exe_names={"process.exec": READERS},
    match=reads_credentials,
    context=credential_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{file}",
    examples=[
        Example(
            name="cat of root's SSH private key (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/bin/cat", arguments="/root/.ssh/id_ed25519", parent="/bin/sh"),
        ),
        Example(
            name="another pod's token read through a hostPath mount (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=open_record("python3", "/host/var/lib/kubelet/pods/4f0c/volumes/kubernetes.io~projected/"
                                          "kube-api-access-x/token"),
        ),
        Example(
            name="Falco: AWS credentials opened by a shell",
            source="falco",
            fires=True,
            record=falco_record(
                "Read sensitive file untrusted", "openat",
                {"proc.exepath": "/bin/bash", "proc.name": "bash", "fd.name": "/root/.aws/credentials",
                 "evt.arg.flags": "O_RDONLY"},
            ),
        ),
        Example(
            name="the cluster admin kubeconfig read on a control-plane node (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/python3", arguments="steal.py", host=True,
                body=kprobe("security_file_permission", {"file_arg": {"path": "/etc/kubernetes/admin.conf"}},
                            {"int_arg": 4})),
        ),
        Example(
            name="Falco: another process's environment read",
            source="falco",
            fires=True,
            record=falco_record(
                "Read environment variable from /proc files", "openat",
                {"proc.exepath": "/usr/bin/cat", "proc.name": "cat", "proc.cmdline": "cat /proc/1/environ",
                 "fd.name": "/proc/1/environ", "evt.arg.flags": "O_RDONLY"},
            ),
        ),
        Example(
            name="ssh reading its own key",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/ssh", arguments="git@10.0.0.4",
                body=kprobe("security_file_permission", {"file_arg": {"path": "/root/.ssh/id_rsa"}}, {"int_arg": 4})),
        ),
        Example(
            name="the kubelet reading its client certificate key",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/kubelet", host=True,
                body=kprobe("security_file_permission",
                            {"file_arg": {"path": "/var/lib/kubelet/pki/kubelet-client-current.pem"}}, {"int_arg": 4})),
        ),
        Example(
            name="reading a public key",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/bin/cat", arguments="/root/.ssh/id_ed25519.pub"),
        ),
    ],
)
