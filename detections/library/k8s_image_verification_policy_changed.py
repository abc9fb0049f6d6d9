"""An admission policy that verifies image signatures or provenance was created or changed."""

from typing import Any

from vigil.detections.k8s import image_verification_change
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_WRITES = frozenset({"create", "update", "patch"})


def changed(event: Event) -> bool:
    return event.action in _WRITES and image_verification_change(event) is not None


def kyverno_policy(verify: bool) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": "check", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]}}
    if verify:
        rule["verifyImages"] = [{"imageReferences": ["registry.example.com/*"], "attestors": [{"entries": [
            {"keys": {"publicKeys": "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----"}}]}]}]
    else:
        rule["validate"] = {"message": "label app is required", "pattern": {"metadata": {"labels": {"app": "?*"}}}}
    return {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "verify-images"},
            "spec": {"validationFailureAction": "Enforce", "rules": [rule]}}


DETECTION = EventDetection(
    id="k8s.image_verification_policy_changed",
    title="Image verification policy created or changed",
    alert_title="{user} {verb} {engine} policy {policy}",
    description=(
        "An admission policy that verifies image signatures or provenance was created, updated or patched: a "
        "Kyverno policy with verifyImages rules or an ImageValidatingPolicy, a Sigstore policy-controller "
        "ClusterImagePolicy, Ratify's verifiers and stores, a Gatekeeper constraint about images, a "
        "ValidatingAdmissionPolicy (or binding) about images, or Connaisseur's configuration. Loosening one (an "
        "extra key, a wider image glob, Audit instead of Enforce) lets unsigned images in without anyone "
        "noticing at deploy time. Judged by API group and resource, and by the body where the audit policy "
        "logged it."
    ),
    severity="medium",
    mitre=["T1562.001", "T1553"],
    tags=["kubernetes", "supply-chain", "admission", "defense-evasion"],
    references=[
        "https://kyverno.io/docs/writing-policies/verify-images/",
        "https://docs.sigstore.dev/policy-controller/overview/",
        "https://ratify.dev/docs/quickstarts/ratify-on-aws",
    ],
    false_positives=["Planned policy rollouts and key rotations, usually by a GitOps controller's identity."],
    kinds=["k8s.api"],
    actions=_WRITES, subresources=[""],
    match=changed,
    context=lambda event: image_verification_change(event) or {},
    dedup="{cluster}/{policy_resource}/{policy}",
    examples=[
        Example(name="Kyverno ClusterPolicy with verifyImages", source="k8s-audit", fires=True, record=audit_record(
            "update", "clusterpolicies", name="verify-images", namespace="", api_group="kyverno.io",
            request_object=kyverno_policy(verify=True))),
        Example(name="Sigstore ClusterImagePolicy patched", source="k8s-audit", fires=True, record=audit_record(
            "patch", "clusterimagepolicies", name="signed-only", namespace="", api_group="policy.sigstore.dev",
            api_version="v1beta1", request_object={"spec": {"mode": "warn"}})),
        Example(name="Kyverno policy that only validates labels", source="k8s-audit", fires=False,
                record=audit_record("create", "clusterpolicies", name="require-labels", namespace="",
                                    api_group="kyverno.io", request_object=kyverno_policy(verify=False))),
        Example(name="a read of a ClusterImagePolicy", source="k8s-audit", fires=False, record=audit_record(
            "get", "clusterimagepolicies", name="signed-only", namespace="", api_group="policy.sigstore.dev",
            api_version="v1beta1")),
    ],
)
