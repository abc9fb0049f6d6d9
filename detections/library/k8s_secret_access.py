"""Secrets read or listed by an identity that is not a control-plane component."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import SECRET_READERS, identity_in
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_READS = frozenset({"get", "list", "watch"})
#: Who reads secrets all day: kubelets (for the pods they run), the controller manager (token and
#: service-account controllers), the API server, and the in-cluster components whose job it is (kube-state-metrics,
#: cert-manager, external-secrets, Argo CD, Flux, ingress controllers…): ``allowed_identities`` in the tuning file
#: replaces the list (``system:serviceaccount:<ns>:<name>`` patterns).
ALLOWED_IDENTITIES = SECRET_READERS


def is_unusual_secret_read(event: Event, params: Mapping[str, Any]) -> bool:
    target = event.target
    return (
        event.action in _READS
        and target.resource == "secrets"
        and not target.subresource
        and not identity_in(event.actor.user, params["allowed_identities"])
    )


def secret_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    return {"secret": event.target.name or f"all secrets ({event.action})"}


DETECTION = EventDetection(
    id="k8s.secret_access",
    title="Secrets read by an unusual identity",
    alert_title="{user} read {secret} in {namespace}",
    description=(
        "A secret was read, or secrets were listed or watched, by an identity that is not one of the "
        "control-plane components that read secrets as part of their job (kubelets, controllers, the API "
        "server). Secrets hold service-account tokens, registry and cloud credentials and TLS keys: reading "
        "them, above all listing a whole namespace, is how stolen access turns into more access. "
        "Reported whether or not it was allowed (a refused list is someone trying)."
    ),
    severity="medium",
    mitre=["T1552.007", "T1555"],
    tags=["kubernetes", "credential-access"],
    references=[
        "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/List%20K8S%20secrets/",
        "https://kubernetes.io/docs/concepts/security/secrets-good-practices/",
    ],
    false_positives=[
        "Operators and deployment tools that manage secrets beyond the default list (Helm release secrets read "
        "by the Helm client, a custom operator): add their identities to allowed_identities.",
    ],
    kinds=["k8s.api"],
    params={"allowed_identities": ALLOWED_IDENTITIES},
    resources=["secrets"], actions=_READS, subresources=[""],
    match=is_unusual_secret_read,
    context=secret_context,
    dedup="{cluster}/{namespace}/{user}",
    examples=[
        Example(
            name="a person lists kube-system secrets",
            source="k8s-audit",
            fires=True,
            record=audit_record("list", "secrets", namespace="kube-system"),
        ),
        Example(
            name="a workload's service account reads a secret of another app",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "get", "secrets", name="db-password", namespace="shop", user="system:serviceaccount:shop:web",
            ),
        ),
        Example(
            name="the controller manager reads a token secret",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "get", "secrets", name="default-token-x7k2p", namespace="shop", user="system:kube-controller-manager"
            ),
        ),
        Example(
            name="kube-state-metrics lists secrets for their metadata",
            source="k8s-audit",
            fires=False,
            record=audit_record("list", "secrets", namespace="",
                                user="system:serviceaccount:monitoring:kube-state-metrics"),
        ),
        Example(
            name="cert-manager reads a certificate's secret",
            source="k8s-audit",
            fires=False,
            record=audit_record("get", "secrets", name="web-tls", namespace="shop",
                                user="system:serviceaccount:cert-manager:cert-manager"),
        ),
        Example(
            name="a kubelet reads a secret for its pod",
            source="k8s-audit",
            fires=False,
            record=audit_record("get", "secrets", name="db-password", namespace="shop", user="system:node:worker-1"),
        ),
        Example(
            name="a person reads a ConfigMap", source="k8s-audit", fires=False,
            record=audit_record("get", "configmaps", name="settings"),
        ),
    ],
)
