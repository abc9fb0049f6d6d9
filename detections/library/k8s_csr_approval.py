"""Certificate signing request approved by someone other than the controller manager's CSR approver."""

from vigil.detections.k8s import CONTROL_PLANE, identity_in
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_CERTIFICATES = "certificates.k8s.io"
#: The controller manager's csrapproving controller approves kubelets' client certificates by itself.
ALLOWED_IDENTITIES = CONTROL_PLANE


def is_csr_approval(event: Event) -> bool:
    target = event.target
    return (
        event.action in {"update", "patch"}
        and target.resource == "certificatesigningrequests"
        and target.api_group == _CERTIFICATES
        and target.subresource == "approval"
        and not identity_in(event.actor.user, ALLOWED_IDENTITIES)
    )


DETECTION = EventDetection(
    id="k8s.csr_approval",
    title="Certificate signing request approved",
    alert_title="{user} approved certificate signing request {name}",
    description=(
        "A CertificateSigningRequest was approved by an identity other than the controller manager's CSR "
        "approver. Once signed by the cluster CA, the certificate authenticates as whatever user and groups the "
        "request named (system:masters included) until it expires, and cannot be revoked: attackers who can "
        "approve CSRs mint themselves durable administrator credentials. Reported whether or not it was allowed."
    ),
    severity="high",
    mitre=["T1649", "T1098"],
    tags=["kubernetes", "credential-access", "persistence"],
    references=[
        "https://kubernetes.io/docs/reference/access-authn-authz/certificate-signing-requests/",
        "https://www.elastic.co/guide/en/security/current/kubernetes-suspicious-assignment-of-controller-service-account.html",
    ],
    false_positives=["An administrator approving a user's or an add-on's certificate request by hand."],
    kinds=["k8s.api"],
    resources=["certificatesigningrequests"], actions=["update", "patch"], subresources=["approval"],
    match=is_csr_approval,
    dedup="{cluster}/{name}",
    examples=[
        Example(
            name="kubectl certificate approve",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "update", "certificatesigningrequests", name="mallory-admin", namespace="", api_group=_CERTIFICATES,
                subresource="approval",
            ),
        ),
        Example(
            name="approval patched by a workload's service account",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "patch", "certificatesigningrequests", name="node-csr-evil", namespace="", api_group=_CERTIFICATES,
                subresource="approval", user="system:serviceaccount:ci:deployer",
            ),
        ),
        Example(
            name="the controller manager approving a kubelet's CSR",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "update", "certificatesigningrequests", name="csr-x7k2p", namespace="", api_group=_CERTIFICATES,
                subresource="approval", user="system:serviceaccount:kube-system:certificate-controller",
            ),
        ),
        Example(
            name="a kubelet creating its CSR",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "certificatesigningrequests", name="csr-x7k2p", namespace="", api_group=_CERTIFICATES,
                user="system:node:worker-1",
            ),
        ),
    ],
)
