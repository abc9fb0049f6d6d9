"""Anonymous or unauthenticated request the API server allowed."""

from urllib.parse import urlsplit

from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

ANONYMOUS_USER = "system:anonymous"
UNAUTHENTICATED_GROUP = "system:unauthenticated"
#: What the default ``system:public-info-viewer`` role (and public OIDC discovery, when the issuer is
#: published on purpose) lets anyone read: health and version probes, not cluster data.
PUBLIC_PATHS = (
    "/healthz",
    "/livez",
    "/readyz",
    "/version",
    "/.well-known/openid-configuration",
    "/openid/v1/jwks",
)


def _is_public_path(event: Event) -> bool:
    if event.target.resource:
        return False
    path = urlsplit(event.target.uri).path.rstrip("/")
    return any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)


def was_allowed(event: Event) -> bool:
    """Whether authorization let the request through: it succeeded, or the authorizer said ``allow`` and the
    request failed later (a 404 for a secret that does not exist is still an anonymous caller allowed to ask)."""
    return event.outcome.result == "success" or (
        event.request.decision == "allow" and event.outcome.result not in ("denied", "unknown")
    )


def is_anonymous_allowed(event: Event) -> bool:
    actor = event.actor
    return (
        (actor.user == ANONYMOUS_USER or UNAUTHENTICATED_GROUP in actor.groups)
        and was_allowed(event)
        and not _is_public_path(event)
    )


_ANONYMOUS = {"user": ANONYMOUS_USER, "groups": [UNAUTHENTICATED_GROUP]}

DETECTION = EventDetection(
    id="k8s.anonymous_request_allowed",
    title="Anonymous request allowed",
    alert_title="anonymous {verb} {resource} allowed from {source_ips}",
    description=(
        "The API server let an unauthenticated request (user system:anonymous, group "
        "system:unauthenticated) through authorization (it succeeded, or the authorizer allowed it and it failed "
        "later, e.g. with 404) for something other than the public health and version probes. "
        "It means RBAC grants anonymous callers access to cluster data, usually through a binding someone made "
        "to system:anonymous or system:unauthenticated: anyone who can reach the API server can use it, with no "
        "credential to revoke. Attackers scan the internet for exactly this."
    ),
    severity="high",
    mitre=["T1078.001", "T1190"],
    tags=["kubernetes", "initial-access"],
    references=[
        "https://kubernetes.io/docs/reference/access-authn-authz/authentication/#anonymous-requests",
        "https://www.aquasec.com/blog/kubernetes-exposed-one-yaml-away-from-disaster/",
    ],
    false_positives=["A cluster that deliberately publishes a resource to unauthenticated callers."],
    kinds=["k8s.api"],
    match=is_anonymous_allowed,
    dedup="{cluster}/{verb}/{resource}/{namespace}",
    examples=[
        Example(
            name="anonymous list of secrets",
            source="k8s-audit",
            fires=True,
            record=audit_record("list", "secrets", namespace="kube-system", **_ANONYMOUS),
        ),
        Example(
            name="unauthenticated group with a pod read",
            source="k8s-audit",
            fires=True,
            record=audit_record("get", "pods", name="web", user="system:anonymous", groups=[UNAUTHENTICATED_GROUP]),
        ),
        Example(
            name="anonymous read of a secret that does not exist, allowed by the authorizer",
            source="k8s-audit",
            fires=True,
            record={
                **audit_record("get", "secrets", name="db-password", code=404, **_ANONYMOUS),
                "annotations": {"authorization.k8s.io/decision": "allow",
                                "authorization.k8s.io/reason": 'RBAC: allowed by ClusterRoleBinding "open"'},
            },
        ),
        Example(
            name="anonymous request refused",
            source="k8s-audit",
            fires=False,
            record=audit_record("list", "secrets", code=403, **_ANONYMOUS),
        ),
        Example(
            name="anonymous health probe",
            source="k8s-audit",
            fires=False,
            record={
                **audit_record("get", "healthz", namespace="", **_ANONYMOUS),
                "requestURI": "/healthz?verbose",
                "objectRef": None,
            },
        ),
        Example(
            name="authenticated user", source="k8s-audit", fires=False, record=audit_record("list", "secrets")
        ),
    ],
)
