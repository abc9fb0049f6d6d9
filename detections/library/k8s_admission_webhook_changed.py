"""Admission webhook or policy created, changed or deleted: the hooks that see, change or allow every request."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import MUTATIONS, identity_in, image_verification_change, is_mutation, written_object
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_ADMISSION = "admissionregistration.k8s.io"
RESOURCES = frozenset(
    {
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
        "mutatingadmissionpolicies",
        "mutatingadmissionpolicybindings",
    }
)
#: Controllers that write their own webhook's caBundle after rotating its CA, every few hours (cert-manager's
#: cainjector, ingress-nginx's kube-webhook-certgen job, istiod, Gatekeeper, Kyverno, Linkerd's injector). Their
#: patches and updates are not reported; their creates and deletes are. ``ca_injectors`` in the tuning file
#: replaces the list (``system:serviceaccount:<ns>:<name>`` patterns).
CA_INJECTORS = (
    "system:serviceaccount:*:cert-manager-cainjector",
    "system:serviceaccount:*:ingress-nginx-admission",
    "system:serviceaccount:*:istiod",
    "system:serviceaccount:*:gatekeeper-admin",
    "system:serviceaccount:*:kyverno-admission-controller",
    "system:serviceaccount:*:linkerd-proxy-injector",
)
_REWRITES = frozenset({"patch", "update"})


def is_admission_change(event: Event, params: Mapping[str, Any]) -> bool:
    """A change of an admission webhook or policy; ValidatingAdmissionPolicies about images are reported by the
    k8s.image_verification_policy_* detections instead (one change, one alert)."""
    return (
        is_mutation(event, RESOURCES, _ADMISSION)
        and not (event.action in _REWRITES and identity_in(event.actor.user, params["ca_injectors"]))
        and image_verification_change(event) is None
    )


def _endpoint(webhook: dict[str, Any]) -> str:
    """Where a webhook sends the objects it matches: a URL, or ``service:<namespace>/<name>``."""
    config = webhook.get("clientConfig") if isinstance(webhook.get("clientConfig"), dict) else {}
    service = config.get("service")
    if isinstance(service, dict):
        return f"service:{service.get('namespace', '')}/{service.get('name', '')}"
    return str(config.get("url", ""))


def webhook_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    webhooks = (written_object(event) or {}).get("webhooks")
    webhooks = [w for w in webhooks if isinstance(w, dict)] if isinstance(webhooks, list) else []
    return {"webhooks": [str(w.get("name", "")) for w in webhooks], "endpoints": [_endpoint(w) for w in webhooks]}


def _webhook(kind: str, name: str, url: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "apiVersion": f"{_ADMISSION}/v1",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"{name}.example.com",
                "clientConfig": {"url": url},
                "rules": [{"operations": ["CREATE"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}],
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
            }
        ],
    }


DETECTION = EventDetection(
    id="k8s.admission_webhook_changed",
    title="Admission webhook or policy changed",
    alert_title="{user} changed {resource} {name} ({verb})",
    description=(
        "A mutating or validating admission webhook configuration, or an admission policy or its binding, was "
        "created, changed or deleted. A mutating webhook sees and may rewrite every object it matches (it can "
        "inject a container or a hostPath into every new pod, or copy every secret to its server); deleting a "
        "validating webhook or policy switches off the guardrails that block privileged pods. Attackers use "
        "both to persist and to escalate. Reported whether or not the request was allowed."
    ),
    severity="high",
    mitre=["T1546", "T1562.001", "T1552.007"],
    tags=["kubernetes", "persistence", "defense-evasion", "credential-access"],
    references=[
        "https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/",
        "https://security.padok.fr/en/blog/kubernetes-webhook-attackers",
    ],
    false_positives=[
        "Installing or upgrading an operator, a policy engine or a service mesh; controllers that rotate their "
        "webhook's caBundle (the common ones are in ca_injectors; add others there).",
    ],
    kinds=["k8s.api"],
    params={"ca_injectors": CA_INJECTORS},
    resources=RESOURCES, actions=MUTATIONS, subresources=[""],
    match=is_admission_change,
    context=webhook_context,
    dedup="{cluster}/{resource}/{name}/{verb}",
    examples=[
        Example(
            name="mutating webhook sending every created object to an outside URL",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "mutatingwebhookconfigurations", name="injector", namespace="", api_group=_ADMISSION,
                request_object=_webhook("MutatingWebhookConfiguration", "injector", "https://203.0.113.9/mutate"),
            ),
        ),
        Example(
            name="policy engine's validating webhook deleted",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "delete", "validatingwebhookconfigurations", name="gatekeeper-validating-webhook-configuration",
                namespace="", api_group=_ADMISSION,
            ),
        ),
        Example(
            name="cert-manager's cainjector writing its webhook's rotated caBundle",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "patch", "validatingwebhookconfigurations", name="cert-manager-webhook", namespace="",
                api_group=_ADMISSION, user="system:serviceaccount:cert-manager:cert-manager-cainjector",
            ),
        ),
        Example(
            name="the same identity deleting a webhook",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "delete", "validatingwebhookconfigurations", name="gatekeeper-validating-webhook-configuration",
                namespace="", api_group=_ADMISSION, user="system:serviceaccount:cert-manager:cert-manager-cainjector",
            ),
        ),
        Example(
            name="a Role, not an admission object",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "roles", name="webhook-reader", namespace="shop", api_group="rbac.authorization.k8s.io"
            ),
        ),
        Example(
            name="reading webhook configurations",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "list", "validatingwebhookconfigurations", namespace="", api_group=_ADMISSION,
                user="system:apiserver",
            ),
        ),
    ],
)
