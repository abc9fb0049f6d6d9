"""The dev stack's Kafka and ClickHouse for the dev cluster's pods, at the pods' own 127.0.0.1.

The dev stack serves on the host's loopback only, and Kafka tells its clients to connect to the address it
advertises (127.0.0.1:9092), so a pod on the bridge network cannot use it even through a forwarded port. This
process listens on 127.0.0.1:<port> inside every pod network namespace of the dev cluster's containerd (the files
``netns_mounts_under_state_dir`` puts under its state directory) and forwards each connection to the same port on
the host's loopback: a pod then reaches the dev stack exactly as a process on the host does, which is what the Helm
chart's pods need on the dev cluster (values ``kafka.bootstrap=127.0.0.1:9092``, ``clickhouse.url=http://127.0.0.1:8123``).
Host-network pods need nothing: they share the host's loopback. ``vigil dev cluster up`` runs it
(``vigil dev cluster bridge``), ``down`` stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_CLONE_NEWNET = 0x40000000
_SCAN_SECONDS = 1.0
_LIBC = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def network_namespace(path: Path) -> Iterator[None]:
    """Run the block's socket calls in the network namespace at ``path``; the calling thread only, and back to
    its own namespace afterwards (a socket keeps the namespace it was made in)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def listener_in(path: Path, port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` in the network namespace at ``path``."""
    with network_namespace(path):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(64)
        except OSError:
            listener.close()
            raise
    listener.setblocking(False)
    return listener


class PodLoopback:
    """Forwards ``ports`` from the loopback of every network namespace under ``netns_dir`` to the host's."""

    def __init__(self, netns_dir: Path, ports: tuple[int, ...]) -> None:
        self.netns_dir = netns_dir
        self.ports = ports
        self._servers: dict[str, list[asyncio.Server]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the namespaces as pods come and go, until ``stop`` is set."""
        log.info("forwarding pods' loopback ports to the host's", extra={"ports": list(self.ports),
                                                                          "netns_dir": str(self.netns_dir)})
        while not stop.is_set():
            await self._sync()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _SCAN_SECONDS)
        for name in list(self._servers):
            self._close(name)

    async def _sync(self) -> None:
        present = {p.name for p in self.netns_dir.iterdir()} if self.netns_dir.is_dir() else set()
        for name in self._servers.keys() - present:
            self._close(name)
        for name in present - self._servers.keys():
            self._servers[name] = await self._serve(self.netns_dir / name)

    async def _serve(self, path: Path) -> list[asyncio.Server]:
        servers = []
        for port in self.ports:
            try:
                listener = await asyncio.to_thread(listener_in, path, port)
            except OSError as exc:  # the namespace went away, or a pod listens on that port itself
                log.warning("cannot listen in a pod's network namespace",
                            extra={"netns": path.name, "port": port, "error": str(exc)})
                continue
            servers.append(await asyncio.start_server(_forwarder(port), sock=listener))
        log.info("pod network namespace served", extra={"netns": path.name, "ports": len(servers)})
        return servers

    def _close(self, name: str) -> None:
        for server in self._servers.pop(name, []):
            server.close()


def _forwarder(port: int):
    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))

    return forward


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


def _setns(fd: int) -> None:
    if _LIBC.setns(fd, _CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")
