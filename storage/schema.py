"""The ClickHouse schema as numbered migrations, applied once each and recorded in ``schema_migrations``.

Every statement is idempotent on its own (``IF NOT EXISTS``), so a migration interrupted halfway is simply
run again; the version row is written only after all of its statements succeeded. Two writers starting at
once may both apply a migration: the statements tolerate that and ``schema_migrations`` is a
ReplacingMergeTree keyed by version, so the record stays one row per version. A released migration is never
edited: a change to the schema is a new migration appended to :data:`MIGRATIONS`.

The database name is bound as a server-side ``Identifier`` parameter, like every other value vigil sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from storage.clickhouse import ClickHouseStore

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


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events and alerts tables", (EVENTS_DDL, ALERTS_DDL)),
)


@dataclass(frozen=True, slots=True)
class MigrationState:
    version: int
    description: str
    applied_at: datetime | None  # None: pending


def migrate(store: ClickHouseStore) -> list[int]:
    """Create the database and apply every pending migration; returns the versions applied now."""
    db = {"db": store.database}
    store.create_database()
    store.command(MIGRATIONS_TABLE_DDL, db)
    applied = _applied(store)
    newly_applied = []
    for migration in MIGRATIONS:
        if migration.version in applied:
            continue
        for statement in migration.statements:
            store.command(statement, db)
        store.command(
            "INSERT INTO {db:Identifier}.schema_migrations (version, description) "
            "VALUES ({version:UInt32}, {description:String})",
            db | {"version": migration.version, "description": migration.description},
        )
        newly_applied.append(migration.version)
    return newly_applied


def status(store: ClickHouseStore) -> list[MigrationState]:
    """Every known migration with when it was applied; reads only, so it is safe on a fresh server."""
    applied = _applied(store)
    return [
        MigrationState(m.version, m.description, applied.get(m.version)) for m in MIGRATIONS
    ]


def _applied(store: ClickHouseStore) -> dict[int, datetime]:
    db = {"db": store.database}
    if not store.query("EXISTS TABLE {db:Identifier}.schema_migrations", db).result_rows[0][0]:
        return {}
    rows = store.query(
        "SELECT version, min(applied_at) FROM {db:Identifier}.schema_migrations GROUP BY version", db
    ).result_rows
    # The column is UTC; the client returns it naive or zoned depending on the server's time zone.
    return {version: (at if at.tzinfo else at.replace(tzinfo=UTC)) for version, at in rows}
