"""Audit payload parsing: every wire format into plain v1 events, every bad input into its reason."""

from __future__ import annotations

import calendar
import gzip
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from vigil.sources.audit import AUDIT_SOURCE
from vigil.sources.audit.parse import AUDIT_V1, CLUSTER_ANNOTATION
from vigil.sources.source import Rejected
from vigil.sources.timestamps import parse_timestamp_ns

SHARED_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
AUDIT_SAMPLES = SHARED_DATA / "k8s-audit"
LIMIT = 1 << 20


def split(payload: bytes | dict[str, Any] | list[Any], limit: int = LIMIT) -> list[dict[str, Any] | Rejected]:
    if not isinstance(payload, bytes):
        payload = orjson.dumps(payload)
    return list(AUDIT_SOURCE.split(payload, limit))


def only_record(payload: bytes | dict[str, Any], limit: int = LIMIT) -> dict[str, Any]:
    [record] = split(payload, limit)
    assert isinstance(record, dict), record
    return record


def only_rejection(payload: bytes | dict[str, Any] | list[Any], limit: int = LIMIT) -> Rejected:
    [rejected] = split(payload, limit)
    assert isinstance(rejected, Rejected), rejected
    return rejected


def audit_event(**fields: Any) -> dict[str, Any]:
    event = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": "6b5d7c9e-0000-4000-8000-000000000001",
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/shop/secrets",
        "verb": "list",
        "user": {"username": "alice", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.7"],
        "objectRef": {"resource": "secrets", "namespace": "shop", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2025-05-01T10:00:00.100000Z",
        "stageTimestamp": "2025-05-01T10:00:00.200000Z",
    }
    event.update(fields)
    return event


def sample_lines(name: str) -> list[bytes]:
    return (AUDIT_SAMPLES / name).read_bytes().splitlines()


# --- the public samples ----------------------------------------------------------------------------------


def test_every_sample_line_yields_exactly_one_v1_event() -> None:
    lines = sample_lines("elastic-test-audit.log") + sample_lines("elastic-test-kube-audit.log")
    assert len(lines) == 6  # 3 raw v1 events, 1 GKE entry, 1 AKS object wrapper, 1 AKS string wrapper
    for line in lines:
        record = only_record(line)
        assert record["kind"] == "Event" and record["apiVersion"] == AUDIT_V1


def test_raw_v1_sample_is_passed_through_unchanged() -> None:
    line = sample_lines("elastic-test-audit.log")[0]
    assert only_record(line) == orjson.loads(line)


def test_gke_sample_becomes_a_v1_event() -> None:
    record = only_record(sample_lines("elastic-test-audit.log")[3])
    assert record["auditID"] == "1234abcd"
    assert record["verb"] == "get"
    assert record["stage"] == "ResponseComplete"
    assert record["requestURI"] == "/readyz"
    assert "objectRef" not in record  # /readyz is a non-resource request
    assert record["user"] == {"username": "system:gke-master-healthcheck"}
    assert record["sourceIPs"] == ["67.43.156.1"]
    assert record["userAgent"] == "gke-master-healthcheck"
    assert record["responseStatus"]["code"] == 200
    assert record["stageTimestamp"] == "2025-07-13T08:38:39.127266Z"
    assert record["annotations"]["authorization.k8s.io/decision"] == "allow"
    assert record["annotations"][CLUSTER_ANNOTATION] == "test-cluster"


def test_aks_sample_with_log_object_is_unwrapped() -> None:
    record = only_record(sample_lines("elastic-test-audit.log")[4])
    assert record["verb"] == "update"
    assert record["user"]["username"] == "aksService"
    assert record["objectRef"]["name"] == "elastic-agent-cluster-test"
    assert "properties" not in record


def test_aks_sample_with_log_string_is_unwrapped() -> None:
    record = only_record(sample_lines("elastic-test-kube-audit.log")[0])
    assert record["auditID"] == "ad26f7bc-f1c6-4097-90f1-e0924e12f257"
    assert record["objectRef"]["name"] == "kubelet-serving-csr-approver"
    assert record["stageTimestamp"] == "2025-10-07T16:19:19.647762Z"


# --- audit event versions --------------------------------------------------------------------------------


def test_v1beta1_event_takes_its_legacy_timestamp_and_keeps_everything_else() -> None:
    legacy = audit_event(
        apiVersion="audit.k8s.io/v1beta1",
        timestamp="2019-02-03T04:05:06.000007Z",
        metadata={"creationTimestamp": "2019-02-03T04:05:06Z"},
    )
    del legacy["requestReceivedTimestamp"], legacy["stageTimestamp"]
    record = only_record(legacy)
    assert record["apiVersion"] == AUDIT_V1
    assert record["requestReceivedTimestamp"] == record["stageTimestamp"] == "2019-02-03T04:05:06.000007Z"
    assert record["metadata"] == {"creationTimestamp": "2019-02-03T04:05:06Z"}
    assert record["objectRef"] == legacy["objectRef"]


def test_v1beta1_event_without_timestamp_uses_creation_timestamp() -> None:
    legacy = audit_event(apiVersion="audit.k8s.io/v1beta1", metadata={"creationTimestamp": "2019-02-03T04:05:06Z"})
    del legacy["requestReceivedTimestamp"], legacy["stageTimestamp"]
    assert only_record(legacy)["stageTimestamp"] == "2019-02-03T04:05:06Z"


def test_v1beta1_event_keeps_its_own_stage_timestamp() -> None:
    legacy = audit_event(apiVersion="audit.k8s.io/v1beta1", timestamp="2019-01-01T00:00:00Z")
    assert only_record(legacy)["stageTimestamp"] == "2025-05-01T10:00:00.200000Z"


def test_events_without_api_version_or_kind_are_accepted_as_v1() -> None:
    bare = audit_event()
    del bare["kind"], bare["apiVersion"]
    record = only_record(bare)
    assert (record["kind"], record["apiVersion"], record["auditID"]) == ("Event", AUDIT_V1, bare["auditID"])
    no_version = audit_event()
    del no_version["apiVersion"]
    assert only_record(no_version)["apiVersion"] == AUDIT_V1


def test_event_list_yields_each_item_and_refuses_bad_items_alone() -> None:
    good = [audit_event(auditID=f"id-{n}") for n in range(3)]
    for item in good:
        del item["kind"], item["apiVersion"]  # webhook list items carry no type of their own
    broken = audit_event()
    del broken["auditID"]
    payload = {
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "metadata": {},
        "items": [*good[:2], broken, good[2]],
    }
    results = split(payload)
    assert [r["auditID"] for r in results if isinstance(r, dict)] == ["id-0", "id-1", "id-2"]
    [rejected] = [r for r in results if isinstance(r, Rejected)]
    assert rejected.reason == "missing_field" and "items[2]" in rejected.detail
    assert orjson.loads(rejected.raw) == broken


def test_event_list_over_the_record_limit_is_split_and_checked_per_item() -> None:
    small = [audit_event(auditID=f"id-{n}") for n in range(20)]
    big = audit_event(auditID="big", requestObject={"data": "x" * 5000})
    payload = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [*small, big]})
    limit = 4000
    assert len(payload) > limit
    results = split(payload, limit)
    assert len([r for r in results if isinstance(r, dict)]) == 20
    [rejected] = [r for r in results if isinstance(r, Rejected)]
    assert rejected.reason == "too_large" and orjson.loads(rejected.raw)["auditID"] == "big"


def test_event_list_of_another_api_group_is_wrong_kind() -> None:
    assert only_rejection({"kind": "EventList", "apiVersion": "v1", "items": []}).reason == "wrong_kind"


def test_event_list_without_items_is_missing_field() -> None:
    assert only_rejection({"kind": "EventList", "apiVersion": "audit.k8s.io/v1"}).reason == "missing_field"


# --- EKS: CloudWatch Logs ----------------------------------------------------------------------------------


def cloudwatch_envelope(*messages: str, message_type: str = "DATA_MESSAGE") -> dict[str, Any]:
    return {
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": "/aws/eks/prod/cluster",
        "logStream": "kube-apiserver-audit-0123456789abcdef",
        "subscriptionFilters": ["to-vigil"],
        "logEvents": [
            {"id": str(36000000000000000000000000000000000000 + n), "timestamp": 1746093600000, "message": message}
            for n, message in enumerate(messages)
        ],
    }


def test_eks_logs_insights_record_with_at_message() -> None:
    event = audit_event(auditID="eks-1")
    record = only_record(
        {
            "@timestamp": "2025-05-01 10:00:00.200",
            "@logStream": "kube-apiserver-audit-1",
            "@message": orjson.dumps(event).decode(),
        }
    )
    assert record == event


def test_eks_exported_record_with_message() -> None:
    event = audit_event(auditID="eks-2")
    record = only_record(
        {
            "logStreamName": "kube-apiserver-audit-1",
            "timestamp": 1746093600200,
            "message": orjson.dumps(event).decode(),
            "ingestionTime": 1746093601000,
        }
    )
    assert record == event


def test_cloudwatch_subscription_envelope_yields_every_log_event() -> None:
    events = [audit_event(auditID=f"eks-{n}") for n in range(3)]
    results = split(cloudwatch_envelope(*(orjson.dumps(e).decode() for e in events)))
    assert results == events


def test_gzipped_cloudwatch_envelope_as_firehose_delivers_it() -> None:
    events = [audit_event(auditID=f"eks-{n}") for n in range(2)]
    payload = gzip.compress(orjson.dumps(cloudwatch_envelope(*(orjson.dumps(e).decode() for e in events))))
    assert split(payload) == events


def test_cloudwatch_control_message_yields_nothing() -> None:
    assert (
        split(
            cloudwatch_envelope(
                "CWL CONTROL MESSAGE: Checking health of destination Firehose.", message_type="CONTROL_MESSAGE"
            )
        )
        == []
    )


def test_cloudwatch_bad_log_event_is_refused_alone() -> None:
    good = audit_event(auditID="eks-good")
    results = split(cloudwatch_envelope(orjson.dumps(good).decode(), '{"kind": "Event", "auditID": "x"'))
    assert results[0] == good
    assert isinstance(results[1], Rejected)
    assert results[1].reason == "not_json" and "logEvents[1]" in results[1].detail
    assert results[1].raw == b'{"kind": "Event", "auditID": "x"'


def test_cloudwatch_unknown_message_type_is_not_audit() -> None:
    assert only_rejection(cloudwatch_envelope(message_type="SOMETHING_ELSE")).reason == "not_audit"


# --- GKE: Cloud Logging entries ---------------------------------------------------------------------------


def gke_entry(method: str, resource_name: str | None, **proto: Any) -> dict[str, Any]:
    payload = {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {"principalEmail": "dev@example.com"},
        "methodName": method,
        "requestMetadata": {"callerIp": "203.0.113.9", "callerSuppliedUserAgent": "kubectl/v1.31.0"},
        "serviceName": "k8s.io",
        "status": {"code": 0},
    }
    if resource_name is not None:
        payload["resourceName"] = resource_name
    payload.update(proto)
    return {
        "protoPayload": payload,
        "insertId": "entry-1",
        "resource": {
            "type": "k8s_cluster",
            "labels": {"cluster_name": "gke-prod", "location": "europe-west1", "project_id": "acme"},
        },
        "timestamp": "2025-06-01T12:00:00.123456Z",
        "labels": {"authorization.k8s.io/decision": "allow"},
        "operation": {"id": "op-1", "producer": "k8s.io", "first": True, "last": True},
    }


def test_gke_pod_exec() -> None:
    record = only_record(
        gke_entry(
            "io.k8s.core.v1.pods.exec.create",
            "core/v1/namespaces/shop/pods/web-0/exec",
            request={"@type": "core.k8s.io/v1.PodExecOptions", "command": ["sh"]},
        )
    )
    assert record["verb"] == "create"
    assert record["objectRef"] == {
        "resource": "pods",
        "subresource": "exec",
        "apiGroup": "",
        "apiVersion": "v1",
        "namespace": "shop",
        "name": "web-0",
    }
    assert record["requestURI"] == "/api/v1/namespaces/shop/pods/web-0/exec"
    assert record["requestObject"]["command"] == ["sh"]
    assert record["level"] == "RequestResponse"
    assert record["auditID"] == "op-1"
    assert record["user"]["username"] == "dev@example.com"
    assert record["sourceIPs"] == ["203.0.113.9"] and record["userAgent"] == "kubectl/v1.31.0"
    assert record["requestReceivedTimestamp"] == record["stageTimestamp"] == "2025-06-01T12:00:00.123456Z"
    assert record["annotations"] == {
        "authorization.k8s.io/decision": "allow",
        CLUSTER_ANNOTATION: "gke-prod",
        "vigil/gcp-project": "acme",
        "vigil/gcp-location": "europe-west1",
    }


@pytest.mark.parametrize(
    ("method", "resource_name", "expected"),
    [
        (
            "io.k8s.authorization.rbac.v1.clusterrolebindings.create",
            "rbac.authorization.k8s.io/v1/clusterrolebindings/take-over",
            {
                "resource": "clusterrolebindings",
                "apiGroup": "rbac.authorization.k8s.io",
                "apiVersion": "v1",
                "name": "take-over",
            },
        ),
        (
            "io.k8s.authorization.rbac.v1.clusterrolebindings.create",
            None,
            {"resource": "clusterrolebindings", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"},
        ),
        (
            "io.k8s.networking.v1.networkpolicies.create",
            None,
            {"resource": "networkpolicies", "apiGroup": "networking.k8s.io", "apiVersion": "v1"},
        ),
        ("io.k8s.apps.v1.daemonsets.create", None, {"resource": "daemonsets", "apiGroup": "apps", "apiVersion": "v1"}),
        ("io.k8s.core.v1.pods.create", None, {"resource": "pods", "apiGroup": "", "apiVersion": "v1"}),
        (
            "io.k8s.apps.v1.deployments.scale.update",
            "apps/v1/namespaces/kube-system/deployments/coredns/scale",
            {
                "resource": "deployments",
                "subresource": "scale",
                "apiGroup": "apps",
                "apiVersion": "v1",
                "namespace": "kube-system",
                "name": "coredns",
            },
        ),
        (
            "io.k8s.core.v1.namespaces.delete",
            "core/v1/namespaces/test-ns",
            {"resource": "namespaces", "apiGroup": "", "apiVersion": "v1", "namespace": "test-ns", "name": "test-ns"},
        ),
        (
            "io.k8s.core.v1.pods.list",
            "core/v1/namespaces/default/pods",
            {"resource": "pods", "apiGroup": "", "apiVersion": "v1", "namespace": "default"},
        ),
        (
            "io.k8s.core.v1.nodes.status.patch",
            "core/v1/nodes/gke-node-1/status",
            {"resource": "nodes", "subresource": "status", "apiGroup": "", "apiVersion": "v1", "name": "gke-node-1"},
        ),
    ],
)
def test_gke_method_and_resource_name_become_object_ref(
    method: str, resource_name: str | None, expected: dict[str, str]
) -> None:
    record = only_record(gke_entry(method, resource_name))
    assert record["verb"] == method.rsplit(".", 1)[1]
    assert record["objectRef"] == expected


def test_gke_request_uri_of_a_group_resource() -> None:
    record = only_record(
        gke_entry(
            "io.k8s.authorization.rbac.v1.clusterrolebindings.create",
            "rbac.authorization.k8s.io/v1/clusterrolebindings/take-over",
        )
    )
    assert record["requestURI"] == "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/take-over"


def test_gke_grpc_status_becomes_http_status() -> None:
    entry = gke_entry(
        "io.k8s.core.v1.secrets.list",
        "core/v1/namespaces/kube-system/secrets",
        status={"code": 7, "message": "secrets is forbidden"},
    )
    entry["labels"] = {"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""}
    record = only_record(entry)
    assert record["responseStatus"] == {
        "metadata": {},
        "code": 403,
        "status": "Failure",
        "reason": "Forbidden",
        "message": "secrets is forbidden",
    }
    assert record["annotations"]["authorization.k8s.io/decision"] == "forbid"


def test_gke_audit_id_falls_back_to_insert_id() -> None:
    entry = gke_entry("io.k8s.core.v1.pods.get", "core/v1/namespaces/a/pods/b")
    del entry["operation"]
    assert only_record(entry)["auditID"] == "entry-1"


def test_gke_entry_of_another_service_is_not_audit() -> None:
    entry = gke_entry("google.container.v1.ClusterManager.GetCluster", None)
    entry["protoPayload"]["serviceName"] = "container.googleapis.com"
    assert only_rejection(entry).reason == "not_audit"


def test_gke_entry_without_method_is_missing_field() -> None:
    entry = gke_entry("io.k8s.core.v1.pods.get", None)
    del entry["protoPayload"]["methodName"]
    assert only_rejection(entry).reason == "missing_field"


# --- AKS ----------------------------------------------------------------------------------------------------


def test_aks_other_category_is_not_audit() -> None:
    record = {"category": "kube-apiserver", "properties": {"log": "I0101 started"}}
    assert only_rejection(record).reason == "not_audit"


def test_aks_broken_log_string_says_where() -> None:
    rejected = only_rejection({"category": "kube-audit", "properties": {"log": '{"kind": "Event", '}})
    assert rejected.reason == "not_json" and rejected.detail.startswith("properties.log: ")


# --- bad input ----------------------------------------------------------------------------------------------


def test_invalid_utf8() -> None:
    payload = b'{"kind": "Event", "auditID": "\xff\xfe"}'
    rejected = only_rejection(payload)
    assert rejected.reason == "invalid_utf8" and "byte 30" in rejected.detail
    assert rejected.raw == payload


@pytest.mark.parametrize("payload", [b"", b"   ", b"{", b'{"kind": "Event"', b"not json", b'{"a": 1} {"b": 2}'])
def test_not_json(payload: bytes) -> None:
    rejected = only_rejection(payload)
    assert rejected.reason == "not_json" and rejected.raw == payload


def test_truncated_json_detail_says_where() -> None:
    line = orjson.dumps(audit_event())
    rejected = only_rejection(line[:100])
    assert rejected.reason == "not_json" and "char 100" in rejected.detail


def test_too_large_is_refused_before_parsing() -> None:
    payload = b'{"kind": "Event", "junk": "' + b"x" * 5000  # not even JSON: the size check comes first
    rejected = only_rejection(payload, limit=4096)
    assert rejected.reason == "too_large" and "5027" in rejected.detail


def test_too_large_single_event_that_mentions_items() -> None:
    event = audit_event(requestObject={"items": ["x" * 5000]})
    event = {"requestObject": event.pop("requestObject"), **event}  # "items" within the first bytes
    assert only_rejection(event, limit=4096).reason == "too_large"


@pytest.mark.parametrize(
    "document",
    [
        {"kind": 0},
        {"kind": "Pod", "apiVersion": "v1"},
        [audit_event()],
        42,
        "Event",
        None,
        True,
        audit_event(apiVersion="v1"),
        audit_event(apiVersion="events.k8s.io/v1"),
        audit_event(apiVersion=1),
    ],
)
def test_wrong_kind(document: Any) -> None:
    assert only_rejection(orjson.dumps(document)).reason == "wrong_kind"


@pytest.mark.parametrize(
    "changes",
    [
        {"auditID": None},
        {"auditID": 5},
        {"verb": ""},
        {"stage": ["ResponseComplete"]},
        {"stageTimestamp": None, "requestReceivedTimestamp": None},
        {"stageTimestamp": "yesterday"},
        {"stageTimestamp": 1746093600},
    ],
)
def test_missing_field(changes: dict[str, Any]) -> None:
    event = audit_event()
    for field, value in changes.items():
        if value is None:
            del event[field]
        else:
            event[field] = value
    assert only_rejection(event).reason == "missing_field"


def test_missing_field_for_a_bare_event_lacking_its_id() -> None:
    assert only_rejection({"verb": "get", "stage": "ResponseComplete"}).reason == "missing_field"


def test_not_audit_for_an_unrelated_object() -> None:
    rejected = only_rejection({"level": "info", "msg": "hello"})
    assert rejected.reason == "not_audit" and "level, msg" in rejected.detail


@pytest.mark.parametrize("depth", [300, 2000])
def test_hostile_nesting_is_not_json(depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    payload = orjson.dumps(audit_event(requestObject={"a": None})).replace(b"null", nested)
    rejected = only_rejection(payload)
    assert rejected.reason == "not_json"


def test_moderate_nesting_is_kept() -> None:
    nested = b"[" * 200 + b"]" * 200
    payload = orjson.dumps(audit_event(requestObject={"a": None})).replace(b"null", nested)
    assert only_record(payload)["auditID"] == audit_event()["auditID"]


def test_gzip_bomb_is_too_large() -> None:
    bomb = gzip.compress(b"[" + b" " * (70 << 20) + b"]")
    assert only_rejection(bomb).reason == "too_large"


@pytest.mark.parametrize(
    "payload", [b"\x1f\x8bnot gzip at all", gzip.compress(b'{"a": 1}')[:-12], gzip.compress(b"{}") + b"trailing"]
)
def test_broken_gzip_is_not_json(payload: bytes) -> None:
    assert only_rejection(payload).reason == "not_json"


# --- time ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-04T06:22:18.822532Z", calendar.timegm((2025, 3, 4, 6, 22, 18)) * 10**9 + 822_532_000),
        ("2025-03-04T06:22:18Z", calendar.timegm((2025, 3, 4, 6, 22, 18)) * 10**9),
        ("2025-03-04T06:22:18.123456789Z", calendar.timegm((2025, 3, 4, 6, 22, 18)) * 10**9 + 123_456_789),
        ("2025-03-04T06:22:18.5Z", calendar.timegm((2025, 3, 4, 6, 22, 18)) * 10**9 + 500_000_000),
        ("2025-03-04T08:22:18.000001+02:00", calendar.timegm((2025, 3, 4, 6, 22, 18)) * 10**9 + 1000),
        ("2025-03-03T23:52:18-06:30", calendar.timegm((2025, 3, 4, 6, 22, 18)) * 10**9),
        ("2024-02-29 18:34:10.595494000", calendar.timegm((2024, 2, 29, 18, 34, 10)) * 10**9 + 595_494_000),
        ("1969-12-31T23:59:59.999999999Z", -1),
    ],
)
def test_timestamps_are_exact_nanoseconds(text: str, expected: int) -> None:
    assert parse_timestamp_ns(text) == expected
    assert parse_timestamp_ns(text) == expected  # the second, cached, read agrees


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2025",
        "yesterday",
        "2025-02-30T00:00:00Z",
        "2025-03-04T24:00:00Z",
        "2025-03-04T06:61:00Z",
        "2025-03-04T06:22:18.Z",
        "2025-03-04T06:22:18,5Z",
        "2025-03-04T06:22:18+0200",
        "2025-03-04T06:22:18+02:xx",
        "2025-03-04T06:22:18.5Zjunk",
        "2025-03-04T06:22:\u0661\u0668Z",
        "2025/03/04T06:22:18Z",
    ],
)
def test_bad_timestamps_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp_ns(text)
