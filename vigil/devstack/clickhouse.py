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

#: The cluster's name in the dev servers' ``<remote_servers>`` when they run as shards and the settings name none.
DEV_CLUSTER = "vigil"


def dev_server_url(settings: Settings) -> str:
    """The ClickHouse server the dev stack runs or probes for these settings."""
    url = settings.clickhouse.url.rstrip("/")
    return url if urlsplit(url).scheme in ("http", "https") else DEV_URL


#: In the run dir: how many shards ``vigil dev up --clickhouse-shards`` asked for (no file: one server).
_SHARDS_FILE = "clickhouse-shards"


def clickhouse_servers(settings: Settings, run_dir: Path, shards: int | None = None) -> list[ClickHouseServer]:
    """The dev ClickHouse as ``shards`` servers (one replica each) that know each other as one cluster; None: as
    many as the run dir was last started with."""
    if shards is None:
        try:
            shards = int((run_dir / _SHARDS_FILE).read_text())
        except (FileNotFoundError, ValueError):
            shards = 1
    if shards < 1:
        raise DevStackError(f"--clickhouse-shards {shards}: at least 1")
    return [ClickHouseServer(settings, run_dir, shard, shards) for shard in range(1, shards + 1)]


def choose_shard_count(settings: Settings, run_dir: Path, shards: int) -> None:
    """Have the run dir's ClickHouse run as ``shards`` servers from its next start; refused while it runs with
    another count (a running server's cluster is fixed in its config)."""
    current = clickhouse_servers(settings, run_dir)
    wanted = clickhouse_servers(settings, run_dir, shards)
    if len(current) == len(wanted):
        return
    if any(server.process is not None and server.process.pid() is not None for server in current):
        raise DevStackError(f"ClickHouse runs here as {len(current)} shard(s); `vigil dev down` first to start "
                            f"{shards}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / _SHARDS_FILE).write_text(f"{shards}\n")


def cluster_environment(servers: list[ClickHouseServer]) -> dict[str, str]:
    """The settings that point vigil at ``servers`` as one cluster (nothing for a single server)."""
    if len(servers) < 2:
        return {}
    return {"VIGIL_CLICKHOUSE_CLUSTER": servers[0].cluster,
            "VIGIL_CLICKHOUSE_CLUSTER_NODES": ",".join(server.url for server in servers)}


class ClickHouseServer:
    """Start, find and probe the dev ClickHouse whose files live in ``<run dir>/clickhouse``.

    The dev server listens on the configured URL when that is a local ``http://`` one, and on
    :data:`DEV_URL` when vigil is configured for its embedded engine (the default), so that the dev stack
    always offers a server that several processes can share. A URL on another machine is someone else's
    ClickHouse: it is only probed, never started or stopped (``process`` is None).

    As shard ``shard`` of ``shards`` (``vigil dev up --clickhouse-shards N``), shard 1 is that server and shard k
    listens k-1 ports above both of its ports, with its files in ``<run dir>/clickhouse-<k>``; each lists every
    shard's native TCP port under the cluster's name (``clickhouse.cluster``, else :data:`DEV_CLUSTER`).
    """

    def __init__(self, settings: Settings, run_dir: Path, shard: int = 1, shards: int = 1) -> None:
        self.settings = settings
        self.name = "clickhouse" if shard == 1 else f"clickhouse-{shard}"
        self.cluster = (settings.clickhouse.cluster or DEV_CLUSTER) if shards > 1 else ""
        self.url = dev_server_url(settings)
        self.home = run_dir / self.name
        self.process: DetachedProcess | None = None
        self.ports: tuple[int, ...] = ()
        self.shard_tcp_ports: tuple[int, ...] = ()
        if urlsplit(self.url).hostname not in LOOPBACK_HOSTS:
            return
        http_port = loopback_port(urlsplit(self.url).netloc, "VIGIL_CLICKHOUSE_URL")
        tcp_port = int(os.environ.get("VIGIL_DEV_CLICKHOUSE_TCP_PORT", DEFAULT_TCP_PORT))
        if shard > 1:
            self.url = f"http://127.0.0.1:{http_port + shard - 1}"
        self.ports = (http_port + shard - 1, tcp_port + shard - 1)
        self.shard_tcp_ports = tuple(tcp_port + k for k in range(shards)) if shards > 1 else ()
        self.process = DetachedProcess(run_dir / f"{self.name}.pid", run_dir / f"{self.name}.log",
                                       marker=str(self.home))

    @property
    def address(self) -> str:
        return self.url

    def start(self) -> None:
        if self.process is None:
            raise DevStackError(f"ClickHouse at {self.url} is not run by the dev stack; start it yourself")
        http_port, tcp_port = self.ports
        self.home.mkdir(parents=True, exist_ok=True)
        cluster = ["--cluster", self.cluster, "--shard-tcp-ports", ",".join(map(str, self.shard_tcp_ports))]
        self.process.start(
            [sys.executable, "-m", SERVER_MODULE, "--dir", str(self.home),
             "--http-port", str(http_port), "--tcp-port", str(tcp_port), *(cluster if self.cluster else [])],
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
