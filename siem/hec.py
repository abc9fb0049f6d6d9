"""Splunk HTTP Event Collector forwarder: batches of alerts POSTed to ``/services/collector/event``.

HEC acknowledges a request with 200 once it has taken every event in it. 429 and 5xx mean "later" and
connection errors mean the same; 400 means an event in the request is malformed, so a refused batch is
split and sent event by event to refuse only the bad one; 401/403 (wrong or disabled token) and other 4xx
refuse the alerts with the reason, which puts them in the dead-letter topic rather than retrying forever on
a configuration error. The token is held as a :class:`Secret` and never logged.
"""

from __future__ import annotations

import ssl

import aiohttp
import orjson

from vigil.config import Secret
from vigil.siem.outputs import OutputUnavailable, Refused, RenderedAlert, check_format

EVENT_PATH = "/services/collector/event"
_DETAIL_CHARS = 500


class HecForwarder:
    """Sends alerts in ``format_name`` (``ocsf``, ``ecs`` or ``cef``) to one HEC endpoint."""

    name = "hec"

    def __init__(self, url: str, token: Secret, *, format_name: str = "ocsf", batch_size: int = 100,
                 timeout_s: float = 10.0, cafile: str = "") -> None:
        if not token:
            raise ValueError("the HEC token is empty")
        base = url.rstrip("/")
        self._url = base if base.endswith(EVENT_PATH) else base + EVENT_PATH
        self._headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
        self.format_name = check_format(format_name)
        self._batch_size = batch_size
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._ssl = ssl.create_default_context(cafile=cafile) if cafile else None
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"HecForwarder(url={self._url!r}, format={self.format_name!r})"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session:
            await self._session.close()

    async def send(self, alerts: list[RenderedAlert]) -> list[Refused]:
        refused: list[Refused] = []
        for start in range(0, len(alerts), self._batch_size):
            refused += await self._post(alerts[start:start + self._batch_size])
        return refused

    def _event(self, item: RenderedAlert) -> bytes:
        document = item.documents[self.format_name]
        event = document.decode() if self.format_name == "cef" else orjson.Fragment(document)
        alert = item.alert
        return orjson.dumps({"time": round(alert.last_seen_ns / 1e9, 3), "host": alert.cluster or "vigil",
                             "source": "vigil", "sourcetype": f"vigil:alert:{self.format_name}", "event": event})

    async def _post(self, alerts: list[RenderedAlert]) -> list[Refused]:
        assert self._session is not None, "start() first"
        body = b"\n".join(self._event(item) for item in alerts)
        try:
            async with self._session.post(self._url, data=body, headers=self._headers, ssl=self._ssl) as response:
                status, text = response.status, (await response.text())[:_DETAIL_CHARS]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise OutputUnavailable("connection", f"{type(exc).__name__}: {exc}") from exc
        if status == 200:
            return []
        if status == 429 or status >= 500:
            raise OutputUnavailable(f"http_{status}", text)
        if status in (400, 413) and len(alerts) > 1:
            return [r for item in alerts for r in await self._post([item])]
        return [Refused(item.alert, f"http_{status}", text) for item in alerts]
