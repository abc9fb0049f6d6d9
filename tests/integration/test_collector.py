"""The audit collector against the real local Kafka: webhook, bad input, auth/TLS, file tailer restarts."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import aiohttp
import orjson
import pytest
from prometheus_client import REGISTRY

from tests.integration.harness import SAMPLES, RunningCollector, event_list, free_port, read_raw_records, wait_for
from vigil import metrics
from vigil.collectors.cli import COMPONENT, run_audit_collector
from vigil.collectors.shipper import KafkaShipper, Message

pytestmark = pytest.mark.integration

@pytest.fixture
def collector_settings(kafka_settings, tmp_path):
    kafka_settings.collector.webhook_port = free_port()
    kafka_settings.data_dir = str(tmp_path / "data")
    return kafka_settings


async def test_webhook_ships_an_event_list_keyed_by_pod(collector_settings, read_documents):
    async with RunningCollector(collector_settings, webhook=True, files=[]), aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{collector_settings.collector.webhook_port}/audit"
        async with session.post(url, data=event_list(5)) as response:
            assert response.status == 200
            assert (await response.json())["accepted"] == 5
    records = await read_documents(collector_settings, "raw.k8s-audit", expected=5, with_keys=True)
    ids = sorted(doc["auditID"] for _, doc in records)
    assert ids == sorted(orjson.loads(line)["auditID"] for line in SAMPLES.read_bytes().splitlines())
    keys = {doc["auditID"]: key for key, doc in records}
    assert keys["d1c1a0e2-0003-4a1b-9c1e-000000000003"] == f"{collector_settings.cluster}/shop/web-7d9f"


BAD_BODIES = [
    ("not_json", b"this is not json", 400),
    ("not_json", b'{"kind":"EventList","items":[{"kind":"Event"', 400),
    ("wrong_kind", b'{"kind": 0}', 400),
    ("invalid_utf8", b'{"kind":"Event","auditID":"\xff\xfe"}', 400),
]


async def test_bad_input_is_refused_with_a_reason_and_dead_lettered(collector_settings, read_documents):
    collector_settings.collector.max_request_bytes = 200_000
    async with RunningCollector(collector_settings, webhook=True, files=[]), aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{collector_settings.collector.webhook_port}/audit"
        for _reason, body, status in BAD_BODIES:
            async with session.post(url, data=body) as response:
                assert response.status == status
                assert (await response.json())["error"]
        async with session.post(url, data=b"[" + b" " * 300_000 + b"]") as response:
            assert response.status == 413
        async with session.get(f"http://127.0.0.1:{collector_settings.collector.webhook_port}/metrics") as r:
            text = await r.text()
    assert 'vigil_records_rejected_total{component="audit-collector",reason="wrong_kind"' in text.replace(
        ',source="k8s-audit"', "")
    letters = await read_documents(collector_settings, "deadletter", expected=len(BAD_BODIES) + 1)
    reasons = sorted(doc["reason"] for doc in letters)
    assert reasons == sorted([r for r, _, _ in BAD_BODIES] + ["too_large"])
    utf8 = next(doc for doc in letters if doc["reason"] == "invalid_utf8")
    assert "raw_base64" in utf8  # the original bytes are kept losslessly


async def test_bearer_token_is_required_when_configured(collector_settings):
    collector_settings.collector.bearer_token = type(collector_settings.collector.bearer_token)("t0ken")
    async with RunningCollector(collector_settings, webhook=True, files=[]), aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{collector_settings.collector.webhook_port}/audit"
        async with session.post(url, data=event_list(1)) as response:
            assert response.status == 401
        async with session.post(url, data=event_list(1), headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        async with session.post(url, data=event_list(1), headers={"Authorization": "Bearer t0ken"}) as r:
            assert r.status == 200


def _make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl CLI."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=vigil-test-ca")
    for name, extra in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=vigil-{name}")
        (directory / f"{name}.ext").write_text(extra + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    return {n: directory / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


async def test_tls_webhook_requires_a_client_certificate(collector_settings, tmp_path):
    pki = _make_pki(tmp_path)
    collector = collector_settings.collector
    collector.tls_certfile, collector.tls_keyfile = str(pki["server.crt"]), str(pki["server.key"])
    collector.client_cafile = str(pki["ca.crt"])
    trusted = ssl.create_default_context(cafile=str(pki["ca.crt"]))
    with_cert = ssl.create_default_context(cafile=str(pki["ca.crt"]))
    with_cert.load_cert_chain(str(pki["client.crt"]), str(pki["client.key"]))
    url = f"https://127.0.0.1:{collector.webhook_port}/audit"
    async with RunningCollector(collector_settings, webhook=True, files=[]), aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.post(url, data=event_list(1), ssl=trusted) as response:
                await response.read()
        async with session.post(url, data=event_list(1), ssl=with_cert) as response:
            assert response.status == 200


async def test_file_tailer_resumes_after_restart_without_loss_or_repeats(collector_settings, tmp_path):
    lines = SAMPLES.read_bytes().splitlines()
    log_file = tmp_path / "audit.log"
    log_file.write_bytes(b"\n".join(lines[:3]) + b"\n")
    await run_audit_collector(collector_settings, webhook=False, files=[log_file], follow=False)
    with open(log_file, "ab") as fh:
        fh.write(b"\n".join(lines[3:]) + b"\n")
    await run_audit_collector(collector_settings, webhook=False, files=[log_file], follow=False)
    await run_audit_collector(collector_settings, webhook=False, files=[log_file], follow=False)
    records = await read_raw_records(collector_settings, "raw.k8s-audit")  # the runs returned: all of it is there
    assert sorted(doc["auditID"] for doc in records) == sorted(orjson.loads(line)["auditID"] for line in lines)


async def test_collector_spools_while_kafka_is_down_and_delivers_in_order_when_it_returns(
        collector_settings, kafka_outage, tmp_path, read_documents):
    exec_event = orjson.loads(SAMPLES.read_bytes().splitlines()[2])
    lines = [orjson.dumps(exec_event | {"auditID": f"outage-{i:03d}"}) for i in range(12)]  # one pod: one partition
    log_file = tmp_path / "audit.log"
    log_file.write_bytes(b"")
    stop = asyncio.Event()
    received = _received_lines()
    with kafka_outage():
        task = asyncio.create_task(run_audit_collector(collector_settings, webhook=False, files=[log_file],
                                                       stop=stop))
        for n, line in enumerate(lines, start=1):
            with open(log_file, "ab") as fh:
                fh.write(line + b"\n")
            # each line read and made durable before the next is written: one Kafka message each, so their
            # order across messages is observable
            await wait_for(lambda: task.done() or _received_lines() == received + n, timeout=60, interval=0.05)  # noqa: B023
            assert not task.done(), task
        spool = Path(collector_settings.data_dir) / "spool" / "audit-collector"
        assert sum(p.stat().st_size for p in spool.glob("*.seg")) > 0, "nothing was spooled"
    records = await read_documents(collector_settings, "raw.k8s-audit", expected=len(lines), timeout=120)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert [doc["auditID"] for doc in records] == [orjson.loads(line)["auditID"] for line in lines]


def _received_lines() -> float:
    """Lines the audit collector's file tailer read and made durable (acknowledged by Kafka or spooled)."""
    return REGISTRY.get_sample_value("vigil_records_received_total",
                                     {"component": COMPONENT, "source": "k8s-audit"}) or 0.0


async def test_a_message_kafka_can_never_take_is_counted_and_does_not_block_the_rest(kafka_settings, read_documents):
    shipper = KafkaShipper(kafka_settings, "refusal-test")
    await shipper.start()
    topic = kafka_settings.topic("raw.k8s-audit")
    oversized = Message(topic, "k", b"[" + b" " * (kafka_settings.kafka.max_message_bytes + 1) + b"]")
    small = Message(topic, "k", orjson.dumps([{"auditID": "after-the-refusal"}]))
    try:
        await shipper.ship([oversized, small])
        assert shipper.spooled_bytes == 0
    finally:
        await shipper.close()
    dropped = metrics.DROPPED.labels("refusal-test", "kafka_refused_MessageSizeTooLargeError")._value.get()
    assert dropped == 1
    records = await read_documents(kafka_settings, "raw.k8s-audit", expected=1)
    assert records == [{"auditID": "after-the-refusal"}]


async def test_kafka_going_away_mid_run_spools_instead_of_dropping(kafka_settings, kafka_outage):
    """A send that times out because Kafka went down is kept, not counted as refused (aiokafka marks that
    timeout as not retriable, which must not be taken for "Kafka refused it")."""
    shipper = KafkaShipper(kafka_settings, "outage-mid-run", delivery_timeout_ms=2_000)
    await shipper.start()
    topic = kafka_settings.topic("raw.k8s-audit")
    try:
        await shipper.ship([Message(topic, "k", orjson.dumps([{"auditID": "before"}]))])
        with kafka_outage():
            await shipper.ship([Message(topic, "k", orjson.dumps([{"auditID": f"during-{i}"}])) for i in range(3)])
            assert shipper.spooled_bytes > 0, "the messages sent while Kafka was away were not spooled"
        await wait_for(lambda: shipper.spooled_bytes == 0, timeout=120)  # replayed and acknowledged
        records = await read_raw_records(kafka_settings, "raw.k8s-audit")
    finally:
        await shipper.close()
    # At least once: what was in flight when Kafka went away may arrive twice, never out of order or not at all.
    assert list(dict.fromkeys(r["auditID"] for r in records)) == ["before", "during-0", "during-1", "during-2"]
    dropped = [m for m in metrics.DROPPED.collect()[0].samples if m.labels.get("component") == "outage-mid-run"]
    assert dropped == []
