"""A container reaching the cloud provider's instance metadata service: where the node's cloud credentials are."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.templates import program_label
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

#: Instance metadata endpoints: AWS, GCP, Azure, OpenStack and DigitalOcean (169.254.169.254), AWS over IPv6,
#: Alibaba Cloud, Oracle Cloud's IPv4 alternative.
METADATA_ADDRESSES = frozenset({"169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"})
METADATA_NAMES = ("metadata.google.internal", "metadata.azure.com")
#: Tools that name the endpoint on their command line.
HTTP_TOOLS = frozenset({"curl", "wget", "http", "httpie", "nc", "ncat", "python", "python3", "perl", "ruby", "php"})


def in_container(event: Event) -> bool:
    """A container's process, with or without pod metadata: the runtime's container id is enough."""
    return bool(event.container.id or event.k8s.container_id)


def metadata_endpoint(event: Event) -> str:
    """The metadata endpoint the event reaches: the connection's peer or the address a tool was given, else ''."""
    if event.kind == "net.connect":
        address = event.network.remote_address or event.target.address
        return address if address in METADATA_ADDRESSES else ""
    command = " ".join(event.actor.args[1:])
    return next((name for name in (*METADATA_ADDRESSES, *METADATA_NAMES) if name in command), "")


def reaches_metadata(event: Event, params: dict[str, Any]) -> bool:
    """In a container outside the namespaces allowed to (node agents that read the instance identity)."""
    if not in_container(event) or event.k8s.namespace in params["allowed_namespaces"]:
        return False
    return bool(metadata_endpoint(event))


def metadata_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "program": program_label(event), "endpoint": metadata_endpoint(event),
            "command": " ".join(event.actor.args), "where": container_label(event),
            "image": event.k8s.image or event.container.image}


DETECTION = EventDetection(
    id="runtime.cloud_metadata_from_container",
    title="Container reached the cloud instance metadata service",
    alert_title="{program} in {where} reached the instance metadata service ({endpoint})",
    description=(
        "A process in a container connected to the cloud instance metadata service (169.254.169.254 and its "
        "equivalents), or a tool was pointed at it. Unless blocked (IMDSv2 hop limit, GKE metadata concealment, "
        "network policy), it hands out the node's cloud credentials: from a compromised pod that is the way into "
        "the cloud account (the Capital One breach). Workloads use dedicated identities (IRSA, Workload Identity) "
        "instead; agents in `allowed_namespaces` (kube-system by default) are not reported."
    ),
    severity="high",
    mitre=["T1552.005"],
    tags=["runtime", "credential_access", "cloud"],
    references=["https://attack.mitre.org/techniques/T1552/005/",
                "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html"],
    false_positives=["SDKs that fall back to the instance profile when no workload identity is configured."],
    kinds=["net.connect", "process.exec"],
    exe_names={"process.exec": HTTP_TOOLS},
    params={"allowed_namespaces": ["kube-system"]},
    match=reaches_metadata,
    context=metadata_context,
    dedup="{cluster}/{namespace}/{pod}/{where}/{endpoint}",
    examples=[
        Example(
            name="curl asking for the node role's credentials (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                binary="/usr/bin/curl", arguments="http://169.254.169.254/latest/meta-data/iam/security-credentials/",
                parent="/bin/sh"),
        ),
        Example(
            name="Falco: connection to 169.254.169.254 from a container",
            source="falco",
            fires=True,
            record=falco_record(
                "Contact cloud metadata service from container", "connect",
                {"proc.exepath": "/usr/local/bin/python3.12", "proc.name": "python3", "fd.rip": "169.254.169.254",
                 "fd.rport": 80, "fd.lip": "10.244.1.7", "fd.lport": 41712, "fd.l4proto": "tcp", "fd.type": "ipv4"},
                priority="Notice",
            ),
        ),
        Example(
            name="the node's own agent in kube-system",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_connect", binary="/usr/bin/aws-node", namespace="kube-system", pod="aws-node-x7d2",
                body={"source_ip": "10.0.0.3", "source_port": 40117, "destination_ip": "169.254.169.254",
                      "destination_port": 80, "protocol": "TCP"}),
        ),
        Example(
            name="curl calling the application's own endpoint",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/curl", arguments="http://localhost:8080/metadata"),
        ),
    ],
)
