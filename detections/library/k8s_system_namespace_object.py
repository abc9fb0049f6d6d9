"""Object created in a system namespace (kube-system, kube-public, kube-node-lease and the namespaces a deployment
adds, such as a managed cluster's own) by someone other than the control plane or that namespace's own components."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import CONTROL_PLANE, POD_SPEC_PATHS, SYSTEM_NAMESPACES, identity_in
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record, workload_object

#: Objects that run code or carry identity: only the control plane creates them in a system namespace (a
#: DaemonSet's pods come from the daemon-set controller, service accounts from the service-account controller,
#: mirror pods from kubelets).
WORKLOAD_RESOURCES = frozenset({*POD_SPEC_PATHS, "serviceaccounts"})
#: What components write in their namespace all day as a by-product of running: leader-election leases,
#: events, endpoints. Creating one is never the attack.
IGNORED_RESOURCES = ["events", "leases", "endpoints", "endpointslices"]
#: Who creates objects in the system namespaces all day: the control plane, and the namespace's own service
#: accounts for the objects that are not workloads ({namespace} is the event's namespace).
ALLOWED_IDENTITIES = CONTROL_PLANE
OWN_COMPONENTS = "system:serviceaccount:{namespace}:*"


def is_system_namespace_create(event: Event, params: Mapping[str, Any]) -> bool:
    target = event.target
    if (
        event.action != "create"
        or target.subresource
        or target.namespace not in (*SYSTEM_NAMESPACES, *params["extra_system_namespaces"])
        or target.resource in params["ignored_resources"]
        or identity_in(event.actor.user, params["allowed_identities"])
    ):
        return False
    if target.resource in WORKLOAD_RESOURCES and target.api_group in ("", "apps", "batch"):
        return True
    return not identity_in(event.actor.user, [OWN_COMPONENTS.format(namespace=target.namespace)])


def create_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind_of_object": "workload" if event.target.resource in WORKLOAD_RESOURCES else "object"}


DETECTION = EventDetection(
    id="k8s.system_namespace_object",
    title="Object created in a system namespace",
    alert_title="{user} created {resource}/{name} in {namespace}",
    description=(
        "An object was created in kube-system, kube-public, kube-node-lease or a namespace listed in "
        "extra_system_namespaces by an identity that is not a control-plane component: a pod, a workload that "
        "templates pods or a service account by anyone else, any other object (secrets, role bindings, "
        "ConfigMaps, webhooks' services) by anyone but the namespace's own service accounts. Leases, events and "
        "endpoints are left out. System namespaces hold the cluster's most privileged service accounts and are "
        "rarely looked at: attackers hide backdoor pods there under names that imitate system pods "
        "(kube-proxy-x7k2p), create service accounts, tokens and bindings there to persist. Reported whether "
        "or not the request was allowed."
    ),
    severity="medium",
    mitre=["T1036.005", "T1136", "T1610"],
    tags=["kubernetes", "persistence", "defense-evasion"],
    references=[
        "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/Pod%20or%20container%20name%20similarily/",
        "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/container%20service%20account/",
    ],
    false_positives=[
        "Cluster add-ons (CNI, CSI, metrics-server, ingress controllers) are installed into kube-system by an "
        "administrator or a deployment pipeline; check the user and whether an installation was planned.",
    ],
    kinds=["k8s.api"],
    params={"extra_system_namespaces": [], "ignored_resources": IGNORED_RESOURCES,
            "allowed_identities": list(ALLOWED_IDENTITIES)},
    actions=["create"], subresources=[""],
    match=is_system_namespace_create,
    context=create_context,
    dedup="{cluster}/{namespace}/{resource}/{name}",
    examples=[
        Example(
            name="pod imitating kube-proxy",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "pods", name="kube-proxy-bv61v", namespace="kube-system",
                request_object=workload_object("Pod", "kube-proxy-bv61v", {"containers": [{"name": "p"}]}),
            ),
        ),
        Example(
            name="service account in kube-public",
            source="k8s-audit",
            fires=True,
            record=audit_record("create", "serviceaccounts", name="backup", namespace="kube-public"),
        ),
        Example(
            name="a secret in kube-node-lease",
            source="k8s-audit",
            fires=True,
            record=audit_record("create", "secrets", name="relay", namespace="kube-node-lease"),
        ),
        Example(
            name="a kube-system add-on's token used to create a pod next to it",
            source="k8s-audit",
            fires=True,
            record=audit_record("create", "pods", name="coredns-debug", namespace="kube-system",
                                user="system:serviceaccount:kube-system:coredns"),
        ),
        Example(
            name="an add-on keeps its own ConfigMap in kube-system",
            source="k8s-audit",
            fires=False,
            record=audit_record("create", "configmaps", name="cluster-autoscaler-status", namespace="kube-system",
                                user="system:serviceaccount:kube-system:cluster-autoscaler"),
        ),
        Example(
            name="a leader-election lease",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "leases", name="cert-manager-controller", namespace="kube-system",
                api_group="coordination.k8s.io", user="system:serviceaccount:cert-manager:cert-manager",
            ),
        ),
        Example(
            name="DaemonSet's pod created by its controller",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "pods", name="kube-proxy-x7k2p", namespace="kube-system",
                user="system:serviceaccount:kube-system:daemon-set-controller",
            ),
        ),
        Example(
            name="pod in an application namespace",
            source="k8s-audit",
            fires=False,
            record=audit_record("create", "pods", name="web", namespace="shop"),
        ),
    ],
)
