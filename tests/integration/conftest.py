"""Fixtures for tests that talk to the real local Kafka (see tests/conftest.py for the stack itself)."""

from __future__ import annotations

import contextlib
import time
from urllib.parse import urlsplit

import clickhouse_connect
import orjson
import pytest

from vigil import devstack, kafka


@pytest.fixture
async def kafka_settings(settings):
    """Settings whose topics (this test's own prefix) exist before the test runs."""
    await kafka.ensure_topics(settings)
    return settings


@pytest.fixture
def kafka_outage(dev_stack):
    """A context manager that stops the dev Kafka (only Kafka) and starts it again on exit."""

    @contextlib.contextmanager
    def outage():
        devstack.down(dev_stack, only=["kafka"])
        try:
            yield
        finally:
            devstack.up(dev_stack)

    return outage


@pytest.fixture
def clickhouse_client(settings):
    """A plain clickhouse-connect client on the dev server, for asserting what landed."""
    url = urlsplit(settings.clickhouse.url)
    client = clickhouse_connect.get_client(host=url.hostname, port=url.port, username=settings.clickhouse.username,
                                           password=str(settings.clickhouse.password))
    yield client
    client.close()


@pytest.fixture
def read_documents():
    """Read a topic from the beginning until ``expected`` documents arrived (and, with ``settle``, no more)."""

    async def read(settings, topic: str, expected: int, *, timeout: float = 60.0, settle: float = 0.0,
                   with_keys: bool = False) -> list:
        consumer = kafka.consumer(settings, settings.topic(topic), group_id=None)
        await consumer.start()
        try:
            await consumer.seek_to_beginning(*consumer.assignment())
            found: list = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and len(found) < expected:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    found += [doc for message in messages for doc in _documents(topic, message, with_keys)]
            quiet_until = time.monotonic() + settle
            while time.monotonic() < quiet_until:
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    found += [doc for message in messages for doc in _documents(topic, message, with_keys)]
            return found
        finally:
            await consumer.stop()

    return read


def _documents(topic: str, message, with_keys: bool) -> list:
    value = orjson.loads(message.value)
    docs = value if topic.startswith(("raw.", "events")) else [value]
    key = message.key.decode() if message.key is not None else None
    return [(key, doc) for doc in docs] if with_keys else docs
