"""Fixtures shared by all tests: the dev stack (real Kafka and ClickHouse on 127.0.0.1) and settings for it.

Tests marked ``@pytest.mark.integration`` get the dev stack automatically. It is started once per session
if it is not already running, and stopped at the end only if a test session started it and no other
session (another developer's, on the same machine) still uses it: run ``vigil dev up`` beforehand to
keep it running across sessions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from vigil import devstack, kafka
from vigil.config import Settings, load_settings
from vigil.devstack.clickhouse import dev_server_url

#: Topic prefixes handed to tests start with this, so teardown can never delete anything but test topics.
TEST_TOPIC_PREFIX = "test-"


@pytest.fixture(scope="session")
def dev_stack() -> Iterator[Settings]:
    """The dev stack's own settings (from the environment), with every service running and healthy."""
    settings = load_settings()
    with devstack.running(settings):
        yield settings


@pytest.fixture(autouse=True)
def _integration_tests_get_the_dev_stack(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("integration"):
        request.getfixturevalue("dev_stack")


@pytest.fixture
def topic_prefix() -> str:
    """A Kafka topic prefix no other test uses, so tests never read each other's records."""
    return f"{TEST_TOPIC_PREFIX}{uuid.uuid4().hex[:12]}."


@pytest.fixture
def settings(request: pytest.FixtureRequest, topic_prefix: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings that reach the dev stack, with this test's own topic prefix and its own data dir.

    ``data_dir`` is a temporary directory (spool and checkpoints under it), so tests never write into a
    developer's real one. Pass ``dev_stack``, not this, to ``vigil.devstack`` functions: the stack's run
    dir is derived from the real ``data_dir``. Topics under the prefix (as it is when the test ends) are
    deleted after an integration test, so the dev broker does not fill up with test topics.
    """
    settings = _test_settings(topic_prefix, tmp_path)
    yield settings
    _delete_test_topics(request, settings)


@pytest.fixture(scope="module")
def module_settings(request: pytest.FixtureRequest, dev_stack: Settings,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Like ``settings``, shared by the tests of one module: for a module whose tests share one running pipeline
    (collector and stream worker) and tell their records apart by what they did, not by topic."""
    settings = _test_settings(f"{TEST_TOPIC_PREFIX}{uuid.uuid4().hex[:12]}.", tmp_path_factory.mktemp("settings"))
    yield settings
    _delete_test_topics(request, settings)


def _test_settings(topic_prefix: str, directory: Path) -> Settings:
    settings = load_settings()
    settings.clickhouse.url = dev_server_url(settings)  # the shared server, not an engine embedded in the test
    settings.data_dir = str(directory / "data")
    settings.collector.spool_dir = ""
    settings.collector.checkpoint_dir = ""
    settings.kafka.topic_prefix = topic_prefix
    return settings


def _delete_test_topics(request: pytest.FixtureRequest, settings: Settings) -> None:
    prefix = settings.kafka.topic_prefix
    if request.node.get_closest_marker("integration") and prefix.startswith(TEST_TOPIC_PREFIX):
        # In a thread with its own loop: pytest-asyncio's loop for this test must stay untouched.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as worker:
            worker.submit(asyncio.run, _delete_topics(settings, prefix)).result()


async def _delete_topics(settings: Settings, prefix: str) -> None:
    admin = AIOKafkaAdminClient(**kafka.client_options(settings.kafka))
    await admin.start()
    try:
        doomed = [topic for topic in await admin.list_topics() if topic.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
