"""Added Linux capabilities: a container granted capabilities that break out of, or reach past, its sandbox.
Namespaces where some are expected (the CNI's NET_ADMIN in kube-system) list them in ``allowed_capabilities``."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import (
    POD_SPEC_RESOURCES,
    SPEC_SUBRESOURCES,
    SPEC_WRITE_VERBS,
    containers,
    is_privileged,
    pod_spec,
    workload,
)
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record, workload_object

#: Capabilities that amount to root on the node or to its kernel, its network or other processes.
#: Names are compared without the ``CAP_`` prefix and case-insensitively, as the container runtime does.
DANGEROUS_CAPABILITIES = frozenset(
    {
        "ALL",
        "SYS_ADMIN",
        "SYS_PTRACE",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_BOOT",
        "SYS_TIME",
        "NET_ADMIN",
        "NET_RAW",
        "DAC_READ_SEARCH",
        "DAC_OVERRIDE",
        "BPF",
        "PERFMON",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "SYSLOG",
    }
)


def _capability(name: Any) -> str:
    text = str(name).upper()
    return text[4:] if text.startswith("CAP_") else text


def added_capabilities(event: Event, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Dangerous capabilities added per container, less those ``allowed_capabilities`` allows in the namespace."""
    spec = pod_spec(event)
    if spec is None:
        return []
    found = []
    for list_name, container in containers(spec):
        if is_privileged(container):  # it has every capability: k8s.privileged_container reports it
            continue
        context = container.get("securityContext")
        capabilities = context.get("capabilities") if isinstance(context, dict) else None
        added = capabilities.get("add") if isinstance(capabilities, dict) else None
        if not isinstance(added, list):
            continue
        allowed = {_capability(c) for c in params["allowed_capabilities"]}
        dangerous = sorted({_capability(c) for c in added} & DANGEROUS_CAPABILITIES - allowed)
        if dangerous:
            found.append({"container": str(container.get("name", "")), "list": list_name, "capabilities": dangerous})
    return found


def capabilities_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    found = added_capabilities(event, params)
    return {
        "workload": workload(event),
        "capabilities": sorted({c for entry in found for c in entry["capabilities"]}),
        "containers": found,
    }


def _container(*added: str) -> dict[str, Any]:
    return {"name": "app", "image": "busybox:1.36", "securityContext": {"capabilities": {"add": list(added)}}}


DETECTION = EventDetection(
    id="k8s.added_capabilities",
    title="Container granted dangerous capabilities",
    alert_title="{user} granted {capabilities} in {workload} ({namespace})",
    description=(
        "A pod, or a workload that templates pods, was created or changed with a container that adds Linux "
        "capabilities beyond the runtime's default set: SYS_ADMIN (mount, most of root), SYS_MODULE (load kernel "
        "modules), SYS_PTRACE (attach to other processes), NET_ADMIN/NET_RAW (reconfigure or sniff the network), "
        "DAC_READ_SEARCH (read any file by handle, the 'shocker' escape), BPF, or ALL. Each of them is a known "
        "container-escape or node-compromise path. Reported whether or not the request was allowed."
    ),
    severity="high",
    mitre=["T1611", "T1610"],
    tags=["kubernetes", "privilege-escalation", "container-escape"],
    references=[
        "https://kubernetes.io/docs/concepts/security/pod-security-standards/#baseline",
        "https://www.elastic.co/guide/en/security/current/kubernetes-container-created-with-excessive-linux-capabilities.html",
    ],
    false_positives=[
        "CNI plugins need NET_ADMIN and NET_RAW, eBPF-based agents BPF/PERFMON/SYS_ADMIN; expect their "
        "DaemonSets when they are installed or upgraded.",
    ],
    kinds=["k8s.api"],
    resources=POD_SPEC_RESOURCES, actions=SPEC_WRITE_VERBS, subresources=SPEC_SUBRESOURCES,
    #: Capabilities expected in a namespace (per namespace in the tuning file: NET_ADMIN for the CNI's).
    params={"allowed_capabilities": []},
    match=lambda event, params: bool(added_capabilities(event, params)),
    context=capabilities_context,
    dedup="{cluster}/{namespace}/{workload}",
    examples=[
        Example(
            name="SYS_ADMIN in a pod",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "pods", name="mounter",
                request_object=workload_object("Pod", "mounter", {"containers": [_container("SYS_ADMIN")]}),
            ),
        ),
        Example(
            name="CAP_SYS_PTRACE spelled with the prefix, lower case, in a Deployment",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "deployments", name="tracer", api_group="apps",
                request_object=workload_object("Deployment", "tracer", {"containers": [_container("cap_sys_ptrace")]}),
            ),
        ),
        Example(
            name="ALL capabilities in an init container",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "jobs", name="setup", api_group="batch",
                request_object=workload_object("Job", "setup", {"initContainers": [_container("ALL")]}),
            ),
        ),
        Example(
            name="binding a low port only",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "pods", name="web",
                request_object=workload_object("Pod", "web", {"containers": [_container("NET_BIND_SERVICE")]}),
            ),
        ),
        Example(
            name="dropping capabilities",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "pods", name="hardened",
                request_object=workload_object(
                    "Pod", "hardened",
                    {"containers": [{"name": "app", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]},
                ),
            ),
        ),
    ],
)
