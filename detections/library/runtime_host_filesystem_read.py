"""A container reading the node's own files through a host mount (/host/etc, /rootfs/root, /hostfs/var/lib/kubelet):
the node's secrets and configuration, from a pod that was given the node's filesystem."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Where a container sees the node's filesystem through a hostPath mount.
HOST_MOUNTS = ("/host", "/hostfs", "/rootfs", "/node", "/host-root")
#: The node's directories that hold its secrets and configuration (not its /proc, /sys and logs, which node
#: agents read through the same mounts all day).
NODE_DIRS = ("/etc/", "/root/", "/home/", "/var/lib/kubelet/", "/var/lib/etcd/", "/var/lib/containerd/",
             "/var/lib/docker/", "/opt/cni/", "/usr/local/bin/", "/usr/bin/", "/boot/")
_PREFIXES = tuple(f"{mount}{directory}" for mount in HOST_MOUNTS for directory in NODE_DIRS)
#: Node agents that read the node's files through a host mount by design (monitoring, log shipping, scanning).
AGENTS = ["node_exporter", "node-exporter", "datadog-agent", "agent", "process-agent", "system-probe",
          "security-agent", "falco", "tetragon", "vigil", "fluent-bit", "fluentd", "filebeat", "promtail", "vector",
          "otelcol", "otelcol-contrib", "telegraf", "cadvisor", "kube-bench", "trivy", "node-problem-de"]


def node_file(event: Event) -> str:
    path = event.target.path or event.file.path
    return path if path.startswith(_PREFIXES) else ""


def reads_node_files(event: Event, params: dict[str, Any]) -> bool:
    if not (event.container.id or event.k8s.container_id) or "write" in event.file.access:
        return False  # writes are the persistence, binary-directory and manifest detections'
    return bool(node_file(event)) and program_name(event) not in params["allowed_programs"]


def host_read_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "file": node_file(event), "command": " ".join(event.actor.args),
            "where": container_label(event), "image": event.k8s.image or event.container.image}


DETECTION = EventDetection(
    id="runtime.host_filesystem_read",
    title="Node's files read through a host mount in a container",
    alert_title="{program} read the node's {file} in {where}",
    description=(
        "A process in a container read a file of the node's /etc, home directories, kubelet, etcd or runtime "
        "state, or program directories through a hostPath mount (/host, /hostfs, /rootfs, /node). A pod with "
        "the node's filesystem mounted is one step from the node; reading the kubelet's credentials, SSH keys "
        "or other pods' volumes through it is that step. Node agents (monitoring, log shippers, scanners) that "
        "read the node by design are not reported, nor /proc and /sys."
    ),
    severity="medium",
    mitre=["T1611", "T1552.001"],
    tags=["runtime", "container_escape", "credential_access"],
    references=["https://attack.mitre.org/techniques/T1611/"],
    false_positives=["Node agents not in allowed_programs; backup tools reading volumes through the host."],
    kinds=["file.open"],
    paths=[f"{prefix}*" for prefix in _PREFIXES],
    params={"allowed_programs": AGENTS},
    match=reads_node_files,
    context=host_read_context,
    dedup="{cluster}/{namespace}/{pod}/{where}/{exe}",
    examples=[
        Example(
            name="Falco: cat reading the node's kubelet kubeconfig through /host",
            source="falco",
            fires=True,
            record=falco_record("Custom open audit", "openat",
                                {"proc.exepath": "/bin/cat", "proc.name": "cat",
                                 "proc.cmdline": "cat /host/var/lib/kubelet/kubeconfig",
                                 "fd.name": "/host/var/lib/kubelet/kubeconfig", "evt.arg.flags": "O_RDONLY"}),
        ),
        Example(
            name="a shell reading the node's /etc through /rootfs (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record("process_kprobe", binary="/bin/sh",
                                   body=kprobe("security_file_permission",
                                               {"file_arg": {"path": "/rootfs/etc/passwd"}}, {"int_arg": 4})),
        ),
        Example(
            name="node-exporter reading the node's /proc",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_kprobe", binary="/bin/node_exporter",
                                   body=kprobe("security_file_permission",
                                               {"file_arg": {"path": "/host/proc/stat"}}, {"int_arg": 4})),
        ),
        Example(
            name="fluent-bit reading the node's configuration",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_kprobe", binary="/fluent-bit/bin/fluent-bit",
                                   body=kprobe("security_file_permission",
                                               {"file_arg": {"path": "/host/etc/machine-id"}}, {"int_arg": 4})),
        ),
    ],
)
