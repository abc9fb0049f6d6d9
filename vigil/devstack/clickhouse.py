"""The dev ClickHouse as ``vigil dev`` sees it: how to start it, find it again, and probe it.

The server process itself is :mod:`vigil.devstack.clickhouse_server`.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from vigil.config import Settings
from vigil.devstack.errors import DevStackError
from vigil.devstack.ports import LOOPBACK_HOSTS, loopback_port
from vigil.devstack.process import DetachedProcess

DEFAULT_TCP_PORT = 9000
#: Run with ``python -m``; named, not imported, so that the module is fresh when it runs as __main__.
SERVER_MODULE = "vigil.devstack.clickhouse_server"


#: Where the dev server listens when vigil itself is configured for the embedded engine.
DEV_URL = "http://127.0.0.1:8123"


def dev_server_url(settings: Settings) -> str:
    """The ClickHouse server the dev stack runs or probes for these settings."""
    url = settings.clickhouse.url.rstrip("/")
    return url if urlsplit(url).scheme in ("http", "https") else DEV_URL


class ClickHouseServer:
    """Start, find and probe the dev ClickHouse whose files live in ``<run dir>/clickhouse``.

    The dev server listens on the configured URL when that is a local ``http://`` one, and on
    :data:`DEV_URL` when vigil is configured for its embedded engine (the default), so that the dev stack
    always offers a server that several processes can share. A URL on another machine is someone else's
    ClickHouse: it is only probed, never started or stopped (``process`` is None).
    """

    name = "clickhouse"

    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self.settings = settings
        self.url = dev_server_url(settings)
        self.home = run_dir / "clickhouse"
        self.process: DetachedProcess | None = None
        self.ports: tuple[int, ...] = ()
        if urlsplit(self.url).hostname not in LOOPBACK_HOSTS:
            return
        http_port = loopback_port(urlsplit(self.url).netloc, "VIGIL_CLICKHOUSE_URL")
        tcp_port = int(os.environ.get("VIGIL_DEV_CLICKHOUSE_TCP_PORT", DEFAULT_TCP_PORT))
        self.ports = (http_port, tcp_port)
        self.process = DetachedProcess(run_dir / "clickhouse.pid", run_dir / "clickhouse.log", marker=str(self.home))

    @property
    def address(self) -> str:
        return self.url

    def start(self) -> None:
        if self.process is None:
            raise DevStackError(f"ClickHouse at {self.url} is not run by the dev stack; start it yourself")
        http_port, tcp_port = self.ports
        self.home.mkdir(parents=True, exist_ok=True)
        self.process.start(
            [sys.executable, "-m", SERVER_MODULE, "--dir", str(self.home),
             "--http-port", str(http_port), "--tcp-port", str(tcp_port)],
            cwd=self.home,
        )

    def check(self, timeout: float) -> None:
        """Raise DevStackError unless ``SELECT 1`` over HTTP answers ``1`` within ``timeout`` seconds."""
        clickhouse = self.settings.clickhouse
        headers = {"X-ClickHouse-User": clickhouse.username}
        if clickhouse.password:
            headers["X-ClickHouse-Key"] = str(clickhouse.password)
        request = urllib.request.Request(f"{self.url}/?query=SELECT%201", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = response.read()
        except urllib.error.HTTPError as exc:
            raise DevStackError(f"{self.url} refused SELECT 1: HTTP {exc.code} {exc.read()[:300]!r}") from exc
        except OSError as exc:
            raise DevStackError(f"{self.url} does not answer: {exc}") from exc
        if answer.strip() != b"1":
            raise DevStackError(f"{self.url} answered SELECT 1 with {answer[:300]!r}")
