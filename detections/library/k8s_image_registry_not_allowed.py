"""Images from registries outside the allow-list: ``allowed_registries`` per namespace in the tuning file.

The default list names the big public registries and the severity is informational, so out of the box this
reports only images from unusual places; a deployment lists its own registries (``registry.example.com``,
``ghcr.io/acme``, ``*.dkr.ecr.*.amazonaws.com``) and raises the severity where only they may be used."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import (
    PostureCheck,
    image_reference,
    posture_detection,
    registry_allowed,
)
from vigil.detections.sdk import Example
from vigil.sources.audit.fixtures import audit_record, workload_object

PUBLIC_REGISTRIES = ["docker.io", "registry.k8s.io", "k8s.gcr.io", "quay.io", "ghcr.io", "gcr.io", "*.pkg.dev",
                     "mcr.microsoft.com", "public.ecr.aws", "*.dkr.ecr.*.amazonaws.com", "*.azurecr.io",
                     "nvcr.io", "registry.gitlab.com", "cgr.dev"]


def outside(params: Mapping[str, Any]) -> PostureCheck:
    def check(spec: Mapping[str, Any], container: Mapping[str, Any], annotations: Mapping[str, Any]) -> str:
        """The image's registry when it is not allowed ("" when it is)."""
        image = container.get("image")
        if not isinstance(image, str) or not image:
            return ""
        reference = image_reference(image)
        return "" if registry_allowed(reference, params["allowed_registries"]) else f"registry {reference.registry}"

    return check


def _pod(image: str) -> dict[str, Any]:
    spec = {"containers": [{"name": "app", "image": image}]}
    return audit_record("create", "pods", name="app", request_object=workload_object("Pod", "app", spec))


DETECTION = posture_detection(
    check_with=outside,
    id="k8s.image_registry_not_allowed",
    title="Image from a registry outside the allow-list",
    alert_title="{workload} ({namespace}) runs {images} from outside the allowed registries",
    description=(
        "A pod, or a workload that templates pods, was created or changed with an image whose registry is not in "
        "allowed_registries for its namespace (Docker Hub images without a registry count as docker.io). An "
        "image from an unexpected registry is how typosquatted, backdoored or attacker-hosted images reach a "
        "cluster, and it bypasses scanning and signing set up for the approved registries."
    ),
    severity="informational",
    params={"allowed_registries": PUBLIC_REGISTRIES},
    mitre=["T1525", "T1204.003"],
    tags=["kubernetes", "posture", "supply-chain", "image"],
    references=[
        "https://kubernetes.io/docs/concepts/containers/images/",
        "https://open-policy-agent.github.io/gatekeeper-library/website/validation/allowedrepos/",
    ],
    false_positives=["A new vendor registry not yet added to the allow-list."],
    examples=[
        Example(name="an image served by an IP address", source="k8s-audit", fires=True,
                record=_pod("203.0.113.9:5000/tools/xmrig:6")),
        Example(name="a look-alike of Docker Hub", source="k8s-audit", fires=True,
                record=_pod("docker.co/library/nginx")),
        Example(name="a Docker Hub official image without a registry", source="k8s-audit", fires=False,
                record=_pod("nginx:1.27")),
        Example(name="an ECR image matched by a host pattern", source="k8s-audit", fires=False,
                record=_pod("123456789012.dkr.ecr.eu-west-1.amazonaws.com/api:7")),
    ],
)
