"""Ingress created or changed without TLS: the application behind it is served over plain HTTP."""

from typing import Any

from vigil.detections.k8s import is_write, written_object
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_NETWORKING = "networking.k8s.io"


def ingress_spec(event: Event) -> dict[str, Any] | None:
    """The spec an Ingress write sets, ``None`` for other events or when the audit policy did not log the body."""
    if not is_write(event, "ingresses", _NETWORKING) or event.outcome.result == "denied":
        return None
    spec = (written_object(event) or {}).get("spec")
    return spec if isinstance(spec, dict) else None


def lacks_tls(event: Event) -> bool:
    spec = ingress_spec(event)
    return spec is not None and not spec.get("tls")


def hosts(event: Event) -> list[str]:
    rules = (ingress_spec(event) or {}).get("rules")
    return [str(r.get("host", "*")) for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []


def _ingress(name: str, tls: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"rules": [{"host": "shop.example.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
    if tls:
        spec["tls"] = [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]
    return {"kind": "Ingress", "apiVersion": f"{_NETWORKING}/v1", "metadata": {"name": name}, "spec": spec}


DETECTION = EventDetection(
    id="k8s.ingress_without_tls",
    title="Ingress without TLS",
    alert_title="{user} exposed {hosts} over plain HTTP (Ingress {namespace}/{name})",
    description=(
        "An Ingress was created or changed with no tls section: the hosts it routes are served over plain HTTP, "
        "so credentials and session cookies sent to them cross the network readable. A hygiene finding "
        "(informational): a cluster that terminates TLS in front of the ingress controller, or redirects "
        "to HTTPS there, has it on purpose."
    ),
    severity="informational",
    mitre=["T1557", "T1040"],
    tags=["kubernetes", "posture", "network"],
    references=["https://kubernetes.io/docs/concepts/services-networking/ingress/#tls"],
    false_positives=["TLS terminated by a load balancer in front of the ingress controller."],
    kinds=["k8s.api"],
    resources=["ingresses"], actions=["create", "update", "patch"], subresources=[""],
    match=lacks_tls,
    context=lambda event: {"hosts": hosts(event)},
    dedup="{cluster}/{namespace}/{name}",
    examples=[
        Example(name="a plain-HTTP Ingress", source="k8s-audit", fires=True,
                record=audit_record("create", "ingresses", name="shop", namespace="shop", api_group=_NETWORKING,
                                    request_object=_ingress("shop", tls=False))),
        Example(name="TLS removed from an existing Ingress", source="k8s-audit", fires=True,
                record=audit_record("update", "ingresses", name="shop", namespace="shop", api_group=_NETWORKING,
                                    request_object=_ingress("shop", tls=False))),
        Example(name="an Ingress with TLS", source="k8s-audit", fires=False,
                record=audit_record("create", "ingresses", name="shop", namespace="shop", api_group=_NETWORKING,
                                    request_object=_ingress("shop", tls=True))),
        Example(name="body not logged", source="k8s-audit", fires=False,
                record=audit_record("create", "ingresses", name="shop", namespace="shop", api_group=_NETWORKING)),
    ],
)
