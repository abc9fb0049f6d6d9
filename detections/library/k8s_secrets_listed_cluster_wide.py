"""Every secret of the cluster listed or watched in one request, by an identity whose job is not reading them."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import SECRET_READERS, identity_in
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_LISTS = frozenset({"list", "watch"})


def is_cluster_wide_secret_list(event: Event, params: Mapping[str, Any]) -> bool:
    """A list or watch of secrets with no namespace (``/api/v1/secrets``) that authorization let through."""
    target = event.target
    return (
        event.action in _LISTS
        and target.resource == "secrets"
        and not target.subresource
        and not target.namespace
        and event.outcome.result not in ("denied", "unknown")
        and not identity_in(event.actor.user, params["allowed_identities"])
    )


def dump_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    return {"uri": event.target.uri, "user_agent": event.actor.user_agent}


DETECTION = EventDetection(
    id="k8s.secrets_listed_cluster_wide",
    title="All secrets in the cluster listed",
    alert_title="{user} listed every secret in the cluster ({verb})",
    description=(
        "Secrets of all namespaces were listed or watched in one request (kubectl get secrets -A, or a list of "
        "/api/v1/secrets) by an identity that is not a control-plane component or one of the in-cluster "
        "components whose job is reading secrets (allowed_identities). One such request returns every "
        "service-account token, registry and cloud credential and TLS key of the cluster: it is what attackers "
        "do first with a credential that allows it, and people rarely need it. Refused attempts are left to "
        "k8s.secret_access and k8s.enumeration."
    ),
    severity="high",
    params={"allowed_identities": SECRET_READERS},
    mitre=["T1552.007", "T1555", "T1613"],
    tags=["kubernetes", "credential-access", "collection"],
    references=[
        "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/List%20K8S%20secrets/",
        "https://kubernetes.io/docs/concepts/security/secrets-good-practices/",
    ],
    false_positives=["A backup or secret-sync tool not in allowed_identities; an administrator auditing secrets."],
    kinds=["k8s.api"],
    resources=["secrets"], actions=_LISTS, subresources=[""],
    match=is_cluster_wide_secret_list,
    context=dump_context,
    dedup="{cluster}/{user}",
    examples=[
        Example(
            name="a person lists every secret",
            source="k8s-audit",
            fires=True,
            record=audit_record("list", "secrets", namespace=""),
        ),
        Example(
            name="a workload's token watches every secret",
            source="k8s-audit",
            fires=True,
            record=audit_record("watch", "secrets", namespace="", user="system:serviceaccount:shop:web"),
        ),
        Example(
            name="secrets of one namespace",
            source="k8s-audit",
            fires=False,
            record=audit_record("list", "secrets", namespace="shop"),
        ),
        Example(
            name="the controller manager's informer",
            source="k8s-audit",
            fires=False,
            record=audit_record("watch", "secrets", namespace="", user="system:kube-controller-manager"),
        ),
        Example(
            name="kube-state-metrics",
            source="k8s-audit",
            fires=False,
            record=audit_record("list", "secrets", namespace="",
                                user="system:serviceaccount:kube-system:kube-state-metrics"),
        ),
        Example(
            name="refused",
            source="k8s-audit",
            fires=False,
            record=audit_record("list", "secrets", namespace="", code=403),
        ),
    ],
)
