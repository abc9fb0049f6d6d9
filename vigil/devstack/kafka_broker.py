"""The dev Kafka: one KRaft node, broker and controller in one JVM, on 127.0.0.1 only.

Configured for a single node: every replication factor and min ISR is 1 (the defaults of 3 would leave
the offsets and transaction topics uncreatable), topics are created on first use with 6 partitions, and
the broker accepts messages as large as vigil's producers may send (``kafka.max_message_bytes``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import subprocess
from collections.abc import Coroutine
from importlib import resources
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from vigil import kafka
from vigil.config import Settings
from vigil.devstack.errors import DevStackError
from vigil.devstack.kafka_jars import kafka_lib, require
from vigil.devstack.ports import is_listening, loopback_port
from vigil.devstack.process import DetachedProcess

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
#: Headroom over the producers' request limit for the record batch framing around the largest record.
_BATCH_OVERHEAD_BYTES = 64 * 1024
_JVM_OPTIONS = ("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true")


class KafkaBroker:
    """Start, find and probe the dev broker whose files live in ``<run dir>/kafka``."""

    name = "kafka"

    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self.settings = settings
        self.port = loopback_port(settings.kafka.bootstrap, "VIGIL_KAFKA_BOOTSTRAP")
        self.controller_port = self.port + 1
        self.home = run_dir / "kafka"
        self.config_file = self.home / "server.properties"
        self.process = DetachedProcess(run_dir / "kafka.pid", run_dir / "kafka.log", marker=str(self.config_file))

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.controller_port)

    def start(self) -> None:
        """Write the config, format the storage on first start, and launch the JVM (it starts in seconds)."""
        java = require("java")
        lib = kafka_lib()
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.server_properties())
        log4j_config = self.home / "log4j2.xml"
        log4j_config.write_text(resources.files("vigil.devstack").joinpath("log4j2.xml").read_text())
        classpath = ["-cp", f"{lib}/*"]
        if not (self.home / "data" / "meta.properties").exists():
            self._format_storage([java, *classpath])
        self.process.start(
            [java, *_JVM_OPTIONS, f"-Dlog4j2.configurationFile={log4j_config}", *classpath,
             "kafka.Kafka", str(self.config_file)],
            cwd=self.home,
        )

    def server_properties(self) -> str:
        max_bytes = self.settings.kafka.max_message_bytes + _BATCH_OVERHEAD_BYTES
        properties = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.bootstrap.servers": f"{HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": self.home / "data",
            "num.partitions": 6,
            "auto.create.topics.enable": "true",
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,  # consumers in tests join at once, not after 3 s
            "message.max.bytes": max_bytes,
            "replica.fetch.max.bytes": max_bytes,
        }
        return "".join(f"{key}={value}\n" for key, value in properties.items())

    def check(self, timeout: float) -> None:
        """Raise DevStackError unless the broker answers a metadata request within ``timeout`` seconds."""
        if not is_listening(HOST, self.port):
            raise DevStackError(f"nothing listens on {self.address}")
        try:
            _run(asyncio.wait_for(_list_topics(self.settings, timeout), timeout))
        except (KafkaError, OSError) as exc:  # OSError includes TimeoutError
            raise DevStackError(f"no metadata from {self.address}: {exc!r}") from exc

    def create_topics(self) -> None:
        """Create vigil's topics (``vigil.kafka.TOPICS``) under the configured prefix if they are missing."""
        try:
            _run(kafka.ensure_topics(self.settings))
        except (KafkaError, OSError) as exc:
            raise DevStackError(f"creating vigil's topics on {self.address} failed: {exc!r}") from exc

    def _format_storage(self, java_classpath: list[str]) -> None:
        storage_tool = [*java_classpath, "kafka.tools.StorageTool"]
        cluster_id = _storage_tool([*storage_tool, "random-uuid"])
        log.info("formatting Kafka storage", extra={"cluster_id": cluster_id, "dir": str(self.home / "data")})
        _storage_tool([*storage_tool, "format", "--standalone", "-t", cluster_id, "-c", str(self.config_file)])


async def _list_topics(settings: Settings, timeout: float) -> list[str]:
    admin = AIOKafkaAdminClient(**kafka.client_options(settings.kafka), request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion from sync code, even when the caller is inside an event loop (pytest-asyncio)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(asyncio.run, coroutine).result()


def _storage_tool(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        command = " ".join(argv[argv.index("kafka.tools.StorageTool"):])
        raise DevStackError(f"{command} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout.strip()
