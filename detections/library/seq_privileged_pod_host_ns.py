"""A privileged or host-namespace pod created through the API, then a process in it entering the host's
namespaces: a container escape, from the request that made it possible to the moment it was used."""

import posixpath
from typing import Any

from vigil.detections.k8s import SPEC_SUBRESOURCES, containers, pod_spec, written_object
from vigil.detections.sdk import Scenario, ScenarioEvent, SequenceDetection, Step, pod_key
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record, workload_object
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

HOST_NAMESPACES = ("hostPID", "hostIPC", "hostNetwork")
#: Programs whose only purpose in a container is to enter or switch to another namespace or root.
NAMESPACE_TOOLS = frozenset({"nsenter", "chroot", "unshare"})


def escape_settings(event: Event) -> list[str]:
    """What makes a pod created by this request able to reach the host ([] for anything else)."""
    if event.action != "create" or event.target.resource != "pods":
        return []
    spec = pod_spec(event)
    if spec is None:
        return []
    found = [name for name in HOST_NAMESPACES if spec.get(name) is True]
    for _, container in containers(spec):
        context = container.get("securityContext")
        if isinstance(context, dict) and context.get("privileged") is True:
            found.append(f"privileged:{container.get('name', '')}")
    return found


def created_pod_key(event: Event) -> str:
    """The new pod's key, also for pods named by the API server (``generateName``): then only the logged
    response carries the name."""
    key = pod_key(event)
    if key:
        return key
    response = event.request.response if isinstance(event.request.response, dict) else None
    metadata = (response or written_object(event) or {}).get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return f"{event.cluster}/{event.target.namespace}/{name}" if isinstance(name, str) and name else ""


def enters_host_namespace(event: Event) -> bool:
    if event.kind == "process.ns_change":
        return True
    return posixpath.basename(event.actor.exe) in NAMESPACE_TOOLS


def creation_context(event: Event) -> dict[str, Any]:
    return {"settings": escape_settings(event), "creator": event.actor.user, "verb": event.action}


PRIVILEGED_SPEC = {"hostPID": True, "containers": [
    {"name": "shell", "image": "busybox", "securityContext": {"privileged": True}, "command": ["sleep", "3600"]}]}
PLAIN_SPEC = {"containers": [{"name": "app", "image": "nginx"}]}
SETNS = kprobe("__x64_sys_setns", {"int_arg": 3}, {"int_arg": 0x20000000})


def create_pod(spec: dict, name: str = "web-7f9c") -> dict:
    return audit_record("create", "pods", name=name, request_object=workload_object("Pod", name, spec))


DETECTION = SequenceDetection(
    id="seq.privileged_pod_host_namespace",
    title="Privileged pod created, then a process in it entered host namespaces",
    alert_title="{creator} created {namespace}/{pod} ({settings}); {exe} then entered host namespaces",
    description=(
        "A pod was created with privileged containers or the host's PID, IPC or network namespace, and within "
        "ten minutes a process in that pod called setns/unshare or ran nsenter or chroot. Such a pod is the "
        "classic container-escape vehicle (nsenter -t 1 -m -u -i -n sh gives a root shell on the node); seeing "
        "the creation and the use together names both who set it up and what it did."
    ),
    severity="critical",
    mitre=["T1611", "T1610"],
    tags=["sequence", "kubernetes", "runtime", "privilege-escalation", "escape"],
    references=["https://attack.mitre.org/techniques/T1611/", "https://bishopfox.com/blog/kubernetes-pod-privilege-escalation"],
    false_positives=["Node agents (CNI, storage drivers) that enter host namespaces by design right after start."],
    max_span_s=600,
    steps=[
        Step(name="privileged pod created", kinds=["k8s.api"], sources=["k8s-audit"],
             match=lambda e: bool(escape_settings(e)), key=created_pod_key, context=creation_context,
             resources=["pods"], actions=["create"], subresources=SPEC_SUBRESOURCES),
        Step(name="host namespace entered", kinds=["process.ns_change", "process.exec"], match=enters_host_namespace,
             exe_names={"process.exec": NAMESPACE_TOOLS},
             context=lambda e: {"exe": e.actor.exe, "args": e.actor.args, "action": e.action}),
    ],
    dedup="{cluster}/{namespace}/{pod}",
    examples=[
        Scenario(name="privileged hostPID pod, then setns from nsenter", fires=True, events=[
            ScenarioEvent(source="k8s-audit", record=create_pod(PRIVILEGED_SPEC), at_s=0),
            ScenarioEvent(source="tetragon", record=tetragon_record(
                "process_kprobe", binary="/usr/bin/nsenter", arguments="-t 1 -m -u -i -n sh", body=SETNS), at_s=30),
        ]),
        Scenario(name="chroot into the host root, reported before the audit record", fires=True, events=[
            ScenarioEvent(source="tetragon", record=tetragon_record(binary="/usr/sbin/chroot", arguments="/host"),
                          at_s=12),
            ScenarioEvent(source="k8s-audit", record=create_pod(PRIVILEGED_SPEC), at_s=2),
        ]),
        Scenario(name="an ordinary pod runs nsenter", fires=False, events=[
            ScenarioEvent(source="k8s-audit", record=create_pod(PLAIN_SPEC), at_s=0),
            ScenarioEvent(source="tetragon", record=tetragon_record(
                "process_kprobe", binary="/usr/bin/nsenter", body=SETNS), at_s=30),
        ]),
        Scenario(name="the privileged pod only runs its workload", fires=False, events=[
            ScenarioEvent(source="k8s-audit", record=create_pod(PRIVILEGED_SPEC), at_s=0),
            ScenarioEvent(source="tetragon", record=tetragon_record(binary="/bin/sleep", arguments="3600"), at_s=1),
        ]),
    ],
)
