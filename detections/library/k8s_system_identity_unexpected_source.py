"""A system identity (a kubelet, a control-plane component, a service account) used from an address outside the
networks the cluster's own machinery lives in: its credential is being used from elsewhere.

``trusted_networks`` defaults to the private ranges; a cluster whose nodes or control plane have public addresses
lists them in the tuning file. Node agents that run with the host network (their requests carry the node's
address, which on some clusters is public) are left out by ``allowed_identities`` until the deployment lists its
node networks and empties that list."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import PRIVATE_NETWORKS, addresses_outside, from_addresses, identity_in
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

#: Identities that exist only inside the cluster: kubelets, the control-plane components, and service accounts
#: (the controllers', the add-ons' and the workloads': their tokens are mounted into pods, and a token used from
#: outside was taken out of one).
SYSTEM_IDENTITIES = [
    "system:node:*",
    "system:apiserver",
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:kube-proxy",
    "system:serviceaccount:*",
    "eks:*",
]
#: hostNetwork DaemonSets whose requests come from the node's own address (in whichever namespace they run).
HOST_NETWORK_AGENTS = [
    "system:serviceaccount:*:kube-proxy",
    "system:serviceaccount:*:elastic-agent",
    "system:serviceaccount:*:calico-node",
    "system:serviceaccount:*:cilium",
    "system:serviceaccount:*:aws-node",
    "system:serviceaccount:*:kube-router",
    "system:serviceaccount:*:cloud-node-manager",
    "system:serviceaccount:*:csi-azuredisk-node-sa",
    "system:serviceaccount:*:csi-azurefile-node-sa",
    # EKS runs these two from AWS-owned Lambda functions, with public addresses.
    "eks:addon-manager",
    "eks:node-manager",
]


def outside_sources(event: Event, params: Mapping[str, Any]) -> list[str]:
    """The request's source addresses outside ``trusted_networks`` when a system identity made it, else []."""
    user = event.actor.user
    if (
        event.kind != "k8s.api"
        or not identity_in(user, params["identities"])
        or identity_in(user, params["allowed_identities"])
    ):
        return []
    return addresses_outside(event.actor.source_ips, params["trusted_networks"])


def source_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    return {"outside": outside_sources(event, params), "outcome": event.outcome.result}


_KUBE_PROXY_SA = "system:serviceaccount:kube-system:kube-proxy"
_NAMESPACE_CONTROLLER = "system:serviceaccount:kube-system:namespace-controller"

DETECTION = EventDetection(
    id="k8s.system_identity_unexpected_source",
    title="System identity used from outside the cluster's networks",
    alert_title="{user} {verb} {resource} from {outside} (outside the trusted networks)",
    description=(
        "A kubelet (system:node:*), a control-plane component or a service account made an API request from an "
        "address outside trusted_networks (the private ranges by default). These identities run on the "
        "cluster's nodes, control plane and pods; the same identity from an outside address means its "
        "credential (a node's client certificate, a controller's or a workload's token) was taken and is used "
        "from elsewhere, for a kube-system identity with more privilege than any person has. Reported whether "
        "or not the request was allowed: a refused one is still a stolen credential being tried."
    ),
    severity="high",
    params={
        "trusted_networks": PRIVATE_NETWORKS,
        "identities": SYSTEM_IDENTITIES,
        "allowed_identities": HOST_NETWORK_AGENTS,
    },
    mitre=["T1078.001", "T1552.007", "T1550.001"],
    tags=["kubernetes", "initial-access", "credential-access"],
    references=[
        "https://kubernetes.io/docs/reference/config-api/apiserver-audit.v1/#audit-k8s-io-v1-Event",
        "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/Application%20credentials%20in%20configuration%20files/",
    ],
    false_positives=[
        "Nodes or a control plane with public addresses (list them in trusted_networks), or a managed control "
        "plane's components calling from the provider's ranges.",
        "CI or GitOps systems outside the cluster that deploy with a service-account token (allowed_identities).",
    ],
    kinds=["k8s.api"],
    match=lambda event, params: bool(outside_sources(event, params)),
    context=source_context,
    dedup="{cluster}/{user}/{outside}",
    examples=[
        Example(
            name="a controller's token used from a public address",
            source="k8s-audit",
            fires=True,
            record=from_addresses(
                audit_record("list", "secrets", namespace="", user=_NAMESPACE_CONTROLLER), "203.0.113.50",
            ),
        ),
        Example(
            name="a kubelet's certificate used through a proxy from outside",
            source="k8s-audit",
            fires=True,
            record=from_addresses(
                audit_record("get", "pods", name="web", namespace="shop", user="system:node:worker-1",
                             groups=["system:nodes", "system:authenticated"]),
                "198.51.100.23", "10.0.0.7",
            ),
        ),
        Example(
            name="a refused request with a kube-system token from outside",
            source="k8s-audit",
            fires=True,
            record=from_addresses(
                audit_record("create", "clusterrolebindings", namespace="", api_group="rbac.authorization.k8s.io",
                             user="system:serviceaccount:kube-system:coredns", code=403),
                "2001:db8:77::5",
            ),
        ),
        Example(
            name="the same controller from the pod network",
            source="k8s-audit",
            fires=False,
            record=from_addresses(audit_record("list", "secrets", namespace="", user=_NAMESPACE_CONTROLLER),
                                  "10.244.1.17"),
        ),
        Example(
            name="kube-proxy on a node with a public address",
            source="k8s-audit",
            fires=False,
            record=from_addresses(audit_record("watch", "services", namespace="", user=_KUBE_PROXY_SA),
                                  "203.0.113.8"),
        ),
        Example(
            name="a person from a public address",
            source="k8s-audit",
            fires=False,
            record=from_addresses(audit_record("get", "pods", name="web", namespace="shop"), "203.0.113.50"),
        ),
        Example(
            name="a workload's token taken out of its pod",
            source="k8s-audit",
            fires=True,
            record=from_addresses(audit_record("get", "pods", namespace="shop", user="system:serviceaccount:shop:web"),
                                  "203.0.113.50"),
        ),
        Example(
            name="anonymous is not an identity with a credential",
            source="k8s-audit",
            fires=False,
            record=from_addresses(audit_record("get", "pods", namespace="shop", user="system:anonymous",
                                               groups=["system:unauthenticated"]), "203.0.113.50"),
        ),
    ],
)
