"""Typed settings for every vigil component, from one TOML file and environment variables.

Precedence: environment variable > config file (``VIGIL_CONFIG``, TOML) > default. Every setting has
one environment variable, named ``VIGIL_<SECTION>_<NAME>`` (``VIGIL_KAFKA_BOOTSTRAP``), except the few
top-level ones (``VIGIL_CLUSTER``). The README's configuration table lists them all.

Secrets (SASL password, ClickHouse password, webhook bearer token) are read from files named by
``*_file`` settings or from the environment, and are held in :class:`Secret` so that they never show up
in a ``repr`` or a log line.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints


class Secret(str):
    """A string that hides itself in repr/str-formatting of containers and logs."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


@dataclass(slots=True)
class KafkaSettings:
    bootstrap: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str = "PLAIN"  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str = ""
    sasl_password: Secret = Secret("")
    sasl_password_file: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    topic_prefix: str = "vigil."
    # aiokafka compresses gzip and lz4 at level 9 (~45 and ~96 MB/s on vigil's batches here, most of a core at 10k
    # events/s for gzip); zstd (through cramjam) does ~384 MB/s at twice lz4's ratio. lz4, snappy, gzip and ""
    # (none) are accepted too.
    compression: str = "zstd"
    linger_ms: int = 20
    max_batch_bytes: int = 1_048_576
    max_message_bytes: int = 4_194_304  # the broker's message.max.bytes must allow this
    # Partitions of the topics keyed by pod (raw.<source>, events) and of the stream workers' state and open-alerts
    # changelogs, when vigil creates them: the most stream workers that can share the load. Set it before the
    # topics exist; the changelogs must have as many partitions as the raw topics.
    partitions: int = 6
    # How long a stream worker may go without a heartbeat before Kafka gives its partitions to the others: what a
    # crashed worker's partitions wait (Faust's default, 60 s). Heartbeats come from a thread of their own, every 3 s.
    stream_session_timeout_s: float = 10.0
    # A raw partition this worker holds, with records waiting, whose committed offset has not moved for this long
    # is stalled (while tables are restored: and the restore read nothing for this long): the worker restarts
    # itself (streams/stall.py). 0: never.
    stream_stall_s: float = 60.0
    # Copies of each topic vigil creates (its own and the stream worker's changelog), and how many of them must
    # have a record before a producer's acks=all is answered. 0: from the cluster's size when the topics are
    # created, 3 copies (fewer on a smaller cluster) with all but one in sync, so one broker may fail with
    # nothing lost and writes going on.
    replication_factor: int = 0
    min_insync_replicas: int = 0


@dataclass(slots=True)
class ClickHouseSettings:
    # "embedded": the ClickHouse engine inside this process, under <data_dir>/clickhouse (one process at a time).
    # Several processes (writer, queries, hunts) share a server: http(s)://host:port, e.g. `vigil dev up`'s
    # http://127.0.0.1:8123.
    url: str = "embedded"

    database: str = "vigil"
    username: str = "default"
    password: Secret = Secret("")
    password_file: str = ""
    batch_rows: int = 5000
    batch_seconds: float = 1.0
    retention_days: int = 0  # events TTL in days; 0 keeps them forever
    # Event ids the writer remembers having stored, to drop the copies a stream worker sends again when it
    # reprocesses an uncommitted batch after a rebalance (storage/writer.py); 0 keeps none.
    recent_event_ids: int = 500_000
    analyst_username: str = ""  # vigil query/hunt/alerts connect as this (read-only) user when set
    analyst_password: Secret = Secret("")
    analyst_password_file: str = ""
    # A ClickHouse cluster (a name in the servers' <remote_servers>): tables live as <name>_local on every shard,
    # with Distributed tables under the usual names over them (storage/schema.py). Empty: one server.
    cluster: str = ""
    # Every node's URL (comma-separated), for servers without distributed DDL (no ZooKeeper/Keeper): migrations then
    # run on each node. Empty: migrations run ON CLUSTER through `url`.
    cluster_nodes: str = ""
    replication: bool = False  # Replicated*MergeTree with the servers' {shard}/{replica} macros (needs Keeper)


@dataclass(slots=True)
class CollectorSettings:
    webhook_host: str = "127.0.0.1"
    webhook_port: int = 8765
    tls_certfile: str = ""
    tls_keyfile: str = ""
    client_cafile: str = ""  # set: require a client certificate signed by this CA
    bearer_token: Secret = Secret("")
    bearer_token_file: str = ""
    max_event_bytes: int = 1_048_576
    max_request_bytes: int = 33_554_432
    queue_max_bytes: int = 268_435_456  # in-memory bound on data awaiting Kafka's acknowledgement
    spool_dir: str = ""  # empty: <data_dir>/spool
    spool_max_bytes: int = 1_073_741_824
    checkpoint_dir: str = ""  # empty: <data_dir>/checkpoints


@dataclass(slots=True)
class SiemSettings:
    topic_formats: str = "alerts.ocsf=ocsf,alerts.ecs=ecs,alerts.cef=cef"  # empty: no format topics
    group_id: str = "vigil-siem"
    hec_url: str = ""
    hec_token: Secret = Secret("")
    hec_token_file: str = ""
    hec_format: str = "ocsf"
    hec_batch: int = 100
    hec_cafile: str = ""
    syslog: str = ""  # HOST:PORT
    syslog_tls: bool = False
    syslog_cafile: str = ""


@dataclass(slots=True)
class DetectionsSettings:
    config: str = ""  # detections.toml: engine bounds, per-detection enable/overrides/exceptions
    path: str = ""  # more detection directories (os.pathsep-separated), beside the bundled library, hot-reloaded


@dataclass(slots=True)
class Settings:
    cluster: str = "default"
    node: str = field(default_factory=socket.gethostname)
    data_dir: str = str(Path.home() / ".local" / "share" / "vigil")
    log_level: str = "INFO"
    metrics_port: int = 0  # 0: no /metrics listener (the webhook serves /metrics on its own port)
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, so Prometheus can scrape it
    # The cluster's Service and Pod CIDRs (comma-separated), so a peer's address class can say "service" or "pod"
    # rather than "private" (vigil.addresses); empty: not configured.
    service_cidrs: str = ""
    pod_cidrs: str = ""
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    clickhouse: ClickHouseSettings = field(default_factory=ClickHouseSettings)
    collector: CollectorSettings = field(default_factory=CollectorSettings)
    siem: SiemSettings = field(default_factory=SiemSettings)
    detections: DetectionsSettings = field(default_factory=DetectionsSettings)

    def topic(self, name: str) -> str:
        """The full name of one of vigil's topics (``raw.k8s-audit``, ``events``, ``alerts``, ``deadletter``)."""
        return self.kafka.topic_prefix + name

    @property
    def spool_dir(self) -> Path:
        return Path(self.collector.spool_dir or Path(self.data_dir) / "spool")

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.collector.checkpoint_dir or Path(self.data_dir) / "checkpoints")


_SECTIONS = {"kafka": KafkaSettings, "clickhouse": ClickHouseSettings, "collector": CollectorSettings,
             "siem": SiemSettings, "detections": DetectionsSettings}
_SECRET_FILES = {"sasl_password": "sasl_password_file", "password": "password_file",
                 "bearer_token": "bearer_token_file", "hec_token": "hec_token_file",
                 "analyst_password": "analyst_password_file"}


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the setting and where it came from."""


def load_settings(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Build settings from the config file (``path`` or ``$VIGIL_CONFIG``) and the environment."""
    env = dict(os.environ if env is None else env)
    path = path or env.get("VIGIL_CONFIG")
    file_data: dict[str, Any] = {}
    if path:
        try:
            file_data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    settings = Settings()
    _apply(settings, file_data, env, prefix="VIGIL_")
    for section, cls in _SECTIONS.items():
        sub = getattr(settings, section)
        data = file_data.get(section, {})
        if not isinstance(data, dict):
            raise ConfigError(f"config file section [{section}] must be a table")
        _apply(sub, data, env, prefix=f"VIGIL_{section.upper()}_")
        _read_secret_files(sub, cls)
    return settings


def _apply(target: Any, data: dict[str, Any], env: dict[str, str], prefix: str) -> None:
    hints = get_type_hints(type(target))
    for f in fields(target):
        if f.name in _SECTIONS:
            continue
        raw = env.get(prefix + f.name.upper(), data.get(f.name))
        if raw is None:
            continue
        setattr(target, f.name, _coerce(hints[f.name], raw, prefix + f.name.upper()))


def _coerce(kind: Any, raw: Any, name: str) -> Any:
    try:
        if kind is bool:
            return raw if isinstance(raw, bool) else str(raw).lower() in {"1", "true", "yes", "on"}
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is Secret:
            return Secret(str(raw))
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: expected {kind.__name__}, got {raw!r}") from exc


def _read_secret_files(section: Any, cls: type) -> None:
    for secret, file_field in _SECRET_FILES.items():
        if not hasattr(section, secret) or getattr(section, secret):
            continue
        path = getattr(section, file_field)
        if path:
            try:
                setattr(section, secret, Secret(Path(path).read_text().strip()))
            except OSError as exc:
                raise ConfigError(f"{cls.__name__}.{file_field}: cannot read {path}: {exc}") from exc
