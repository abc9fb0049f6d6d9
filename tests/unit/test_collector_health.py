"""Collectors' loss reports: the health reporter, its messages to every partition (through the spool), and each
source's mapping of health records into ``collector.health`` events the engine turns into coverage_degraded."""

from __future__ import annotations

import struct
import threading

import orjson
import pytest

from vigil import kafka
from vigil.collectors.health import HealthReporter
from vigil.collectors.shipper import KafkaShipper
from vigil.collectors.spool import DiskSpool, Message
from vigil.detections.engine import HEALTH_KIND, Engine
from vigil.sources.health import HEALTH_RECORD_KIND, health_event
from vigil.sources.source import RecordRejected, Rejected, get_source
from vigil.sources.tetragon.normalize import RATE_LIMIT_PERIOD_NS

S = 1_000_000_000
LIMIT = 1 << 20


def record(source: str = "ebpf", *, dropped: int = 12, since_ns: int = 100 * S, time_ns: int = 110 * S) -> dict:
    return {"kind": HEALTH_RECORD_KIND, "source": source, "node": "node-7", "component": "node-collector",
            "dropped": dropped, "reasons": {"kernel_ring_full": dropped}, "since_ns": since_ns, "time_ns": time_ns}


@pytest.fixture
def offline(settings):
    """Settings whose Kafka cannot be reached: the shipper spools everything."""
    settings.kafka.bootstrap = "127.0.0.1:9"
    return settings


# -- the reporter ----------------------------------------------------------------------------------------


def test_losses_are_summed_per_source_and_forgotten_once_taken(offline) -> None:
    reporter = HealthReporter(offline, KafkaShipper(offline, "test"), "node-collector")
    reporter.count("ebpf", 5, "kernel_ring_full")
    reporter.count("ebpf", 2, "spool_full")
    reporter.count("containerd", 1, "spool_full")
    reporter.count("containerd", 0, "spool_full")

    records = {r["source"]: r for r in reporter.records(time_ns=10**19)}

    assert records["ebpf"]["dropped"] == 7 and records["ebpf"]["reasons"] == {"kernel_ring_full": 5, "spool_full": 2}
    assert records["containerd"]["dropped"] == 1
    assert all(r["kind"] == HEALTH_RECORD_KIND and r["node"] == offline.node for r in records.values())
    assert all(r["since_ns"] <= r["time_ns"] == 10**19 for r in records.values())
    assert reporter.records() == []


def test_losses_not_shipped_are_reported_later_from_their_first_moment(offline) -> None:
    reporter = HealthReporter(offline, KafkaShipper(offline, "test"), "c")
    reporter.count("ebpf", 5, "kernel_ring_full")
    (first,) = reporter.records()
    reporter.restore([first])
    reporter.count("ebpf", 1, "kernel_ring_full")

    (again,) = reporter.records()

    assert again["since_ns"] == first["since_ns"] and again["dropped"] == 6


def test_counting_from_many_threads_loses_no_count(offline) -> None:
    reporter = HealthReporter(offline, KafkaShipper(offline, "test"), "c")
    threads = [threading.Thread(target=lambda: [reporter.count("ebpf", 1, "r") for _ in range(2000)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert reporter.records()[0]["dropped"] == 8000


def test_a_message_lost_for_good_counts_its_records_for_its_source(offline) -> None:
    reporter = HealthReporter(offline, KafkaShipper(offline, "test"), "c")
    reporter.count_lost_message(Message(offline.topic("raw.k8s-audit"), "k", b'[{"a":1},{"a":2},{"a":3}]'),
                                "kafka_refused_MessageSizeTooLargeError")
    reporter.count_lost_message(Message(offline.topic("deadletter"), "k", b"{}"), "kafka_refused_X")

    (lost,) = reporter.records()

    assert lost["source"] == "k8s-audit" and lost["reasons"] == {"kafka_refused_MessageSizeTooLargeError": 3}


async def test_a_report_goes_to_every_partition_of_the_raw_topic_and_survives_the_spool(offline) -> None:
    shipper = KafkaShipper(offline, "test")
    await shipper.start()
    reporter = HealthReporter(offline, shipper, "node-collector")
    reporter.count("ebpf", 9, "kernel_ring_full")
    try:
        await reporter.report()
    finally:
        await shipper.close()

    spool = DiskSpool(offline.spool_dir / "test", 10_000_000, "test")
    messages = [message for message, _ in spool.peek(100)]
    spool.close()
    assert sorted(m.partition for m in messages) == list(range(kafka.TOPICS["raw.ebpf"]))
    assert {m.topic for m in messages} == {offline.topic("raw.ebpf")}
    assert len({m.value for m in messages}) == 1
    (shipped,) = orjson.loads(messages[0].value)
    assert shipped["dropped"] == 9 and shipped["source"] == "ebpf"


async def test_nothing_is_sent_while_nothing_is_lost(offline) -> None:
    shipper = KafkaShipper(offline, "test")
    await shipper.start()
    try:
        await HealthReporter(offline, shipper, "c").report()
        assert shipper.spooled_bytes == 0
    finally:
        await shipper.close()


# -- the spool carries partitions ------------------------------------------------------------------------


def test_the_spool_keeps_a_message_partition_and_reads_entries_written_before_partitions(tmp_path) -> None:
    topic, key, value = b"vigil.raw.ebpf", b"c/~", b"[1]"
    body = struct.pack(">H", len(topic)) + topic + struct.pack(">H", len(key)) + key + value
    (tmp_path / f"{0:012d}.seg").write_bytes(struct.pack(">I", len(body)) + body)  # the format before partitions
    spool = DiskSpool(tmp_path, 10_000_000, "test")
    spool.append([Message("vigil.raw.ebpf", "c/~", b"[2]", 5), Message("vigil.raw.ebpf", "c/~", b"[3]", 0)])

    read = [message for message, _ in spool.peek(10)]
    spool.close()

    assert read == [Message("vigil.raw.ebpf", "c/~", b"[1]"), Message("vigil.raw.ebpf", "c/~", b"[2]", 5),
                    Message("vigil.raw.ebpf", "c/~", b"[3]", 0)]


# -- every source maps its health records -----------------------------------------------------------------


@pytest.mark.parametrize("source_name", ["ebpf", "containerd", "k8s-audit", "tetragon"])
def test_every_source_accepts_and_maps_a_health_record_about_it(source_name: str) -> None:
    source = get_source(source_name)
    health = record(source_name)

    (split,) = source.split(orjson.dumps(health), LIMIT)
    event = source.normalize(split, "prod", "worker-node")

    assert event.kind == HEALTH_KIND and event.source == source_name and event.node == "node-7"
    assert event.time_ns == 110 * S and event.raw["dropped"] == 12 and event.raw["since_ns"] == 100 * S
    assert source.key(health, "prod") == event.correlation_key


@pytest.mark.parametrize("source_name", ["ebpf", "containerd", "k8s-audit", "tetragon"])
@pytest.mark.parametrize(
    ("broken", "reason"),
    [({"dropped": -1}, "missing_field"), ({"dropped": "3"}, "missing_field"), ({"since_ns": 200 * S}, "missing_field"),
     ({"time_ns": None}, "missing_field")],
)
def test_a_broken_health_record_is_refused_with_a_reason(source_name: str, broken: dict, reason: str) -> None:
    source = get_source(source_name)
    health = record(source_name) | broken

    (rejected,) = source.split(orjson.dumps(health), LIMIT)

    assert isinstance(rejected, Rejected) and rejected.reason == reason
    with pytest.raises(RecordRejected):
        source.normalize(health, "prod", "n")


def test_the_copies_sent_to_every_partition_are_one_event() -> None:
    assert health_event(record(), "ebpf", "c", "n").id == health_event(record(), "ebpf", "c", "n").id
    assert health_event(record(), "ebpf", "c", "n").id != health_event(record(dropped=3), "ebpf", "c", "n").id


def test_a_tetragon_rate_limit_notice_is_a_health_record_with_its_drop_count() -> None:
    source = get_source("tetragon")
    notice = {"rate_limit_info": {"number_of_dropped_process_events": "12"}, "node_name": "node-3",
              "time": "2025-03-04T06:22:18Z"}

    (split,) = source.split(orjson.dumps(notice), LIMIT)
    event = source.normalize(split, "prod", "worker-node")

    assert event.kind == HEALTH_KIND and event.source == "tetragon" and event.node == "node-3"
    assert event.raw["dropped"] == 12 and event.time_ns - event.raw["since_ns"] == RATE_LIMIT_PERIOD_NS
    assert event.raw["tetragon"] == notice
    assert source.key(notice, "prod") == event.correlation_key


def test_a_tetragon_rate_limit_notice_without_a_count_is_refused() -> None:
    (rejected,) = get_source("tetragon").split(b'{"rate_limit_info": {}, "time": "2025-03-04T06:22:18Z"}', LIMIT)

    assert isinstance(rejected, Rejected) and rejected.reason == "missing_field"


def test_the_engine_counts_a_mapped_health_record_against_findings_over_its_span() -> None:
    engine = Engine([])
    engine.process(get_source("ebpf").normalize(record(), "prod", "n"))
    span = (90 * S, 105 * S)

    assert engine.losses.overlapping(frozenset({"ebpf"}), frozenset({"node-7"}), *span) == {"ebpf": 12}
    assert engine.losses.overlapping(frozenset({"ebpf"}), frozenset({"node-8"}), *span) == {}
