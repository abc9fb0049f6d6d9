"""A container driving the node's container runtime: a runtime client run inside it, or the runtime's socket
opened or connected to from it. Whoever talks to the runtime can start a privileged container on the node."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Clients of container runtimes (kubectl talks to the API server, which the audit detections watch).
RUNTIME_CLIENTS = frozenset({"docker", "crictl", "ctr", "nerdctl", "podman", "runc", "crun", "buildah",
                             "docker-compose"})
#: The runtimes' API sockets, by their file names.
RUNTIME_SOCKETS = ("docker.sock", "containerd.sock", "crio.sock", "cri-dockerd.sock", "podman.sock",
                   "buildkitd.sock", "dockershim.sock")


def runtime_access(event: Event, params: dict[str, Any]) -> str:
    """``client <name>`` or ``socket <path>`` when a container reaches the runtime, else ''."""
    if not (event.container.id or event.k8s.container_id):
        return ""
    if event.k8s.namespace in params["allowed_namespaces"]:
        return ""
    if event.kind == "process.exec":
        program = program_name(event)
        return f"client {program}" if program in RUNTIME_CLIENTS else ""
    path = event.target.path or event.file.path
    return f"socket {path}" if path.endswith(RUNTIME_SOCKETS) else ""


def access_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe,
            "how": runtime_access(event, params), "command": " ".join(event.actor.args),
            "where": container_label(event), "image": event.k8s.image or event.container.image}


DETECTION = EventDetection(
    id="runtime.container_runtime_access",
    title="Container runtime driven from inside a container",
    alert_title="{program} in {where} reached the container runtime ({how})",
    description=(
        "A container runtime client (docker, crictl, ctr, nerdctl, podman, runc) ran in a container, or a process "
        "in a container opened or connected to the runtime's API socket (docker.sock, containerd.sock, crio.sock: "
        "the eBPF sensor records connects to these sockets). The runtime runs "
        "as root on the node: through it anyone can start a privileged container with the node's filesystem, "
        "exec into other pods and read their secrets. Mounting the socket into a pod is already a finding of the "
        "API detections; using it is the escape. Namespaces of node agents can be allowed in `allowed_namespaces`."
    ),
    severity="high",
    mitre=["T1610", "T1611", "T1068"],
    tags=["runtime", "privilege_escalation", "container_escape", "execution"],
    references=["https://attack.mitre.org/techniques/T1610/", "https://falco.org/docs/rules/default-rules/"],
    false_positives=["CI runners building images with the node's Docker daemon (docker-in-docker by socket)."],
    kinds=["process.exec", "file.write", "net.connect"],
    paths={kind: [f"*{name}" for name in RUNTIME_SOCKETS] for kind in ("file.write", "net.connect")},
    exe_names={"process.exec": RUNTIME_CLIENTS},
    resources={"net.connect": ["unix"]},  # unix sockets: the eBPF sensor records connects to the runtimes' ones
    params={"allowed_namespaces": []},
    match=lambda event, params: bool(runtime_access(event, params)),
    context=access_context,
    dedup="{cluster}/{namespace}/{pod}/{where}/{how}",
    examples=[
        Example(
            name="docker run against the mounted socket (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/docker",
                                   arguments="-H unix:///host/run/docker.sock run --privileged -v /:/h alpine",
                                   parent="/bin/sh"),
        ),
        Example(
            name="Falco: containerd's socket opened from a container",
            source="falco",
            fires=True,
            record=falco_record(
                "Custom runtime socket audit", "openat",
                {"proc.exepath": "/usr/bin/python3", "proc.name": "python3", "proc.cmdline": "python3 x.py",
                 "fd.name": "/run/containerd/containerd.sock", "evt.arg.flags": "O_RDWR"},
            ),
        ),
        Example(
            name="a connect to the node's docker.sock mounted into a pod (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "unix_connect", "time_ns": EXAMPLE_START_NS, "pid": 7501, "tid": 7501,
                           "ppid": 7500, "uid": 0, "gid": 0, "comm": "python3", "cgroup_id": 7301, "fd": 3,
                           "family": "unix", "path": "/host/run/docker.sock"}),
        ),
        Example(
            name="the kubelet connecting to containerd on the node",
            source="ebpf",
            fires=False,
            record={"type": "unix_connect", "time_ns": EXAMPLE_START_NS, "pid": 880, "tid": 880, "ppid": 1, "uid": 0,
                    "gid": 0, "comm": "kubelet", "cgroup_id": 1, "container_id": "", "node": "worker-1", "fd": 9,
                    "family": "unix", "path": "/run/containerd/containerd.sock"},
        ),
        Example(
            name="crictl in a container without pod metadata (Falco)",
            source="falco",
            fires=True,
            record=falco_record(
                "The docker client is executed in a container", "execve",
                {"proc.exepath": "/usr/local/bin/crictl", "proc.name": "crictl", "proc.cmdline": "crictl ps",
                 "k8s.ns.name": None, "k8s.pod.name": None},
            ),
        ),
        Example(
            name="crictl on the node",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/local/bin/crictl", arguments="ps", host=True),
        ),
        Example(
            name="an application opening its own socket",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/sbin/nginx",
                body=kprobe("security_file_permission", {"file_arg": {"path": "/run/nginx.sock"}}, {"int_arg": 2})),
        ),
    ],
)
