"""What the Kubernetes API detections of the library share: the objects a request writes (pod specs, also in
workload templates), identity allow-lists, the posture of the pods a request sets, image references, and admission
policies that verify images.

Identity allow-lists: several detections fire on ordinary API calls (reading a secret, requesting a token,
approving a certificate) and are only suspicious when the caller is not one of the control-plane components
that do so all day. Each such detection declares its own allow-list as ``fnmatch`` patterns over the user
name, so what is trusted is visible in the detection file and one pattern covers a family of controllers.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase, translate
from functools import lru_cache, wraps
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson

from vigil.detections.sdk import DetectionError, EventDetection
from vigil.event import Event

T = TypeVar("T")


# --- Kubernetes API objects -----------------------------------------------------------------------------------

#: Where each pod-bearing resource keeps its pod spec. Workload templates count: whoever can create a
#: Deployment gets its pods created for them by a controller.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "pods": ("spec",),
    "deployments": ("spec", "template", "spec"),
    "daemonsets": ("spec", "template", "spec"),
    "statefulsets": ("spec", "template", "spec"),
    "replicasets": ("spec", "template", "spec"),
    "replicationcontrollers": ("spec", "template", "spec"),
    "jobs": ("spec", "template", "spec"),
    "cronjobs": ("spec", "jobTemplate", "spec", "template", "spec"),
    "podtemplates": ("template", "spec"),
}
_WORKLOAD_API_GROUPS = frozenset({"", "apps", "batch", "extensions"})
#: The prefilter of every detection that reads :func:`pod_spec`: the writes of the resources that carry one
#: (``resources=POD_SPEC_RESOURCES, actions=SPEC_WRITE_VERBS, subresources=SPEC_SUBRESOURCES``).
POD_SPEC_RESOURCES = frozenset(POD_SPEC_PATHS)
SPEC_WRITE_VERBS = frozenset({"create", "update", "patch"})
#: ``pods/ephemeralcontainers`` is how ``kubectl debug`` adds a container; ``pods/status`` and other
#: subresources repeat the spec without changing it, so they must not count as a new spec.
SPEC_SUBRESOURCES = frozenset({"", "ephemeralcontainers"})
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def written_object(event: Event) -> dict[str, Any] | None:
    """The Kubernetes object an API write request sets: the request body for create/update; for a patch
    the full object from the response when the audit policy logged it, else the patch itself."""
    if event.kind != "k8s.api" or event.action not in SPEC_WRITE_VERBS:
        return None
    response = event.request.response
    if event.action == "patch" and isinstance(response, dict) and ("spec" in response or "template" in response):
        return response
    request = event.request.object
    return request if isinstance(request, dict) else None


@dataclass(frozen=True, slots=True)
class WrittenPod:
    """The pod (or pod template) an API write sets: its spec (``None`` when the body was not logged or has
    none), its metadata ({} when none) and every container of the spec with the list it is in."""

    spec: dict[str, Any] | None
    metadata: dict[str, Any]
    containers: tuple[tuple[str, dict[str, Any]], ...]


def _about_last_event(function: Callable[[Event], T]) -> Callable[[Event], T]:
    """``function`` remembering its answer for the last event it was asked about: a dozen posture detections ask
    about the same event one after another, and walking its request body once instead of for each of them is
    most of their cost."""
    last: list[Any] = [None, None]

    @wraps(function)
    def remembered(event: Event) -> T:
        if last[0] is not event:
            last[1] = function(event)
            last[0] = event
        return last[1]

    return remembered


@_about_last_event
def written_pod(event: Event) -> WrittenPod | None:
    """The pod an API write sets, for pods and for every workload kind that templates pods; ``None`` for any
    other event (decided on the resource, verb and subresource before the body is read)."""
    target = event.target
    path = POD_SPEC_PATHS.get(target.resource)
    if (
        path is None or target.api_group not in _WORKLOAD_API_GROUPS or target.subresource not in SPEC_SUBRESOURCES
        or (template := _walk(written_object(event), path[:-1])) is None
    ):
        return None
    spec = template.get("spec") if isinstance(template.get("spec"), dict) else None
    metadata = template.get("metadata") if isinstance(template.get("metadata"), dict) else {}
    return WrittenPod(spec, metadata, tuple(containers(spec)) if spec is not None else ())


def _walk(node: Any, path: Sequence[str]) -> dict[str, Any] | None:
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node if isinstance(node, dict) else None


def pod_spec(event: Event) -> dict[str, Any] | None:
    """The pod spec an API write sets (see :func:`written_pod`); ``None`` for any other event. The one place
    detections get a pod spec from."""
    pod = written_pod(event)
    return pod.spec if pod is not None else None


def pod_metadata(event: Event) -> dict[str, Any]:
    """The metadata of the pod (or pod template) an API write sets, {} when there is none: where the
    annotations that configured seccomp and AppArmor before their securityContext fields are."""
    pod = written_pod(event)
    return pod.metadata if pod is not None else {}


def containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every container of a pod spec with the list it is in (``containers``, ``initContainers``,
    ``ephemeralContainers``): each of them runs on the node with its own security context."""
    for list_name in CONTAINER_LISTS:
        entries = spec.get(list_name)
        if isinstance(entries, list):
            for container in entries:
                if isinstance(container, dict):
                    yield list_name, container


@_about_last_event
def workload(event: Event) -> str:
    """``Kind/name`` of the workload an API write belongs to, as far as the object itself tells: its
    controlling owner (a Deployment's ReplicaSet collapses into the Deployment via ``pod-template-hash``),
    else the object. Used as a dedup key so one privileged Deployment is one alert, not one per pod."""
    obj = written_object(event) or {}
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    owners = metadata.get("ownerReferences") if isinstance(metadata.get("ownerReferences"), list) else []
    owner = next((o for o in owners if isinstance(o, dict) and o.get("controller")), None)
    if owner is None:
        kind = obj.get("kind") or event.target.resource
        return f"{kind}/{event.target.name or metadata.get('name') or metadata.get('generateName', '')}"
    kind, name = str(owner.get("kind", "")), str(owner.get("name", ""))
    labels = metadata.get("labels") if isinstance(metadata.get("labels"), dict) else {}
    template_hash = labels.get("pod-template-hash")
    if kind == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
        return f"Deployment/{name[: -len(template_hash) - 1]}"
    return f"{kind}/{name}"


def request_query(event: Event) -> dict[str, list[str]]:
    """The query parameters of an API request (``kubectl exec`` puts its command and container there)."""
    return parse_qs(urlsplit(event.target.uri).query)


def host_path(volume: Mapping[str, Any]) -> str:
    """The normalized host path of a hostPath volume ('' for other volumes): ``/etc/../root/`` is ``/root``
    and ``/var/run`` is ``/run``, so spelling a path differently does not evade a path list."""
    source = volume.get("hostPath")
    if not isinstance(source, dict) or not isinstance(source.get("path"), str) or not source["path"]:
        return ""
    path = posixpath.normpath("/" + source["path"].lstrip("/"))
    if path == "/var/run" or path.startswith("/var/run/"):
        path = path[len("/var") :]
    return path


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


def identity_in(name: str, patterns: Sequence[str]) -> bool:
    """Whether ``name`` (a user, an image name) matches one of the ``fnmatch`` patterns (case-sensitive, as
    Kubernetes names are). Some detections ask about every API request: see :func:`answers_for`."""
    return answers_for(patterns, _identity_answer)(name)


def _identity_answer(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """The patterns compiled into one expression instead of tried one by one."""
    expression = re.compile("|".join(f"(?:{translate(p)})" for p in patterns) or "(?!)")
    return lambda name: expression.match(name) is not None


#: Inputs whose answer one parameter value remembers (beyond it, it starts over).
MAX_ANSWERS = 4096
#: Parameter values (lists of patterns or networks) whose answers are kept (beyond it, all start over).
MAX_PARAMETER_VALUES = 512


class Answers:
    """One question about one parameter value (is this user in these patterns, is this address outside these
    networks), answered once per input. The parameter is prepared once (compiled, parsed), and each input is
    answered once: a cluster's API requests come from a few hundred users and addresses, and an answer looked up
    costs a tenth of one worked out."""

    __slots__ = ("_answer", "_known", "value")

    def __init__(self, value: tuple[Any, ...], answer: Callable[[Any], Any]) -> None:
        self.value = value
        self._answer = answer
        self._known: dict[Any, Any] = {}

    def __call__(self, item: Any) -> Any:
        known = self._known
        if item in known:
            return known[item]
        if len(known) >= MAX_ANSWERS:
            known.clear()
        answer = known[item] = self._answer(item)
        return answer


#: By the id of a tuple and the question, with the tuple itself: an entry keeps its tuple alive.
_ANSWERS: dict[tuple[int, Callable[..., Any]], tuple[tuple[Any, ...], Answers]] = {}


def answers_for(value: Sequence[Any], prepare: Callable[[tuple[Any, ...]], Callable[[Any], Any]]) -> Answers:
    """The :class:`Answers` of ``prepare`` for a parameter value. A tuple (parameters are tuples) is found by
    identity, which needs no hashing of its items; it is kept alive by its entry, so its id cannot be reused
    meanwhile. Any other sequence is copied into a tuple and found by its items."""
    if type(value) is not tuple:
        return _answers_by_items(tuple(value), prepare)
    entry = _ANSWERS.get((id(value), prepare))
    if entry is None:
        if len(_ANSWERS) >= MAX_PARAMETER_VALUES:
            _ANSWERS.clear()
        entry = _ANSWERS[(id(value), prepare)] = (value, _answers_by_items(value, prepare))
    return entry[1]


@lru_cache(maxsize=MAX_PARAMETER_VALUES)
def _answers_by_items(value: tuple[Any, ...], prepare: Callable[[tuple[Any, ...]], Callable[[Any], Any]]) -> Answers:
    return Answers(value, prepare(value))


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


RBAC_API_GROUP = "rbac.authorization.k8s.io"
ROLE_RESOURCES = frozenset({"clusterroles", "roles"})
#: Verbs a policy rule may grant that change objects (``*`` grants every verb).
WRITE_GRANTS = frozenset({"create", "update", "patch", "delete", "deletecollection", "*"})
#: The API server reconciles the bootstrap roles at start; the aggregation controller fills admin/edit/view.
ROLE_RECONCILERS = (
    "system:apiserver",
    "system:serviceaccount:kube-system:clusterrole-aggregation-controller",
)


def written_role_rules(event: Event) -> list[dict[str, Any]]:
    """The policy rules of a Role or ClusterRole that someone other than the reconcilers of the built-in roles
    created, updated or patched; [] for any other request (or a role written without rules)."""
    target = event.target
    if (
        event.action not in WRITES
        or target.resource not in ROLE_RESOURCES
        or target.api_group != RBAC_API_GROUP
        or target.subresource
        or identity_in(event.actor.user, ROLE_RECONCILERS)
    ):
        return []
    rules = (written_object(event) or {}).get("rules")
    return [rule for rule in rules if isinstance(rule, dict)] if isinstance(rules, list) else []


def rule_strings(rule: Mapping[str, Any], key: str) -> list[str]:
    """One list of a policy rule (``verbs``, ``resources``, ``apiGroups`` ...) as text; [] when it is not a list."""
    values = rule.get(key)
    return [str(value) for value in values] if isinstance(values, list) else []


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


def posture_detection(*, check: PostureCheck | None = None,
                      check_with: Callable[[Mapping[str, Any]], PostureCheck] | None = None,
                      **metadata: Any) -> EventDetection:
    """A posture detection: API writes of pods and of workload templates whose containers fail ``check``, one alert
    per workload naming the offending containers and settings. ``check_with`` builds the check from the detection's
    ``params`` (resolved for the event's namespace) instead. The dispatch, the prefilter, the alert context and the
    dedup key are the same for every posture detection, so a posture file holds only its check, metadata and
    examples."""
    common: dict[str, Any] = {
        "kinds": ["k8s.api"], "resources": POD_SPEC_RESOURCES, "actions": SPEC_WRITE_VERBS,
        "subresources": SPEC_SUBRESOURCES, "dedup": "{cluster}/{namespace}/{workload}",
    }
    if (check is None) == (check_with is None):
        raise DetectionError("a posture detection takes exactly one of check= and check_with=")
    offending = _Offending(check, check_with)
    if check is not None:
        return EventDetection(match=lambda event: bool(offending(event)),
                              context=lambda event: posture_context(event, offending(event)), **common, **metadata)
    return EventDetection(match=lambda event, params: bool(offending(event, params)),
                          context=lambda event, params: posture_context(event, offending(event, params)),
                          **common, **metadata)


class _Offending:
    """:func:`offending_containers` for a posture detection's check, remembered for the last event (and
    params) it was asked about: ``context`` asks again right after ``match`` found some."""

    def __init__(self, check: PostureCheck | None,
                 check_with: Callable[[Mapping[str, Any]], PostureCheck] | None) -> None:
        self._check, self._check_with = check, check_with
        self._last: tuple[Event | None, Mapping[str, Any] | None, list[dict[str, str]]] = (None, None, [])

    def __call__(self, event: Event, params: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
        last_event, last_params, found = self._last
        if last_event is not event or last_params is not params:
            check = self._check if self._check is not None else self._check_with(params)
            found = offending_containers(event, check)
            self._last = (event, params, found)
        return found


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


@lru_cache(maxsize=4096)
def image_reference(image: str) -> ImageReference:
    """``image`` normalized: the registry is the first component when it looks like a host (has a dot or a
    port, or is localhost), else Docker Hub, whose official images live under ``library/``; the tag defaults
    to ``latest`` only when there is no digest either. Remembered: a cluster runs a few hundred images, and
    every pod write asks several detections about each of its images."""
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


#: Host paths that give a container the node: its root, configuration, credentials, the container runtime,
#: the kubelet's secrets and pods, the kernel's interfaces, logs of other workloads, users' homes, devices.
#: ``/var/run`` is folded into ``/run`` by :func:`host_path`. ``k8s.sensitive_host_path`` reports them;
#: ``k8s.host_path_volume`` reports the other host paths, so one mount is one alert.
SENSITIVE_HOST_PATHS = (
    "/",
    "/etc",
    "/root",
    "/home",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/var/lib/kubelet",
    "/proc",
    "/sys",
    "/var/log",
    "/dev",
)


def is_sensitive_host_path(path: str) -> bool:
    """Whether a normalized host path (see :func:`host_path`) is or lies under one of ``SENSITIVE_HOST_PATHS``."""
    return any(path == p or (p != "/" and path.startswith(p + "/")) for p in SENSITIVE_HOST_PATHS)


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


# --- Where requests come from -----------------------------------------------------------------------------------

#: Where a cluster's own machinery talks to the API server from, when a deployment has not said: the private
#: ranges (RFC 1918, carrier-grade NAT used by some CNIs, IPv6 unique-local), loopback and link-local. Pods,
#: nodes and control planes of most clusters sit there; clusters whose nodes have public addresses list them.
PRIVATE_NETWORKS = [
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "fc00::/7", "::1/128", "fe80::/10",
]


def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``cidrs`` parsed (once per list: :func:`answers_for` prepares each parameter value once). A bad entry raises
    DetectionError naming it: a typo in the tuning file must not silently trust nothing."""
    try:
        return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)
    except ValueError as exc:
        raise DetectionError(f"not a network: {exc}") from None


def addresses_outside(addresses: Iterable[str], cidrs: Sequence[str]) -> list[str]:
    """The addresses (``actor.source_ips``) in none of ``cidrs``. ``sourceIPs`` lists the client named by
    X-Forwarded-For first and the peer the API server saw last: any one outside is reason enough, since a proxy
    inside the network does not make a client behind it trusted. Unparseable entries are left out. Answered once
    per address and list of networks (:func:`answers_for`): parsing an address costs more than the rest of a
    detection."""
    outside = answers_for(cidrs, _outside_answer)
    return [address for text in addresses if (address := outside(text))]


def _outside_answer(cidrs: tuple[str, ...]) -> Callable[[str], str]:
    """``text`` normalized when it is an address in none of ``cidrs``, else "" (see :func:`_networks`)."""
    networks = _networks(cidrs)

    def outside(text: str) -> str:
        try:
            address = ipaddress.ip_address(text.strip())
        except ValueError:
            return ""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address.version == net.version and address in net for net in networks):
            return ""
        return str(address)

    return outside


def from_addresses(record: dict[str, Any], *addresses: str) -> dict[str, Any]:
    """An example audit record (see ``audit_record``) sent from ``addresses`` instead of the builder's default,
    with its auditID derived again so two examples that differ only by address stay two requests."""
    changed = {key: value for key, value in record.items() if key != "auditID"}
    changed["sourceIPs"] = list(addresses)
    content = orjson.dumps(changed, option=orjson.OPT_SORT_KEYS).decode()
    changed["auditID"] = str(uuid.uuid5(uuid.NAMESPACE_URL, content))
    return changed


# --- Who reads secrets and where the system lives ---------------------------------------------------------------

#: The namespaces Kubernetes itself creates: what runs there runs with the cluster's own privileges.
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")

#: The controller manager's controllers that write pods (and ReplicaSets, Jobs) from a workload's template, under
#: their own service accounts (``--use-service-account-credentials``) or the manager's identity. The escape-class
#: posture detections declare this as their ``template_controllers`` default (``[]`` judges every pod again).
TEMPLATE_CONTROLLERS = [
    "system:kube-controller-manager",
    *(f"system:serviceaccount:kube-system:{name}" for name in (
        "daemon-set-controller", "replicaset-controller", "deployment-controller", "statefulset-controller",
        "job-controller", "cronjob-controller", "replication-controller")),
]
_MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


def restated_pod(event: Event, controllers: Sequence[str]) -> bool:
    """Whether the pod spec this write sets was judged elsewhere: one of ``controllers`` instantiating a workload's
    template (the object is owned by its controller; the template was judged when the workload was written), or a
    kubelet's mirror of a static pod (it runs nothing; the manifest on the node is
    runtime.static_pod_manifest_write's). Escape-class posture detections skip these, so a privileged DaemonSet is
    one alert, not one per node."""
    metadata = pod_metadata(event)
    if event.actor.user.startswith("system:node:"):
        annotations = metadata.get("annotations")
        return isinstance(annotations, dict) and _MIRROR_ANNOTATION in annotations
    if event.actor.user not in controllers:
        return False
    written = (written_object(event) or {}).get("metadata")
    return _controlled(metadata) or (isinstance(written, dict) and _controlled(written))


def _controlled(metadata: Mapping[str, Any]) -> bool:
    owners = metadata.get("ownerReferences")
    return isinstance(owners, list) and any(isinstance(o, dict) and o.get("controller") for o in owners)


#: Node agents that need the host by design, by image repository (any registry or mirror in front): CNI and
#: network agents, kube-proxy, runtime-security and monitoring agents, log shippers, CSI node plugins. After
#: Falco's falco_privileged_images and falco_sensitive_mount_images. The escape-class posture detections
#: (privileged, host namespaces, sensitive host paths) declare this as their ``node_agent_images`` default and do
#: not report a pod or template whose every container runs one of them; a deployment replaces the list in the
#: tuning file. Which images a cluster may run at all is the registry allow-list detections' business.
NODE_AGENT_IMAGES = (
    "*calico/node", "*calico/cni", "*calico/pod2daemon-flexvol", "*calico/csi", "*calico/node-driver-registrar",
    "*cilium/cilium", "*cilium/cilium-envoy", "*flannel/flannel", "*flannel/flannel-cni-plugin",
    "*/kube-proxy", "*amazon-k8s-cni", "*amazon-k8s-cni-init", "*cloudnativelabs/kube-router",
    "*weaveworks/weave-kube", "*ip-masq-agent*", "*gke-metadata-server", "*netd-amd64",
    "*falcosecurity/falco", "*falcosecurity/falco-driver-loader", "*sysdig/sysdig", "*cilium/tetragon",
    "*prometheus/node-exporter", "*prom/node-exporter", "*fluent/fluent-bit", "*fluent/fluentd-kubernetes-daemonset",
    "*datadog/agent", "*cadvisor/cadvisor", "*google/cadvisor",
    "*sig-storage/csi-node-driver-registrar", "*ebs-csi-driver/aws-ebs-csi-driver",
    "*efs-csi-driver/aws-efs-csi-driver",
    "*nvidia/k8s-device-plugin",
)


def runs_node_agents(event: Event, patterns: Sequence[str]) -> bool:
    """Whether every container of the pod (or template) this write sets runs one of the node-agent ``patterns``."""
    pod = written_pod(event)
    if pod is None or not pod.containers:
        return False
    return all(identity_in(image_reference(str(c.get("image", ""))).name, patterns) for _, c in pod.containers)


#: Images whose job is changing their own filesystem: in-cluster image builders unpack a base image over their
#: root and run each build step there (package installs, /etc and binary directories written). Runtime detections
#: of drift inside a container declare this as their ``builder_images`` default (``fnmatch`` patterns of the image
#: reference, mirrors included), so a deployment replaces it in the tuning file, per namespace too. Starting a pod
#: from one of these images is itself an API request that the image allow-list detections see.
IMAGE_BUILDERS = (
    "*kaniko-project/executor*",
    "*moby/buildkit*",
    "*/buildah/stable*",
    "*/containers/buildah*",
    "*/podman/stable*",
    "*/containers/podman*",
)


def built_by_image_builder(event: Event, patterns: Sequence[str]) -> bool:
    """Whether the event's container runs one of the image-builder images ``patterns``."""
    image = event.k8s.image or event.container.image
    return bool(image) and identity_in(image, patterns)


#: In-cluster components whose job is reading or listing secrets, by their usual service-account names in any
#: namespace (Helm charts let the namespace vary): metrics exporters, certificate and secret operators, GitOps
#: controllers, ingress controllers serving TLS, service meshes and backup tools. Secret detections declare this
#: as their ``allowed_identities`` default, so a deployment replaces it in the tuning file. A service account of
#: one of these names in another namespace matches too: creating one that can read secrets takes a role binding,
#: which the RBAC detections report; a deployment that wants more pins the namespaces.
SECRET_READERS = [
    *CONTROL_PLANE,
    "system:serviceaccount:*:kube-state-metrics",
    "system:serviceaccount:*:cert-manager",
    "system:serviceaccount:*:cert-manager-cainjector",
    "system:serviceaccount:*:cert-manager-webhook",
    "system:serviceaccount:*:external-secrets",
    "system:serviceaccount:*:sealed-secrets-controller",
    "system:serviceaccount:*:argocd-application-controller",
    "system:serviceaccount:*:argocd-server",
    "system:serviceaccount:*:argocd-repo-server",
    "system:serviceaccount:*:helm-controller",
    "system:serviceaccount:*:kustomize-controller",
    "system:serviceaccount:*:source-controller",
    "system:serviceaccount:*:ingress-nginx",
    "system:serviceaccount:*:ingress-nginx-admission",
    "system:serviceaccount:*:traefik",
    "system:serviceaccount:*:istiod",
    "system:serviceaccount:*:velero",
    "system:serviceaccount:*:vault-secrets-operator-controller-manager",
]


def subject_names(body: Mapping[str, Any] | None) -> list[str]:
    """The subjects of a RoleBinding or ClusterRoleBinding as ``Kind:namespace/name`` ([] when not logged)."""
    subjects = body.get("subjects") if isinstance(body, Mapping) else None
    if not isinstance(subjects, list):
        return []
    return [
        f"{s.get('kind', '')}:{s.get('namespace') + '/' if s.get('namespace') else ''}{s.get('name', '')}"
        for s in subjects if isinstance(s, dict)
    ]


def workload_object_images(event: Event) -> list[str]:
    """The images of the pod (or pod template) an API write sets, in container order, [] when none was logged."""
    pod = written_pod(event)
    return [str(c.get("image", "")) for _, c in pod.containers] if pod is not None else []
