"""A request made with a superuser credential: a member of ``system:masters`` (which no RBAC rule can restrict or
revoke) or one of the default administrator names that installers write into the first kubeconfig."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import identity_in
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

MASTERS = "system:masters"
#: The administrator names kubeadm, minikube, kops and others put in the kubeconfig they create.
DEFAULT_ADMINS = ["kubernetes-admin", "kubernetes-admin@*", "admin", "minikube-user", "kube-admin", "kops"]
#: Who holds system:masters by design: the API server's loopback client, and managed providers' own operators
#: (AKS runs its services as aksService and masterclient).
ALLOWED_IDENTITIES = ["system:apiserver", "aksService", "masterclient"]


def superuser_reason(event: Event, params: Mapping[str, Any]) -> str:
    actor = event.actor
    if MASTERS in actor.groups:
        reason = "member of system:masters"
    elif identity_in(actor.user, params["admin_users"]):
        reason = "default administrator name"
    else:
        return ""
    return "" if not actor.user or identity_in(actor.user, params["allowed_identities"]) else reason


DETECTION = EventDetection(
    id="k8s.superuser_credential_used",
    title="Superuser credential used",
    alert_title="{user} used a superuser credential ({reason}) from {source_ips}",
    description=(
        "An API request was made by a member of the system:masters group, or by one of the administrator names "
        "installers put in the first kubeconfig (kubernetes-admin, admin, minikube-user…). system:masters "
        "bypasses RBAC entirely and its client certificates cannot be revoked short of rotating the cluster CA, "
        "so day-to-day work should not use it: each use is break-glass access worth a line in the record, and a "
        "use nobody planned is a leaked admin kubeconfig. Informational, reported once an hour per user and "
        "address."
    ),
    severity="informational",
    params={"admin_users": DEFAULT_ADMINS, "allowed_identities": ALLOWED_IDENTITIES},
    mitre=["T1078.001", "T1078.004"],
    tags=["kubernetes", "privileged-access"],
    references=[
        "https://kubernetes.io/docs/concepts/security/rbac-good-practices/#least-privilege",
        "https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/kubeadm-certs/",
    ],
    false_positives=["Cluster bootstrap and upgrades, which use the admin kubeconfig by design."],
    kinds=["k8s.api"],
    match=lambda event, params: bool(superuser_reason(event, params)),
    context=lambda event, params: {"reason": superuser_reason(event, params)},
    dedup="{cluster}/{user}/{source_ips}",
    dedup_period_s=3600.0,
    examples=[
        Example(name="the kubeadm admin kubeconfig", source="k8s-audit", fires=True,
                record=audit_record("list", "pods", namespace="", user="kubernetes-admin",
                                    groups=["kubeadm:cluster-admins", "system:authenticated"])),
        Example(name="a certificate in system:masters", source="k8s-audit", fires=True,
                record=audit_record("get", "secrets", name="x", namespace="shop", user="ops-2024",
                                    groups=[MASTERS, "system:authenticated"])),
        Example(name="an ordinary user", source="k8s-audit", fires=False,
                record=audit_record("list", "pods", namespace="shop")),
        Example(name="the API server's own client", source="k8s-audit", fires=False,
                record=audit_record("update", "clusterroles", name="system:discovery", namespace="",
                                    api_group="rbac.authorization.k8s.io", user="system:apiserver",
                                    groups=[MASTERS])),
    ],
)
