"""Suppression state in a store: what a stream worker that takes over a dead one's partitions continues from."""

from __future__ import annotations

import faust
import orjson
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from tests.unit.test_detections_engine import MINUTE_NS, detection, exec_event
from vigil.detections.engine import Engine
from vigil.detections.state import CountingStore, DictStore
from vigil.streams.tables import Changelog, RoutedTableStore, TableStore, partition_of


def test_an_engine_on_the_same_store_folds_repeats_into_the_alert_another_engine_opened() -> None:
    store = DictStore()
    first_worker = Engine([detection(dedup_period_s=600)], alert_store=store)
    (opened,) = first_worker.process_many([exec_event("a1")])
    first_worker.process_many([exec_event("a2", time_ns=MINUTE_NS)])

    second_worker = Engine([detection(dedup_period_s=600)], alert_store=store)
    assert second_worker.process_many([exec_event("a3", time_ns=2 * MINUTE_NS)]) == []
    (update,) = second_worker.advance()

    assert (update.id, update.count, update.evidence) == (opened.id, 3, ["a1", "a2", "a3"])


def test_hits_read_again_after_a_crash_are_not_counted_twice() -> None:
    store = DictStore()
    crashed = Engine([detection(dedup_period_s=600)], alert_store=store)
    batch = [exec_event("a1"), exec_event("a2", time_ns=MINUTE_NS)]
    crashed.process_many(batch)  # state written, offsets never committed: the next owner reads the batch again

    successor = Engine([detection(dedup_period_s=600)], alert_store=store)
    assert successor.process_many(batch) == [], "the alert the crashed worker raised is not raised again"
    successor.process_many([exec_event("a3", time_ns=2 * MINUTE_NS)])
    (update,) = successor.advance()
    assert update.count == 3


def test_an_open_alert_is_written_once_per_commit_however_many_hits() -> None:
    store = CountingStore()
    engine = Engine([detection(dedup_period_s=600)], alert_store=store)

    engine.process_many([exec_event(f"a{i}", time_ns=i * 10**9) for i in range(100)])

    assert store.writes == 1 and len(store) == 1


def test_an_entry_is_routed_by_the_kafka_key_of_the_events_that_opened_it() -> None:
    store = DictStore()
    engine = Engine([detection(dedup_period_s=600)], alert_store=store)
    event = exec_event("a1", pod="web")

    engine.process_many([event])
    engine.process_many([exec_event("a2", pod="web", time_ns=11 * MINUTE_NS)])  # a new alert: the key stays put

    (key,) = store.keys()
    assert store.get(key)["route"] == event.correlation_key == "test/default/web"


def test_entries_go_once_the_watermark_passed_their_dedup_period() -> None:
    store = DictStore()
    engine = Engine([detection(dedup_period_s=60)], alert_store=store)
    engine.process_many([exec_event("a1")])

    engine.advance(watermark_ns=exec_event().time_ns + 59 * 10**9)
    assert len(store) == 1
    engine.advance(watermark_ns=exec_event().time_ns + 60 * 10**9)
    assert len(store) == 0


def test_the_tables_partition_a_key_as_the_producer_partitions_its_raw_messages() -> None:
    routes = [f"cluster/default/pod-{i}" for i in range(200)]

    expected = [DefaultPartitioner()(route.encode(), list(range(6)), list(range(6))) for route in routes]
    assert [partition_of(route, 6) for route in routes] == expected
    assert len(set(expected)) == 6


def test_writes_wait_as_changelog_records_in_the_partition_of_their_route_and_a_delete_as_a_tombstone() -> None:
    app = faust.App("suppression-test", store="memory://")
    table = app.Table("open-alerts", partitions=6, use_partitioner=True, key_type=bytes, value_type=bytes)
    changelog = Changelog()
    store = RoutedTableStore(table, partitions=6, changelog=changelog)
    topic = table.changelog_topic.get_topic_name()

    store.set("alert-1", {"route": "test/default/web", "count": 1})
    store.set("alert-1", {"route": "test/default/web", "count": 2})
    store.delete("alert-1")
    store.delete("never-written")
    web = partition_of("test/default/web", 6)
    assert changelog.take() == [
        (topic, web, b"alert-1", orjson.dumps({"route": "test/default/web", "count": 1})),
        (topic, web, b"alert-1", orjson.dumps({"route": "test/default/web", "count": 2})),
        (topic, web, b"alert-1", None),
    ]
    assert changelog.take() == [] and len(store) == 0


def test_the_state_table_writes_a_key_to_the_partition_of_the_key() -> None:
    app = faust.App("state-test", store="memory://")
    table = app.Table("detection-state", partitions=6, use_partitioner=True, key_type=bytes, value_type=bytes)
    changelog = Changelog()
    store = TableStore(table, partitions=6, changelog=changelog)

    store.set("test/default/web", {"seq.a": [1]})
    assert store.get("test/default/web") == {"seq.a": [1]} and list(store.keys()) == ["test/default/web"]
    ((_, partition, key, _),) = changelog.take()
    assert (partition, key) == (partition_of("test/default/web", 6), b"test/default/web")


async def test_a_worker_forgets_the_open_alerts_of_partitions_it_no_longer_has() -> None:
    app = faust.App("suppression-test", store="memory://")
    table = app.Table("open-alerts", partitions=6, use_partitioner=True, key_type=bytes, value_type=bytes)
    store = RoutedTableStore(table, partitions=6, changelog=Changelog())
    engine = Engine([detection(dedup_period_s=600)], alert_store=store)
    engine.process_many([exec_event("a1", pod="web"), exec_event("a2", pod="db")])
    web, db = (store.partition(f"test/default/{pod}") for pod in ("web", "db"))
    assert web != db and len(store) == 2

    # After a rebalance that left this worker the partition of "web" only (the changelog partitions were restored).
    await table.data.on_recovery_completed({TP(table.changelog_topic.get_topic_name(), web)}, set())

    (key,) = store.keys()
    assert store.get(key)["route"] == "test/default/web"
