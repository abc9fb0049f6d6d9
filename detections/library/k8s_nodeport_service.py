"""NodePort service: a workload exposed on a port of every node, outside the cluster's ingress."""

from typing import Any

from vigil.detections.k8s import WRITES, service_object, service_ports, service_spec
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record


def nodeport_context(event: Event) -> dict[str, Any]:
    spec = service_spec(event)
    ports = service_ports(spec)
    return {
        "ports": [p.get("port") for p in ports],
        "node_ports": [p["nodePort"] for p in ports if "nodePort" in p],
        "selector": spec.get("selector") if isinstance(spec.get("selector"), dict) else {},
    }


DETECTION = EventDetection(
    id="k8s.nodeport_service",
    title="NodePort service",
    alert_title="{user} exposed {namespace}/{name} on a node port",
    description=(
        "A Service of type NodePort was created or changed. It opens a port on every node's address and "
        "forwards it to the selected pods, outside the ingress controller, its TLS and authentication, and "
        "often outside network policies and cloud firewalls meant for the load balancer. Attackers use it to "
        "reach a backdoor pod from outside, or to expose an internal service such as a database."
    ),
    severity="low",  # exposure hygiene, as k8s.loadbalancer_service
    mitre=["T1133", "T1599"],
    tags=["kubernetes", "persistence", "exposure"],
    references=["https://kubernetes.io/docs/concepts/services-networking/service/#type-nodeport"],
    false_positives=["Bare-metal clusters without a load balancer expose their ingress controller as NodePort."],
    kinds=["k8s.api"],
    resources=["services"], actions=WRITES, subresources=[""],
    match=lambda event: service_spec(event).get("type") == "NodePort",
    context=nodeport_context,
    dedup="{cluster}/{namespace}/{name}",
    examples=[
        Example(
            name="NodePort with a fixed port",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "services", name="backdoor",
                request_object=service_object("backdoor", "NodePort", nodePort=31337),
            ),
        ),
        Example(
            name="ClusterIP service changed to NodePort",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "update", "services", name="postgres", namespace="prod",
                request_object=service_object("postgres", "NodePort", port=5432),
            ),
        ),
        Example(
            name="ordinary ClusterIP service",
            source="k8s-audit",
            fires=False,
            record=audit_record("create", "services", name="web", request_object=service_object("web", "ClusterIP")),
        ),
        Example(
            name="status update of a service",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "update", "services", name="web", subresource="status", user="system:kube-controller-manager",
                request_object=service_object("web", "NodePort"),
            ),
        ),
    ],
)
