"""What the Kubernetes API detections of the library share beyond :mod:`detections.sdk`: identity allow-lists,
the posture of the pods a request sets, image references, and admission policies that verify images.

Identity allow-lists: several detections fire on ordinary API calls (reading a secret, requesting a token,
approving a certificate) and are only suspicious when the caller is not one of the control-plane components
that do so all day. Each such detection declares its own allow-list as ``fnmatch`` patterns over the user
name, so what is trusted is visible in the detection file and one pattern covers a family of controllers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from detections.sdk import workload, written_object, written_pod
from vigil.event import Event

#: The API server itself, the scheduler and the controller manager (with its per-controller service accounts
#: when ``--use-service-account-credentials`` is on: most are named ``*-controller``, the rest are listed), and
#: kubelets (``system:node:<name>``). A service account an attacker names ``kube-system:x-controller`` also
#: matches: creating one there is caught by ``k8s.system_namespace_object``.
CONTROL_PLANE = (
    "system:apiserver",
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:node:*",
    "system:serviceaccount:kube-system:*-controller",
    "system:serviceaccount:kube-system:bootstrap-signer",
    "system:serviceaccount:kube-system:generic-garbage-collector",
    "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
    "system:serviceaccount:kube-system:legacy-service-account-token-cleaner",
    "system:serviceaccount:kube-system:persistent-volume-binder",
    "system:serviceaccount:kube-system:root-ca-cert-publisher",
    "system:serviceaccount:kube-system:token-cleaner",
)

#: Verbs that set an object, and those that change or remove it: what ``is_write`` and ``is_mutation`` accept, and
#: the ``actions`` prefilter of the detections built on them.
WRITES = frozenset({"create", "update", "patch"})
MUTATIONS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def identity_in(user: str, patterns: Iterable[str]) -> bool:
    """Whether ``user`` matches one of the ``fnmatch`` patterns (case-sensitive, as Kubernetes names are)."""
    return any(fnmatchcase(user, pattern) for pattern in patterns)


def is_write(event: Event, resource: str, api_group: str = "") -> bool:
    """A create, update or patch of the object itself (not of a subresource such as ``status``)."""
    target = event.target
    return (
        event.action in WRITES
        and target.resource == resource
        and target.api_group == api_group
        and not target.subresource
    )


def is_mutation(event: Event, resources: Iterable[str], api_group: str) -> bool:
    """A create, update, patch, delete or deletecollection of one of ``resources`` in ``api_group``."""
    target = event.target
    return (
        event.action in MUTATIONS
        and target.resource in resources
        and target.api_group == api_group
        and not target.subresource
    )


def service_spec(event: Event) -> dict[str, Any]:
    """The spec a create, update or patch of a Service sets ({} for any other event, or when the audit
    policy did not log the body)."""
    if not is_write(event, "services"):
        return {}
    spec = (written_object(event) or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


def service_ports(spec: dict[str, Any]) -> list[dict[str, Any]]:
    ports = spec.get("ports")
    return [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []


def service_object(name: str, service_type: str, **port: Any) -> dict[str, Any]:
    """A Service of ``service_type`` as a client sends it, with one port (``port`` overrides), for examples."""
    spec = {"type": service_type, "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080, **port}]}
    return {"kind": "Service", "apiVersion": "v1", "metadata": {"name": name}, "spec": spec}


# --- Pod security posture ---------------------------------------------------------------------------------------


def security_setting(spec: Mapping[str, Any], container: Mapping[str, Any], name: str) -> Any:
    """``securityContext.<name>`` as it applies to ``container``: its own, else the pod's (the kubelet's rule
    for the fields both levels have: runAsUser, runAsNonRoot, seccompProfile, appArmorProfile, seLinuxOptions)."""
    own = container.get("securityContext")
    if isinstance(own, dict) and own.get(name) is not None:
        return own[name]
    pod = spec.get("securityContext")
    return pod.get(name) if isinstance(pod, dict) else None


#: A posture check: the pod spec, one container and the pod's annotations in, the offending setting out ("" if none).
PostureCheck = Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]], str]


def offending_containers(event: Event, check: PostureCheck) -> list[dict[str, str]]:
    """Every container of the pod spec an API write sets (containers, init and ephemeral containers) for which
    ``check`` names an offending setting, with its image and list: what posture detections report."""
    pod = written_pod(event)
    if pod is None or pod.spec is None:
        return []
    spec, metadata = pod.spec, pod.metadata
    annotations = metadata.get("annotations") if isinstance(metadata.get("annotations"), dict) else {}
    found = []
    for list_name, container in pod.containers:
        setting = check(spec, container, annotations)
        if setting:
            found.append({"container": str(container.get("name", "")), "image": str(container.get("image", "")),
                          "list": list_name, "setting": setting})
    return found


def posture_context(event: Event, found: list[dict[str, str]]) -> dict[str, Any]:
    """The alert context of a posture detection: the workload, its offending containers and their settings."""
    return {
        "workload": workload(event),
        "containers": [c["container"] for c in found],
        "images": sorted({c["image"] for c in found}),
        "settings": sorted({c["setting"] for c in found}),
        "offending_containers": found,
    }


# --- Image references -------------------------------------------------------------------------------------------

DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})


@dataclass(frozen=True, slots=True)
class ImageReference:
    """An image reference as the container runtime resolves it: ``nginx`` is ``docker.io/library/nginx:latest``."""

    registry: str
    repository: str
    tag: str
    digest: str

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"


def image_reference(image: str) -> ImageReference:
    """``image`` normalized: the registry is the first component when it looks like a host (has a dot or a
    port, or is localhost), else Docker Hub, whose official images live under ``library/``; the tag defaults
    to ``latest`` only when there is no digest either."""
    rest, _, digest = image.strip().partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag = ""
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first.lower(), remainder
    else:
        registry, repository = DOCKER_HUB, rest
    if registry in _DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
        repository = repository if "/" in repository else f"library/{repository}"
    return ImageReference(registry, repository, tag or ("" if digest else "latest"), digest)


def registry_allowed(reference: ImageReference, allowed: Iterable[str]) -> bool:
    """Whether the image comes from one of ``allowed``: ``registry.example.com`` (any repository there),
    ``ghcr.io/acme`` (repositories under that path) or a host glob such as ``*.dkr.ecr.*.amazonaws.com``.
    Docker Hub is ``docker.io`` whatever alias the image was written with."""
    for entry in allowed:
        host, _, path = entry.strip().strip("/").partition("/")
        host = DOCKER_HUB if host.lower() in _DOCKER_HUB_ALIASES else host.lower()
        if not fnmatchcase(reference.registry, host):
            continue
        if not path or reference.repository == path or reference.repository.startswith(f"{path}/"):
            return True
    return False


# --- Admission policies that verify images ----------------------------------------------------------------------

#: Resources whose only purpose is verifying images, by API group (an empty set: every resource of the group).
IMAGE_VERIFICATION_RESOURCES: dict[str, tuple[str, frozenset[str]]] = {
    "policy.sigstore.dev": ("Sigstore policy-controller", frozenset({"clusterimagepolicies", "trustroots"})),
    "config.ratify.deislabs.io": ("Ratify", frozenset()),
    "config.ratify.dev": ("Ratify", frozenset()),
    "policies.kyverno.io": ("Kyverno", frozenset({"imagevalidatingpolicies", "namespacedimagevalidatingpolicies"})),
}
_KYVERNO_POLICIES = frozenset({"clusterpolicies", "policies"})
_ADMISSION = "admissionregistration.k8s.io"
_GATEKEEPER_CONSTRAINTS = "constraints.gatekeeper.sh"
#: Words in a constraint kind, policy name or CEL expression that say it is about images and their origin.
_ABOUT_IMAGES = re.compile(r"image|repo|registr|digest|signat|cosign|sigstore|notation|notary|ratify|verif|tags")


def image_verification_change(event: Event) -> dict[str, str] | None:
    """What a create, update, patch or delete changed of an admission policy that verifies images: Kyverno
    policies with ``verifyImages`` rules and ImageValidatingPolicies, Sigstore policy-controller
    ClusterImagePolicies, Ratify's configuration, Gatekeeper constraints about images, ValidatingAdmissionPolicies
    (and bindings) whose expressions or names are about images, Connaisseur's configuration. Judged by API group
    and resource, and by the body where the audit policy logged one; ``None`` for anything else."""
    target = event.target
    if not is_mutation(event, (target.resource,), target.api_group):
        return None
    engine, basis = _image_verifier(target.api_group, target.resource, target.name, target.namespace,
                                    _spec(written_object(event)))
    if not engine:
        return None
    return {"engine": engine, "policy": target.name, "policy_resource": target.resource, "judged_by": basis}


def _spec(body: dict[str, Any] | None) -> dict[str, Any] | None:
    """The object's spec, ``None`` when the audit policy did not log a body with one."""
    spec = body.get("spec") if isinstance(body, dict) else None
    return spec if isinstance(spec, dict) else None


def _image_verifier(
    group: str, resource: str, name: str, namespace: str, spec: dict[str, Any] | None
) -> tuple[str, str]:
    """(the verifier, what the judgment rests on), or ("", "") when the object does not verify images."""
    if group in IMAGE_VERIFICATION_RESOURCES:
        engine, resources = IMAGE_VERIFICATION_RESOURCES[group]
        return (engine, "resource") if not resources or resource in resources else ("", "")
    if group == "kyverno.io" and resource in _KYVERNO_POLICIES:
        rules = spec.get("rules") if spec is not None else None
        if not isinstance(rules, list):
            return "Kyverno", "resource (body not logged)"
        verifies = any(isinstance(rule, dict) and rule.get("verifyImages") for rule in rules)
        return ("Kyverno", "body: verifyImages") if verifies else ("", "")
    if group == _GATEKEEPER_CONSTRAINTS:
        return ("Gatekeeper", "constraint kind") if _ABOUT_IMAGES.search(resource) else ("", "")
    if group == _ADMISSION and resource in {"validatingadmissionpolicies", "validatingadmissionpolicybindings"}:
        spec = spec or {}
        validations = spec.get("validations") if isinstance(spec.get("validations"), list) else []
        if any(isinstance(v, dict) and "image" in str(v.get("expression", "")) for v in validations):
            return "ValidatingAdmissionPolicy", "body: expression on images"
        if _ABOUT_IMAGES.search(f"{name} {spec.get('policyName', '')}".lower()):
            return "ValidatingAdmissionPolicy", "name"
        return "", ""
    if not group and resource in {"configmaps", "secrets"} and (
        name.startswith("connaisseur") or namespace == "connaisseur"
    ):
        return "Connaisseur", "configuration object"
    return "", ""


#: The annotations that set seccomp and AppArmor before their securityContext fields (Kubernetes 1.19 and
#: 1.30); older clusters still honour them and old manifests still write them.
SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_CONTAINER_ANNOTATION = "container.seccomp.security.alpha.kubernetes.io/"
APPARMOR_CONTAINER_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
_SECCOMP_ANNOTATION_TYPES = {"unconfined": "Unconfined", "runtime/default": "RuntimeDefault",
                             "docker/default": "RuntimeDefault"}


def seccomp_profile(
    spec: Mapping[str, Any], container: Mapping[str, Any], annotations: Mapping[str, Any]
) -> tuple[str, str]:
    """The seccomp profile type that applies to ``container`` (``RuntimeDefault``, ``Localhost``,
    ``Unconfined``; "" when none is set) and where it was set: the container's field, the pod's, then the
    container's and the pod's annotation."""
    own = container.get("securityContext")
    pod = spec.get("securityContext")
    for level, context in (("container", own), ("pod", pod)):
        profile = context.get("seccompProfile") if isinstance(context, dict) else None
        if isinstance(profile, dict) and isinstance(profile.get("type"), str):
            return profile["type"], f"{level} securityContext.seccompProfile.type"
    for key in (f"{SECCOMP_CONTAINER_ANNOTATION}{container.get('name', '')}", SECCOMP_POD_ANNOTATION):
        value = annotations.get(key)
        if isinstance(value, str):
            kind = "Localhost" if value.startswith("localhost/") else _SECCOMP_ANNOTATION_TYPES.get(value, value)
            return kind, f"annotation {key}"
    return "", ""


def apparmor_profile(
    spec: Mapping[str, Any], container: Mapping[str, Any], annotations: Mapping[str, Any]
) -> tuple[str, str]:
    """The AppArmor profile type that applies to ``container`` (``RuntimeDefault``, ``Localhost``,
    ``Unconfined``; "" when none is set) and where it was set, by the same precedence as seccomp."""
    profile = security_setting(spec, container, "appArmorProfile")
    if isinstance(profile, dict) and isinstance(profile.get("type"), str):
        own = container.get("securityContext")
        level = "container" if isinstance(own, dict) and own.get("appArmorProfile") is not None else "pod"
        return profile["type"], f"{level} securityContext.appArmorProfile.type"
    key = f"{APPARMOR_CONTAINER_ANNOTATION}{container.get('name', '')}"
    value = annotations.get(key)
    if isinstance(value, str):
        kinds = {"unconfined": "Unconfined", "runtime/default": "RuntimeDefault"}
        return ("Localhost" if value.startswith("localhost/") else kinds.get(value, value)), f"annotation {key}"
    return "", ""


def is_privileged(container: Mapping[str, Any]) -> bool:
    """A privileged container runs without seccomp and AppArmor whatever its profiles say, and
    ``k8s.privileged_container`` reports it: posture detections about those profiles leave it out."""
    context = container.get("securityContext")
    return isinstance(context, dict) and context.get("privileged") is True
