"""Syslog forwarder: RFC 5424 messages with a CEF payload, over TCP or TLS, framed by octet counting.

Each alert becomes one message, ``<PRI>1 TIMESTAMP HOSTNAME vigil - MSGID - CEF:0|…``, prefixed by its
length in bytes (RFC 6587 octet counting), so a receiver never splits a message at an embedded newline.
The facility is 10 (security/authorization); the syslog severity follows the alert's.

Delivery: syslog over TCP has no application-level acknowledgement, so "delivered" means written to a
connection that was open and drained. Before each batch the forwarder checks that the receiver has not
closed the connection (a restarted receiver leaves a dead one behind) and reconnects if it has; any
connection error makes the batch be sent again on a new connection. What a receiver loses after the
kernel accepted it cannot be seen from here: that is the protocol's limit (RELP or HEC acknowledge).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from datetime import UTC, datetime

from vigil.alert import Alert
from vigil.siem.formats import is_update
from vigil.siem.outputs import OutputUnavailable, Refused, RenderedAlert

FACILITY = 10  # security/authorization messages
#: vigil severity → syslog severity (2 critical, 3 error, 4 warning, 5 notice, 6 informational).
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "informational": 6}
_NOT_PRINTABLE = re.compile(r"[^\x21-\x7e]")


def rfc5424_message(alert: Alert, cef: bytes, hostname: str) -> bytes:
    """One RFC 5424 message (without framing) carrying the alert's CEF line."""
    seconds, nanos = divmod(alert.last_seen_ns, 1_000_000_000)
    timestamp = datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000)
    stamp = timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    host = _NOT_PRINTABLE.sub("_", hostname)[:255] or "-"
    msgid = "alert-update" if is_update(alert) else "alert"
    pri = FACILITY * 8 + SYSLOG_SEVERITY[alert.severity]
    return f"<{pri}>1 {stamp} {host} vigil - {msgid} - ".encode() + cef


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 octet-counting frame: ``MSG-LEN SP SYSLOG-MSG``."""
    return b"%d %s" % (len(message), message)


class SyslogForwarder:
    """Sends alerts to one syslog receiver over TCP, or TLS when ``cafile`` (the receiver's CA) is given."""

    name = "syslog"
    format_name = "cef"

    def __init__(self, host: str, port: int, *, cafile: str = "", tls: bool = False, hostname: str = "",
                 connect_timeout_s: float = 10.0) -> None:
        self._host, self._port = host, port
        self._ssl = ssl.create_default_context(cafile=cafile or None) if (tls or cafile) else None
        self._hostname = hostname or socket.gethostname()
        self._connect_timeout_s = connect_timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def __repr__(self) -> str:
        return f"SyslogForwarder({self._host}:{self._port}, tls={self._ssl is not None})"

    async def start(self) -> None:
        """Connections are opened on first use, so a receiver that is down does not stop the publisher."""

    async def close(self) -> None:
        await self._disconnect()

    async def send(self, alerts: list[RenderedAlert]) -> list[Refused]:
        frames = b"".join(octet_counted(rfc5424_message(item.alert, item.documents["cef"], self._hostname))
                          for item in alerts)
        writer = await self._connection()
        try:
            writer.write(frames)
            await writer.drain()
        except (OSError, ConnectionError) as exc:
            await self._disconnect()
            raise OutputUnavailable("connection", f"{type(exc).__name__}: {exc}") from exc
        return []

    async def _connection(self) -> asyncio.StreamWriter:
        await asyncio.sleep(0)  # let a pending end-of-stream from the receiver be noticed
        if self._writer is not None and (self._writer.is_closing() or (self._reader and self._reader.at_eof())):
            await self._disconnect()
        if self._writer is None:
            try:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(self._host, self._port, ssl=self._ssl,
                                            server_hostname=self._host if self._ssl else None),
                    self._connect_timeout_s)
            except ssl.SSLError as exc:  # e.g. the receiver's certificate is not signed by the configured CA
                raise OutputUnavailable("tls", f"{type(exc).__name__}: {exc}") from exc
            except (OSError, TimeoutError) as exc:
                raise OutputUnavailable("connection", f"{type(exc).__name__}: {exc}") from exc
        return self._writer

    async def _disconnect(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):  # the connection is gone either way
                await writer.wait_closed()
