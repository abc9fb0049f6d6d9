"""LoadBalancer service: a workload given an external address by the cloud's load balancer."""

from typing import Any

from vigil.detections.k8s import WRITES, service_object, service_ports, service_spec
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record


def loadbalancer_context(event: Event) -> dict[str, Any]:
    spec = service_spec(event)
    source_ranges = spec.get("loadBalancerSourceRanges")
    return {
        "ports": [p.get("port") for p in service_ports(spec)],
        "source_ranges": source_ranges if isinstance(source_ranges, list) else ["0.0.0.0/0 (no restriction)"],
    }


DETECTION = EventDetection(
    id="k8s.loadbalancer_service",
    title="LoadBalancer service",
    alert_title="{user} exposed {namespace}/{name} through a load balancer",
    description=(
        "A Service of type LoadBalancer was created or changed: the cloud provisions an external address for the "
        "selected pods, open to the whole internet unless loadBalancerSourceRanges restricts it. It is the usual "
        "way to publish an application, and also how an internal service (database, dashboard, debug port) or "
        "a backdoor pod gets exposed by mistake or on purpose. Low severity: check that the exposure is intended."
    ),
    severity="low",
    mitre=["T1133"],
    tags=["kubernetes", "exposure"],
    references=["https://kubernetes.io/docs/concepts/services-networking/service/#loadbalancer"],
    false_positives=["Ingress controllers and public applications are published this way on purpose."],
    kinds=["k8s.api"],
    resources=["services"], actions=WRITES, subresources=[""],
    match=lambda event: service_spec(event).get("type") == "LoadBalancer",
    context=loadbalancer_context,
    dedup="{cluster}/{namespace}/{name}",
    examples=[
        Example(
            name="database published on the internet",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "services", name="postgres", namespace="prod",
                request_object=service_object("postgres", "LoadBalancer", port=5432),
            ),
        ),
        Example(
            name="ClusterIP service patched into a LoadBalancer",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "patch", "services", name="grafana", namespace="monitoring",
                request_object={"spec": {"type": "LoadBalancer"}},
            ),
        ),
        Example(
            name="ordinary ClusterIP service",
            source="k8s-audit",
            fires=False,
            record=audit_record("create", "services", name="web", request_object=service_object("web", "ClusterIP")),
        ),
        Example(
            name="service without a type (ClusterIP by default)",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "services", name="api",
                request_object={"kind": "Service", "metadata": {"name": "api"}, "spec": {"ports": [{"port": 80}]}},
            ),
        ),
    ],
)
