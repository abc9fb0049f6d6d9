"""The Splunk HEC and syslog forwarders against real local receivers written for these tests.

The receivers are asyncio servers on 127.0.0.1: an HEC endpoint that checks the ``Splunk`` token and can be
told which status to answer, and a syslog receiver that reads RFC 6587 octet-counted frames over TCP or TLS
(certificates made with the openssl CLI). The publisher's integration tests reuse them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import subprocess
from collections import deque
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from vigil.alert import Alert
from vigil.config import Secret
from vigil.siem.formats import to_cef
from vigil.siem.hec import HecForwarder
from vigil.siem.outputs import OutputUnavailable, RenderedAlert
from vigil.siem.syslog import SyslogForwarder, octet_counted, rfc5424_message

TOKEN = Secret("hec-t0ken-secret")
RFC5424 = re.compile(r"^<(\d+)>1 (\S+) (\S+) vigil - (alert|alert-update) - (CEF:0\|.*)$", re.S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rendered(alerts: list[Alert]) -> list[RenderedAlert]:
    return [RenderedAlert.render(alert, {"ocsf", "ecs", "cef"}) for alert in alerts]


def make_alerts(n: int, **overrides) -> list[Alert]:
    return [Alert(**{"detection": "k8s.exec_into_pod", "title": f"Exec {i}", "severity": "high",
                     "time_ns": 1_764_000_000_000_000_000 + i, "cluster": "prod", "namespace": "payments",
                     "pod": f"api-{i}", "user": "alice", "evidence": [f"audit-{i}"]} | overrides) for i in range(n)]


class HecReceiver:
    """A Splunk HEC stand-in: checks the token, answers with the queued statuses (then 200), keeps events.

    ``reject`` answers 400 to any request holding an event it matches, as Splunk does for a malformed event.
    """

    def __init__(self, port: int | None = None, token: str = str(TOKEN),
                 reject: Callable[[dict], bool] = lambda event: False) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.reject = reject
        self.statuses: deque[int] = deque()
        self.events: list[dict] = []
        self.requests = 0
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> HecReceiver:
        app = web.Application()
        app.router.add_post("/services/collector/event", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"Splunk {self.token}":
            return web.json_response({"text": "Invalid token", "code": 4}, status=401)
        events = [orjson.loads(line) for line in (await request.read()).splitlines() if line]
        status = self.statuses.popleft() if self.statuses else 200
        if status == 200 and any(self.reject(e) for e in events):
            status = 400
        if status != 200:
            return web.json_response({"text": "not now", "code": 9}, status=status)
        self.events += events
        return web.json_response({"text": "Success", "code": 0})


class SyslogReceiver:
    """An RFC 6587 octet-counting syslog receiver over TCP, or TLS with ``ssl_context``."""

    def __init__(self, port: int | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.port = port or free_port()
        self.ssl_context = ssl_context
        self.messages: list[str] = []
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> SyslogReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.ssl_context)
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        clients = list(self._clients)
        for writer in clients:  # a stopped receiver drops its connections, as a crashed one does
            writer.close()
        for writer in clients:  # closed for good (the peer was told) once the block ends
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                length = int((await reader.readuntil(b" "))[:-1])
                message = (await reader.readexactly(length)).decode()
                async with self._arrived:
                    self.messages.append(message)
                    self._arrived.notify_all()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[str]:
        """The messages, once at least ``count`` arrived; fail after ``timeout``."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.messages) >= count), timeout)
        return self.messages


def make_pki(directory: Path) -> dict[str, Path]:
    """Two CAs and a server certificate for 127.0.0.1 signed by the first, made with the openssl CLI."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
            "-days", "2", "-subj", f"/CN=vigil-test-{ca}")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=syslog")
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "server.ext")
    return {name: directory / name for name in ("ca.crt", "other-ca.crt", "server.crt", "server.key")}


def server_tls(pki: dict[str, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server.crt"], pki["server.key"])
    return context


# --- HEC ----------------------------------------------------------------------------------------------

async def test_hec_posts_batches_with_the_splunk_token():
    alerts = make_alerts(5)
    async with HecReceiver() as receiver:
        hec = HecForwarder(receiver.url, TOKEN, format_name="ocsf", batch_size=2)
        await hec.start()
        try:
            assert await hec.send(rendered(alerts)) == []
        finally:
            await hec.close()
    assert receiver.requests == 3
    assert [e["event"]["finding_info"]["uid"] for e in receiver.events] == [a.id for a in alerts]
    first = receiver.events[0]
    assert (first["sourcetype"], first["source"], first["host"]) == ("vigil:alert:ocsf", "vigil", "prod")
    assert first["time"] == pytest.approx(1_764_000_000.0)
    assert str(TOKEN) not in repr(hec)


async def test_hec_cef_events_are_strings():
    async with HecReceiver() as receiver:
        hec = HecForwarder(receiver.url + "/services/collector/event", TOKEN, format_name="cef")
        await hec.start()
        try:
            await hec.send(rendered(make_alerts(1)))
        finally:
            await hec.close()
    assert receiver.events[0]["event"].startswith("CEF:0|vigil|vigil|")


async def test_hec_503_and_429_are_retried_then_delivered():
    alerts = make_alerts(2)
    async with HecReceiver() as receiver:
        receiver.statuses.extend([503, 429])
        hec = HecForwarder(receiver.url, TOKEN)
        await hec.start()
        try:
            for status in (503, 429):
                with pytest.raises(OutputUnavailable) as failure:
                    await hec.send(rendered(alerts))
                assert failure.value.reason == f"http_{status}"
            assert await hec.send(rendered(alerts)) == []
        finally:
            await hec.close()
    assert [e["event"]["finding_info"]["uid"] for e in receiver.events] == [a.id for a in alerts]


async def test_hec_receiver_down_then_up_delivers_without_loss():
    alerts = make_alerts(3)
    port = free_port()
    hec = HecForwarder(f"http://127.0.0.1:{port}", TOKEN)
    await hec.start()
    try:
        with pytest.raises(OutputUnavailable) as failure:
            await hec.send(rendered(alerts))
        assert failure.value.reason == "connection"
        async with HecReceiver(port) as receiver:
            assert await hec.send(rendered(alerts)) == []
    finally:
        await hec.close()
    assert len(receiver.events) == 3


async def test_hec_400_refuses_only_the_malformed_event():
    alerts = make_alerts(4)
    bad = alerts[2].id
    async with HecReceiver(reject=lambda e: e["event"]["finding_info"]["uid"] == bad) as receiver:
        hec = HecForwarder(receiver.url, TOKEN, batch_size=10)
        await hec.start()
        try:
            refused = await hec.send(rendered(alerts))
        finally:
            await hec.close()
    assert [(r.alert.id, r.reason) for r in refused] == [(bad, "http_400")]
    assert {e["event"]["finding_info"]["uid"] for e in receiver.events} == {a.id for a in alerts} - {bad}


@pytest.mark.parametrize("status", [401, 403])
async def test_hec_auth_failures_are_refused_not_retried(status):
    async with HecReceiver(token="another-token") as receiver:
        if status == 403:
            receiver.token = str(TOKEN)
            receiver.statuses.append(403)
        hec = HecForwarder(receiver.url, TOKEN)
        await hec.start()
        try:
            refused = await hec.send(rendered(make_alerts(2)))
        finally:
            await hec.close()
    assert [r.reason for r in refused] == [f"http_{status}"] * 2
    assert receiver.requests == 1 and receiver.events == []


# --- syslog -------------------------------------------------------------------------------------------

def test_rfc5424_message_and_octet_counting_frame():
    alert = make_alerts(1, description="two\nlines")[0]
    message = rfc5424_message(alert, to_cef(alert).encode(), "node 1")
    match = RFC5424.match(message.decode())
    assert match and match[1] == str(10 * 8 + 3) and match[3] == "node_1" and match[4] == "alert"
    assert match[2] == "2025-11-24T16:00:00.000Z"
    assert "\n" not in match[5] and "msg=two\\nlines" in match[5]
    assert octet_counted(b"abc") == b"3 abc"


async def test_syslog_over_tcp_delivers_one_framed_message_per_alert():
    alerts = make_alerts(3, title="pipe | and\nnewline")
    async with SyslogReceiver() as receiver:
        syslog = SyslogForwarder("127.0.0.1", receiver.port, hostname="node-1")
        try:
            assert await syslog.send(rendered(alerts)) == []
            messages = await receiver.wait_for(3)
        finally:
            await syslog.close()
    assert all(RFC5424.match(m)[5].startswith("CEF:0|vigil|vigil|0.1.0|k8s.exec_into_pod|pipe \\| and newline|8|")
               for m in messages)
    assert all(f"externalId={a.id}" in m for a, m in zip(alerts, messages, strict=True))


async def _send_until_delivered(forwarder, alerts: list[Alert], attempts: int = 50) -> int:
    """What the publisher does: send again while the output is unavailable. Returns the failures seen."""
    for failures in range(attempts):
        try:
            await forwarder.send(rendered(alerts))
            return failures
        except OutputUnavailable:
            await asyncio.sleep(0.05)
    raise AssertionError("never delivered")


async def _noticed_end_of_stream(syslog: SyslogForwarder, timeout: float = 10.0) -> None:
    """Wait until the forwarder's event loop has read the end of its connection from the stopped receiver: the
    scenario is a receiver that restarted before the next alert, not at the instant of the send (TCP cannot
    tell a write into a connection whose end is still in flight from one that arrives)."""
    reader = syslog._reader  # the forwarder's side of the old connection; only its end-of-stream is read here
    assert reader is not None, "the forwarder has no connection to the stopped receiver"
    async with asyncio.timeout(timeout):
        while not reader.at_eof():
            await asyncio.sleep(0.01)


async def test_syslog_receiver_down_then_up_and_restarted_loses_nothing():
    port = free_port()
    syslog = SyslogForwarder("127.0.0.1", port)
    try:
        with pytest.raises(OutputUnavailable):
            await syslog.send(rendered(make_alerts(1)))
        async with SyslogReceiver(port) as first:
            await _send_until_delivered(syslog, make_alerts(2))
            await first.wait_for(2)
        async with SyslogReceiver(port) as second:  # the old connection is dead: it must not swallow alerts
            await _noticed_end_of_stream(syslog)
            await _send_until_delivered(syslog, make_alerts(3))
            assert len(await second.wait_for(3)) == 3
    finally:
        await syslog.close()


async def test_syslog_over_tls_with_a_test_ca(tmp_path):
    pki = make_pki(tmp_path)
    async with SyslogReceiver(ssl_context=server_tls(pki)) as receiver:
        trusted = SyslogForwarder("127.0.0.1", receiver.port, cafile=str(pki["ca.crt"]))
        untrusted = SyslogForwarder("127.0.0.1", receiver.port, cafile=str(pki["other-ca.crt"]))
        try:
            await trusted.send(rendered(make_alerts(2)))
            assert len(await receiver.wait_for(2)) == 2
            with pytest.raises(OutputUnavailable) as failure:
                await untrusted.send(rendered(make_alerts(1)))
            assert failure.value.reason == "tls"
        finally:
            await trusted.close()
            await untrusted.close()
    assert all(RFC5424.match(m) for m in receiver.messages) and len(receiver.messages) == 2
