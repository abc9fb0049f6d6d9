"""A collector's send that outlives its delivery deadline is spooled, and Kafka may still take it (a new partition
leader elected after the deadline): the spool drain must not write it a second time."""

from __future__ import annotations

import orjson
import pytest

from tests.integration.harness import read_raw_records, wait_for
from vigil.collectors.shipper import KafkaShipper, Message

pytestmark = pytest.mark.integration


async def test_messages_acknowledged_after_their_deadline_are_not_sent_again(kafka_settings):
    settings = kafka_settings
    topic = settings.topic("raw.k8s-audit")
    # A 1 ms deadline: nearly every send is still in flight when it passes, and is acknowledged soon after.
    shipper = KafkaShipper(settings, "late-delivery-test", delivery_timeout_ms=1)
    await shipper.start()
    try:
        for batch in range(5):
            await shipper.ship([Message(topic, f"pod-{n % 7}", orjson.dumps([{"n": n}]))
                                for n in range(batch * 40, (batch + 1) * 40)])
        assert shipper.spooled_bytes > 0, "no send outlived the deadline: the test shows nothing"
        await wait_for(lambda: shipper.spooled_bytes == 0, timeout=60, interval=0.1)
    finally:
        await shipper.close()
    numbers = sorted(record["n"] for record in await read_raw_records(settings, "raw.k8s-audit"))
    assert numbers == list(range(200)), "a spooled message was written twice (or lost)"
