"""The storage writer's decoding of the events topic: only what the events table stores is parsed, nothing else is
lost, and a bad event refuses itself alone with its own bytes."""

from __future__ import annotations

import gc

import orjson
from aiokafka import TopicPartition

from vigil import kafka
from vigil.event import Actor, Event, K8sContext, Request, Target
from vigil.storage.clickhouse import TABLE_COLUMNS
from vigil.storage.stored_events import decode_message, event_bytes
from vigil.storage.writer import PartitionBatch


def event(n: int) -> Event:
    return Event(id=f"ev-{n}", time_ns=1_700_000_000_000_000_000 + n, source="k8s-audit", kind="k8s.api",
                 k8s=K8sContext(namespace="shop", labels={"app": "web"}), actor=Actor(groups=["devs"]),
                 target=Target(port=443), request=Request(decision="allow", object={"spec": {"n": n}}),
                 raw={"auditID": n})


def test_a_message_decodes_whole_with_only_stored_fields_parsed() -> None:
    events, places, refused = decode_message(kafka.encode_batch([event(0), event(1)]))
    assert (list(places), refused) == ([0, 1], [])
    first = events[0]
    assert (first.id, first.k8s.namespace, first.k8s.labels, first.actor.groups) == ("ev-0", "shop", {"app": "web"},
                                                                                       ("devs",))
    assert first.request.decision == "allow"
    assert bytes(first.request.object) == b'{"spec":{"n":0}}'  # not stored in a column: kept as it came
    assert not gc.is_tracked(first) and not gc.is_tracked(first.actor)


def test_the_json_of_a_stored_event_is_the_whole_event() -> None:
    [stored], _, _ = decode_message(kafka.encode_batch([event(3)]))
    assert orjson.loads(stored.to_json()) == event(3).to_dict()


def test_bad_events_are_refused_one_by_one_with_their_own_bytes() -> None:
    bad_pod = event(2).to_dict() | {"k8s": {"pod": 17}}
    newer = event(3).to_dict() | {"schema": 2}
    unknown = event(4).to_dict() | {"actor": {"future_field": 1}}
    value = kafka.encode_batch([event(1), {"id": "no-time"}, bad_pod, newer, unknown, event(5)])
    events, places, refused = decode_message(value)
    assert [e.id for e in events] == ["ev-1", "ev-5"] and list(places) == [0, 5]
    assert [reason for reason, _, _ in refused] == ["invalid_event"] * 4
    details = [detail for _, detail, _ in refused]
    assert "$.k8s.pod" in details[1] and details[2] == "unsupported event schema version 2"
    assert "future_field" in details[3]
    assert orjson.loads(refused[1][2]) == bad_pod
    assert event_bytes(value, 5) == kafka.encode_batch([event(5)])[1:-1]


def test_a_message_that_is_not_an_array_of_events_is_undecodable() -> None:
    for value in (b"not json", b'{"id": "x"}'):
        events, _, [(reason, _, raw)] = decode_message(value)
        assert (events, reason, raw) == ([], "undecodable", value)


def test_a_partition_batch_keeps_columns_and_finds_each_rows_original_bytes() -> None:
    batch = PartitionBatch(TopicPartition("events", 0), TABLE_COLUMNS["events"])
    first = kafka.encode_batch([event(0), event(1)])
    second = kafka.encode_batch([event(2), {"id": "broken"}, event(3)])
    for value in (first, second):
        events, places, refused = decode_message(value)
        batch.refused += refused
        batch.add_rows(events, value, places, typed=True)
    ids = batch.values[[c.name for c in TABLE_COLUMNS["events"]].index("event_id")]
    assert ids == ["ev-0", "ev-1", "ev-2", "ev-3"] and batch.rows == 4
    assert [orjson.loads(batch.origins.original(row))["id"] for row in range(4)] == ids
    assert [reason for reason, _, _ in batch.refused] == ["invalid_event"]
