"""Mapping one ``audit.k8s.io/v1`` event into the normalized :class:`~vigil.event.Event`.

Runs in the stream workers for every audit record, so it reads fields directly and builds nothing it
does not return. It trusts no field's type: a record that passed ``split`` can still come from an older
collector or a replayed topic, and a string where a list belongs must become an empty value, never an
exception that stops the worker or a wrongly typed column that fails a whole ClickHouse insert.

The k8s context names the workload an event is *about*, which is also its correlation key: the pod an
API call touched, else the pod whose bound token made the call, else the namespace. That is what lets
an audit ``pods/exec`` and the process it started in the pod meet on one partition.

``request`` carries what detections used to dig out of the record: the stage, the authorizer's decision and
reason (annotations), and the request and response objects. The actor's ``extra`` is the acting identity's
``user.extra``; ``token_pod`` is the pod the authenticating service-account token was bound to (its
``authentication.kubernetes.io/pod-name``), even when that identity impersonates another.
"""

from __future__ import annotations

from typing import Any

from vigil.event import Actor, Event, K8sContext, Outcome, Request, Target, correlation_key_for, event_id, now_ns
from vigil.sources.audit.parse import CLUSTER_ANNOTATION, event_time_text
from vigil.sources.health import health_event, health_key, is_health_record
from vigil.sources.source import RecordRejected
from vigil.sources.timestamps import parse_timestamp_ns

SOURCE = "k8s-audit"

_POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
_POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
_SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
_DECISION = "authorization.k8s.io/decision"
_DECISION_REASON = "authorization.k8s.io/reason"
_POD_WRITES = frozenset({"create", "update"})
#: A response's ``status`` → the outcome, for a response without a code.
_STATUS_RESULTS = {"Success": "success", "Failure": "failure"}

#: Stand-in for an absent or malformed object; only ever read.
_NOTHING: dict[str, Any] = {}


def normalize_record(record: dict[str, Any], cluster: str, node: str) -> Event:
    """The Event for one audit event; raises RecordRejected when it lacks its identity or its time."""
    if is_health_record(record):
        return health_event(record, SOURCE, cluster, node)
    audit_id, stage, verb = _identity(record)
    try:
        time_ns = parse_timestamp_ns(event_time_text(record))
    except ValueError as exc:
        raise RecordRejected("missing_field", str(exc)) from None
    user = _mapping(record.get("user"))
    token = _mapping(user.get("extra"))
    account = _service_account(_text(user, "username"))  # the token's owner, even when impersonating
    object_ref = _mapping(record.get("objectRef"))
    annotations = _mapping(record.get("annotations"))
    namespace, pod, pod_uid = _workload(object_ref, account, token)
    k8s = K8sContext(namespace=namespace, pod=pod, pod_uid=pod_uid, service_account=account)
    if verb in _POD_WRITES and object_ref.get("resource") == "pods" and not object_ref.get("subresource"):
        _add_pod_spec(k8s, record.get("requestObject"))
    return Event(
        id=event_id(SOURCE, audit_id, stage),
        time_ns=time_ns,
        source=SOURCE,
        kind="k8s.api",
        action=verb,
        original_id=audit_id,
        ingest_ns=now_ns(),
        cluster=_cluster(annotations, cluster),
        node=node,
        k8s=k8s,
        actor=_actor(record, user, token),
        target=Target(
            resource=_text(object_ref, "resource"),
            subresource=_text(object_ref, "subresource"),
            api_group=_text(object_ref, "apiGroup"),
            api_version=_text(object_ref, "apiVersion"),
            namespace=_text(object_ref, "namespace"),
            name=_text(object_ref, "name"),
            uri=_text(record, "requestURI"),
        ),
        outcome=_outcome(record.get("responseStatus"), annotations),
        request=Request(stage=stage, decision=_text(annotations, _DECISION),
                        decision_reason=_text(annotations, _DECISION_REASON),
                        object=record.get("requestObject"), response=record.get("responseObject")),
        raw=record,
    )


def correlation_key(record: dict[str, Any], cluster: str) -> str:
    """``normalize_record(record, cluster, node).correlation_key``, computed without building the Event."""
    if is_health_record(record):
        return health_key(cluster)
    cluster = _cluster(_mapping(record.get("annotations")), cluster)
    user = _mapping(record.get("user"))
    account = _service_account(_text(user, "username"))
    namespace, pod, _ = _workload(_mapping(record.get("objectRef")), account, _mapping(user.get("extra")))
    if pod or namespace:
        return correlation_key_for(cluster, namespace, pod)
    return correlation_key_for(cluster, user=_text(_effective_user(record, user)[0], "username"))


def _identity(record: dict[str, Any]) -> tuple[str, str, str]:
    audit_id, stage, verb = record.get("auditID"), record.get("stage"), record.get("verb")
    if type(audit_id) is not str or type(stage) is not str or type(verb) is not str:
        raise RecordRejected("missing_field", "auditID, stage and verb must be strings")
    if not (audit_id and stage and verb):
        raise RecordRejected("missing_field", "auditID, stage and verb must not be empty")
    return audit_id, stage, verb


def _workload(object_ref: dict[str, Any], account: str, token: dict[str, Any]) -> tuple[str, str, str]:
    """(namespace, pod, pod uid) of the workload the event is about: the pod the call names, else the pod the
    service account's (``<ns>/<name>``) token is bound to (its ``user.extra``, ``token``), else the namespace."""
    if object_ref.get("resource") == "pods":
        name = _text(object_ref, "name")
        if name:
            return _text(object_ref, "namespace"), name, _text(object_ref, "uid")
    if _POD_NAME_EXTRA in token:
        pod = _first(token[_POD_NAME_EXTRA])
        if pod and account:
            return account.partition("/")[0], pod, _first(token.get(_POD_UID_EXTRA))
    return _text(object_ref, "namespace"), "", ""


def _service_account(username: str) -> str:
    """``<ns>/<name>`` for ``system:serviceaccount:<ns>:<name>``, else ""."""
    if not username.startswith(_SERVICE_ACCOUNT_PREFIX):
        return ""
    namespace, _, name = username[len(_SERVICE_ACCOUNT_PREFIX) :].partition(":")
    return f"{namespace}/{name}" if namespace and name else ""


def _effective_user(record: dict[str, Any], user: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The identity the request acted as, and who impersonated it ("" when nobody did)."""
    impersonated = record.get("impersonatedUser")
    if type(impersonated) is dict and impersonated:
        return impersonated, _text(user, "username")
    return user, ""


def _actor(record: dict[str, Any], user: dict[str, Any], token: dict[str, Any]) -> Actor:
    """The identity the request acted as; ``token`` is the authenticating identity's ``user.extra``."""
    effective, impersonated_by = _effective_user(record, user)
    return Actor(
        user=_text(effective, "username"),
        user_uid=_text(effective, "uid"),
        groups=_texts(effective.get("groups")),
        source_ips=_texts(record.get("sourceIPs")),
        user_agent=_text(record, "userAgent"),
        impersonated_by=impersonated_by,
        extra=_extra(effective.get("extra")),
        token_pod=_first(token.get(_POD_NAME_EXTRA)),
        token_pod_uid=_first(token.get(_POD_UID_EXTRA)),
    )


def _extra(value: Any) -> dict[str, list[str]]:
    """``user.extra`` (a map of string lists in the v1 schema); a value that is no list of strings is left out."""
    if type(value) is not dict:
        return {}
    return {key: _texts(items) for key, items in value.items() if type(key) is str and type(items) is list}


def _outcome(status: Any, annotations: dict[str, Any]) -> Outcome:
    """success for 2xx (and 101, the protocol switch of a started exec/attach/port-forward), denied for
    401/403 or an authorizer's forbid, failure for other codes, unknown before there is a response."""
    forbidden = annotations.get(_DECISION) == "forbid"
    if type(status) is not dict:
        return Outcome("denied", 0, _text(annotations, _DECISION_REASON)) if forbidden else Outcome()
    code = status.get("code")
    code = code if type(code) is int else 0
    reason = _text(status, "reason") or _text(status, "message")
    if forbidden or code in (401, 403):
        return Outcome("denied", code, reason or _text(annotations, _DECISION_REASON))
    if 200 <= code < 300 or code == 101:
        return Outcome("success", code, reason)
    if code:
        return Outcome("failure", code, reason)
    return Outcome(_STATUS_RESULTS.get(_text(status, "status"), "unknown"), 0, reason)


def _add_pod_spec(k8s: K8sContext, pod: Any) -> None:
    """Image and labels of a pod being created or replaced, from the request body when it was logged."""
    if type(pod) is not dict:
        return
    labels = _mapping(_mapping(pod.get("metadata")).get("labels"))
    k8s.labels = {key: value for key, value in labels.items() if type(value) is str}
    containers = _mapping(pod.get("spec")).get("containers")
    if type(containers) is list and containers:
        k8s.image = _text(_mapping(containers[0]), "image")


def _cluster(annotations: dict[str, Any], cluster: str) -> str:
    named = annotations.get(CLUSTER_ANNOTATION)
    return named if type(named) is str and named else cluster


def _mapping(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else _NOTHING


def _text(mapping: dict[str, Any], key: str) -> str:
    value = mapping.get(key)
    return value if type(value) is str else ""


def _texts(value: Any) -> list[str]:
    """The list itself when it holds only strings (no copy on the common path), else its strings."""
    if type(value) is not list:
        return []
    for item in value:
        if type(item) is not str:
            return [text for text in value if type(text) is str]
    return value


def _first(value: Any) -> str:
    """The first string of a ``user.extra`` value (a list of strings in the v1 schema)."""
    if type(value) is list:
        value = value[0] if value else ""
    return value if type(value) is str else ""
