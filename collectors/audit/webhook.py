"""The receiver for the kube-apiserver's audit webhook backend.

The apiserver POSTs ``audit.k8s.io/v1`` ``EventList`` batches and retries with backoff when it does not
get a 2xx. So the answer is the durability contract: 200 only once the events are acknowledged by Kafka
or spooled to disk; 503 when even the spool is full (the apiserver keeps the batch and retries); 400/413
for input that can never succeed, which is kept in the dead-letter topic rather than lost. A request
with some bad items is answered 200: the good ones are shipped, the bad ones dead-lettered, and
retrying would only duplicate the good ones.

Authentication of the apiserver: a client certificate (``collector.client_cafile``: TLS with
CERT_REQUIRED) and/or a bearer token (``collector.bearer_token[_file]``).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import ssl
from collections import Counter

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vigil import metrics
from vigil.collectors.ingest import SourceIngest
from vigil.collectors.shipper import SpoolFull
from vigil.config import Settings
from vigil.sources.source import Rejected

log = logging.getLogger(__name__)

_INGEST = web.AppKey("ingest", SourceIngest)
_SETTINGS = web.AppKey("settings", Settings)


class AuditWebhook:
    """The HTTP(S) endpoint: ``POST /audit`` (also ``/``), ``GET /healthz``, ``GET /metrics``."""

    def __init__(self, settings: Settings, ingest: SourceIngest) -> None:
        self._settings = settings
        self._ingest = ingest
        self._runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self._settings.collector.max_request_bytes + 1)
        app[_INGEST] = self._ingest
        app[_SETTINGS] = self._settings
        app.router.add_post("/audit", _receive)
        app.router.add_post("/", _receive)
        app.router.add_get("/healthz", _healthz)
        app.router.add_get("/metrics", _metrics)
        return app

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        collector = self._settings.collector
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, collector.webhook_host, collector.webhook_port, ssl_context=self.ssl_context()
        )
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("audit webhook listening", extra={"host": collector.webhook_host, "port": port,
                                                   "tls": bool(collector.tls_certfile)})
        return port

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def ssl_context(self) -> ssl.SSLContext | None:
        collector = self._settings.collector
        if not collector.tls_certfile:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(collector.tls_certfile, collector.tls_keyfile or None)
        if collector.client_cafile:
            context.load_verify_locations(collector.client_cafile)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


async def _receive(request: web.Request) -> web.Response:
    settings, ingest = request.app[_SETTINGS], request.app[_INGEST]
    if not _authorized(request, settings):
        metrics.REJECTED.labels("audit-webhook", ingest.source.name, "unauthorized").inc()
        return web.json_response({"error": "unauthorized"}, status=401)
    body = await _read_body(request, settings.collector.max_request_bytes)
    if body is None:
        return await _too_large(request, ingest, settings.collector.max_request_bytes)
    try:
        result = await ingest.ingest([body])
    except SpoolFull:
        return web.json_response({"error": "collector cannot keep more data now; retry"}, status=503)
    answer = {"accepted": result.accepted, "rejected": _summary(result.rejected)}
    if result.rejected and not result.accepted:
        answer["error"] = result.rejected[0].detail
        return web.json_response(answer, status=413 if result.rejected[0].reason == "too_large" else 400)
    return web.json_response(answer)


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None when it exceeds ``limit`` (the first ``limit`` bytes stay readable in memory)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def _too_large(request: web.Request, ingest: SourceIngest, limit: int) -> web.Response:
    """Dead-letter the start of an oversized body (what one Kafka message can hold), then answer 413."""
    head = await request.content.read(65536)
    rejected = Rejected("too_large", f"request body over {limit} bytes (Content-Length {request.content_length})",
                        head)
    with contextlib.suppress(SpoolFull):  # the shipper counted the loss
        await ingest.refuse(rejected)
    return web.json_response({"error": rejected.detail}, status=413)


def _authorized(request: web.Request, settings: Settings) -> bool:
    token = settings.collector.bearer_token
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), str(token).encode())


def _summary(rejected: list[Rejected]) -> dict[str, int]:
    return dict(Counter(r.reason for r in rejected))


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
