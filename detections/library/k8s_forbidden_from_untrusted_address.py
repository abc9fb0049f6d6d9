"""Many requests refused by authorization from one address outside the trusted networks: the API server is
reachable from there, and something is trying credentials or permissions against it."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import PRIVATE_NETWORKS, addresses_outside, from_addresses
from vigil.detections.sdk import Scenario, ScenarioEvent, ThresholdDetection
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

#: The status of a request authorization refused (declared as the prefilter's ``codes`` too).
FORBIDDEN = 403


def is_forbidden_from_outside(event: Event, params: Mapping[str, Any]) -> bool:
    """A 403 whose client address is outside ``trusted_networks`` (the client is the first of ``sourceIPs``)."""
    ips = event.actor.source_ips
    return (event.outcome.code == FORBIDDEN and bool(ips)
            and bool(addresses_outside(ips[:1], params["trusted_networks"])))


def client_address(event: Event) -> str:
    ips = event.actor.source_ips
    return f"{event.cluster}/{ips[0]}" if ips else ""


def request_shape(event: Event) -> str:
    """What was asked and as whom, so one client retrying one request in a loop counts once."""
    target = event.target
    return f"{event.actor.user} {event.action} {target.resource}/{target.subresource} {target.namespace}"


def _refused(verb: str, resource: str, second: int, address: str = "198.51.100.77",
             user: str = "system:serviceaccount:default:default") -> dict[str, Any]:
    record = audit_record(verb, resource, namespace="", user=user, code=403,
                          time=f"2025-03-04T06:22:{second:02d}.000000Z")
    return from_addresses(record, address)


_SWEEP = [("list", "secrets"), ("list", "pods"), ("get", "nodes"), ("list", "clusterroles"), ("list", "configmaps"),
          ("create", "pods"), ("list", "serviceaccounts"), ("list", "deployments"), ("get", "namespaces"),
          ("list", "daemonsets")]

DETECTION = ThresholdDetection(
    id="k8s.forbidden_from_untrusted_address",
    title="Many forbidden requests from an address outside the trusted networks",
    alert_title="{count} different requests refused from {group} within {window_s:.0f} s",
    description=(
        "One client address outside trusted_networks (the private ranges by default) had at least 10 different "
        "requests (identity, verb, resource, namespace) refused with 403 within ten minutes. An API server "
        "reachable from the internet is scanned constantly, and a stolen or guessed credential is tried from the "
        "attacker's own address: the address is the one thing such a sweep cannot change between identities, "
        "which k8s.enumeration (by identity) does not see."
    ),
    severity="medium",
    params={"trusted_networks": PRIVATE_NETWORKS},
    mitre=["T1613", "T1110", "T1078.001"],
    tags=["kubernetes", "discovery", "credential-access", "threshold"],
    references=["https://kubernetes.io/docs/concepts/security/controlling-access/",
                "https://attack.mitre.org/techniques/T1613/"],
    false_positives=["A CI system or an administrator's office outside trusted_networks whose RBAC is incomplete."],
    kinds=["k8s.api"],
    codes=[FORBIDDEN],
    match=is_forbidden_from_outside,
    group=client_address,
    distinct=request_shape,
    threshold=10,
    window_s=600,
    window="sliding",
    dedup="{group}",
    examples=[
        Scenario(name="a scanner sweeps the API with a default token", fires=True, events=[
            ScenarioEvent(source="k8s-audit", record=_refused(verb, resource, i), at_s=i * 3)
            for i, (verb, resource) in enumerate(_SWEEP)
        ]),
        Scenario(name="several stolen identities tried from one address", fires=True, events=[
            ScenarioEvent(source="k8s-audit", at_s=i * 10,
                          record=_refused("list", "secrets", i, user=f"system:serviceaccount:team-{i}:default"))
            for i in range(10)
        ]),
        Scenario(name="the same sweep from the pod network", fires=False, events=[
            ScenarioEvent(source="k8s-audit", record=_refused(verb, resource, i, address="10.244.3.9"), at_s=i * 3)
            for i, (verb, resource) in enumerate(_SWEEP)
        ]),
        Scenario(name="one refused request retried from outside", fires=False, events=[
            ScenarioEvent(source="k8s-audit", record=_refused("list", "nodes", i), at_s=i * 3) for i in range(20)
        ]),
    ],
)
