"""A file written under /etc/kubernetes/manifests: kubelet runs whatever pod spec appears there."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

MANIFEST_DIRS = ("/etc/kubernetes/manifests/", "/host/etc/kubernetes/manifests/", "/rootfs/etc/kubernetes/manifests/")
#: The node's own tooling that manages static pods.
MANIFEST_WRITERS = frozenset({"kubeadm", "kubelet"})
#: Programs that write a file named on their command line.
FILE_WRITERS = frozenset({"cp", "mv", "tee", "install", "dd", "curl", "wget", "rsync"})


def manifest_path(event: Event) -> str:
    if event.kind == "file.write":
        return event.target.path if event.target.path.startswith(MANIFEST_DIRS) else ""
    if program_name(event) in FILE_WRITERS:
        return next((arg for arg in event.actor.args if arg.startswith(MANIFEST_DIRS)), "")
    return ""


def writes_manifest(event: Event) -> bool:
    return bool(manifest_path(event)) and program_name(event) not in MANIFEST_WRITERS


def manifest_context(event: Event) -> dict[str, Any]:
    return {"exe": event.actor.exe, "file": manifest_path(event), "command": " ".join(event.actor.args),
            "container": event.k8s.container_name, "node": event.node}


DETECTION = EventDetection(
    id="runtime.static_pod_manifest_write",
    title="Static pod manifest written",
    alert_title="{program} wrote static pod manifest {file} on {node}",
    description=(
        "A process other than kubeadm or kubelet wrote a file in the kubelet's static pod directory, on the "
        "node or through a hostPath mount from a pod. The kubelet starts every pod spec found there without "
        "asking the API server, so admission control never sees it: a persistent, privileged foothold that "
        "survives deleting the pod that planted it."
    ),
    severity="critical",
    mitre=["T1543", "T1610"],
    tags=["runtime", "persistence", "kubernetes"],
    references=["https://kubernetes.io/docs/tasks/configure-pod-container/static-pod/",
                "https://attack.mitre.org/techniques/T1610/"],
    false_positives=["Configuration management (Ansible, Puppet) that maintains control-plane manifests."],
    kinds=["file.write", "process.exec"],
    paths={"file.write": [f"{d}*" for d in MANIFEST_DIRS]},
    exe_names={"process.exec": FILE_WRITERS},
    match=writes_manifest,
    context=manifest_context,
    dedup="{cluster}/{node}/{file}",
    examples=[
        Example(
            name="manifest copied through a hostPath mount (Tetragon exec)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/bin/cp", arguments="/tmp/backdoor.yaml /host/etc/kubernetes/manifests/",
                                   parent="/bin/sh"),
        ),
        Example(
            name="manifest written on the node (Tetragon kprobe)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/python3", host=True,
                body=kprobe("security_file_permission",
                            {"file_arg": {"path": "/etc/kubernetes/manifests/kube-proxy-x.yaml"}}, {"int_arg": 2}),
            ),
        ),
        Example(
            name="Falco: write below etc (static pod directory)",
            source="falco",
            fires=True,
            record=falco_record(
                "Write below etc", "openat",
                {"proc.exepath": "/bin/busybox", "proc.name": "sh", "proc.cmdline": "sh -c cat > /host/etc/...",
                 "fd.name": "/host/etc/kubernetes/manifests/etcd-x.yaml", "evt.arg.flags": "O_WRONLY|O_CREAT|O_TRUNC"},
                priority="Error",
            ),
        ),
        Example(
            name="kubeadm upgrading the control plane",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/kubeadm", arguments="upgrade apply v1.30.2", host=True,
                body=kprobe("security_file_permission",
                            {"file_arg": {"path": "/etc/kubernetes/manifests/kube-apiserver.yaml"}}, {"int_arg": 2}),
            ),
        ),
        Example(
            name="reading a manifest",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/python3", host=True,
                body=kprobe("security_file_permission",
                            {"file_arg": {"path": "/etc/kubernetes/manifests/etcd.yaml"}}, {"int_arg": 4}),
            ),
        ),
    ],
)
