"""A container created from an image outside the allowed registries, as the container runtime reports it: also
containers started without Kubernetes (ctr, nerdctl, docker on the node), which no pod spec shows."""

from typing import Any

from vigil.detections.k8s import image_reference, registry_allowed
from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.event import Event
from vigil.sources.containerd.fixtures import containerd_record, plain_container_record

#: The big public registries (k8s.image_registry_not_allowed's default, so both agree out of the box).
PUBLIC_REGISTRIES = ["docker.io", "registry.k8s.io", "k8s.gcr.io", "quay.io", "ghcr.io", "gcr.io", "*.pkg.dev",
                     "mcr.microsoft.com", "public.ecr.aws", "*.dkr.ecr.*.amazonaws.com", "*.azurecr.io",
                     "nvcr.io", "registry.gitlab.com", "cgr.dev"]


def image_of(event: Event) -> str:
    return event.container.image or event.k8s.image


def image_not_allowed(event: Event, params: dict[str, Any]) -> bool:
    image = image_of(event)
    if not image or image.startswith("sha256:"):
        return False  # an image named only by its digest has no registry to judge
    return not registry_allowed(image_reference(image), params["allowed_registries"])


def image_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    image = image_of(event)
    return {"image": image, "registry": image_reference(image).registry, "where": container_label(event),
            "in_kubernetes": bool(event.k8s.pod), "node": event.node}


def plain_container(image: str) -> dict[str, Any]:
    """containerd's record of a container created outside Kubernetes (``ctr run``, nerdctl): no pod context."""
    return plain_container_record(image=image, container_id="9c1f" * 16)


DETECTION = EventDetection(
    id="runtime.container_image_not_allowed",
    title="Container created from an image outside the allowed registries",
    alert_title="{where} created from {image} (registry {registry}) on node {node}",
    description=(
        "The container runtime created a container from an image whose registry is not in allowed_registries. "
        "Unlike k8s.image_registry_not_allowed, which reads pod specs in the API audit log, this sees every "
        "container the node's containerd creates, including those started with ctr, nerdctl or docker on the "
        "node, which bypass admission control entirely. Informational with the public registries allowed by "
        "default: list your own registries and raise it where only they may run."
    ),
    severity="informational",
    mitre=["T1525", "T1610"],
    tags=["runtime", "supply-chain", "image", "execution"],
    references=["https://attack.mitre.org/techniques/T1610/"],
    false_positives=["A new vendor registry not yet added to the allow-list."],
    kinds=["container.create"],
    params={"allowed_registries": PUBLIC_REGISTRIES},
    match=image_not_allowed,
    context=image_context,
    dedup="{cluster}/{node}/{image}",
    examples=[
        Example(name="a container started on the node with ctr from an unknown registry", source="containerd",
                fires=True, record=plain_container("evil.example.net/tools/kit:latest")),
        Example(name="a pod's container from a registry outside the list", source="containerd", fires=True,
                record=containerd_record("container.create", image="203.0.113.9:5000/miner:1")),
        Example(name="a pod's container from Docker Hub", source="containerd", fires=False,
                record=containerd_record("container.create", image="docker.io/library/nginx:1.27")),
        Example(name="a container from the cluster's own registry on the allow-list", source="containerd",
                fires=False, record=plain_container("registry.k8s.io/pause:3.10")),
    ],
)
