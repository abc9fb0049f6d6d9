"""The ClickHouse schema as numbered migrations, applied once each and recorded in ``schema_migrations``.

Every statement is idempotent on its own (``IF NOT EXISTS``), so a migration interrupted halfway is simply
run again; the version row is written only after all of its statements succeeded. Two writers starting at
once may both apply a migration: the statements tolerate that and ``schema_migrations`` is a
ReplacingMergeTree keyed by version, so the record stays one row per version. A released migration is never
edited: a change to the schema is a new migration appended to :data:`MIGRATIONS`.

The database name is bound as a server-side ``Identifier`` parameter, like every other value vigil sends.
Plain views are the exception: ClickHouse keeps a ``{name:Type}`` in a view's body as a parameter of the
view, so their bodies name tables unqualified, which resolves in the database they are created in.

Two things follow configuration rather than a version, so :func:`migrate` reconciles them on every run:
the events' retention (a TTL) and the writer and analyst roles (where the server has access control).

On a ClickHouse cluster the same migrations are rewritten (:func:`cluster_statements`): each table's rows live in
``<name>_local`` on every shard (``Replicated*`` with the servers' ``{shard}``/``{replica}`` macros when
replication is configured), a ``Distributed`` table under the usual name spreads inserts and gathers reads, and
the materialized views run on each shard, from its local events or alerts into its local rollups. Everything that
reads (queries, hunts, the triage view) names the Distributed tables and so runs unchanged. Events and alerts are
sharded by their pod (cluster, namespace, pod), so a pod's events and alerts share a shard and a per-pod hunt
reads one; rows without a pod spread by their own id. Statements go ``ON CLUSTER`` where the servers run
distributed DDL, else to each node in turn (``cluster_nodes``); each node records its applied versions in its own
``schema_migrations``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vigil.storage.clickhouse import NO_ACCESS_CONTROL, ClickHouseStore, ClusterLayout, StoreError

log = logging.getLogger(__name__)

#: Days events are kept when the configuration says nothing: 0, forever. A TTL also drops events that
#: arrive already older than it (a replay of last year's audit logs), so expiry is something to choose.
DEFAULT_RETENTION_DAYS = 0

#: Where the applied versions are recorded.
MIGRATIONS_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS {db:Identifier}.schema_migrations
(
    version UInt32,
    description String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""

# Events: ReplacingMergeTree whose key ends in event_id. Event ids are deterministic (the same source
# record always yields the same id, and therefore the same time, cluster, namespace, pod and kind), so an
# event delivered twice upstream (a collector retry, a reprocessed stream batch) collapses in merges and
# counts once in FINAL queries. The key starts with what analysts narrow by (cluster, namespace, pod),
# then kind and time, so "what did this pod do" reads a contiguous range.
# non_replicated_deduplication_window makes insert_deduplication_token work on a single server: the
# writer's retry of a batch ClickHouse already took is then dropped instead of doubled.
EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS {db:Identifier}.events
(
    event_id String,
    time DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ingest_time DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    source LowCardinality(String),
    kind LowCardinality(String),
    action LowCardinality(String),
    original_id String,
    cluster LowCardinality(String),
    node LowCardinality(String),
    namespace LowCardinality(String),
    pod String,
    pod_uid String,
    container_id String,
    container_name LowCardinality(String),
    image LowCardinality(String),
    service_account LowCardinality(String),
    labels Map(LowCardinality(String), String),
    actor_user LowCardinality(String),
    actor_user_uid String,
    actor_groups Array(LowCardinality(String)),
    actor_source_ips Array(String),
    actor_user_agent LowCardinality(String),
    actor_impersonated_by LowCardinality(String),
    actor_pid UInt32,
    actor_ppid UInt32,
    actor_uid Int64,
    actor_gid Int64,
    actor_exe LowCardinality(String),
    actor_args Array(String),
    actor_cwd String,
    actor_parent_exe LowCardinality(String),
    target_resource LowCardinality(String),
    target_subresource LowCardinality(String),
    target_api_group LowCardinality(String),
    target_api_version LowCardinality(String),
    target_namespace LowCardinality(String),
    target_name String,
    target_uri String CODEC(ZSTD(1)),
    target_path String,
    target_address String,
    target_port UInt16,
    outcome_result LowCardinality(String),
    outcome_code Int32,
    outcome_reason String,
    raw String CODEC(ZSTD(3)),
    schema_version UInt16,
    INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4,
    INDEX original_id_bloom original_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(time)
ORDER BY (cluster, namespace, pod, kind, time, event_id)
SETTINGS non_replicated_deduplication_window = 10000
"""

# Alerts: one row per alert id; the detection engine re-emits an alert as its lifecycle advances
# (count and last_seen grow), and ReplacingMergeTree(last_seen) keeps the latest state. No partition key:
# alerts are few, and a partition by a time that moves (last_seen) would keep old states from ever being
# replaced.
ALERTS_DDL = """
CREATE TABLE IF NOT EXISTS {db:Identifier}.alerts
(
    id String,
    detection LowCardinality(String),
    title String,
    severity LowCardinality(String),
    time DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    first_seen DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    last_seen DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    count UInt64,
    mitre Array(LowCardinality(String)),
    description String,
    tags Array(LowCardinality(String)),
    cluster LowCardinality(String),
    namespace LowCardinality(String),
    pod String,
    user LowCardinality(String),
    dedup_key String,
    evidence Array(String),
    event_ids Array(String),
    context String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(last_seen)
ORDER BY id
SETTINGS non_replicated_deduplication_window = 10000
"""


# The analysts' side of an alert: its triage history, one row per change, never rewritten, so who
# acknowledged or closed what, and when, stays on record. The current status is the latest row.
ALERT_STATUS_DDL = """
CREATE TABLE IF NOT EXISTS {db:Identifier}.alert_status
(
    alert_id String,
    status LowCardinality(String),
    changed_at DateTime64(3, 'UTC') DEFAULT now64(3),
    changed_by LowCardinality(String),
    note String
)
ENGINE = MergeTree
ORDER BY (alert_id, changed_at)
"""

# Every alert in its latest state, with its triage status. An alert closed and then raised again (its
# last_seen moved past the closing) is new again: the detection saw the behaviour after the analyst's verdict.
ALERT_TRIAGE_VIEW_DDL = """
CREATE VIEW IF NOT EXISTS {db:Identifier}.alert_triage AS
SELECT
    a.*,
    multiIf(s.latest = '', 'new', s.latest = 'closed' AND a.last_seen > s.latest_at, 'new', s.latest) AS status,
    s.latest_at AS status_changed_at,
    s.latest_by AS status_changed_by,
    s.latest_note AS status_note
FROM alerts AS a FINAL
LEFT JOIN
(
    SELECT alert_id, argMax(status, changed_at) AS latest, max(changed_at) AS latest_at,
           argMax(changed_by, changed_at) AS latest_by, argMax(note, changed_at) AS latest_note
    FROM alert_status
    GROUP BY alert_id
) AS s ON s.alert_id = a.id
SETTINGS join_use_nulls = 0
"""

# Rollups, kept up to date by materialized views as rows arrive. They count rows as inserted: an event
# delivered twice by two different paths (not a writer retry, which ClickHouse drops whole) counts twice.
ALERTS_HOURLY_DDL = """
CREATE TABLE IF NOT EXISTS {db:Identifier}.alerts_hourly
(
    hour DateTime('UTC'),
    cluster LowCardinality(String),
    namespace LowCardinality(String),
    detection LowCardinality(String),
    severity LowCardinality(String),
    alerts AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, cluster, namespace, detection, severity)
"""

ALERTS_HOURLY_MV_DDL = """
CREATE MATERIALIZED VIEW IF NOT EXISTS {db:Identifier}.alerts_hourly_mv TO {db:Identifier}.alerts_hourly AS
SELECT toStartOfHour(first_seen) AS hour, cluster, namespace, detection, severity, uniqExactState(id) AS alerts
FROM {db:Identifier}.alerts
GROUP BY hour, cluster, namespace, detection, severity
"""

PROCESS_EXECUTIONS_DDL = """
CREATE TABLE IF NOT EXISTS {db:Identifier}.process_executions
(
    day Date,
    cluster LowCardinality(String),
    namespace LowCardinality(String),
    image LowCardinality(String),
    exe LowCardinality(String),
    executions SimpleAggregateFunction(sum, UInt64),
    first_seen SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    last_seen SimpleAggregateFunction(max, DateTime64(9, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (cluster, image, exe, namespace, day)
"""

PROCESS_EXECUTIONS_MV_DDL = """
CREATE MATERIALIZED VIEW IF NOT EXISTS {db:Identifier}.process_executions_mv TO {db:Identifier}.process_executions AS
SELECT toDate(time) AS day, cluster, namespace, image, actor_exe AS exe,
       count() AS executions, min(time) AS first_seen, max(time) AS last_seen
FROM {db:Identifier}.events
WHERE kind = 'process.exec'
GROUP BY day, cluster, namespace, image, exe
"""

NETWORK_DESTINATIONS_DDL = """
CREATE TABLE IF NOT EXISTS {db:Identifier}.network_destinations
(
    day Date,
    cluster LowCardinality(String),
    namespace LowCardinality(String),
    pod String,
    address String,
    port UInt16,
    connections SimpleAggregateFunction(sum, UInt64),
    first_seen SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    last_seen SimpleAggregateFunction(max, DateTime64(9, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (cluster, namespace, pod, address, port, day)
"""

NETWORK_DESTINATIONS_MV_DDL = """
CREATE MATERIALIZED VIEW IF NOT EXISTS {db:Identifier}.network_destinations_mv
TO {db:Identifier}.network_destinations AS
SELECT toDate(time) AS day, cluster, namespace, pod, target_address AS address, target_port AS port,
       count() AS connections, min(time) AS first_seen, max(time) AS last_seen
FROM {db:Identifier}.events
WHERE kind = 'net.connect'
GROUP BY day, cluster, namespace, pod, address, port
"""


# What each workload was seen doing, the ground for least-privilege profiles (``vigil advise``). A workload
# is the controller that owns the pods, not a pod: a profile is applied to a Deployment's pod template, and
# must hold for every replica, past and future. Kubernetes names a controller's pods after it and stamps
# labels that say which kind of controller made them, so the name is recovered from the pod name with the
# suffix that kind adds (StatefulSet "-<ordinal>", Deployment "-<template hash>-<5 random>", DaemonSet
# "-<5 random>"), and from the job-name label for Jobs (a CronJob's Job also loses its "-<schedule minute>").
# The app.kubernetes.io/name and app labels are not used: they name an application (a Helm chart stamps one
# name on all of its Deployments), not the one controller whose pods share a profile. A pod without those
# labels (the CRI gave none) loses a Deployment-style suffix only when both parts are drawn from the alphabet
# Kubernetes generates names from (no vowels, no 0, 1, 3), and otherwise is its own workload.
# Plain SQL rather than a function: the materialized views below evaluate it as rows arrive.
_NAME_ALPHABET = "[bcdfghjklmnpqrstvwxz2456789]"
WORKLOAD_SQL = f"""multiIf(
    labels['statefulset.kubernetes.io/pod-name'] != '', replaceRegexpOne(pod, '-[0-9]+$', ''),
    labels['batch.kubernetes.io/job-name'] != '',
        replaceRegexpOne(labels['batch.kubernetes.io/job-name'], '-[0-9]{{8,}}$', ''),
    labels['job-name'] != '', replaceRegexpOne(labels['job-name'], '-[0-9]{{8,}}$', ''),
    labels['pod-template-hash'] != '', replaceRegexpOne(pod, '-[a-z0-9]+-[a-z0-9]+$', ''),
    labels['pod-template-generation'] != '', replaceRegexpOne(pod, '-[a-z0-9]+$', ''),
    replaceRegexpOne(pod, '-{_NAME_ALPHABET}{{6,10}}-{_NAME_ALPHABET}{{5}}$', ''))"""

# One row per (workload, container, facet, value, day): facet says what the value is.
#   syscall, capability, arch   from the sensor's per-container aggregation (container.syscalls)
#   exec                        programs run (process.exec)
#   file_read, file_write       paths opened (file.open, by the open flags' access mode; file.write)
#   network                     "<family> <protocol>" of connects, accepts and listens
#   seccomp_denied              syscalls a seccomp filter denied (kernel.seccomp)
# ``count`` is the number of events (for syscalls: flush intervals) the value appeared in.
WORKLOAD_ACTIVITY_DDL = """
CREATE TABLE IF NOT EXISTS {db:Identifier}.workload_activity
(
    day Date,
    cluster LowCardinality(String),
    namespace LowCardinality(String),
    workload String,
    container_name LowCardinality(String),
    facet LowCardinality(String),
    value String,
    count SimpleAggregateFunction(sum, UInt64),
    first_seen SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    last_seen SimpleAggregateFunction(max, DateTime64(9, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (cluster, namespace, workload, container_name, facet, value, day)
"""

WORKLOAD_ACTIVITY_MV_DDL = f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db:Identifier}}.workload_activity_mv
TO {{db:Identifier}}.workload_activity AS
SELECT toDate(time) AS day, cluster, namespace, {WORKLOAD_SQL} AS workload, container_name,
       item.1 AS facet, item.2 AS value, count() AS count, min(time) AS first_seen, max(time) AS last_seen
FROM {{db:Identifier}}.events
ARRAY JOIN multiIf(
    kind = 'container.syscalls', arrayConcat(
        arrayMap(s -> ('syscall', s), JSONExtract(raw, 'syscalls', 'Array(String)')),
        arrayMap(c -> ('capability', c), JSONExtract(raw, 'capabilities', 'Array(String)')),
        [('arch', JSONExtractString(raw, 'arch'))]),
    kind = 'process.exec', [('exec', actor_exe)],
    kind = 'file.open', [(if(bitAnd(JSONExtractUInt(raw, 'flags'), 3) = 0, 'file_read', 'file_write'), target_path)],
    kind = 'file.write', [('file_write', target_path)],
    kind IN ('net.connect', 'net.accept', 'net.listen'),
        [('network', concat(if(JSONExtractString(raw, 'family') != '', JSONExtractString(raw, 'family'),
                                 if(position(target_address, ':') > 0, 'inet6', 'inet')),
                              ' ', target_resource))],
    kind = 'kernel.seccomp' AND outcome_result = 'denied', [('seccomp_denied', target_name)],
    []) AS item
WHERE kind IN ('container.syscalls', 'process.exec', 'file.open', 'file.write', 'net.connect', 'net.accept',
               'net.listen', 'kernel.seccomp')
  AND item.2 != ''
GROUP BY day, cluster, namespace, workload, container_name, facet, value
"""

# How long each workload's containers were watched: the sum of the sensor's flush intervals, so an advice
# can refuse to stand on a few minutes of behaviour. Pods are counted to tell one replica from many.
WORKLOAD_OBSERVATIONS_DDL = """
CREATE TABLE IF NOT EXISTS {db:Identifier}.workload_observations
(
    day Date,
    cluster LowCardinality(String),
    namespace LowCardinality(String),
    workload String,
    container_name LowCardinality(String),
    intervals SimpleAggregateFunction(sum, UInt64),
    observed_seconds SimpleAggregateFunction(sum, Float64),
    pods AggregateFunction(uniq, String),
    first_seen SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    last_seen SimpleAggregateFunction(max, DateTime64(9, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (cluster, namespace, workload, container_name, day)
"""

WORKLOAD_OBSERVATIONS_MV_DDL = f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db:Identifier}}.workload_observations_mv
TO {{db:Identifier}}.workload_observations AS
SELECT toDate(time) AS day, cluster, namespace, {WORKLOAD_SQL} AS workload, container_name,
       count() AS intervals, sum(JSONExtractFloat(raw, 'interval_s')) AS observed_seconds,
       uniqState(pod) AS pods, min(time) AS first_seen, max(time) AS last_seen
FROM {{db:Identifier}}.events
WHERE kind = 'container.syscalls'
GROUP BY day, cluster, namespace, workload, container_name
"""


# Migration 5: the event model's runtime parts as columns analysts filter on (the rest of each part stays queryable
# in the stored event's raw record). Rows stored before read the defaults, which mean "not known" (-1 for ids).
EVENT_MODEL_COLUMNS_DDL = """
ALTER TABLE {db:Identifier}.events
    ADD COLUMN IF NOT EXISTS container_runtime LowCardinality(String),
    ADD COLUMN IF NOT EXISTS actor_euid Int64 DEFAULT -1,
    ADD COLUMN IF NOT EXISTS actor_egid Int64 DEFAULT -1,
    ADD COLUMN IF NOT EXISTS actor_auid Int64 DEFAULT -1,
    ADD COLUMN IF NOT EXISTS actor_tty UInt32,
    ADD COLUMN IF NOT EXISTS actor_container_pid UInt32,
    ADD COLUMN IF NOT EXISTS actor_exe_flags Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS actor_parent_args Array(String),
    ADD COLUMN IF NOT EXISTS actor_grandparent_exe LowCardinality(String),
    ADD COLUMN IF NOT EXISTS actor_token_pod String,
    ADD COLUMN IF NOT EXISTS file_access Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS file_mode Int32 DEFAULT -1,
    ADD COLUMN IF NOT EXISTS file_other_path String,
    ADD COLUMN IF NOT EXISTS network_family LowCardinality(String),
    ADD COLUMN IF NOT EXISTS network_direction LowCardinality(String),
    ADD COLUMN IF NOT EXISTS network_local_address String,
    ADD COLUMN IF NOT EXISTS network_local_port UInt16,
    ADD COLUMN IF NOT EXISTS network_remote_class LowCardinality(String),
    ADD COLUMN IF NOT EXISTS request_decision LowCardinality(String)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events and alerts tables", (EVENTS_DDL, ALERTS_DDL)),
    Migration(2, "alert triage status and view", (ALERT_STATUS_DDL, ALERT_TRIAGE_VIEW_DDL)),
    Migration(3, "rollups: alerts per hour, process executions per image, network destinations per pod",
              (ALERTS_HOURLY_DDL, ALERTS_HOURLY_MV_DDL, PROCESS_EXECUTIONS_DDL, PROCESS_EXECUTIONS_MV_DDL,
               NETWORK_DESTINATIONS_DDL, NETWORK_DESTINATIONS_MV_DDL)),
    Migration(4, "workload activity and observation time, for least-privilege profiles",
              (WORKLOAD_ACTIVITY_DDL, WORKLOAD_ACTIVITY_MV_DDL, WORKLOAD_OBSERVATIONS_DDL,
               WORKLOAD_OBSERVATIONS_MV_DDL)),
    Migration(5, "event model columns: container runtime, process credentials, terminal and lineage, file access, "
                 "network direction and remote class, authorization decision", (EVENT_MODEL_COLUMNS_DDL,)),
)

#: Granted to ``<database>_writer`` and ``<database>_analyst``. The writer inserts (the rollups' views
#: insert as the writer) and reads only which migrations are applied; the analyst reads everything and
#: records triage decisions.
#: Access-control statements take no query parameters, so names are quoted (:func:`quote_identifier`).
#: ``{on}`` is an ``ON CLUSTER`` clause (with a trailing space) when roles are made on a whole cluster at once. On a
#: cluster the writer's and analyst's inserts pass through the Distributed tables into the local ones, so the
#: grants on ``{db}.*`` cover both.
ROLE_GRANTS: dict[str, tuple[str, ...]] = {
    "writer": (
        "GRANT {on}INSERT ON {db}.* TO {role}",
        "GRANT {on}SELECT ON {db}.schema_migrations TO {role}",
    ),
    "analyst": (
        "GRANT {on}SELECT ON {db}.* TO {role}",
        "GRANT {on}INSERT ON {db}.alert_status TO {role}",
        "GRANT {on}INSERT ON {db}.alert_status_local TO {role}",
    ),
}

#: On a cluster, the shard's own table of rows behind the Distributed table ``<name>``.
LOCAL_SUFFIX = "_local"

#: How rows are spread over shards. A pod's events and alerts hash alike, so they share a shard and a per-pod hunt
#: reads one; rows without a pod (API requests about other resources, host processes) spread by their own id. An
#: event's id fixes its pod, so a duplicate lands beside the original and the ReplacingMergeTree still collapses it
#: (the same for an alert's re-emissions). Rollups are only written by their materialized views, on each shard.
SHARDING_KEYS = {
    "events": "cityHash64(cluster, namespace, if(pod != '', pod, event_id))",
    "alerts": "cityHash64(cluster, namespace, if(pod != '', pod, id))",
    "alert_status": "cityHash64(alert_id)",
}
DEFAULT_SHARDING_KEY = "rand()"

#: Where a replicated table keeps its replicas' shared state in ZooKeeper/Keeper: per shard, database and table.
REPLICA_PATH = "/clickhouse/tables/{{shard}}/{{database}}/{table}"

_CREATE_TABLE = re.compile(r"^\s*CREATE TABLE IF NOT EXISTS \{db:Identifier\}\.(\w+)")
_CREATE_VIEW = re.compile(r"^\s*CREATE VIEW IF NOT EXISTS \{db:Identifier\}\.(\w+)")
_CREATE_MV = re.compile(
    r"^\s*CREATE MATERIALIZED VIEW IF NOT EXISTS \{db:Identifier\}\.(\w+)\s+TO \{db:Identifier\}\.(\w+)")
_ALTER_TABLE = re.compile(r"^\s*ALTER TABLE \{db:Identifier\}\.(\w+)")
_FROM_TABLE = re.compile(r"\bFROM \{db:Identifier\}\.(\w+)")
_LEFT_JOIN = re.compile(r"\bLEFT JOIN\b")
_MERGE_TREE = re.compile(r"\bENGINE = (\w*MergeTree)\b(?:\(([^)]*)\))?")


@dataclass(frozen=True, slots=True)
class MigrationState:
    version: int
    description: str
    applied_at: datetime | None  # None: pending


@dataclass(slots=True)
class MigrationReport:
    """What one :func:`migrate` run did, for the operator."""

    applied: list[int] = field(default_factory=list)
    retention_days: int = DEFAULT_RETENTION_DAYS
    retention_changed: bool = False
    roles: list[str] = field(default_factory=list)  # created or confirmed
    roles_skipped: str = ""  # why the server would not have them


def migrate(store: ClickHouseStore, retention_days: int = DEFAULT_RETENTION_DAYS) -> MigrationReport:
    """Apply every pending migration, then bring the events' retention and the roles in line.

    On an up-to-date schema this only reads, unless the retention changed, so a writer holding nothing
    but insert rights can run it at start. On a cluster without distributed DDL this is done on each node in turn
    (every node must answer); ``applied`` then lists the versions applied on any of them.
    """
    cluster = store.cluster
    if cluster is None or not cluster.node_urls:
        if cluster is not None:
            require_distributed_ddl(store)
        return _migrate_one(store, retention_days)
    report = MigrationReport(retention_days=retention_days)
    nodes = store.open_nodes()
    try:
        for node in nodes:
            done = _migrate_one(node, retention_days)
            report.applied = sorted(set(report.applied) | set(done.applied))
            report.retention_changed |= done.retention_changed
            report.roles, report.roles_skipped = done.roles, done.roles_skipped
    finally:
        for node in nodes:
            node.close()
    store.use_database()
    return report


def _migrate_one(store: ClickHouseStore, retention_days: int) -> MigrationReport:
    report = MigrationReport(retention_days=retention_days)
    report.applied = _apply_pending(store)
    report.retention_changed = apply_retention(store, retention_days)
    report.roles, report.roles_skipped = ensure_roles(store)
    return report


def require_distributed_ddl(store: ClickHouseStore) -> None:
    """Refuse ON CLUSTER migrations on servers that cannot run them: distributed DDL needs ZooKeeper or Keeper,
    and ``system.zookeeper`` exists only where one is configured."""
    if not store.query("EXISTS TABLE system.zookeeper").result_rows[0][0]:
        raise StoreError(f"the ClickHouse server has no ZooKeeper or Keeper, so it cannot run ON CLUSTER statements "
                         f"for cluster {store.cluster.name if store.cluster else ''!r}: list every node in "
                         f"VIGIL_CLICKHOUSE_CLUSTER_NODES and migrations run on each")


def _on_cluster(store: ClickHouseStore) -> str:
    """`` ON CLUSTER <name>`` when statements run once for the whole cluster, else nothing."""
    cluster = store.cluster
    return f" ON CLUSTER {quote_identifier(cluster.name)}" if cluster and not cluster.node_urls else ""


def statements_for(migration: Migration, store: ClickHouseStore) -> list[str]:
    """The migration's statements as this store runs them: as written on one server, rewritten on a cluster."""
    if store.cluster is None:
        return list(migration.statements)
    return [rewritten for statement in migration.statements
            for rewritten in cluster_statements(statement, store.cluster, store.database, _on_cluster(store))]


def cluster_statements(sql: str, cluster: ClusterLayout, database: str, on_cluster: str = "") -> list[str]:
    """One migration statement as it runs on a cluster (see the module docstring), ``on_cluster`` after each name.

    Every statement in :data:`MIGRATIONS` has one of the shapes handled here; a new shape raises, so a migration
    added later cannot slip past the cluster layout (a unit test rewrites them all).
    """
    if found := _CREATE_MV.match(sql):
        name, target = found.groups()
        head = (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {{db:Identifier}}.{name}{on_cluster} "
                f"TO {{db:Identifier}}.{target}{LOCAL_SUFFIX}")
        body = _FROM_TABLE.sub(lambda m: f"FROM {{db:Identifier}}.{m.group(1)}{LOCAL_SUFFIX}", sql[found.end():])
        return [head + body]
    if found := _CREATE_VIEW.match(sql):
        # Its body names the Distributed tables; the join's right side is read once and sent to every shard.
        body = _LEFT_JOIN.sub("GLOBAL LEFT JOIN", sql[found.end():])
        return [f"CREATE VIEW IF NOT EXISTS {{db:Identifier}}.{found.group(1)}{on_cluster}{body}"]
    if found := _CREATE_TABLE.match(sql):
        name = found.group(1)
        local = f"{name}{LOCAL_SUFFIX}"
        body = sql[found.end():]
        if cluster.replication:
            body = _MERGE_TREE.sub(lambda m: _replicated(m, local), body, count=1)
        distributed = (
            f"CREATE TABLE IF NOT EXISTS {quote_identifier(database)}.{name}{on_cluster} "
            f"AS {quote_identifier(database)}.{local} ENGINE = Distributed({quote_literal(cluster.name)}, "
            f"{quote_literal(database)}, {quote_literal(local)}, {SHARDING_KEYS.get(name, DEFAULT_SHARDING_KEY)})")
        return [f"CREATE TABLE IF NOT EXISTS {{db:Identifier}}.{local}{on_cluster}{body}", distributed]
    if found := _ALTER_TABLE.match(sql):
        name, body = found.group(1), sql[found.end():]
        return [f"ALTER TABLE {{db:Identifier}}.{table}{on_cluster}{body}" for table in (name + LOCAL_SUFFIX, name)]
    raise ValueError(f"no cluster layout for this statement: {sql.strip()[:80]}")


def _replicated(engine: re.Match[str], table: str) -> str:
    """``ENGINE = XMergeTree(args)`` as ``ReplicatedXMergeTree('<zookeeper path>', '{replica}', args)``."""
    arguments = [quote_literal(REPLICA_PATH.format(table=table)), "'{replica}'"]
    if engine.group(2):
        arguments.append(engine.group(2))
    return f"ENGINE = Replicated{engine.group(1)}({', '.join(arguments)})"


def _apply_pending(store: ClickHouseStore) -> list[int]:
    db = {"db": store.database}
    applied = _applied(store)
    if all(m.version in applied for m in MIGRATIONS):
        return []
    on_cluster = _on_cluster(store)
    store.create_database(on_cluster)
    store.command(MIGRATIONS_TABLE_DDL.replace(".schema_migrations", f".schema_migrations{on_cluster}", 1), db)
    newly_applied = []
    for migration in MIGRATIONS:
        if migration.version in applied:
            continue
        for statement in statements_for(migration, store):
            store.command(statement, db)
        store.command(
            "INSERT INTO {db:Identifier}.schema_migrations (version, description) "
            "VALUES ({version:UInt32}, {description:String})",
            db | {"version": migration.version, "description": migration.description},
        )
        newly_applied.append(migration.version)
    return newly_applied


def apply_retention(store: ClickHouseStore, days: int) -> bool:
    """Keep events ``days`` days (0: forever); True if the table's TTL had to change.

    Expired events leave a whole day's part at a time (``ttl_only_drop_parts``), never by rewriting
    parts row by row. Alerts and rollups are kept: they are small, and they are the record of what happened.
    """
    if days < 0:
        raise StoreError(f"retention must be 0 (keep forever) or a number of days, not {days}")
    table = "events" + (LOCAL_SUFFIX if store.cluster else "")  # on a cluster: each shard's own rows
    db = {"db": store.database, "table": table}
    engine = store.query("SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {table:String}",
                         db).result_rows[0][0]
    found = re.search(r"TTL toDateTime\(time\) \+ toIntervalDay\((\d+)\)", engine)
    current = int(found.group(1)) if found else 0
    if current == days:
        return False
    alter = f"ALTER TABLE {{db:Identifier}}.{table}{_on_cluster(store)}"
    if days == 0:
        store.command(f"{alter} REMOVE TTL", db)
    else:
        store.command(f"{alter} MODIFY SETTING ttl_only_drop_parts = 1", db)
        # A literal, not a parameter: the server would store the TTL as a cast of the bound value, which
        # system.tables then shows in a form that no longer reads as "N days". days is a checked int.
        store.command(f"{alter} MODIFY TTL toDateTime(time) + toIntervalDay({int(days)})", db)
    log.info("events retention changed", extra={"from_days": current, "to_days": days})
    return True


def ensure_roles(store: ClickHouseStore) -> tuple[list[str], str]:
    """Create ``<database>_writer`` and ``<database>_analyst`` with their grants, where the server allows.

    Returns the roles, or no roles and why not: the embedded engine (and the dev server built on it) keeps
    no roles (its user directory is users.xml only), and a user without ``access_management`` may not
    create them; neither is an error, the schema works the same without roles.
    """
    roles = []
    on_cluster = _on_cluster(store)
    for name, grants in ROLE_GRANTS.items():
        if store.cluster is None:
            grants = tuple(g for g in grants if LOCAL_SUFFIX not in g)
        role = f"{store.database}_{name}"
        names = {"db": quote_identifier(store.database), "role": quote_identifier(role),
                 "on": on_cluster.strip() + " " if on_cluster else ""}
        try:
            store.command("CREATE ROLE IF NOT EXISTS {role}{on_cluster}".format(on_cluster=on_cluster, **names))
        except StoreError as exc:
            if exc.code not in NO_ACCESS_CONTROL:
                raise
            return [], str(exc)
        for grant in grants:
            store.command(grant.format(**names))
        roles.append(role)
    return roles, ""


def quote_identifier(name: str) -> str:
    """A name as a ClickHouse back-quoted identifier, with backslashes and back quotes escaped."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_literal(text: str) -> str:
    """Text as a ClickHouse string literal, for where the server takes no parameters (table engine arguments)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def status(store: ClickHouseStore) -> list[MigrationState]:
    """Every known migration with when it was applied; reads only, so it is safe on a fresh server.

    On a cluster migrated node by node, a migration counts as applied once every node has it (when the last did),
    and as pending while any node lacks it.
    """
    nodes = store.open_nodes()
    try:
        per_node = [_applied(node) for node in nodes] or [_applied(store)]
    finally:
        for node in nodes:
            node.close()
    return [MigrationState(m.version, m.description, _applied_everywhere(per_node, m.version)) for m in MIGRATIONS]


def _applied_everywhere(per_node: list[dict[int, datetime]], version: int) -> datetime | None:
    times = [applied[version] for applied in per_node if version in applied]
    return max(times) if len(times) == len(per_node) else None


def _applied(store: ClickHouseStore) -> dict[int, datetime]:
    db = {"db": store.database}
    if not store.query("EXISTS TABLE {db:Identifier}.schema_migrations", db).result_rows[0][0]:
        return {}
    rows = store.query(
        "SELECT version, min(applied_at) FROM {db:Identifier}.schema_migrations GROUP BY version", db
    ).result_rows
    # The column is UTC; the client returns it naive or zoned depending on the server's time zone.
    return {version: (at if at.tzinfo else at.replace(tzinfo=UTC)) for version, at in rows}
