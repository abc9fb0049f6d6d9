"""containerd event envelopes → runtime records (protobuf messages built here, as containerd sends them)."""

from __future__ import annotations

from google.protobuf.any_pb2 import Any as AnyMessage

from vigil.collectors.runtime.api import containerd_events_pb2 as payloads
from vigil.collectors.runtime.api.containerd_events_service_pb2 import Envelope
from vigil.collectors.runtime.events import SUBSCRIBE_FILTERS, record_from_envelope
from vigil.sources.source import Rejected

CID = "a" * 64
T = 1_795_706_911_569_526_498


def envelope(topic: str, payload, type_url: str | None = None) -> Envelope:
    message = Envelope(topic=topic, namespace="k8s.io")
    message.timestamp.FromNanoseconds(T)
    message.event.CopyFrom(AnyMessage(type_url=type_url or payload.DESCRIPTOR.full_name,
                                      value=payload.SerializeToString()))
    return message


def test_each_lifecycle_topic_becomes_its_kind():
    exit_payload = payloads.TaskExit(container_id=CID, id=CID, pid=42, exit_status=137)
    exit_payload.exited_at.FromNanoseconds(T - 5)
    create = payloads.ContainerCreate(id=CID, image="busybox:1", runtime={"name": "io.containerd.runc.v2"})
    cases = [
        ("/containers/create", "container.create", create, {"image": "busybox:1", "runtime": "io.containerd.runc.v2"}),
        ("/tasks/start", "container.start", payloads.TaskStart(container_id=CID, pid=42), {"pid": 42}),
        ("/tasks/exit", "container.exit", exit_payload, {"pid": 42, "exit_status": 137, "exited_at_ns": T - 5}),
        ("/tasks/oom", "container.oom", payloads.TaskOOM(container_id=CID), {}),
        ("/containers/delete", "container.delete", payloads.ContainerDelete(id=CID), {}),
    ]
    for topic, kind, payload, extra in cases:
        assert record_from_envelope(envelope(topic, payload), "node-1") == {
            "kind": kind, "topic": topic, "time_ns": T, "containerd_namespace": "k8s.io", "node": "node-1",
            "container_id": CID, **extra}
    assert [f'topic=="{topic}"' for topic, *_ in cases] == SUBSCRIBE_FILTERS


def test_exits_of_exec_processes_and_other_topics_are_not_container_records():
    exec_exit = payloads.TaskExit(container_id=CID, id="exec-1", pid=77)
    assert record_from_envelope(envelope("/tasks/exit", exec_exit), "n") is None
    assert record_from_envelope(envelope("/snapshot/prepare", payloads.TaskOOM()), "n") is None


def test_type_urls_with_a_prefix_decode_too():
    start = payloads.TaskStart(container_id=CID, pid=9)
    prefixed = envelope("/tasks/start", start, "types.containerd.io/containerd.events.TaskStart")
    record = record_from_envelope(prefixed, "n")
    assert record["pid"] == 9


def test_undecodable_or_unexpected_payloads_are_refused_with_the_envelope():
    wrong = envelope("/tasks/start", payloads.TaskStart(), "containerd.events.Mystery")
    refused = record_from_envelope(wrong, "n")
    assert isinstance(refused, Rejected) and refused.reason == "unknown_event"
    assert Envelope.FromString(refused.raw) == wrong
    broken = envelope("/tasks/exit", payloads.TaskStart())
    broken.event.value = b"\x0a\xff"  # a length that runs past the end
    refused = record_from_envelope(broken, "n")
    assert isinstance(refused, Rejected) and refused.reason == "bad_event"
