"""Pod, workload or service account created in kube-system or kube-public by someone other than the control plane."""

from vigil.detections.k8s import CONTROL_PLANE, POD_SPEC_PATHS, identity_in
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record, workload_object

SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public"})
RESOURCES = frozenset({*POD_SPEC_PATHS, "serviceaccounts"})
#: Who creates objects in the system namespaces all day: the controllers (a DaemonSet's pods are created by
#: the daemon-set controller, service accounts by the service-account controller) and kubelets' mirror pods.
ALLOWED_IDENTITIES = CONTROL_PLANE


def is_system_namespace_create(event: Event) -> bool:
    target = event.target
    return (
        event.action == "create"
        and target.namespace in SYSTEM_NAMESPACES
        and target.resource in RESOURCES
        and not target.subresource
        and not identity_in(event.actor.user, ALLOWED_IDENTITIES)
    )


DETECTION = EventDetection(
    id="k8s.system_namespace_object",
    title="Workload or service account created in a system namespace",
    alert_title="{user} created {resource}/{name} in {namespace}",
    description=(
        "A pod, a workload that templates pods, or a service account was created in kube-system or kube-public "
        "by an identity that is not a control-plane component. System namespaces hold the cluster's most "
        "privileged service accounts and are rarely looked at: attackers hide backdoor pods there under names "
        "that imitate system pods (kube-proxy-x7k2p) and create service accounts there to persist. "
        "Reported whether or not the request was allowed."
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
    resources=RESOURCES, actions=["create"], subresources=[""],
    match=is_system_namespace_create,
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
