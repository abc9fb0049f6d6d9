"""Service-account token requested by someone other than a kubelet or the control plane."""

from typing import Any

from vigil.detections.k8s import CONTROL_PLANE, identity_in, written_object
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

#: Kubelets request a token for every pod with a projected service-account volume and refresh it hourly;
#: the controller manager requests its own controllers' tokens.
ALLOWED_IDENTITIES = CONTROL_PLANE


def is_unusual_token_request(event: Event) -> bool:
    target = event.target
    return (
        event.action == "create"
        and target.resource == "serviceaccounts"
        and target.subresource == "token"
        and not identity_in(event.actor.user, ALLOWED_IDENTITIES)
    )


def token_context(event: Event) -> dict[str, Any]:
    spec = (written_object(event) or {}).get("spec")
    spec = spec if isinstance(spec, dict) else {}
    bound = spec.get("boundObjectRef") if isinstance(spec.get("boundObjectRef"), dict) else {}
    return {
        "service_account": f"{event.target.namespace}/{event.target.name}",
        "expiration_seconds": spec.get("expirationSeconds"),
        "audiences": spec.get("audiences") if isinstance(spec.get("audiences"), list) else [],
        "bound_to": f"{bound.get('kind', '')}/{bound.get('name', '')}" if bound else "",
    }


_REQUEST = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "spec": {"expirationSeconds": 315360000}}

DETECTION = EventDetection(
    id="k8s.token_request",
    title="Service-account token requested by an unusual identity",
    alert_title="{user} requested a token for service account {service_account}",
    description=(
        "A token for a service account was requested through the TokenRequest API (kubectl create token) by an "
        "identity that is not a kubelet or a control-plane component. The token acts as that service account "
        "from anywhere, for as long as requested (up to years when the API server allows it), and is not bound "
        "to a pod: attackers mint tokens of powerful service accounts to escalate and to keep access after "
        "their original credential is revoked. Reported whether or not the request was allowed."
    ),
    severity="medium",
    mitre=["T1528", "T1550.001"],
    tags=["kubernetes", "credential-access", "persistence"],
    references=[
        "https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-request-v1/",
        "https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/",
    ],
    false_positives=["CI pipelines and administrators creating short-lived tokens for a deployment tool."],
    kinds=["k8s.api"],
    resources=["serviceaccounts"], actions=["create"], subresources=["token"],
    match=is_unusual_token_request,
    context=token_context,
    dedup="{cluster}/{namespace}/{name}/{user}",
    examples=[
        Example(
            name="ten-year token for a kube-system service account",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "serviceaccounts", name="replicaset-controller", namespace="kube-system",
                subresource="token", request_object=_REQUEST,
            ),
        ),
        Example(
            name="a workload's service account minting a token for another one",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "serviceaccounts", name="argocd-server", namespace="argocd", subresource="token",
                user="system:serviceaccount:shop:web",
                groups=["system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"],
            ),
        ),
        Example(
            name="a kubelet refreshing a pod's projected token",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "serviceaccounts", name="default", namespace="shop", subresource="token",
                user="system:node:worker-1", groups=["system:nodes", "system:authenticated"],
            ),
        ),
        Example(
            name="creating a service account",
            source="k8s-audit",
            fires=False,
            record=audit_record("create", "serviceaccounts", name="web", namespace="shop"),
        ),
    ],
)
