"""Many requests refused by authorization from one identity in a short time: someone mapping what a stolen
or new credential may do."""

from vigil.detections.sdk import Scenario, ScenarioEvent, ThresholdDetection
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

RESOURCES = ("secrets", "pods", "nodes", "clusterroles", "clusterrolebindings", "serviceaccounts", "configmaps",
             "deployments", "daemonsets", "namespaces")
#: The status of a request authorization refused (declared as the prefilter's ``codes`` too).
FORBIDDEN = 403


def is_forbidden(event: Event) -> bool:
    return event.outcome.code == FORBIDDEN and bool(event.actor.user)


def request_shape(event: Event) -> str:
    """What was asked, so that a controller retrying one forbidden request in a loop counts once."""
    target = event.target
    return f"{event.action} {target.resource}/{target.subresource} {target.namespace}".strip()


def forbidden(verb: str, resource: str, second: int, *, user: str = "system:serviceaccount:default:web",
              namespace: str = "default") -> dict:
    return audit_record(verb, resource, namespace=namespace, user=user, code=403,
                        time=f"2025-03-04T06:22:{second:02d}.000000Z")


SWEEP = [(verb, resource) for resource in RESOURCES[:5] for verb in ("list", "get")][:8]

DETECTION = ThresholdDetection(
    id="k8s.enumeration",
    title="Permission enumeration: many forbidden requests from one identity",
    alert_title="{user} was refused {count} different requests within {window_s:.0f} s",
    description=(
        "One identity had at least 8 different requests (verb, resource, namespace) refused with 403 within five "
        "minutes. Tools such as kubectl auth can-i --list, peirates or kube-hunter, and people trying a freshly "
        "stolen token, sweep the API to learn what it may do; ordinary clients are refused rarely and the same "
        "way each time, which is why a retrying controller counts once."
    ),
    severity="medium",
    mitre=["T1613", "T1069.003"],
    tags=["kubernetes", "discovery", "threshold"],
    references=["https://attack.mitre.org/techniques/T1613/",
                "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/Access%20Kubernetes%20API%20server/"],
    false_positives=["A new deployment whose RBAC is still being written, or an operator checking permissions."],
    kinds=["k8s.api"],
    codes=[FORBIDDEN],
    match=is_forbidden,
    group=lambda event: f"{event.cluster}/~{event.actor.user}",
    distinct=request_shape,
    threshold=8,
    window_s=300,
    window="sliding",
    dedup="{cluster}/{user}",
    examples=[
        Scenario(name="a stolen token sweeps the API", fires=True, events=[
            ScenarioEvent(source="k8s-audit", record=forbidden(verb, resource, i), at_s=i * 5)
            for i, (verb, resource) in enumerate(SWEEP)
        ]),
        Scenario(name="a person tries namespaces one after another", fires=True, events=[
            ScenarioEvent(source="k8s-audit", at_s=i * 20,
                          record=forbidden("list", "secrets", i, user="mallory@example.com", namespace=f"team-{i}"))
            for i in range(8)
        ]),
        Scenario(name="a controller retrying one forbidden request", fires=False, events=[
            ScenarioEvent(source="k8s-audit", record=forbidden("list", "nodes", i), at_s=i * 2) for i in range(30)
        ]),
        Scenario(name="seven refusals are not yet a sweep", fires=False, events=[
            ScenarioEvent(source="k8s-audit", record=forbidden(verb, resource, i), at_s=i * 5)
            for i, (verb, resource) in enumerate(SWEEP[:7])
        ]),
        Scenario(name="a sweep spread over an hour", fires=False, events=[
            ScenarioEvent(source="k8s-audit", record=forbidden(verb, resource, i), at_s=i * 400)
            for i, (verb, resource) in enumerate(SWEEP)
        ]),
    ],
)
