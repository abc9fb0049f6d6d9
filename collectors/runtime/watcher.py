"""Following containerd's event stream for as long as the collector runs, across containerd restarts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from vigil.collectors.runtime.api import containerd_events_service_pb2 as service
from vigil.collectors.runtime.api import containerd_events_service_pb2_grpc as service_grpc
from vigil.collectors.runtime.events import SUBSCRIBE_FILTERS, record_from_envelope
from vigil.sources.source import Rejected

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 10.0
_CONNECT_TIMEOUT_S = 5.0


class ContainerdWatcher:
    """Yields runtime records (and :class:`Rejected` undecodable events) from containerd's event stream.

    containerd keeps no history: events published while the stream is down are not replayed. After every
    (re)connection ``on_connected`` is awaited, so the caller can re-read the runtime's state through CRI;
    ``on_disconnected`` is called whenever the stream ends.
    """

    def __init__(self, address: str, node: str, on_connected: Callable[[], Awaitable[None]] | None = None,
                 on_disconnected: Callable[[], None] | None = None) -> None:
        self.address = address
        self._node = node
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected

    async def records(self) -> AsyncIterator[dict[str, Any] | Rejected]:
        backoff = 0.5
        while True:
            async with grpc.aio.insecure_channel(f"unix://{self.address}") as channel:
                try:
                    # The subscription sends no headers until the first event: readiness comes from the channel.
                    await asyncio.wait_for(channel.channel_ready(), _CONNECT_TIMEOUT_S)
                except TimeoutError:
                    log.warning("containerd unreachable, retrying", extra={"address": self.address})
                else:
                    async for item in self._subscription(channel):
                        yield item
                        backoff = 0.5
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def _subscription(self, channel: grpc.aio.Channel) -> AsyncIterator[dict[str, Any] | Rejected]:
        stream = service_grpc.EventsStub(channel).Subscribe(service.SubscribeRequest(filters=SUBSCRIBE_FILTERS))
        try:
            log.info("following containerd events", extra={"address": self.address})
            if self._on_connected:
                await self._on_connected()  # after subscribing, so nothing falls between the two
            async for envelope in stream:
                item = record_from_envelope(envelope, self._node)
                if item is not None:
                    yield item
        except grpc.aio.AioRpcError as exc:
            log.warning("containerd event stream ended, reconnecting",
                        extra={"address": self.address, "code": exc.code().name, "error": exc.details()})
        finally:
            stream.cancel()
            if self._on_disconnected:
                self._on_disconnected()
