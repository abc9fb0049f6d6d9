"""The dev stack on the real thing: Kafka and ClickHouse started, probed, stopped and restarted for real.

Most tests use the session's shared stack (``dev_stack``). Tests that stop a stack run a second, private
one on free ports in a temporary run dir, so that they never pull the shared one from under tests that
other people run at the same time.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import clickhouse_connect
import pytest

from vigil import devstack, kafka
from vigil.config import Settings, load_settings
from vigil.devstack import cli
from vigil.devstack.ports import is_listening

pytestmark = pytest.mark.integration


def test_up_again_is_a_no_op_that_keeps_the_running_servers(dev_stack):
    before = devstack.status(dev_stack)
    devstack.up(dev_stack)
    after = devstack.status(dev_stack)
    assert [s.pid for s in after] == [s.pid for s in before]
    assert all(s.healthy for s in after), after


def test_status_shows_every_service_running_and_healthy(dev_stack, capsys):
    statuses = {s.name: s for s in devstack.status(dev_stack)}
    assert {"kafka", "clickhouse"} <= statuses.keys() <= {"kafka", "clickhouse", "prometheus"}  # + `up --monitoring`
    assert statuses["kafka"].state == "running"
    assert statuses["kafka"].address.endswith(":" + dev_stack.kafka.bootstrap.rpartition(":")[2])
    assert statuses["clickhouse"].state in {"running", "external"}
    assert all(s.healthy for s in statuses.values()), statuses

    assert cli.run_status(argparse.Namespace(), dev_stack) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["kafka", "running"]
    assert lines[0].endswith("healthy")


def test_clickhouse_also_serves_the_native_protocol_port(dev_stack):
    if not devstack.status(dev_stack)[1].managed:
        pytest.skip("an existing ClickHouse is in use, not the dev server")
    port = int(os.environ.get("VIGIL_DEV_CLICKHOUSE_TCP_PORT", 9000))
    # The native protocol handler answers a stray HTTP request with "400" and a pointer to clickhouse-client.
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
    assert b"is for clickhouse-client program" in answer.value.read()


async def test_kafka_roundtrip_through_vigils_clients_takes_large_messages(settings):
    topic = settings.topic("roundtrip")
    large = os.urandom(3 * 1024 * 1024)  # incompressible, over Kafka's default 1 MiB message limit
    producer = kafka.producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"small", key=b"k")
        await producer.send_and_wait(topic, large, key=b"k")
    finally:
        await producer.stop()

    consumer = kafka.consumer(settings, topic, group_id=f"{settings.kafka.topic_prefix}group")
    await consumer.start()
    try:
        received = []
        for _ in range(60):
            batches = await consumer.getmany(timeout_ms=1000)
            received += [message.value for messages in batches.values() for message in messages]
            if len(received) >= 2:
                break
    finally:
        await consumer.stop()
    assert received == [b"small", large]


def test_clickhouse_roundtrip_over_http(dev_stack):
    client = _clickhouse(dev_stack)
    database = f"test_{uuid.uuid4().hex[:12]}"
    try:
        assert client.command("SELECT 1") == 1
        client.command(f"CREATE DATABASE {database}")
        client.command(f"CREATE TABLE {database}.seen (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
        client.insert(f"{database}.seen", [[2, "b"], [1, "a"]], column_names=["id", "name"])
        assert client.query(f"SELECT id, name FROM {database}.seen ORDER BY id").result_rows == [(1, "a"), (2, "b")]
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")
        client.close()


@pytest.fixture
def private_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings for a second dev stack of its own: a temporary run dir and free ports."""
    monkeypatch.delenv("VIGIL_DEV_DIR", raising=False)
    monkeypatch.delenv("VIGIL_CLICKHOUSE_URL", raising=False)
    kafka_port = _free_port_pair()
    http_port, tcp_port = _free_port(), _free_port()
    monkeypatch.setenv("VIGIL_DEV_CLICKHOUSE_TCP_PORT", str(tcp_port))
    settings = load_settings()
    settings.data_dir = str(tmp_path)
    settings.kafka.bootstrap = f"127.0.0.1:{kafka_port}"
    settings.clickhouse.url = f"http://127.0.0.1:{http_port}"
    yield settings
    devstack.down(settings)


async def test_shared_use_restart_and_stale_pid_files(private_stack):
    settings = private_stack
    with devstack.running(settings):
        with devstack.running(settings):  # a second session joins the stack the first one started
            pids = [s.pid for s in devstack.status(settings)]
        assert [s.pid for s in devstack.status(settings)] == pids, "stopped while a session still used it"
        await _store_some_data(settings)
    assert [s.state for s in devstack.status(settings)] == ["stopped", "stopped"], "the last session left it up"

    # A crash or reboot leaves PID files behind, their PIDs since reused or gone. A program that now
    # holds one must be neither mistaken for the server nor signalled.
    bystander = subprocess.Popen(["sleep", "300"])
    gone = subprocess.Popen(["true"])
    gone.wait()
    run_dir = devstack.run_dir(settings)
    (run_dir / "kafka.pid").write_text(f"{bystander.pid}\n")
    (run_dir / "clickhouse.pid").write_text(f"{gone.pid}\n")
    try:
        assert [s.state for s in devstack.status(settings)] == ["stopped", "stopped"]
        devstack.up(settings)
        with devstack.running(settings):
            pass
        assert all(s.healthy for s in devstack.status(settings)), "a session stopped a stack it did not start"
        assert bystander.poll() is None, "the program that reused the PID was signalled"
    finally:
        bystander.kill()
        bystander.wait()

    client = _clickhouse(settings)
    assert client.query("SELECT count(), sum(id) FROM kept").result_rows == [(3, 6)]
    client.close()
    assert await _read_first(settings, settings.topic("events")) == [b"kept"]


def test_a_port_held_by_another_program_is_named_and_nothing_starts(private_stack):
    port = int(private_stack.kafka.bootstrap.rpartition(":")[2])
    with (socket.create_server(("127.0.0.1", port)),
          pytest.raises(devstack.DevStackError, match=f"127.0.0.1:{port} .*in use")):
        devstack.up(private_stack)
    assert [s.state for s in devstack.status(private_stack)] == ["stopped", "stopped"]


def test_missing_java_says_what_to_install(private_stack, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(devstack.DevStackError, match="apt-get install -y default-jdk-headless maven"):
        devstack.up(private_stack)
    assert [s.state for s in devstack.status(private_stack)] == ["stopped", "stopped"]


def _clickhouse(settings: Settings):
    url = urlsplit(settings.clickhouse.url)
    return clickhouse_connect.get_client(host=url.hostname, port=url.port, username=settings.clickhouse.username,
                                         password=str(settings.clickhouse.password))


async def _store_some_data(settings: Settings) -> None:
    client = _clickhouse(settings)
    client.command("CREATE TABLE kept (id UInt32) ENGINE = MergeTree ORDER BY id")
    client.insert("kept", [[1], [2], [3]], column_names=["id"])
    client.close()
    producer = kafka.producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic("events"), b"kept")
    finally:
        await producer.stop()


async def _read_first(settings: Settings, topic: str) -> list[bytes]:
    """The topic's first message, read from the beginning without a consumer group."""
    consumer = kafka.consumer(settings, topic, group_id=None)
    await consumer.start()
    try:
        for _ in range(60):
            batches = await consumer.getmany(timeout_ms=1000, max_records=1)
            if batches:
                return [message.value for messages in batches.values() for message in messages]
        return []
    finally:
        await consumer.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _free_port_pair() -> int:
    """A port P with P+1 free too: Kafka's client listener and its controller."""
    while True:
        port = _free_port()
        if port < 65535 and not is_listening("127.0.0.1", port + 1):
            return port
