"""The ``containerd`` source: runtime records in and out of the envelope, and refusal of bad ones."""

from __future__ import annotations

import orjson
import pytest

from vigil.event import Event
from vigil.sources.containerd import CONTAINERD_SOURCE
from vigil.sources.source import RecordRejected, Rejected, get_source

CID = "c" * 64
K8S = {"namespace": "shop", "pod": "web-1", "pod_uid": "u-1", "container_id": CID, "container_name": "main",
       "image": "busybox:1", "service_account": "shop/web", "labels": {"app": "web"}}


def record(**overrides) -> dict:
    return {"kind": "container.exit", "topic": "/tasks/exit", "time_ns": 1_700_000_000_000_000_000,
            "containerd_namespace": "k8s.io", "container_id": CID, "pid": 42, "exit_status": 2,
            "exited_at_ns": 1_700_000_000_000_000_000, "node": "node-1", "k8s": K8S} | overrides


def test_the_registry_finds_the_source():
    assert get_source("containerd") is CONTAINERD_SOURCE


def test_an_exit_maps_into_the_envelope_with_its_pod():
    event = CONTAINERD_SOURCE.normalize(record(), "prod", "worker-node")
    assert (event.source, event.kind, event.action) == ("containerd", "container.exit", "exit")
    assert (event.cluster, event.node, event.original_id, event.actor.pid) == ("prod", "node-1", CID, 42)
    assert (event.outcome.result, event.outcome.code) == ("failure", 2)
    assert event.k8s.pod == "web-1" and event.k8s.labels == {"app": "web"} and event.k8s.service_account == "shop/web"
    assert event.raw == record()
    assert Event.from_json(event.to_json()) == event
    assert CONTAINERD_SOURCE.normalize(record(), "prod", "x").id == event.id  # deterministic


@pytest.mark.parametrize(("kind", "result", "reason"), [
    ("container.create", "success", ""), ("container.start", "success", ""), ("container.delete", "success", ""),
    ("container.oom", "failure", "oom"),
])
def test_outcomes_of_other_kinds(kind, result, reason):
    outcome = CONTAINERD_SOURCE.normalize(record(kind=kind), "c", "n").outcome
    assert (outcome.result, outcome.reason) == (result, reason)


def test_the_key_is_the_events_correlation_key():
    no_pod = record(k8s={"namespace": "shop"})
    host = record(k8s=None, node="")
    for item in (record(), no_pod, host):
        assert CONTAINERD_SOURCE.key(item, "prod") == CONTAINERD_SOURCE.normalize(item, "prod", "n").correlation_key
    assert CONTAINERD_SOURCE.normalize(host, "prod", "fallback-node").node == "fallback-node"


def test_badly_typed_fields_become_empty_values():
    event = CONTAINERD_SOURCE.normalize(record(pid="42", k8s={"pod": 5, "labels": "x"}), "c", "n")
    assert (event.actor.pid, event.k8s.pod, event.k8s.labels, event.k8s.container_id) == (0, "", {}, CID)


@pytest.mark.parametrize(("broken", "reason"), [
    (record(kind="process.exec"), "wrong_kind"), (record(kind=["container.start"]), "wrong_kind"),
    (record(kind={"container": "start"}), "wrong_kind"), (record(time_ns="soon"), "missing_field"),
    (record(container_id=""), "missing_field"),
])
def test_unusable_records_are_refused(broken, reason):
    with pytest.raises(RecordRejected) as refused:
        CONTAINERD_SOURCE.normalize(broken, "c", "n")
    assert refused.value.reason == reason
    [rejected] = CONTAINERD_SOURCE.split(orjson.dumps(broken), 1 << 20)
    assert isinstance(rejected, Rejected) and rejected.reason == reason


def test_split_reads_records_and_arrays_and_refuses_the_rest():
    good = record()
    assert list(CONTAINERD_SOURCE.split(orjson.dumps(good), 1 << 20)) == [good]
    assert list(CONTAINERD_SOURCE.split(orjson.dumps([good, good]), 1 << 20)) == [good, good]
    reasons = [item.reason for payload in (b"{not json", b"[1]", orjson.dumps(good))
               for item in CONTAINERD_SOURCE.split(payload, 64) if isinstance(item, Rejected)]
    assert reasons == ["not_json", "wrong_kind", "too_large"]


def test_a_container_outside_kubernetes_keys_by_its_node():
    bare = record(k8s={"container_id": CID})
    event = CONTAINERD_SOURCE.normalize(bare, "prod", "worker-node")
    assert event.actor.user == "node:node-1"
    assert CONTAINERD_SOURCE.key(bare, "prod") == event.correlation_key == "prod/~node:node-1"
    assert CONTAINERD_SOURCE.normalize(record(), "prod", "x").actor.user == ""  # a pod's container keys by its pod


def test_the_container_is_containerds_with_the_image_of_its_create_record():
    created = CONTAINERD_SOURCE.normalize(
        record(kind="container.create", topic="/containers/create", image="docker.io/library/redis:7",
               runtime="io.containerd.runc.v2", k8s={}), "prod", "n")
    assert (created.container.id, created.container.runtime, created.container.image) == (
        CID, "containerd", "docker.io/library/redis:7")
    exited = CONTAINERD_SOURCE.normalize(record(), "prod", "n")
    assert (exited.container.name, exited.container.image) == ("main", "busybox:1")  # from the pod context
