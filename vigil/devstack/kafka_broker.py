"""The dev Kafka: KRaft nodes, each a broker and controller in one JVM, on 127.0.0.1 only.

One node by default; ``vigil dev up --kafka-brokers N`` runs N of them as one cluster (N controllers voting, so
one may die). Replication follows the cluster's size as :func:`vigil.kafka.replication` derives it: one node has
every replication factor and min ISR at 1 (the defaults of 3 would leave the offsets and transaction topics
uncreatable); three keep 3 copies of every topic, Kafka's own included, with 2 in sync, so a broker killed
loses nothing acknowledged and writes go on. Topics are created on first use with 6 partitions, and the brokers
accept messages as large as vigil's producers may send (``kafka.max_message_bytes``).

Node ``i`` (from 1) listens on the configured bootstrap port + 2(i-1) and has its controller one port above.
The node count is the run dir's (``kafka-brokers``), chosen by the ``up`` that started it, so ``down`` and
``status`` find every node again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import subprocess
import time
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
#: Holds the node count of the run dir's Kafka, and the cluster id its nodes were formatted with.
_BROKERS_FILE = "kafka-brokers"
_CLUSTER_ID_FILE = "kafka-cluster-id"
_JVM_OPTIONS = ("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true")


def kafka_brokers(settings: Settings, run_dir: Path) -> list[KafkaBroker]:
    """The run dir's Kafka nodes: as many as the ``up`` that started it asked for (1 unless told)."""
    try:
        count = int((run_dir / _BROKERS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        count = 1
    return [KafkaBroker(settings, run_dir, node_id, count) for node_id in range(1, count + 1)]


def choose_broker_count(settings: Settings, run_dir: Path, count: int) -> None:
    """Have the run dir's Kafka run ``count`` nodes from its next start; refused while it runs with another
    count (it keeps its data per node count: ``kafka/`` for one node, ``kafka-1/`` ... for a cluster)."""
    if count < 1:
        raise DevStackError(f"--kafka-brokers {count}: at least 1")
    current = kafka_brokers(settings, run_dir)
    if len(current) == count:
        return
    if any(broker.process.pid() is not None for broker in current):
        raise DevStackError(f"Kafka runs here with {len(current)} broker(s); `vigil dev down` first to start {count}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / _BROKERS_FILE).write_text(f"{count}\n")


class KafkaBroker:
    """Start, find and probe one dev Kafka node: ``kafka`` in ``<run dir>/kafka`` alone, ``kafka-<i>`` in
    ``<run dir>/kafka-<i>`` as node ``i`` of a cluster of ``brokers``."""

    def __init__(self, settings: Settings, run_dir: Path, node_id: int = 1, brokers: int = 1) -> None:
        self.settings = settings
        self.node_id = node_id
        self.brokers = brokers
        self.first_port = _first_port(settings.kafka.bootstrap)
        self.port = self.first_port + 2 * (node_id - 1)
        self.controller_port = self.port + 1
        self.name = "kafka" if brokers == 1 else f"kafka-{node_id}"
        self.run_dir = run_dir
        self.home = run_dir / self.name
        self.config_file = self.home / "server.properties"
        self.process = DetachedProcess(run_dir / f"{self.name}.pid", run_dir / f"{self.name}.log",
                                       marker=str(self.config_file))

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

    @property
    def bootstrap(self) -> str:
        """Every node's client address: what clients of the cluster list in ``VIGIL_KAFKA_BOOTSTRAP``."""
        return ",".join(f"{HOST}:{self.first_port + 2 * i}" for i in range(self.brokers))

    def server_properties(self) -> str:
        max_bytes = self.settings.kafka.max_message_bytes + _BATCH_OVERHEAD_BYTES
        copies = kafka.replication(self.settings.kafka, self.brokers)
        if self.brokers == 1:
            quorum = {"controller.quorum.bootstrap.servers": f"{HOST}:{self.controller_port}"}
        else:  # static voters: every node is one
            quorum = {"controller.quorum.voters": ",".join(
                f"{i + 1}@{HOST}:{self.first_port + 2 * i + 1}" for i in range(self.brokers))}
        properties = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            **quorum,
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": self.home / "data",
            "num.partitions": 6,
            "auto.create.topics.enable": "true",
            "default.replication.factor": copies.factor,
            "min.insync.replicas": copies.min_insync,
            "offsets.topic.replication.factor": copies.factor,
            "transaction.state.log.replication.factor": copies.factor,
            "transaction.state.log.min.isr": copies.min_insync,
            "share.coordinator.state.topic.replication.factor": copies.factor,
            "share.coordinator.state.topic.min.isr": copies.min_insync,
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
            _run(asyncio.wait_for(_describe_cluster(self.settings, self.address, timeout), timeout))
        except (KafkaError, OSError) as exc:  # OSError includes TimeoutError
            raise DevStackError(f"no metadata from {self.address}: {exc!r}") from exc

    def create_topics(self, timeout: float) -> None:
        """Create vigil's topics (``vigil.kafka.TOPICS``) under the configured prefix if they are missing, once
        every node has joined: topics created before would get fewer copies."""
        deadline = time.monotonic() + timeout
        try:
            while len(_run(_describe_cluster(self.settings, self.bootstrap, timeout))["brokers"]) < self.brokers:
                if time.monotonic() > deadline:
                    raise DevStackError(f"fewer than {self.brokers} Kafka brokers joined within {timeout:.0f} s")
                time.sleep(0.2)
            _run(kafka.ensure_topics(self.settings))
        except (KafkaError, OSError) as exc:
            raise DevStackError(f"creating vigil's topics on {self.address} failed: {exc!r}") from exc

    def _format_storage(self, java_classpath: list[str]) -> None:
        storage_tool = [*java_classpath, "kafka.tools.StorageTool"]
        if self.brokers == 1:
            cluster_id = _storage_tool([*storage_tool, "random-uuid"])
            quorum = ["--standalone"]
        else:  # every node of the cluster formatted with the same id, whichever is formatted first
            id_file = self.run_dir / _CLUSTER_ID_FILE
            if not id_file.exists():
                id_file.write_text(_storage_tool([*storage_tool, "random-uuid"]) + "\n")
            cluster_id, quorum = id_file.read_text().strip(), []
        log.info("formatting Kafka storage", extra={"cluster_id": cluster_id, "dir": str(self.home / "data")})
        _storage_tool([*storage_tool, "format", *quorum, "-t", cluster_id, "-c", str(self.config_file)])


def _first_port(bootstrap: str) -> int:
    """The first node's port: the first address of the bootstrap list (the others follow from it)."""
    return loopback_port(bootstrap.split(",")[0].strip(), "VIGIL_KAFKA_BOOTSTRAP")


async def _describe_cluster(settings: Settings, bootstrap: str, timeout: float) -> dict[str, Any]:
    """The cluster's metadata (its live brokers) as the node(s) at ``bootstrap`` tell it."""
    options = kafka.client_options(settings.kafka) | {"bootstrap_servers": bootstrap}
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        return await admin.describe_cluster()
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
