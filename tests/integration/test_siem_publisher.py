"""The SIEM publisher on the real local Kafka: format topics, lifecycle updates, HEC/syslog, at-least-once."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from tests.integration.harness import wait_for
from tests.unit.test_siem_forwarders import TOKEN, HecReceiver, SyslogReceiver, free_port, make_alerts
from vigil import kafka
from vigil.siem.hec import HecForwarder
from vigil.siem.publisher import GROUP_ID, run_publisher
from vigil.siem.syslog import SyslogForwarder

pytestmark = pytest.mark.integration


class RunningPublisher:
    """The publisher in-process, as `vigil siem publish` runs it."""

    def __init__(self, settings, topic_formats=None, forwarders=()) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(run_publisher(settings, topic_formats, list(forwarders), self.stop))

    async def __aenter__(self) -> RunningPublisher:
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


async def produce(settings, values: list[tuple[bytes, bytes]]) -> None:
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(settings.topic("alerts"), value, key=key)
    finally:
        await producer.stop()


async def read_cef(settings, expected: int) -> list[tuple[str, str]]:
    consumer = kafka.consumer(settings, settings.topic("alerts.cef"), group_id=None)
    await consumer.start()
    try:
        lines: list[tuple[str, str]] = []
        async def collect():
            while len(lines) < expected:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    lines.extend((m.key.decode(), m.value.decode()) for m in messages)
        await asyncio.wait_for(collect(), 60)
        return lines
    finally:
        await consumer.stop()


async def committed_offsets(settings) -> int:
    """The sum of the publisher group's committed offsets over the alerts topic's partitions."""
    admin = AIOKafkaAdminClient(**kafka.client_options(settings.kafka))
    await admin.start()
    try:
        partitions = [TopicPartition(settings.topic("alerts"), p) for p in range(kafka.TOPICS["alerts"])]
        offsets = await admin.list_consumer_group_offsets(GROUP_ID, partitions=partitions)
        return sum(max(0, meta.offset) for meta in offsets.values())
    finally:
        await admin.close()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_alerts_fan_out_to_format_topics_and_forwarders_with_updates_as_updates(kafka_settings,
                                                                                      read_documents):
    first, other = make_alerts(2)
    update = replace(first, count=2, last_seen_ns=first.last_seen_ns + 5_000_000_000,
                     evidence=[*first.evidence, "audit-9"])
    await produce(kafka_settings, [(a.id.encode(), a.to_json()) for a in (first, other, update)]
                  + [(b"junk", b"{not json"), (b"odd", b'{"detection":"x","title":"t","severity":"low",'
                                                          b'"time_ns":1,"count":"many"}')])
    async with HecReceiver() as hec_receiver, SyslogReceiver() as syslog_receiver:
        forwarders = [HecForwarder(hec_receiver.url, TOKEN, format_name="ecs"),
                      SyslogForwarder("127.0.0.1", syslog_receiver.port)]
        async with RunningPublisher(kafka_settings, forwarders=forwarders):
            ocsf = await read_documents(kafka_settings, "alerts.ocsf", 3, with_keys=True)
            ecs = await read_documents(kafka_settings, "alerts.ecs", 3)
            cef = await read_cef(kafka_settings, 3)
            await wait_for(lambda: len(hec_receiver.events) >= 3 and len(syslog_receiver.messages) >= 3)
            dead = await read_documents(kafka_settings, "deadletter", 2)

    by_activity = {(doc["finding_info"]["uid"], doc["activity_name"]): (key, doc) for key, doc in ocsf}
    assert set(by_activity) == {(first.id, "Create"), (other.id, "Create"), (first.id, "Update")}
    key, updated = by_activity[(first.id, "Update")]
    assert key == first.id and (updated["activity_id"], updated["count"]) == (2, 2)
    assert updated["finding_info"]["last_seen_time"] - updated["finding_info"]["first_seen_time"] == 5000
    assert sorted(doc["event"]["action"] for doc in ecs) == ["alert-created", "alert-created", "alert-updated"]
    assert sorted(line.split("cs5=")[1].split(" ")[0] for _, line in cef) == ["create", "create", "update"]
    assert {key for key, _ in cef} == {first.id, other.id}
    hec_actions = [(e["event"]["event"]["id"], e["event"]["event"]["action"]) for e in hec_receiver.events]
    assert sorted(hec_actions) == sorted([(first.id, "alert-created"), (other.id, "alert-created"),
                                          (first.id, "alert-updated")])
    assert hec_actions.index((first.id, "alert-created")) < hec_actions.index((first.id, "alert-updated"))
    assert sum(" alert-update " in m for m in syslog_receiver.messages) == 1
    dead_by_reason = {d["reason"]: d for d in dead}
    assert dead_by_reason.keys() == {"invalid_alert", "unrenderable_alert"}
    assert {d["component"] for d in dead} == {"siem-publisher"}
    assert dead_by_reason["invalid_alert"]["raw"] == "{not json"
    assert '"count":"many"' in dead_by_reason["unrenderable_alert"]["raw"]
    assert await committed_offsets(kafka_settings) == 5


async def test_hec_answering_503_is_retried_until_it_takes_the_alerts(kafka_settings):
    alerts = make_alerts(3)
    await produce(kafka_settings, [(a.id.encode(), a.to_json()) for a in alerts])
    failures_before = sample("vigil_siem_failures_total", output="hec", reason="http_503")
    retries_before = sample("vigil_siem_retries_total", output="hec")
    async with HecReceiver() as receiver:
        receiver.statuses.extend([503, 503])
        async with RunningPublisher(kafka_settings, {}, [HecForwarder(receiver.url, TOKEN)]):
            await wait_for(lambda: len(receiver.events) >= 3)
            await wait_for(lambda: committed_offsets(kafka_settings))
    assert sorted(e["event"]["finding_info"]["uid"] for e in receiver.events) == sorted(a.id for a in alerts)
    assert sample("vigil_siem_failures_total", output="hec", reason="http_503") - failures_before == 2
    assert sample("vigil_siem_retries_total", output="hec") - retries_before == 2
    assert await committed_offsets(kafka_settings) == 3


async def test_alerts_survive_a_publisher_restart_while_the_receiver_is_down(kafka_settings, caplog):
    """At-least-once: nothing is committed before HEC took it, so a new publisher delivers everything."""
    alerts = make_alerts(4)
    await produce(kafka_settings, [(a.id.encode(), a.to_json()) for a in alerts])
    port = free_port()
    failures_before = sample("vigil_siem_failures_total", output="hec", reason="connection")
    async with RunningPublisher(kafka_settings, {}, [HecForwarder(f"http://127.0.0.1:{port}", TOKEN)]):
        await wait_for(lambda: sample("vigil_siem_failures_total", output="hec", reason="connection")
                       > failures_before)
    assert await committed_offsets(kafka_settings) == 0

    async with HecReceiver(port) as receiver, RunningPublisher(kafka_settings, {}, [HecForwarder(receiver.url, TOKEN)]):
        await wait_for(lambda: len(receiver.events) >= 4)
        await wait_for(lambda: committed_offsets(kafka_settings))
    assert sorted(e["event"]["finding_info"]["uid"] for e in receiver.events) == sorted(a.id for a in alerts)
    assert await committed_offsets(kafka_settings) == 4
    assert "output unavailable, retrying" in caplog.text and str(TOKEN) not in caplog.text


async def test_refused_alerts_are_dead_lettered_with_the_reason_and_committed(kafka_settings, read_documents):
    alerts = make_alerts(2)
    await produce(kafka_settings, [(a.id.encode(), a.to_json()) for a in alerts])
    async with (HecReceiver(token="not-ours") as receiver,
                RunningPublisher(kafka_settings, {}, [HecForwarder(receiver.url, TOKEN)])):
        dead = await read_documents(kafka_settings, "deadletter", 2)
        await wait_for(lambda: committed_offsets(kafka_settings))
    assert [(d["reason"], d["source"]) for d in dead] == [("http_401", "hec")] * 2
    assert sorted(orjson.loads(d["raw"])["id"] for d in dead) == sorted(a.id for a in alerts)
    assert all(str(TOKEN) not in d["detail"] for d in dead)
    assert await committed_offsets(kafka_settings) == 2
