"""CertificateSigningRequest for an API client certificate by someone other than a node or the control plane."""

from typing import Any

from vigil.detections.k8s import CONTROL_PLANE, identity_in, written_object
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

#: The signer of certificates that authenticate to the API server (kubelets have a signer of their own).
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
#: Kubelets request their client and serving certificates, first with a bootstrap token, then as themselves.
ALLOWED_IDENTITIES = (*CONTROL_PLANE, "system:bootstrap:*", "kubelet-nodepool-bootstrap")


def csr_spec(event: Event) -> dict[str, Any]:
    spec = (written_object(event) or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


def is_client_certificate_request(event: Event) -> bool:
    """A create of a CSR for the API-client signer, or with the ``client auth`` usage on the legacy signer."""
    target = event.target
    if (
        event.action != "create"
        or target.resource != "certificatesigningrequests"
        or target.subresource
        or identity_in(event.actor.user, ALLOWED_IDENTITIES)
    ):
        return False
    spec = csr_spec(event)
    usages = spec.get("usages") if isinstance(spec.get("usages"), list) else []
    signer = spec.get("signerName")
    return signer == CLIENT_SIGNER or (signer in (None, "kubernetes.io/legacy-unknown") and "client auth" in usages)


def csr_context(event: Event) -> dict[str, Any]:
    spec = csr_spec(event)
    return {"signer": spec.get("signerName", ""), "usages": spec.get("usages", []),
            "expiration_seconds": spec.get("expirationSeconds")}


def _csr(name: str, signer: str, *usages: str) -> dict[str, Any]:
    spec = {"request": "LS0tLS1CRUdJTi...", "signerName": signer, "usages": list(usages)}
    return {"kind": "CertificateSigningRequest", "apiVersion": "certificates.k8s.io/v1",
            "metadata": {"name": name}, "spec": spec}


_CERTS = "certificates.k8s.io"

DETECTION = EventDetection(
    id="k8s.client_certificate_requested",
    title="Client certificate requested for the API server",
    alert_title="{user} requested an API client certificate ({name})",
    description=(
        "A CertificateSigningRequest for the kube-apiserver-client signer (or with the client auth usage) was "
        "created by an identity that is not a node bootstrapping or the control plane. Once approved, the "
        "certificate authenticates as whatever user and groups its subject names, for as long as it is valid, "
        "and Kubernetes cannot revoke it: attackers use the CSR API to mint themselves a lasting credential, "
        "even as system:masters. k8s.csr_approval reports the approval. Reported whether or not it was allowed."
    ),
    severity="medium",
    mitre=["T1649", "T1098"],
    tags=["kubernetes", "persistence", "credential-access"],
    references=[
        "https://kubernetes.io/docs/reference/access-authn-authz/certificate-signing-requests/",
        "https://kubernetes.io/docs/reference/access-authn-authz/certificate-signing-requests/#normal-user",
    ],
    false_positives=["An administrator issuing a certificate to a new user the documented way."],
    kinds=["k8s.api"],
    resources=["certificatesigningrequests"], actions=["create"], subresources=[""],
    match=is_client_certificate_request,
    context=csr_context,
    dedup="{cluster}/{name}",
    examples=[
        Example(
            name="a user asks for a client certificate",
            source="k8s-audit",
            fires=True,
            record=audit_record("create", "certificatesigningrequests", name="mallory", namespace="",
                                api_group=_CERTS, request_object=_csr("mallory", CLIENT_SIGNER, "client auth")),
        ),
        Example(
            name="a workload's token asks for one",
            source="k8s-audit",
            fires=True,
            record=audit_record("create", "certificatesigningrequests", name="x", namespace="", api_group=_CERTS,
                                user="system:serviceaccount:shop:web",
                                request_object=_csr("x", CLIENT_SIGNER, "digital signature", "client auth")),
        ),
        Example(
            name="a kubelet bootstrapping",
            source="k8s-audit",
            fires=False,
            record=audit_record("create", "certificatesigningrequests", name="csr-x7k2p", namespace="",
                                api_group=_CERTS, user="system:bootstrap:abcdef",
                                request_object=_csr("csr-x7k2p", "kubernetes.io/kube-apiserver-client-kubelet",
                                                    "client auth")),
        ),
        Example(
            name="a serving certificate for a webhook",
            source="k8s-audit",
            fires=False,
            record=audit_record("create", "certificatesigningrequests", name="hook", namespace="", api_group=_CERTS,
                                request_object=_csr("hook", "example.com/serving", "server auth")),
        ),
    ],
)
