"""Kubernetes audit logs in every wire format they arrive in, turned into plain ``audit.k8s.io/v1`` events.

Audit events reach vigil straight from kube-apiserver (log backend lines, webhook ``EventList`` bodies)
and through the managed clouds' logging products, each of which wraps or rewrites them: GKE Cloud
Logging turns them into ``google.cloud.audit.AuditLog`` entries, AKS diagnostic settings nest them in
``properties.log``, EKS ships them through CloudWatch Logs. Detections, the normalizer and forensics
read one shape only, so the unwrapping happens here, once, at the edge. Every record yielded can be
re-encoded by orjson and fits the record size limit, so nothing downstream meets a record it cannot ship.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import orjson

from vigil.sources.health import check_health_record, is_health_record
from vigil.sources.source import RecordRejected, Rejected
from vigil.sources.timestamps import parse_timestamp_ns

AUDIT_V1 = "audit.k8s.io/v1"
AUDIT_GROUP_PREFIX = "audit.k8s.io/"

#: Annotation carrying the cluster name of a GKE entry (``resource.labels.cluster_name``): one Cloud
#: Logging sink serves every cluster of a project, so the record, not the collector, knows its cluster.
CLUSTER_ANNOTATION = "vigil/cluster"
_RESOURCE_LABEL_ANNOTATIONS = {
    "cluster_name": CLUSTER_ANNOTATION,
    "project_id": "vigil/gcp-project",
    "location": "vigil/gcp-location",
}

#: Ceiling for a gzip payload once inflated (a CloudWatch subscription batch is at most a few MiB), so
#: a compression bomb costs at most this much memory.
MAX_INFLATED_BYTES = 64 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"

#: Keys that mark a payload carrying many records, found near the start of every such document; a
#: payload over the record limit without one is refused before paying for its parse.
_LIST_MARKERS = (b'"items"', b'"logEvents"')
_LIST_MARKER_WINDOW = 4096

#: orjson refuses to encode more than 254 nested levels, and the pipeline wraps a record in a few
#: levels of its own (batch array, event envelope, dead-letter document); records nested deeper than
#: the remainder would parse here and then fail to ship, so they are refused here.
_ENVELOPE_LEVELS = 8
_ORJSON_MAX_LEVELS = 254
#: A document with fewer opening brackets than this cannot nest too deep: the exact check is skipped.
_DEEP_BRACKETS = _ORJSON_MAX_LEVELS - _ENVELOPE_LEVELS

_AKS_CATEGORIES = frozenset({"kube-audit", "kube-audit-admin"})
_REQUIRED_TEXT = ("auditID", "verb", "stage")


def split_payload(payload: bytes, max_record_bytes: int) -> Iterator[dict[str, Any] | Rejected]:
    """Parse one payload (a log line, a webhook body, a small file) into audit events; never raises.

    Each bad record becomes a :class:`Rejected` with one of the stable reasons ``invalid_utf8``,
    ``not_json``, ``too_large``, ``wrong_kind``, ``missing_field``, ``not_audit``; good records of the
    same payload are still yielded.
    """
    try:
        text = _inflate(payload, max(MAX_INFLATED_BYTES, max_record_bytes)) if payload[:2] == _GZIP_MAGIC else payload
        oversized = len(text) > max_record_bytes
        if oversized and not any(marker in text[:_LIST_MARKER_WINDOW] for marker in _LIST_MARKERS):
            raise _too_large(len(text), max_record_bytes)
        document = _load_json(text)
    except RecordRejected as exc:
        yield Rejected(exc.reason, exc.detail, payload)
        return
    limits = _Limits(max_record_bytes, oversized, _bracket_count(text) > _DEEP_BRACKETS)
    if type(document) is not dict:
        yield Rejected("wrong_kind", f"top-level JSON {_json_type(document)} is not an audit event", payload)
    elif "logEvents" in document or "messageType" in document:
        yield from _cloudwatch_events(document, payload, limits)
    elif document.get("kind") == "EventList":
        yield from _event_list(document, payload, limits)
    else:
        yield _single(document, payload, limits)


def _load_json(text: bytes | str, where: str = "") -> Any:
    """orjson's parse with its failures turned into rejections that say what and where."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if isinstance(text, bytes):
            try:
                text.decode("utf-8")
            except UnicodeDecodeError as bad:
                raise RecordRejected("invalid_utf8", f"{where}invalid UTF-8 at byte {bad.start}") from None
        raise RecordRejected("not_json", f"{where}{exc}") from None


class _Limits:
    """What a payload needs checked per record: its size (only if the whole is over the limit) and depth."""

    __slots__ = ("check_depth", "check_size", "max_record_bytes")

    def __init__(self, max_record_bytes: int, check_size: bool, check_depth: bool) -> None:
        self.max_record_bytes = max_record_bytes
        self.check_size = check_size
        self.check_depth = check_depth

    def enforce(self, record: dict[str, Any]) -> dict[str, Any]:
        if self.check_size or self.check_depth:
            size = _encoded_size(record)
            if size > self.max_record_bytes:
                raise _too_large(size, self.max_record_bytes)
        return record


def _single(document: dict[str, Any], payload: bytes, limits: _Limits) -> dict[str, Any] | Rejected:
    try:
        return limits.enforce(_unwrap(document))
    except RecordRejected as exc:
        return Rejected(exc.reason, exc.detail, payload)


def _unwrap(document: dict[str, Any]) -> dict[str, Any]:
    """The audit event inside one document, whichever single-record wrapper it came in."""
    if "protoPayload" in document:
        return _from_cloud_logging(document)
    if "category" in document and "properties" in document:
        return _from_azure_diagnostics(document)
    if "@message" in document:
        return _from_text(document["@message"], "@message: ")
    if "message" in document and not ("kind" in document or "apiVersion" in document or "auditID" in document):
        return _from_text(document["message"], "message: ")
    if is_health_record(document):  # the collector's own report of audit records it lost (a replayed topic)
        check_health_record(document)
        return document
    return _audit_event(document)


def _event_list(document: dict[str, Any], payload: bytes, limits: _Limits) -> Iterator[dict[str, Any] | Rejected]:
    api_version = document.get("apiVersion", AUDIT_V1)
    if type(api_version) is not str or not api_version.startswith(AUDIT_GROUP_PREFIX):
        yield Rejected("wrong_kind", f"EventList of apiVersion {_shown(api_version)} is not an audit list", payload)
        return
    items = document.get("items")
    if type(items) is not list:
        yield Rejected("missing_field", "EventList has no items list", payload)
        return
    for index, item in enumerate(items):
        try:
            if type(item) is not dict:
                raise RecordRejected("wrong_kind", f"items[{index}] is a JSON {_json_type(item)}, not an event")
            yield limits.enforce(_audit_event(item))
        except RecordRejected as exc:
            yield Rejected(exc.reason, f"items[{index}]: {exc.detail}", _item_bytes(item))


def _cloudwatch_events(
    document: dict[str, Any], payload: bytes, limits: _Limits
) -> Iterator[dict[str, Any] | Rejected]:
    """A CloudWatch Logs subscription delivery; CONTROL_MESSAGE is the service's reachability probe."""
    message_type = document.get("messageType", "DATA_MESSAGE")
    if message_type == "CONTROL_MESSAGE":
        return
    if message_type != "DATA_MESSAGE":
        yield Rejected("not_audit", f"CloudWatch Logs messageType {_shown(message_type)}", payload)
        return
    log_events = document.get("logEvents")
    if type(log_events) is not list:
        yield Rejected("missing_field", "CloudWatch Logs DATA_MESSAGE has no logEvents list", payload)
        return
    for index, log_event in enumerate(log_events):
        message = log_event.get("message") if type(log_event) is dict else None
        try:
            if type(message) is not str:
                raise RecordRejected("missing_field", "no message text")
            if limits.check_size and len(message) > limits.max_record_bytes // 4:
                size = len(message.encode("utf-8", "surrogatepass"))
                if size > limits.max_record_bytes:
                    raise _too_large(size, limits.max_record_bytes)
            message_limits = _Limits(limits.max_record_bytes, False, _bracket_count(message) > _DEEP_BRACKETS)
            yield message_limits.enforce(_from_text(message, ""))
        except RecordRejected as exc:
            raw = message.encode("utf-8", "surrogatepass") if type(message) is str else _item_bytes(log_event)
            yield Rejected(exc.reason, f"logEvents[{index}]: {exc.detail}", raw)


def _from_text(value: Any, where: str) -> dict[str, Any]:
    """An audit event carried as JSON text inside another document (EKS, AKS), or already as an object."""
    if type(value) is str:
        value = _load_json(value, where)
    if type(value) is not dict:
        raise RecordRejected("wrong_kind", f"{where}JSON {_json_type(value)} is not an audit event")
    return _audit_event(value)


def _from_azure_diagnostics(document: dict[str, Any]) -> dict[str, Any]:
    category = document.get("category")
    if type(category) is not str or category not in _AKS_CATEGORIES:
        raise RecordRejected("not_audit", f"AKS diagnostic log of category {_shown(category)}")
    properties = document.get("properties")
    if type(properties) is not dict or "log" not in properties:
        raise RecordRejected("missing_field", "AKS diagnostic log without properties.log")
    return _from_text(properties["log"], "properties.log: ")


def _audit_event(document: dict[str, Any]) -> dict[str, Any]:
    """Check one audit event and bring it to the v1 shape (in place: the parsed document is ours).

    Accepts v1, the older v1alpha1/v1beta1 (their ``timestamp``/``metadata.creationTimestamp`` fill
    the v1 timestamps they lack) and events without ``apiVersion``/``kind`` (webhook list items).
    """
    kind = document.get("kind")
    api_version = document.get("apiVersion")
    if kind is None and api_version is None:
        if not any(field in document for field in _REQUIRED_TEXT):
            raise RecordRejected("not_audit", f"JSON object with keys {_key_list(document)} is not an audit event")
    elif kind not in ("Event", None):
        raise RecordRejected("wrong_kind", f"kind {_shown(kind)} is not an audit Event")
    if api_version is not None and (type(api_version) is not str or not api_version.startswith(AUDIT_GROUP_PREFIX)):
        raise RecordRejected("wrong_kind", f"apiVersion {_shown(api_version)} is not audit.k8s.io")
    for field in _REQUIRED_TEXT:
        value = document.get(field)
        if type(value) is not str or not value:
            raise RecordRejected("missing_field", f"{field} is missing or not a non-empty string")
    if api_version != AUDIT_V1 or kind is None:
        _to_v1(document)
    _check_event_time(document)
    return document


def _to_v1(document: dict[str, Any]) -> None:
    document["kind"] = "Event"
    document["apiVersion"] = AUDIT_V1
    legacy_time = document.get("timestamp")
    if legacy_time is None:
        metadata = document.get("metadata")
        legacy_time = metadata.get("creationTimestamp") if type(metadata) is dict else None
    if legacy_time is not None:
        for field in ("requestReceivedTimestamp", "stageTimestamp"):
            if not document.get(field):
                document[field] = legacy_time


def event_time_text(event: dict[str, Any]) -> str:
    """The time an audit event stands for: its stage's time, else when the request arrived."""
    value = event.get("stageTimestamp")
    if not value:
        value = event.get("requestReceivedTimestamp")
    if type(value) is not str:
        raise RecordRejected("missing_field", "neither stageTimestamp nor requestReceivedTimestamp is a string")
    return value


def _check_event_time(event: dict[str, Any]) -> int:
    try:
        return parse_timestamp_ns(event_time_text(event))
    except ValueError as exc:
        raise RecordRejected("missing_field", str(exc)) from None


# --- GKE: Cloud Logging entries of the k8s.io service ---------------------------------------------------

#: API groups whose name has no dot; every other group ``a.b.c`` appears reversed (``c.b.a``) in a
#: GKE methodName, e.g. ``rbac.authorization.k8s.io`` as ``io.k8s.authorization.rbac``.
_GROUPS_WITHOUT_DOMAIN = frozenset({"apps", "batch", "autoscaling", "policy", "extensions"})

#: google.rpc.Code → (HTTP status, Kubernetes StatusReason): GKE logs the gRPC code of the response.
_GRPC_STATUS = {
    0: (200, ""),
    1: (499, "Timeout"),
    2: (500, "InternalError"),
    3: (400, "BadRequest"),
    4: (504, "Timeout"),
    5: (404, "NotFound"),
    6: (409, "AlreadyExists"),
    7: (403, "Forbidden"),
    8: (429, "TooManyRequests"),
    9: (400, "BadRequest"),
    10: (409, "Conflict"),
    11: (400, "BadRequest"),
    12: (501, "MethodNotAllowed"),
    13: (500, "InternalError"),
    14: (503, "ServiceUnavailable"),
    15: (500, "InternalError"),
    16: (401, "Unauthorized"),
}


def _from_cloud_logging(entry: dict[str, Any]) -> dict[str, Any]:
    """A GKE audit entry rebuilt as the v1 event kube-apiserver wrote before Cloud Logging reshaped it."""
    proto = entry["protoPayload"]
    if type(proto) is not dict:
        raise RecordRejected("not_audit", "protoPayload is not an object")
    service = proto.get("serviceName")
    type_url = proto.get("@type", "google.cloud.audit.AuditLog")
    if service != "k8s.io" or type(type_url) is not str or not type_url.endswith("google.cloud.audit.AuditLog"):
        raise RecordRejected("not_audit", f"Cloud Logging entry of service {_shown(service)}, not k8s.io audit")
    method = proto.get("methodName")
    if type(method) is not str or "." not in method:
        raise RecordRejected("missing_field", "protoPayload.methodName is missing or malformed")
    operation = entry.get("operation")
    audit_id = (operation.get("id") if type(operation) is dict else None) or entry.get("insertId")
    verb, object_ref = _gke_object_ref(method, proto.get("resourceName"))
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": AUDIT_V1,
        "level": "RequestResponse" if "request" in proto or "response" in proto else "Metadata",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": _gke_request_uri(object_ref, proto.get("resourceName")),
        "verb": verb,
    }
    event.update(_gke_caller(proto))
    if object_ref:
        event["objectRef"] = object_ref
    status = proto.get("status")
    if type(status) is dict:
        event["responseStatus"] = _gke_response_status(status)
    for source, target in (("request", "requestObject"), ("response", "responseObject")):
        if type(proto.get(source)) is dict:
            event[target] = proto[source]
    event["requestReceivedTimestamp"] = event["stageTimestamp"] = entry.get("timestamp")
    event["annotations"] = _gke_annotations(entry)
    return _audit_event(event)


def _gke_caller(proto: dict[str, Any]) -> dict[str, Any]:
    authentication = proto.get("authenticationInfo")
    metadata = proto.get("requestMetadata")
    metadata = metadata if type(metadata) is dict else {}
    principal = authentication.get("principalEmail") if type(authentication) is dict else None
    caller: dict[str, Any] = {"user": {"username": principal if type(principal) is str else ""}}
    if type(metadata.get("callerIp")) is str:
        caller["sourceIPs"] = [metadata["callerIp"]]
    if type(metadata.get("callerSuppliedUserAgent")) is str:
        caller["userAgent"] = metadata["callerSuppliedUserAgent"]
    return caller


def _gke_object_ref(method: str, resource_name: Any) -> tuple[str, dict[str, str]]:
    """The verb and the v1 objectRef behind ``io.k8s.<group>.<version>.<resource>[.<sub>].<verb>`` and
    ``<group>/<version>/[namespaces/<ns>/]<resource>[/<name>[/<sub>]]`` (group ``core`` is "")."""
    parts = method.split(".")
    verb = parts[-1]
    if len(parts) >= 4 and _is_version(parts[-3]):
        version_at, subresource = len(parts) - 3, ""
    elif len(parts) >= 5 and _is_version(parts[-4]):
        version_at, subresource = len(parts) - 4, parts[-2]
    else:
        return verb, {}  # a non-resource request such as io.k8s.get of /readyz
    resource = parts[version_at + 1]
    ref = {"resource": resource, "apiGroup": _method_group(parts[:version_at]), "apiVersion": parts[version_at]}
    if subresource:
        ref["subresource"] = subresource
    path = resource_name.split("/") if type(resource_name) is str else []
    if len(path) >= 3 and _is_version(path[1]):
        ref["apiGroup"] = "" if path[0] == "core" else path[0]
        rest = path[2:]
        if rest[0] == "namespaces" and len(rest) >= 3 and resource != "namespaces":
            ref["namespace"] = rest[1]
            rest = rest[2:]
        if len(rest) >= 2 and rest[1]:
            ref["name"] = rest[1]
            if resource == "namespaces":
                ref["namespace"] = rest[1]
    return verb, ref


def _is_version(token: str) -> bool:
    return len(token) >= 2 and token[0] == "v" and token[1].isdigit()


def _method_group(tokens: list[str]) -> str:
    if tokens[:2] == ["io", "k8s"] and len(tokens) == 3:
        if tokens[2] == "core":
            return ""
        if tokens[2] in _GROUPS_WITHOUT_DOMAIN:
            return tokens[2]
    return ".".join(reversed(tokens))


def _gke_request_uri(object_ref: dict[str, str], resource_name: Any) -> str:
    if type(resource_name) is not str:
        return ""
    if not object_ref:
        return "/" + resource_name
    path = resource_name.split("/", 2)
    if len(path) < 3 or not _is_version(path[1]):
        return "/" + resource_name
    group = object_ref["apiGroup"]
    prefix = f"/api/{path[1]}" if not group else f"/apis/{group}/{path[1]}"
    return f"{prefix}/{path[2]}"


def _gke_response_status(status: dict[str, Any]) -> dict[str, Any]:
    code = status.get("code", 0)
    http_code, reason = _GRPC_STATUS.get(code, (500, "InternalError")) if type(code) is int else (500, "")
    response: dict[str, Any] = {"metadata": {}, "code": http_code}
    if http_code >= 300:
        response["status"] = "Failure"
        if reason:
            response["reason"] = reason
        if type(status.get("message")) is str and status["message"]:
            response["message"] = status["message"]
    return response


def _gke_annotations(entry: dict[str, Any]) -> dict[str, str]:
    labels = entry.get("labels")
    annotations = {k: v for k, v in labels.items() if type(v) is str} if type(labels) is dict else {}
    resource = entry.get("resource")
    resource_labels = resource.get("labels") if type(resource) is dict else None
    if type(resource_labels) is dict:
        for label, annotation in _RESOURCE_LABEL_ANNOTATIONS.items():
            value = resource_labels.get(label)
            if type(value) is str and value:
                annotations[annotation] = value
    return annotations


# --- shared pieces ---------------------------------------------------------------------------------------


def _inflate(payload: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        text = inflater.decompress(payload, limit + 1)
    except zlib.error as exc:
        raise RecordRejected("not_json", f"corrupt gzip data: {exc}") from None
    if len(text) > limit:
        raise RecordRejected("too_large", f"gzip payload inflates beyond {limit} bytes")
    if not inflater.eof:
        raise RecordRejected("not_json", "truncated gzip data")
    if inflater.unused_data:
        raise RecordRejected("not_json", f"{len(inflater.unused_data)} bytes after the gzip stream")
    return text


def _encoded_size(record: dict[str, Any]) -> int:
    """The record's JSON size, refusing records nested too deep for the pipeline to encode again."""
    nested: Any = record
    for _ in range(_ENVELOPE_LEVELS):
        nested = (nested,)
    try:
        return len(orjson.dumps(nested)) - 2 * _ENVELOPE_LEVELS
    except orjson.JSONEncodeError:
        raise RecordRejected("not_json", f"nested deeper than {_DEEP_BRACKETS} levels") from None


def _bracket_count(text: bytes | str) -> int:
    if isinstance(text, bytes):
        return text.count(b"{") + text.count(b"[")
    return text.count("{") + text.count("[")


def _item_bytes(item: Any) -> bytes:
    try:
        return orjson.dumps(item)
    except orjson.JSONEncodeError:
        return repr(item)[:4096].encode()


def _too_large(size: int, limit: int) -> RecordRejected:
    return RecordRejected("too_large", f"record of {size} bytes exceeds the limit of {limit} bytes")


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _shown(value: Any) -> str:
    """A hostile value, bounded for a detail message (the record itself is kept whole in ``raw``)."""
    if type(value) is str:
        return repr(value[:80])
    if value is None or type(value) in (bool, int, float):
        return repr(value)
    return f"a JSON {_json_type(value)}"


def _key_list(document: dict[str, Any]) -> str:
    keys = [key[:40] for key in list(document)[:8]]
    return ", ".join(keys) + (", ..." if len(document) > 8 else "") if keys else "(none)"
