"""A request by an identity outside the deployment's list of users: who may use the cluster at all.

Out of the box the list holds only the identities Kubernetes and managed providers run themselves, so every
person and external client is reported at informational severity; a deployment lists its people, groups of
service accounts and CI identities in ``allowed_users`` and raises the severity in the tuning file."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import identity_in
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

#: The cluster's own identities: components, kubelets, service accounts, bootstrap tokens, and the managed
#: providers' operators (EKS, AKS, GKE).
OWN_IDENTITIES = ["system:*", "eks:*", "aksService", "masterclient", "nodeclient", "kubelet-nodepool-bootstrap"]


def is_unlisted_user(event: Event, params: Mapping[str, Any]) -> bool:
    user = event.actor.user
    return bool(user) and not identity_in(user, params["allowed_users"])


DETECTION = EventDetection(
    id="k8s.user_not_allowed",
    title="Request by a user outside the allowed list",
    alert_title="{user} used the API ({verb} {resource}), not in allowed_users",
    description=(
        "An authenticated request came from an identity that matches none of allowed_users. A cluster usually "
        "has a short, known list of people and external clients (CI, GitOps, break-glass); a name outside it "
        "is a credential nobody accounted for: a leftover kubeconfig, a new OIDC group, an attacker's "
        "certificate. Informational until the deployment lists its users, reported once an hour per user."
    ),
    severity="informational",
    params={"allowed_users": OWN_IDENTITIES},
    mitre=["T1078", "T1078.001"],
    tags=["kubernetes", "initial-access", "allow-list"],
    references=["https://kubernetes.io/docs/reference/access-authn-authz/authentication/"],
    false_positives=["People and tools not yet added to allowed_users."],
    kinds=["k8s.api"],
    match=is_unlisted_user,
    dedup="{cluster}/{user}",
    dedup_period_s=3600.0,
    examples=[
        Example(name="a person", source="k8s-audit", fires=True, record=audit_record("list", "pods")),
        Example(name="an unknown certificate", source="k8s-audit", fires=True,
                record=audit_record("get", "secrets", name="x", user="backup-bot", groups=["ops"])),
        Example(name="a kubelet", source="k8s-audit", fires=False,
                record=audit_record("get", "pods", name="web", namespace="shop", user="system:node:worker-1")),
        Example(name="a service account", source="k8s-audit", fires=False,
                record=audit_record("list", "pods", namespace="shop", user="system:serviceaccount:shop:web")),
    ],
)
