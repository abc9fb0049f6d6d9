"""Complete audit records for detection examples and tests: an audit Event as the API server writes it, and the
objects clients send in it, so examples go through the real parser and normalizer."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson


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
    extra: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """A complete ``audit.k8s.io/v1`` Event as the API server writes it at ResponseComplete, so examples
    state only what matters to the detection. ``extra`` is ``user.extra`` (a pod-bound service-account
    token names its pod there). The auditID is derived from the content: stable across runs."""
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
        "user": {"username": user, "groups": list(groups), **({"extra": dict(extra)} if extra else {})},
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


def role_object(kind: str, name: str, *rules: dict[str, list[str]]) -> dict[str, Any]:
    """A ``Role`` or ``ClusterRole`` named ``name`` granting ``rules``, as a client would send it."""
    return {"kind": kind, "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": name},
            "rules": list(rules)}
