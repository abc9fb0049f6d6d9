"""Bring the dev stack up, down, and report on it: the logic behind ``vigil dev up | down | status``.

Every call is safe to repeat and to make from several processes at once (shells, pytest sessions of
other developers on the same machine): ``up``, ``down`` and ``running`` hold a lock on the run dir, and
what runs is decided from the PID files and ``/proc``, never remembered in memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vigil.config import Settings
from vigil.devstack.clickhouse import choose_shard_count, clickhouse_servers
from vigil.devstack.errors import DevStackError
from vigil.devstack.kafka_broker import choose_broker_count, kafka_brokers
from vigil.devstack.ports import is_listening
from vigil.devstack.process import DetachedProcess
from vigil.devstack.prometheus import PrometheusServer

log = logging.getLogger(__name__)

#: How long one probe of a service may take in ``status`` (``up`` keeps probing until its own timeout).
PROBE_SECONDS = 5.0
#: One empty file per open :func:`running` block, named ``<pid>-<random>``.
_USERS = "users"
#: Present when a :func:`running` block started the stack: the last block to end stops it.
_STOP_WHEN_UNUSED = "stop-when-unused"


class Service(Protocol):
    name: str
    ports: tuple[int, ...]
    process: DetachedProcess | None  # None: a server the dev stack uses but does not run

    @property
    def address(self) -> str: ...

    def start(self) -> None: ...

    def check(self, timeout: float) -> None: ...


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    managed: bool  # False: not run by the dev stack (a ClickHouse URL on another machine), only probed
    healthy: bool
    detail: str = ""  # why it is not healthy

    @property
    def state(self) -> str:
        if not self.managed:
            return "external"
        return "stopped" if self.pid is None else "running"


def run_dir(settings: Settings) -> Path:
    """Where PID files, logs and data live: ``$VIGIL_DEV_DIR``, else ``<data_dir>/dev``."""
    return Path(os.environ.get("VIGIL_DEV_DIR") or Path(settings.data_dir) / "dev")


def up(settings: Settings, timeout: float = 180.0, monitoring: bool = False, kafka_brokers: int | None = None,
       clickhouse_shards: int | None = None) -> None:
    """Start what is not running and wait until every service answers; a running stack is left as it is.

    The first start also fetches Kafka's jars (about a minute, once); ``timeout`` counts from after that.
    ``monitoring`` also runs Prometheus, and points it at the vigil components running now (a running Prometheus
    is re-targeted, not restarted). ``kafka_brokers`` runs Kafka as a cluster of that many nodes (None: as many as
    the run dir had, 1 at first); ``clickhouse_shards`` runs ClickHouse as that many servers wired as one cluster
    (None: as many as the run dir had, 1 at first).
    """
    directory = run_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    with locked(directory):
        if kafka_brokers is not None:
            choose_broker_count(settings, directory, kafka_brokers)
        if clickhouse_shards is not None:
            choose_shard_count(settings, directory, clickhouse_shards)
        _start(settings, directory, timeout)
        if monitoring:
            _start_monitoring(settings, directory, timeout)


def down(settings: Settings, grace: float = 30.0, only: Collection[str] | None = None) -> None:
    """Stop the services this run dir started: SIGTERM, then SIGKILL after ``grace`` seconds.

    ``only`` names the services to stop (``"kafka"``, or a cluster's ``"kafka-2"``, ``"clickhouse"``,
    ``"prometheus"``), e.g. to test a Kafka outage.
    """
    directory = run_dir(settings)
    if not directory.is_dir():
        return
    with locked(directory):
        _stop(settings, directory, grace, only)


@contextlib.contextmanager
def running(settings: Settings, timeout: float = 180.0) -> Iterator[None]:
    """Keep the stack up for the block, sharing it with every other block that uses the same run dir.

    Test sessions of several developers on one machine use one stack. A stack that was already running
    (``vigil dev up``) is left running. One that a block had to start is stopped when the last block
    using it ends, in whichever process that is, never while another still runs.
    """
    directory = run_dir(settings)
    (directory / _USERS).mkdir(parents=True, exist_ok=True)
    user = directory / _USERS / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with locked(directory):
            if not any(s.process.pid() for s in _services(settings, directory) if s.process is not None):
                (directory / _STOP_WHEN_UNUSED).touch()
            user.touch()
            _start(settings, directory, timeout)
        yield
    finally:
        with locked(directory):
            user.unlink(missing_ok=True)
            if (directory / _STOP_WHEN_UNUSED).exists() and not _live_users(directory):
                _stop(settings, directory, grace=30.0, only=None)


def status(settings: Settings) -> list[ServiceStatus]:
    """Each service: whether it runs (from its PID file), where, and whether it answers a probe. Prometheus is
    listed only while it runs: it is optional (``up --monitoring``)."""
    directory = run_dir(settings)
    prometheus = PrometheusServer(settings, directory)
    optional = [prometheus] if prometheus.process.pid() is not None else []
    return [service_status(service) for service in [*_services(settings, directory), *optional]]


def _start_monitoring(settings: Settings, directory: Path, timeout: float) -> None:
    prometheus = PrometheusServer(settings, directory)
    if prometheus.process.pid() is None:
        require_free_ports([prometheus])
        log.info("starting", extra={"service": prometheus.name, "address": prometheus.address})
        prometheus.start()
        wait_healthy(prometheus, time.monotonic() + timeout, timeout)
    else:
        prometheus.write_config()
        prometheus.reload()
    log.info("monitoring", extra={"service": prometheus.name, "address": prometheus.address,
                                  "targets": prometheus.write_targets()})


def _start(settings: Settings, directory: Path, timeout: float) -> None:
    services = _services(settings, directory)
    # Kafka first: it is the one with prerequisites (Java, the jars), so a missing one fails before
    # anything runs.
    stopped = _not_running(services)
    require_free_ports(stopped)
    for service in stopped:
        log.info("starting", extra={"service": service.name, "address": service.address})
        service.start()
    deadline = time.monotonic() + timeout
    for service in services:
        wait_healthy(service, deadline, timeout)
    kafka_brokers(settings, directory)[0].create_topics(max(deadline - time.monotonic(), PROBE_SECONDS))


def _not_running(services: list[Service]) -> list[Service]:
    """Those of ``services`` that the dev stack runs and that are not running now."""
    stopped = []
    for service in services:
        if service.process is None:
            continue
        pid = service.process.pid()
        if pid is None:
            stopped.append(service)
        else:
            log.info("already running", extra={"service": service.name, "pid": pid})
    return stopped


def _stop(settings: Settings, directory: Path, grace: float, only: Collection[str] | None) -> None:
    services: list[Service] = [*_services(settings, directory), PrometheusServer(settings, directory)]
    managed = [s for s in services if s.process is not None and (only is None or s.name in only)]
    stopping = [(s, s.process.terminate()) for s in managed]  # all at once: both shut down in parallel
    for service, pid in stopping:
        if pid is not None:
            service.process.wait_gone(pid, grace)
            log.info("stopped", extra={"service": service.name, "pid": pid})
    if only is None:
        (directory / _STOP_WHEN_UNUSED).unlink(missing_ok=True)


def _live_users(directory: Path) -> list[Path]:
    """The ``running`` blocks still open: their process lives (a crashed one's entry is dropped)."""
    live = []
    for user in (directory / _USERS).iterdir():
        if Path(f"/proc/{user.name.partition('-')[0]}").exists():
            live.append(user)
        else:
            user.unlink(missing_ok=True)
    return live


def _services(settings: Settings, directory: Path) -> list[Service]:
    return [*kafka_brokers(settings, directory), *clickhouse_servers(settings, directory)]


def service_status(service: Service) -> ServiceStatus:
    """Whether ``service`` runs (its PID file) and answers a probe; also for the dev cluster's components."""
    managed = service.process is not None
    pid = service.process.pid() if service.process is not None else None
    if managed and pid is None:
        return ServiceStatus(service.name, service.address, None, managed, healthy=False, detail="not running")
    try:
        service.check(PROBE_SECONDS)
    except DevStackError as exc:
        return ServiceStatus(service.name, service.address, pid, managed, healthy=False, detail=str(exc))
    return ServiceStatus(service.name, service.address, pid, managed, healthy=True)


def require_free_ports(services: list[Service]) -> None:
    """Refuse to start ``services`` whose ports another program holds: it would answer their probes."""
    for service in services:
        for port in service.ports:
            if is_listening("127.0.0.1", port):
                raise DevStackError(
                    f"127.0.0.1:{port} (for {service.name}) is in use by a program this run dir did not start "
                    f"(another dev stack with a different VIGIL_DEV_DIR?); stop it or choose other ports"
                )


def wait_healthy(service: Service, deadline: float, timeout: float) -> None:
    """Probe until ``service`` answers; a DevStackError with its log's last lines if it exits or ``deadline``
    passes first."""
    while True:
        if service.process is not None and service.process.pid() is None:
            raise DevStackError(f"{service.name} exited while starting; {_log_tail(service)}")
        try:
            service.check(min(PROBE_SECONDS, max(deadline - time.monotonic(), 0.5)))
            return
        except DevStackError as exc:
            if time.monotonic() >= deadline:
                raise DevStackError(f"{service.name} is not healthy after {timeout:.0f} s ({exc}); "
                                    f"{_log_tail(service)}") from exc
        time.sleep(0.5)


def _log_tail(service: Service) -> str:
    if service.process is None:
        return "it is not run by the dev stack, so there is no log here"
    return f"last lines of {service.process.log_file}:\n{service.process.log_tail()}"


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One start or stop at a time per run dir; a second caller waits, then finds the stack as left."""
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
