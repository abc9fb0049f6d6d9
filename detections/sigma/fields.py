"""Sigma's Kubernetes audit fields (``logsource: product: kubernetes, service: audit``) on vigil events.

Sigma rules name fields of the audit event itself (``verb``, ``objectRef.resource``, ``user.username``,
``responseStatus.code``, ``sourceIPs``…): those are read from the original record every event keeps in
``raw``, by their dotted path, so any field of the audit schema works without a table entry and means
exactly what the rule's author saw. Keys that contain dots themselves (annotations such as
``authorization.k8s.io/decision``) are found by trying the longest key first.

Sigma also uses abstract fields that are not paths in the record; :data:`ABSTRACT_FIELDS` maps them:

- ``capabilities``: the capabilities any container of the pod spec adds (``securityContext.capabilities.add``);
- ``hostPath``: the host paths of the pod spec's hostPath volumes;
- ``privileged``, ``hostNetwork``, ``hostPID``, ``hostIPC``, ``image``: the pod spec's settings and images;
- ``apiGroup``: ``objectRef.apiGroup``.

The pod spec is the one the write sets, for pods and every workload template (:func:`vigil.detections.k8s.pod_spec`).
``responseStatus.code`` also carries the authorizer's decision (``allow``/``forbid``, the
``authorization.k8s.io/decision`` annotation): that is what a rule comparing the code with ``ALLOW`` means.

Every field resolves to a list of values (empty when absent or null); a field matches when one value does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vigil.detections.k8s import POD_SPEC_PATHS, containers, pod_spec
from vigil.event import Event

Resolver = Callable[[Event], list[Any]]
_DECISION = "authorization.k8s.io/decision"


def _scalars(node: Any) -> list[Any]:
    if node is None or isinstance(node, dict):
        return []
    if isinstance(node, list):
        return [item for item in node if item is not None and not isinstance(item, dict | list)]
    return [node]


def path_values(node: Any, parts: tuple[str, ...]) -> list[Any]:
    """The values at a dotted path of a JSON document, fanning out over lists on the way."""
    if not parts:
        return _scalars(node)
    if isinstance(node, list):
        return [value for item in node for value in path_values(item, parts)]
    if not isinstance(node, dict):
        return []
    for length in range(len(parts), 0, -1):
        key = ".".join(parts[:length])
        if key in node:
            return path_values(node[key], parts[length:])
    return []


def string_values(node: Any) -> list[str]:
    """Every string anywhere in a JSON document: what Sigma keywords (values without a field) search."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [text for value in node.values() for text in string_values(value)]
    if isinstance(node, list):
        return [text for value in node for text in string_values(value)]
    return []


def _security_context(container: dict[str, Any]) -> dict[str, Any]:
    context = container.get("securityContext")
    return context if isinstance(context, dict) else {}


def _capabilities(event: Event) -> list[Any]:
    spec = pod_spec(event) or {}
    found = []
    for _, container in containers(spec):
        capabilities = _security_context(container).get("capabilities")
        added = capabilities.get("add") if isinstance(capabilities, dict) else None
        found.extend(_scalars(added))
    return found


def _host_paths(event: Event) -> list[Any]:
    volumes = (pod_spec(event) or {}).get("volumes")
    return path_values(volumes, ("hostPath", "path")) if isinstance(volumes, list) else []


def _privileged(event: Event) -> list[Any]:
    spec = pod_spec(event) or {}
    return [flag for _, c in containers(spec) if isinstance(flag := _security_context(c).get("privileged"), bool)]


def _images(event: Event) -> list[Any]:
    return [c["image"] for _, c in containers(pod_spec(event) or {}) if isinstance(c.get("image"), str)]


def _pod_setting(name: str) -> Resolver:
    return lambda event: _scalars((pod_spec(event) or {}).get(name))


def _response_code(event: Event) -> list[Any]:
    return [*path_values(event.raw, ("responseStatus", "code")), *path_values(event.raw, ("annotations", _DECISION))]


ABSTRACT_FIELDS: dict[str, Resolver] = {
    "capabilities": _capabilities,
    "hostPath": _host_paths,
    "privileged": _privileged,
    "hostNetwork": _pod_setting("hostNetwork"),
    "hostPID": _pod_setting("hostPID"),
    "hostIPC": _pod_setting("hostIPC"),
    "image": _images,
    "apiGroup": lambda event: path_values(event.raw, ("objectRef", "apiGroup")),
    "responseStatus.code": _response_code,
}


def resolver(field: str) -> Resolver:
    """How to read a Sigma field from an event: an abstract field's function, else its path in the record."""
    if field in ABSTRACT_FIELDS:
        return ABSTRACT_FIELDS[field]
    parts = tuple(field.split("."))
    return lambda event: path_values(event.raw, parts)


# --- Writing fields, for the examples the importer synthesizes ------------------------------------------------


def _container(spec: dict[str, Any]) -> dict[str, Any]:
    listed = spec.setdefault("containers", [])
    if not listed:
        listed.append({"name": "example", "image": "example:1"})
    return listed[0]


def _spec(record: dict[str, Any]) -> dict[str, Any]:
    """The pod spec inside the record's request body (created on the way) for its resource."""
    resource = (record.get("objectRef") or {}).get("resource", "pods")
    node = record.setdefault("requestObject", {})
    for key in POD_SPEC_PATHS.get(resource, ("spec",)):
        node = node.setdefault(key, {})
    return node


def _write_path(record: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    node = record
    while len(parts) > 1:
        length = next((n for n in range(len(parts) - 1, 0, -1) if ".".join(parts[:n]) in node), 1)
        key = ".".join(parts[:length])
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node, parts = node[key], parts[length:]
    key = parts[0]
    node[key] = [value] if isinstance(node.get(key), list) else value


def _write_capability(record: dict[str, Any], value: Any) -> None:
    context = _container(_spec(record)).setdefault("securityContext", {})
    context.setdefault("capabilities", {}).setdefault("add", []).append(value)


def _write_host_path(record: dict[str, Any], value: Any) -> None:
    volumes = _spec(record).setdefault("volumes", [])
    volumes.append({"name": f"host{len(volumes)}", "hostPath": {"path": value}})


def _write_response_code(record: dict[str, Any], value: Any) -> None:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        record.setdefault("responseStatus", {})["code"] = int(value)
    else:
        record.setdefault("annotations", {})[_DECISION] = str(value).lower()


_WRITERS: dict[str, Callable[[dict[str, Any], Any], None]] = {
    "capabilities": _write_capability,
    "hostPath": _write_host_path,
    "privileged": lambda r, v: _container(_spec(r)).setdefault("securityContext", {}).update(privileged=v is True),
    "hostNetwork": lambda r, v: _spec(r).update(hostNetwork=v),
    "hostPID": lambda r, v: _spec(r).update(hostPID=v),
    "hostIPC": lambda r, v: _spec(r).update(hostIPC=v),
    "image": lambda r, v: _container(_spec(r)).update(image=v),
    "apiGroup": lambda r, v: r.setdefault("objectRef", {}).update(apiGroup=v),
    "responseStatus.code": _write_response_code,
}


def write_field(record: dict[str, Any], field: str, value: Any) -> None:
    """Set a Sigma field in a raw audit record so that :func:`resolver` reads ``value`` back."""
    writer = _WRITERS.get(field)
    if writer is not None:
        writer(record, value)
    else:
        _write_path(record, tuple(field.split(".")), value)


#: Abstract fields live in the request body, which depends on the resource: they are written last.
WRITTEN_LAST = frozenset(ABSTRACT_FIELDS) - {"apiGroup", "responseStatus.code"}
