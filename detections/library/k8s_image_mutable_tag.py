"""Images by mutable tag: a pod or workload template that names images by tag (or none, which is
``:latest``) instead of by digest, so what runs can change without any change to the workload."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import (
    image_reference,
    posture_detection,
)
from vigil.detections.sdk import Example
from vigil.sources.audit.fixtures import audit_record, workload_object


def by_tag(spec: Mapping[str, Any], container: Mapping[str, Any], annotations: Mapping[str, Any]) -> str:
    """The tag the image is pulled by when it has no digest ("" when pinned)."""
    image = container.get("image")
    if not isinstance(image, str) or not image:
        return ""
    reference = image_reference(image)
    if reference.digest:
        return ""
    return f"tag {reference.tag}" if ":" in image.rsplit("/", 1)[-1] else "no tag (latest)"


def _pod(*images: str) -> dict[str, Any]:
    spec = {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}
    return audit_record("create", "pods", name="web", request_object=workload_object("Pod", "web", spec))


_DIGEST = "sha256:" + "0123456789abcdef" * 4

DETECTION = posture_detection(
    check=by_tag,
    id="k8s.image_mutable_tag",
    title="Image by mutable tag instead of digest",
    alert_title="{workload} ({namespace}) runs {images} by tag, not digest",
    description=(
        "A pod, or a workload that templates pods, was created or changed with images named by tag (or by no "
        "tag at all, which is :latest) rather than by @sha256 digest. Whoever can push to the repository can "
        "change what the workload runs at its next pull without touching the workload, and signature "
        "verification checks the image the tag pointed to at admission, not necessarily the one a node pulls "
        "later. Informational by default: raise the severity for namespaces that must pin images."
    ),
    severity="informational",
    mitre=["T1525", "T1195.002"],
    tags=["kubernetes", "posture", "supply-chain", "image"],
    references=[
        "https://kubernetes.io/docs/concepts/containers/images/#image-names",
        "https://slsa.dev/spec/v1.0/threats",
    ],
    false_positives=["Development namespaces that deploy the latest build on purpose."],
    examples=[
        Example(name="latest by omission", source="k8s-audit", fires=True, record=_pod("nginx")),
        Example(name="a tag on a registry with a port", source="k8s-audit", fires=True,
                record=_pod(f"registry.example.com:5000/api@{_DIGEST}", "registry.example.com:5000/sidecar:1.2")),
        Example(name="pinned by digest", source="k8s-audit", fires=False, record=_pod(f"nginx@{_DIGEST}")),
        Example(name="tag and digest: the digest wins", source="k8s-audit", fires=False,
                record=_pod(f"ghcr.io/acme/api:2.1@{_DIGEST}")),
    ],
)
