"""An admission policy that verifies image signatures or provenance was deleted: verification is gone."""

from vigil.detections.k8s import image_verification_change
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_DELETES = frozenset({"delete", "deletecollection"})


def deleted(event: Event) -> bool:
    return event.action in _DELETES and image_verification_change(event) is not None


DETECTION = EventDetection(
    id="k8s.image_verification_policy_deleted",
    title="Image verification policy deleted",
    alert_title="{user} deleted {engine} policy {policy}",
    description=(
        "An admission policy that verifies image signatures or provenance was deleted (a Kyverno policy, whose "
        "body a delete does not carry, counts whatever its rules), a Sigstore ClusterImagePolicy, Ratify's "
        "configuration, a Gatekeeper constraint or ValidatingAdmissionPolicy about images, or Connaisseur's "
        "configuration. Worse than a change: every image is admitted unverified from then on, which is the "
        "step before deploying a tampered one."
    ),
    severity="high",
    mitre=["T1562.001", "T1553"],
    tags=["kubernetes", "supply-chain", "admission", "defense-evasion"],
    references=[
        "https://kyverno.io/docs/writing-policies/verify-images/",
        "https://docs.sigstore.dev/policy-controller/overview/",
        "https://open-policy-agent.github.io/gatekeeper/website/docs/howto/",
    ],
    false_positives=["Uninstalling or replacing the policy engine."],
    kinds=["k8s.api"],
    actions=_DELETES, subresources=[""],
    match=deleted,
    context=lambda event: image_verification_change(event) or {},
    dedup="{cluster}/{policy_resource}/{policy}",
    examples=[
        Example(name="Sigstore ClusterImagePolicy deleted", source="k8s-audit", fires=True, record=audit_record(
            "delete", "clusterimagepolicies", name="signed-only", namespace="", api_group="policy.sigstore.dev",
            api_version="v1beta1")),
        Example(name="Gatekeeper image digest constraint deleted", source="k8s-audit", fires=True,
                record=audit_record("delete", "k8srequireimagedigest", name="pin-images", namespace="",
                                    api_group="constraints.gatekeeper.sh", api_version="v1beta1")),
        Example(name="Gatekeeper label constraint deleted", source="k8s-audit", fires=False, record=audit_record(
            "delete", "k8srequiredlabels", name="team-label", namespace="", api_group="constraints.gatekeeper.sh",
            api_version="v1beta1")),
        Example(name="ClusterImagePolicy updated (the change detection's)", source="k8s-audit", fires=False,
                record=audit_record("update", "clusterimagepolicies", name="signed-only", namespace="",
                                    api_group="policy.sigstore.dev", api_version="v1beta1",
                                    request_object={"spec": {"mode": "enforce"}})),
    ],
)
