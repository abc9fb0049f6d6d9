"""A stream worker whose raw partitions stopped being processed restarts itself and processes what waited."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.integration.harness import stream_worker_process
from tests.integration.stalling_worker import STALL_ENV
from vigil import kafka
from vigil.sources.containerd.fixtures import containerd_record

pytestmark = pytest.mark.integration

WORKER = [sys.executable, str(Path(__file__).with_name("stalling_worker.py"))]


@pytest.mark.parametrize("stall", ["resume", "restore", "crash"])
async def test_a_stalled_worker_restarts_itself_and_loses_nothing(kafka_settings, tmp_path, read_documents,
                                                                  monkeypatch, stall) -> None:
    """Each of the stalls ``stalling_worker`` injects."""
    settings = kafka_settings
    monkeypatch.setenv(STALL_ENV, stall)
    monkeypatch.setenv("VIGIL_KAFKA_STREAM_STALL_S", "5")
    records = [containerd_record("container.start", at_s=float(n), pod=f"pod-{n}") for n in range(3)]
    with stream_worker_process(settings, tmp_path, command=WORKER):
        producer = kafka.producer(settings)
        await producer.start()
        try:
            for n, record in enumerate(records):
                await producer.send_and_wait(settings.topic("raw.containerd"), kafka.encode_batch([record]),
                                             key=f"c/shop/pod-{n}".encode())
        finally:
            await producer.stop()
        events = await read_documents(settings, "events", expected=3, timeout=120, settle=2.0)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert "stream partitions stalled: restarting the worker" in log
    assert ('"in_recovery":true' in log) is (stall == "restore")
    assert sorted(e["k8s"]["pod"] for e in events) == ["pod-0", "pod-1", "pod-2"]
    assert os.environ.get(STALL_ENV) == stall  # the test's own environment is untouched
