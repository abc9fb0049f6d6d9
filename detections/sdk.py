"""What a detection file declares, and the Kubernetes helpers detections share.

A detection is one file in ``detections/library`` that defines a module-level ``DETECTION``: its catalogue
metadata, the event kinds it looks at (the engine dispatches on them, so a detection costs nothing for
events of other kinds), its logic, and its own examples as raw source records (``vigil detections test``
normalizes them through the real source and checks positives fire and negatives stay quiet).

:class:`EventDetection` judges one event at a time (a Panther rule, a plain Sigma rule, a Falco rule).
Detections over windows and ordered sequences are further subclasses of :class:`Detection`: the engine
only ever calls :meth:`Detection.evaluate` with one event and receives the alerts that event completes, so
a stateful subclass keeps its partial matches itself and neither the engine nor existing detections change.
"""

from __future__ import annotations

import posixpath
import re
import string
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from vigil.alert import SEVERITIES, Alert
from vigil.event import Event

_ID = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
_MITRE = re.compile(r"^T\d{4}(\.\d{3})?$")


class DetectionError(ValueError):
    """A detection declared with metadata the engine cannot run or catalogue; the message names the field."""


@dataclass(frozen=True, kw_only=True)
class Example:
    """One raw source record and whether the detection must fire on it (Panther's unit tests, by example)."""

    name: str
    source: str
    record: dict[str, Any]
    fires: bool


@dataclass(frozen=True, kw_only=True)
class Detection(ABC):
    """Catalogue metadata shared by every kind of detection, validated when the detection file loads."""

    id: str
    title: str
    description: str
    severity: str
    kinds: frozenset[str]
    mitre: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    false_positives: tuple[str, ...] = ()
    #: Hits with the same dedup key within this many seconds update one alert instead of raising another.
    dedup_period_s: float = 600.0
    examples: tuple[Example, ...] = ()

    def __post_init__(self) -> None:
        for name in ("kinds", "mitre", "tags", "references", "false_positives", "examples"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise DetectionError(f"{name} must be a list, not the string {value!r}")
            object.__setattr__(self, name, frozenset(value) if name == "kinds" else tuple(value))
        if not _ID.match(self.id):
            raise DetectionError(f"id {self.id!r} must be dotted lowercase words, e.g. 'k8s.exec_into_pod'")
        if not self.title or not self.description:
            raise DetectionError(f"{self.id}: title and description are required")
        if self.severity not in SEVERITIES:
            raise DetectionError(f"{self.id}: severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        if not self.kinds:
            raise DetectionError(f"{self.id}: kinds must name at least one event kind")
        for technique in self.mitre:
            if not _MITRE.match(technique):
                raise DetectionError(f"{self.id}: MITRE technique {technique!r} must look like T1609 or T1611.001")
        if self.dedup_period_s < 0:
            raise DetectionError(f"{self.id}: dedup_period_s must not be negative")

    @abstractmethod
    def evaluate(self, event: Event) -> list[Alert]:
        """The alerts this event completes (none for most events). Exceptions are isolated by the engine."""

    def catalogue_entry(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "mitre": list(self.mitre),
            "kinds": sorted(self.kinds),
            "tags": list(self.tags),
            "description": self.description,
            "references": list(self.references),
            "false_positives": list(self.false_positives),
            "dedup_period_s": self.dedup_period_s,
            "examples": len(self.examples),
        }

    def build_alert(self, events: Sequence[Event], context: Mapping[str, Any], title: str, dedup_key: str) -> Alert:
        """An alert about ``events`` (the evidence, in order): Kubernetes context comes from the first event
        that has it, the alert time from the last, so a sequence alert is dated when it completed."""
        first, last = events[0], events[-1]
        return Alert(
            detection=self.id,
            title=title,
            severity=self.severity,
            time_ns=last.time_ns,
            mitre=list(self.mitre),
            description=self.description,
            tags=list(self.tags),
            cluster=first.cluster,
            namespace=next((n for e in events if (n := _namespace(e))), ""),
            pod=next((e.k8s.pod for e in events if e.k8s.pod), ""),
            user=next((e.actor.user for e in events if e.actor.user), ""),
            dedup_key=dedup_key,
            evidence=[e.original_id or e.id for e in events],
            event_ids=[e.id for e in events],
            context=dict(context),
        )


@dataclass(frozen=True, kw_only=True)
class EventDetection(Detection):
    """A detection decided by one event: ``match`` says whether it fires, ``context`` adds what an analyst
    needs to triage (image, the offending setting) to the alert, and the title and dedup key are
    ``str.format`` templates over :func:`template_fields`, the alert context and the detection's own context
    keys, which win (lists join with ", ")."""

    match: Callable[[Event], bool]
    context: Callable[[Event], dict[str, Any]] | None = None
    alert_title: str = ""
    dedup: str = "{cluster}/{namespace}/{pod}/{user}"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("alert_title", "dedup"):
            try:
                list(string.Formatter().parse(getattr(self, name)))
            except ValueError as exc:
                raise DetectionError(f"{self.id}: {name} is not a valid template: {exc}") from None

    def evaluate(self, event: Event) -> list[Alert]:
        if not self.match(event):
            return []
        own_context = self.context(event) if self.context is not None else {}
        context = {**event_context(event), **own_context}
        fields = {**context, **template_fields(event), **own_context}
        fields = {key: _template_value(value) for key, value in fields.items()}
        title = (self.alert_title or self.title).format_map(fields)
        return [self.build_alert([event], context, title, self.dedup.format_map(fields))]


def template_fields(event: Event) -> dict[str, Any]:
    """The fields every title and dedup template may use, whatever the event kind (empty when not known)."""
    return {
        "cluster": event.cluster,
        "namespace": _namespace(event),
        "pod": event.k8s.pod,
        "user": event.actor.user,
        "verb": event.action,
        "resource": event.target.resource,
        "subresource": event.target.subresource,
        "name": event.target.name,
        "source": event.source,
    }


def _template_value(value: Any) -> Any:
    """Lists read as ``a, b`` in titles and dedup keys, not as a Python repr."""
    return ", ".join(map(str, value)) if isinstance(value, list | tuple) else value


def event_context(event: Event) -> dict[str, Any]:
    """The fields every alert context starts from: what was done to what, by whom from where, and how it ended."""
    target, actor = event.target, event.actor
    resource = f"{target.resource}/{target.subresource}" if target.subresource else target.resource
    context = {
        "verb" if event.kind == "k8s.api" else "action": event.action,
        "resource": resource,
        "api_group": target.api_group,
        "object": target.name,
        "path": target.path,
        "address": f"{target.address}:{target.port}" if target.address else "",
        "exe": actor.exe,
        "args": actor.args,
        "source_ips": actor.source_ips,
        "user_agent": actor.user_agent,
        "outcome": event.outcome.result,
        "code": event.outcome.code,
    }
    return {key: value for key, value in context.items() if value}


def _namespace(event: Event) -> str:
    return event.k8s.namespace or event.target.namespace


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
_WRITE_VERBS = frozenset({"create", "update", "patch"})
#: ``pods/ephemeralcontainers`` is how ``kubectl debug`` adds a container; ``pods/status`` and other
#: subresources repeat the spec without changing it, so they must not count as a new spec.
_SPEC_SUBRESOURCES = frozenset({"", "ephemeralcontainers"})
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def written_object(event: Event) -> dict[str, Any] | None:
    """The Kubernetes object an API write request sets: the request body for create/update; for a patch
    the full object from the response when the audit policy logged it, else the patch itself."""
    if event.kind != "k8s.api" or event.action not in _WRITE_VERBS or not isinstance(event.raw, dict):
        return None
    response = event.raw.get("responseObject")
    if event.action == "patch" and isinstance(response, dict) and ("spec" in response or "template" in response):
        return response
    request = event.raw.get("requestObject")
    return request if isinstance(request, dict) else None


def pod_spec(event: Event) -> dict[str, Any] | None:
    """The pod spec an API write sets, for pods and for every workload kind that templates pods; ``None``
    for any other event. The one place detections get a pod spec from."""
    target = event.target
    path = POD_SPEC_PATHS.get(target.resource)
    if path is None or target.api_group not in _WORKLOAD_API_GROUPS or target.subresource not in _SPEC_SUBRESOURCES:
        return None
    node: Any = written_object(event)
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node if isinstance(node, dict) else None


def containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every container of a pod spec with the list it is in (``containers``, ``initContainers``,
    ``ephemeralContainers``): each of them runs on the node with its own security context."""
    for list_name in CONTAINER_LISTS:
        entries = spec.get(list_name)
        if isinstance(entries, list):
            for container in entries:
                if isinstance(container, dict):
                    yield list_name, container


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
    uri = event.target.uri or (event.raw.get("requestURI", "") if isinstance(event.raw, dict) else "")
    return parse_qs(urlsplit(str(uri)).query)


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


# --- Examples ---------------------------------------------------------------------------------------------------


def audit_record(
    verb: str,
    resource: str,
    *,
    name: str = "",
    namespace: str = "default",
    subresource: str = "",
    api_group: str = "",
    api_version: str = "v1",
    query: str = "",
    request_object: dict[str, Any] | None = None,
    user: str = "alice@example.com",
    groups: Sequence[str] = ("system:authenticated",),
    code: int | None = None,
    time: str = "2025-03-04T06:22:18.819232Z",
) -> dict[str, Any]:
    """A complete ``audit.k8s.io/v1`` Event as the API server writes it at ResponseComplete, so examples
    state only what matters to the detection. The auditID is derived from the content: stable across runs."""
    prefix = f"/apis/{api_group}/{api_version}" if api_group else f"/api/{api_version}"
    parts = [prefix, *(["namespaces", namespace] if namespace else []), resource, *([name] if name else [])]
    uri = "/".join([*parts, *([subresource] if subresource else [])]) + (f"?{query}" if query else "")
    code = code if code is not None else (201 if verb == "create" else 200)
    record: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Request" if request_object is not None else "Metadata",
        "stage": "ResponseComplete",
        "requestURI": uri,
        "verb": verb,
        "user": {"username": user, "groups": list(groups)},
        "sourceIPs": ["10.0.0.7"],
        "userAgent": "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
        "objectRef": {
            "resource": resource,
            "namespace": namespace,
            "name": name,
            "apiGroup": api_group,
            "apiVersion": api_version,
            **({"subresource": subresource} if subresource else {}),
        },
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": time,
        "stageTimestamp": time,
        "annotations": {"authorization.k8s.io/decision": "allow" if code < 400 else "forbid"},
    }
    if request_object is not None:
        record["requestObject"] = request_object
    record["auditID"] = str(uuid.uuid5(uuid.NAMESPACE_URL, orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()))
    return record


def workload_object(kind: str, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    """A Pod, or a workload of ``kind`` templating pods with ``spec``, as a client would send it."""
    if kind == "Pod":
        return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, **metadata}, "spec": spec}
    template = {"metadata": {"labels": {"app": name}}, "spec": spec}
    workload_spec: dict[str, Any] = {"template": template, "selector": {"matchLabels": {"app": name}}}
    if kind == "Job":
        workload_spec = {"template": template}
    elif kind == "CronJob":
        workload_spec = {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}}
    api_version = "batch/v1" if kind in {"Job", "CronJob"} else "apps/v1"
    return {"kind": kind, "apiVersion": api_version, "metadata": {"name": name, **metadata}, "spec": workload_spec}
