"""Audit events into the normalized Event: identity, time, actor, target, outcome, workload context, key."""

from __future__ import annotations

import calendar
import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from vigil.event import Event, event_id
from vigil.sources.audit import AUDIT_SOURCE
from vigil.sources.source import RecordRejected, Rejected

SHARED_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
AUDIT_SAMPLES = SHARED_DATA / "k8s-audit"
LIMIT = 1 << 20


def records_of(payload: bytes) -> list[dict[str, Any]]:
    records = list(AUDIT_SOURCE.split(payload, LIMIT))
    assert all(isinstance(r, dict) for r in records), records
    return records


def sample_records() -> list[dict[str, Any]]:
    lines = (AUDIT_SAMPLES / "elastic-test-audit.log").read_bytes().splitlines()
    lines += (AUDIT_SAMPLES / "elastic-test-kube-audit.log").read_bytes().splitlines()
    return [record for line in lines for record in records_of(line)]


def normalize(record: dict[str, Any], cluster: str = "prod", node: str = "node-1") -> Event:
    event = AUDIT_SOURCE.normalize(record, cluster, node)
    assert AUDIT_SOURCE.key(record, cluster) == event.correlation_key
    return event


def ns_at(year: int, month: int, day: int, hour: int, minute: int, second: int, fraction_ns: int) -> int:
    return calendar.timegm((year, month, day, hour, minute, second)) * 10**9 + fraction_ns


def audit_event(**fields: Any) -> dict[str, Any]:
    event = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": "0f6a0000-0000-4000-8000-000000000002",
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/shop/secrets/db",
        "verb": "get",
        "user": {"username": "alice", "uid": "u-1", "groups": ["devs", "system:authenticated"]},
        "sourceIPs": ["10.0.0.7", "192.168.1.4"],
        "userAgent": "kubectl/v1.31.0",
        "objectRef": {"resource": "secrets", "namespace": "shop", "name": "db", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2025-05-01T10:00:00.100000Z",
        "stageTimestamp": "2025-05-01T10:00:00.200000Z",
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""},
    }
    event.update(fields)
    return event


def pod_bound_user(namespace: str = "shop", account: str = "web", pod: str = "web-7d9f-abcde") -> dict[str, Any]:
    return {
        "username": f"system:serviceaccount:{namespace}:{account}",
        "uid": "sa-uid",
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
        "extra": {
            "authentication.kubernetes.io/credential-id": ["JTI=1"],
            "authentication.kubernetes.io/node-name": ["node-a"],
            "authentication.kubernetes.io/pod-name": [pod],
            "authentication.kubernetes.io/pod-uid": ["3c1e0000-0000-4000-8000-00000000000a"],
        },
    }


# --- the public samples ----------------------------------------------------------------------------------


def test_samples_normalize_with_exact_fields() -> None:
    events = [normalize(record) for record in sample_records()]
    expected = [  # user, verb, resource, namespace, time_ns, cluster, correlation key
        (
            "system:serviceaccounts:default:default",
            "get",
            "pods",
            "default",
            ns_at(2025, 3, 4, 6, 22, 18, 822_532_000),
            "prod",
            "prod/default/my-pod",
        ),
        (
            "system:serviceaccount:kube-system:elastic-agent",
            "get",
            "leases",
            "kube-system",
            ns_at(2025, 7, 16, 10, 12, 56, 563_177_000),
            "prod",
            "prod/kube-system",
        ),
        (
            "system:serviceaccount:kube-system:elastic-agent",
            "get",
            "leases",
            "kube-system",
            ns_at(2025, 7, 16, 10, 12, 56, 563_177_000),
            "prod",
            "prod/kube-system",
        ),
        (
            "system:gke-master-healthcheck",
            "get",
            "",
            "",
            ns_at(2025, 7, 13, 8, 38, 39, 127_266_000),
            "test-cluster",
            "test-cluster/~system:gke-master-healthcheck",
        ),
        (
            "aksService",
            "update",
            "leases",
            "kube-system",
            ns_at(2025, 9, 30, 6, 23, 35, 101_182_000),
            "prod",
            "prod/kube-system",
        ),
        (
            "aksService",
            "update",
            "leases",
            "kube-system",
            ns_at(2025, 10, 7, 16, 19, 19, 647_762_000),
            "prod",
            "prod/kube-system",
        ),
    ]
    got = [
        (e.actor.user, e.action, e.target.resource, e.target.namespace, e.time_ns, e.cluster, e.correlation_key)
        for e in events
    ]
    assert got == expected
    for event in events:
        assert (event.source, event.kind, event.node, event.outcome.result) == (
            "k8s-audit",
            "k8s.api",
            "node-1",
            "success",
        )


def test_sample_identity_and_raw() -> None:
    record = sample_records()[1]
    event = normalize(record)
    assert event.id == event_id("k8s-audit", "abcde12345", "ResponseComplete")
    assert event.original_id == "abcde12345"
    assert event.raw is record
    assert event.k8s.service_account == "kube-system/elastic-agent"
    assert event.actor.groups == [
        "system:serviceaccounts",
        "system:serviceaccounts:kube-system",
        "system:authenticated",
    ]
    assert event.target.api_group == "coordination.k8s.io"
    assert event.target.uri == "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/elastic-agent-cluster-test"
    assert event.ingest_ns > 0


def test_event_round_trips_through_json() -> None:
    for record in sample_records():
        event = normalize(record)
        assert Event.from_json(event.to_json()) == event


# --- identity, time -------------------------------------------------------------------------------------------


def test_stage_is_part_of_the_id() -> None:
    received = normalize(audit_event(stage="RequestReceived"))
    completed = normalize(audit_event())
    assert received.id != completed.id and received.original_id == completed.original_id


def test_time_falls_back_to_request_received() -> None:
    record = audit_event()
    del record["stageTimestamp"]
    assert normalize(record).time_ns == ns_at(2025, 5, 1, 10, 0, 0, 100_000_000)


@pytest.mark.parametrize(
    "changes",
    [
        {"stageTimestamp": None, "requestReceivedTimestamp": None},
        {"stageTimestamp": "soon"},
        {"auditID": 7},
        {"verb": None},
        {"stage": ""},
    ],
)
def test_unusable_records_are_rejected(changes: dict[str, Any]) -> None:
    record = audit_event()
    for field, value in changes.items():
        if value is None:
            record.pop(field)
        else:
            record[field] = value
    with pytest.raises(RecordRejected) as caught:
        AUDIT_SOURCE.normalize(record, "prod", "node-1")
    assert caught.value.reason == "missing_field"


# --- actor, target ------------------------------------------------------------------------------------------


def test_actor_and_target() -> None:
    event = normalize(audit_event())
    actor, target = event.actor, event.target
    assert (actor.user, actor.user_uid, actor.groups) == ("alice", "u-1", ["devs", "system:authenticated"])
    assert (actor.source_ips, actor.user_agent, actor.impersonated_by) == (
        ["10.0.0.7", "192.168.1.4"],
        "kubectl/v1.31.0",
        "",
    )
    assert (target.resource, target.namespace, target.name, target.api_version, target.uri) == (
        "secrets",
        "shop",
        "db",
        "v1",
        "/api/v1/namespaces/shop/secrets/db",
    )


def test_impersonation_acts_as_the_impersonated_user() -> None:
    record = audit_event(
        user={"username": "admin@example.com", "groups": ["system:masters"]},
        impersonatedUser={"username": "bob", "groups": ["auditors"]},
        objectRef={"resource": "clusterroles", "name": "view", "apiGroup": "rbac.authorization.k8s.io"},
    )
    event = normalize(record)
    assert (event.actor.user, event.actor.groups, event.actor.impersonated_by) == (
        "bob",
        ["auditors"],
        "admin@example.com",
    )
    assert event.correlation_key == "prod/~bob"


# --- k8s context ---------------------------------------------------------------------------------------------


def test_pod_object_is_the_context() -> None:
    record = audit_event(
        verb="create",
        requestURI="/api/v1/namespaces/shop/pods/web-0/exec?command=sh",
        objectRef={
            "resource": "pods",
            "subresource": "exec",
            "namespace": "shop",
            "name": "web-0",
            "uid": "pod-uid-0",
            "apiVersion": "v1",
        },
        responseStatus={"metadata": {}, "code": 101},
    )
    event = normalize(record)
    assert (event.k8s.namespace, event.k8s.pod, event.k8s.pod_uid) == ("shop", "web-0", "pod-uid-0")
    assert event.target.subresource == "exec" and event.outcome.result == "success"
    assert event.correlation_key == "prod/shop/web-0"


def test_pod_object_wins_over_the_callers_pod() -> None:
    event = normalize(
        audit_event(
            user=pod_bound_user(namespace="ci", account="runner", pod="runner-1"),
            objectRef={"resource": "pods", "namespace": "shop", "name": "web-0"},
        )
    )
    assert (event.k8s.namespace, event.k8s.pod) == ("shop", "web-0")
    assert event.k8s.service_account == "ci/runner"


def test_pod_bound_token_makes_the_calling_pod_the_context() -> None:
    event = normalize(
        audit_event(
            user=pod_bound_user(), objectRef={"resource": "secrets", "namespace": "kube-system", "name": "admin-token"}
        )
    )
    assert (event.k8s.namespace, event.k8s.pod, event.k8s.pod_uid) == (
        "shop",
        "web-7d9f-abcde",
        "3c1e0000-0000-4000-8000-00000000000a",
    )
    assert event.k8s.service_account == "shop/web"
    assert event.target.namespace == "kube-system"
    assert event.correlation_key == "prod/shop/web-7d9f-abcde"


def test_pod_name_extra_of_a_non_service_account_is_ignored() -> None:
    user = pod_bound_user()
    user["username"] = "mallory"
    event = normalize(audit_event(user=user))
    assert (event.k8s.namespace, event.k8s.pod, event.k8s.service_account) == ("shop", "", "")


def test_cluster_scoped_object_keys_by_user() -> None:
    event = normalize(audit_event(objectRef={"resource": "nodes", "name": "node-a"}), cluster="")
    assert event.k8s.namespace == "" and event.correlation_key == "/~alice"


def test_pod_create_fills_image_and_labels() -> None:
    pod = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": "miner", "namespace": "shop", "labels": {"app": "miner", "tier": "x"}},
        "spec": {"containers": [{"name": "c", "image": "evil.example/xmrig:6"}, {"name": "d", "image": "busybox"}]},
    }
    for verb in ("create", "update"):
        event = normalize(
            audit_event(
                verb=verb,
                level="Request",
                requestObject=pod,
                objectRef={"resource": "pods", "namespace": "shop", "name": "miner"},
            )
        )
        assert event.k8s.image == "evil.example/xmrig:6"
        assert event.k8s.labels == {"app": "miner", "tier": "x"}
    patched = normalize(audit_event(verb="patch", requestObject=pod, objectRef={"resource": "pods", "name": "miner"}))
    assert patched.k8s.image == "" and patched.k8s.labels == {}


def test_gke_cluster_name_wins_over_the_argument() -> None:
    record = audit_event(annotations={"vigil/cluster": "gke-prod"})
    event = normalize(record, cluster="collector-default")
    assert event.cluster == "gke-prod" and event.correlation_key == "gke-prod/shop"


# --- outcome --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "decision", "expected"),
    [
        ({"code": 200}, "allow", ("success", 200, "")),
        ({"code": 201}, None, ("success", 201, "")),
        ({"code": 101}, None, ("success", 101, "")),
        (
            {"code": 403, "status": "Failure", "reason": "Forbidden", "message": "secrets is forbidden"},
            "forbid",
            ("denied", 403, "Forbidden"),
        ),
        ({"code": 401, "message": "Unauthorized"}, None, ("denied", 401, "Unauthorized")),
        ({"code": 404, "status": "Failure", "reason": "NotFound"}, "allow", ("failure", 404, "NotFound")),
        ({"code": 500, "message": "etcd timeout"}, "allow", ("failure", 500, "etcd timeout")),
        ({"code": 409, "reason": "AlreadyExists", "message": "exists"}, "allow", ("failure", 409, "AlreadyExists")),
        (None, None, ("unknown", 0, "")),
        (None, "forbid", ("denied", 0, "")),
        ({"status": "Failure", "message": "boom"}, None, ("failure", 0, "boom")),
        ({"metadata": {}}, None, ("unknown", 0, "")),
        ({"code": "200"}, None, ("unknown", 0, "")),
    ],
)
def test_outcome(status: dict[str, Any] | None, decision: str | None, expected: tuple[str, int, str]) -> None:
    record = audit_event()
    del record["responseStatus"], record["annotations"]
    if status is not None:
        record["responseStatus"] = status
    if decision is not None:
        record["annotations"] = {"authorization.k8s.io/decision": decision}
    outcome = normalize(record).outcome
    assert (outcome.result, outcome.code, outcome.reason) == expected


def test_request_received_stage_has_unknown_outcome() -> None:
    record = audit_event(stage="RequestReceived")
    del record["responseStatus"]
    assert normalize(record).outcome.result == "unknown"


# --- hostile records ------------------------------------------------------------------------------------------

HOSTILE_VALUES = [None, 0, -1, 1.5, True, "", "x", [], [1, None], ["ok", 2], {}, {"a": [{}]}]


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaf_paths(item, (*path, index))


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copied = copy.deepcopy(document)
    target = copied
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copied


def hostile_documents() -> Iterator[Any]:
    pod = {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"image": "i"}]}}
    base = [
        audit_event(user=pod_bound_user(), impersonatedUser={"username": "bob", "groups": ["g"]}),
        audit_event(verb="create", requestObject=pod, objectRef={"resource": "pods", "namespace": "a", "name": "p"}),
        orjson.loads((AUDIT_SAMPLES / "elastic-test-audit.log").read_bytes().splitlines()[3]),  # GKE
        orjson.loads((AUDIT_SAMPLES / "elastic-test-kube-audit.log").read_bytes()),  # AKS, log as a string
    ]
    for document in base:
        for path in leaf_paths(document):
            for value in HOSTILE_VALUES:
                yield replaced(document, path, value)


def test_hostile_field_types_never_raise_and_never_leak_wrong_types() -> None:
    normalized = 0
    for document in hostile_documents():
        for item in AUDIT_SOURCE.split(orjson.dumps(document), LIMIT):
            if isinstance(item, Rejected):
                continue
            key = AUDIT_SOURCE.key(item, "prod")
            try:
                event = AUDIT_SOURCE.normalize(item, "prod", "node-1")
            except RecordRejected:
                continue
            normalized += 1
            assert key == event.correlation_key
            for part in (event.actor, event.target, event.k8s, event.outcome):
                for name, value in msgspec.structs.asdict(part).items():
                    if isinstance(value, list):
                        assert all(type(v) is str for v in value), (name, document)
                    elif name == "extra":  # user.extra: a list of strings per key
                        assert all(type(k) is str and all(type(v) is str for v in vs) for k, vs in value.items())
                    elif isinstance(value, dict):
                        assert all(type(v) is str for v in value.values()), (name, document)
                    else:
                        assert type(value) in (str, int), (name, document)
            request = event.request
            assert all(type(value) is str for value in (request.stage, request.decision, request.decision_reason))
            event.to_json()
    assert normalized > 500  # most single-field corruptions still leave a usable event


def test_keys_for_a_variety_of_records() -> None:
    records = [
        audit_event(),
        audit_event(objectRef={"resource": "pods", "namespace": "a"}),  # pod list: no pod named
        audit_event(objectRef={"resource": "pods", "namespace": "a", "name": "p"}),
        audit_event(objectRef=None, user=pod_bound_user()),
        audit_event(objectRef={"resource": "namespaces", "name": "a", "namespace": "a"}),
        audit_event(objectRef={"resource": "clusterroles", "name": "x"}, impersonatedUser={"username": "bob"}),
        audit_event(objectRef={"resource": "clusterroles", "name": "x"}, impersonatedUser={}),
        audit_event(annotations={"vigil/cluster": "gke-a"}, objectRef={"resource": "nodes"}),
        audit_event(annotations={"vigil/cluster": ""}, objectRef={"resource": "nodes"}),
    ]
    keys = {normalize(record).correlation_key for record in records}
    assert keys == {
        "prod/shop",
        "prod/a",
        "prod/a/p",
        "prod/shop/web-7d9f-abcde",
        "prod/~bob",
        "prod/~alice",
        "gke-a/~alice",
    }


# --- the request part and the identity's extra ---------------------------------------------------------------


def test_the_request_carries_stage_decision_and_the_logged_objects() -> None:
    pod = {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    created = {**pod, "metadata": {"name": "p", "uid": "u-9"}}
    event = normalize(audit_event(verb="create", requestObject=pod, responseObject=created,
                                  annotations={"authorization.k8s.io/decision": "forbid",
                                               "authorization.k8s.io/reason": "RBAC: no rule"}))
    request = event.request
    assert (request.stage, request.decision, request.decision_reason) == ("ResponseComplete", "forbid", "RBAC: no rule")
    assert (request.object, request.response) == (pod, created)
    assert normalize(audit_event()).request.object is None  # a Metadata-level event logged no objects


def test_a_pod_bound_token_names_its_pod_and_the_extra_is_kept() -> None:
    actor = normalize(audit_event(user=pod_bound_user(pod="web-1"))).actor
    assert (actor.token_pod, actor.token_pod_uid) == ("web-1", "3c1e0000-0000-4000-8000-00000000000a")
    assert actor.extra["authentication.kubernetes.io/node-name"] == ["node-a"]
    plain = normalize(audit_event()).actor
    assert (plain.token_pod, plain.extra) == ("", {})


def test_an_impersonating_token_still_names_its_pod_while_extra_is_the_impersonated_users() -> None:
    actor = normalize(audit_event(user=pod_bound_user(pod="web-1"),
                                  impersonatedUser={"username": "bob", "extra": {"scopes": ["view"]}})).actor
    assert (actor.user, actor.token_pod, actor.extra) == ("bob", "web-1", {"scopes": ["view"]})


def test_malformed_extra_values_are_left_out() -> None:
    user = {"username": "alice", "extra": {"good": ["a"], "string": "b", "mixed": ["c", 1]}}
    assert normalize(audit_event(user=user)).actor.extra == {"good": ["a"], "mixed": ["c"]}
