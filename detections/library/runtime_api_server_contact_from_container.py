"""A container talking to the Kubernetes API server: an inventory of the workloads that use the API, for finding
the ones that should not."""

from typing import Any

from vigil.addresses import is_api_service_address
from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.templates import program_label
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

#: The API server's in-cluster service address of common distributions (kubeadm, kind, k3s, EKS, AKS). With the
#: cluster's service range configured (VIGIL_SERVICE_CIDRS) its first address, the `kubernetes` service's ClusterIP
#: that pods find in KUBERNETES_SERVICE_HOST, counts too; list the endpoints behind it in `api_server_addresses`.
API_SERVER_ADDRESSES = ["10.96.0.1", "10.43.0.1", "10.100.0.1", "172.20.0.1", "10.0.0.1"]
API_PORTS = frozenset({443, 6443})


def contacts_api_server(event: Event, params: dict[str, Any]) -> bool:
    if not (event.container.id or event.k8s.container_id):
        return False
    if event.network.remote_port not in API_PORTS:  # the port the prefilter reads (remote_ports)
        return False
    address = event.network.remote_address or event.target.address
    return address in params["api_server_addresses"] or is_api_service_address(address)


def api_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    address = event.network.remote_address or event.target.address
    return {"exe": event.actor.exe, "program": program_label(event), "where": container_label(event),
            "peer": f"{address}:{event.network.remote_port or event.target.port}",
            "service_account": event.k8s.service_account, "image": event.k8s.image or event.container.image}


DETECTION = EventDetection(
    id="runtime.api_server_contact_from_container",
    title="Container connected to the Kubernetes API server",
    alert_title="{program} in {where} connected to the API server {peer}",
    description=(
        "A process in a container connected to the Kubernetes API server's service address (the `kubernetes` "
        "service's ClusterIP: the first address of the configured service range, or a common default) or an "
        "address in api_server_addresses. Controllers, "
        "operators and CI jobs do so all day, so this is informational: an inventory of who talks to the API. "
        "For namespaces whose workloads never should, raise it per namespace; a web application calling the API "
        "is a stolen token being used (the API side: k8s.secret_access, seq.token_read_api_use)."
    ),
    severity="informational",
    mitre=["T1613", "T1552.007"],
    tags=["runtime", "discovery", "network"],
    references=["https://attack.mitre.org/techniques/T1613/"],
    false_positives=["Every controller and operator; client libraries' leader election."],
    kinds=["net.connect"],
    remote_ports=API_PORTS,
    params={"api_server_addresses": API_SERVER_ADDRESSES},
    match=contacts_api_server,
    context=api_context,
    dedup="{cluster}/{namespace}/{pod}/{where}",
    examples=[
        Example(
            name="a web application calling the API server (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record("process_connect", binary="/usr/bin/curl", arguments="-k https://10.96.0.1/api",
                                   body={"source_ip": "10.244.1.7", "source_port": 40120,
                                         "destination_ip": "10.96.0.1", "destination_port": 443, "protocol": "TCP"}),
        ),
        Example(
            name="Falco: connection to the API server",
            source="falco",
            fires=True,
            record=falco_record(
                "Contact K8S API Server From Container", "connect",
                {"proc.exepath": "/usr/bin/python3", "proc.name": "python3", "fd.rip": "10.43.0.1", "fd.rport": 443,
                 "fd.lip": "10.42.0.9", "fd.lport": 51000, "fd.l4proto": "tcp", "fd.type": "ipv4"},
                priority="Notice",
            ),
        ),
        Example(
            name="a connection to another service",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_connect", binary="/usr/bin/python3",
                                   body={"source_ip": "10.244.1.7", "source_port": 40121,
                                         "destination_ip": "10.96.0.30", "destination_port": 5432, "protocol": "TCP"}),
        ),
        Example(
            name="the kubelet on the node",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_connect", binary="/usr/bin/kubelet", host=True,
                                   body={"source_ip": "10.0.0.3", "source_port": 40122, "destination_ip": "10.96.0.1",
                                         "destination_port": 443, "protocol": "TCP"}),
        ),
    ],
)
