"""The migrations as they run on a ClickHouse cluster: every statement rewritten, and every rewrite one the engine
parses (the statements themselves run on real servers in tests/integration/test_storage_cluster.py)."""

from __future__ import annotations

import re

import pytest

from vigil.config import ClickHouseSettings, load_settings
from vigil.storage.clickhouse import ClusterLayout, StoreError, connect
from vigil.storage.schema import MIGRATIONS, SHARDING_KEYS, cluster_statements

ON_CLUSTER = " ON CLUSTER `prod`"


def rewritten(cluster: ClusterLayout, on_cluster: str = "") -> list[str]:
    return [statement for migration in MIGRATIONS for original in migration.statements
            for statement in cluster_statements(original, cluster, "vigil", on_cluster)]


def test_every_table_becomes_a_local_table_on_each_shard_and_a_distributed_one_over_them() -> None:
    statements = rewritten(ClusterLayout("prod"))
    created = re.findall(r"CREATE TABLE IF NOT EXISTS \{db:Identifier\}\.(\w+)", "\n".join(statements))
    distributed = re.findall(r"CREATE TABLE IF NOT EXISTS `vigil`\.(\w+) AS `vigil`\.(\w+) ENGINE = Distributed\("
                             r"'prod', 'vigil', '(\w+)'", "\n".join(statements))
    assert created and all(name.endswith("_local") for name in created)
    assert sorted(f"{name}_local" for name, _, _ in distributed) == sorted(created)
    assert all(local == table == f"{name}_local" for name, local, table in distributed)


def test_views_run_per_shard_on_local_tables_and_the_triage_view_reads_the_whole_cluster() -> None:
    statements = rewritten(ClusterLayout("prod"))
    views = [s for s in statements if "MATERIALIZED VIEW" in s]
    assert len(views) == 5
    for view in views:
        found = re.search(r" TO \{db:Identifier\}\.(\w+) AS.*FROM \{db:Identifier\}\.(\w+)", view, re.S)
        target, source = found.groups()
        assert target.endswith("_local") and source in ("events_local", "alerts_local")
    triage = next(s for s in statements if "CREATE VIEW" in s)
    assert "GLOBAL LEFT JOIN" in triage and "FROM alerts AS a FINAL" in triage


def test_the_new_columns_go_to_the_local_and_the_distributed_events() -> None:
    alters = [s for s in rewritten(ClusterLayout("prod")) if s.startswith("ALTER")]
    assert [s.split()[2] for s in alters] == ["{db:Identifier}.events_local", "{db:Identifier}.events"]


def test_events_and_alerts_of_one_pod_hash_alike() -> None:
    assert SHARDING_KEYS["events"].replace("event_id", "id") == SHARDING_KEYS["alerts"]
    assert "cluster, namespace, if(pod != ''" in SHARDING_KEYS["events"]


def test_replication_makes_every_local_table_replicated_with_the_shard_and_replica_macros() -> None:
    statements = rewritten(ClusterLayout("prod", replication=True))
    engines = re.findall(r"ENGINE = (\w+)\(('[^']*', '[^']*')?(?:, )?([^)]*)\)", "\n".join(statements))
    local = [engine for engine in engines if engine[0] != "Distributed"]
    assert len(local) == 8 and all(name.startswith("Replicated") for name, _, _ in local)
    alerts = next(s for s in statements if "alerts_local ON" in s or "alerts_local\n" in s)
    assert ("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/alerts_local', "
            "'{replica}', last_seen)") in alerts
    status = next(s for s in statements if ".alert_status_local" in s and "CREATE TABLE" in s)
    assert "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/alert_status_local', '{replica}')" in status


@pytest.mark.parametrize("replication", [False, True])
def test_the_engine_parses_every_on_cluster_statement(replication: bool) -> None:
    """ON CLUSTER needs ZooKeeper to run, which no server here has; the engine's parser checks the text."""
    store = connect(ClickHouseSettings(url="chdb://memory", database="parse_check"))
    try:
        for statement in rewritten(ClusterLayout("prod", replication=replication), ON_CLUSTER):
            text = statement.replace("{db:Identifier}", "`vigil`")
            formatted = store.query("SELECT formatQuery({sql:String})", {"sql": text}).result_rows[0][0]
            assert "ON CLUSTER prod" in formatted
    finally:
        store.close()


def test_a_statement_of_a_new_shape_is_refused_rather_than_left_on_one_shard() -> None:
    with pytest.raises(ValueError, match="no cluster layout"):
        cluster_statements("CREATE DICTIONARY {db:Identifier}.d (k UInt64) PRIMARY KEY k", ClusterLayout("c"), "v")


def test_cluster_settings_come_from_the_environment() -> None:
    settings = load_settings(env={"VIGIL_CLICKHOUSE_CLUSTER": "prod", "VIGIL_CLICKHOUSE_REPLICATION": "true",
                                  "VIGIL_CLICKHOUSE_CLUSTER_NODES": "http://a:8123/, http://b:8123"})
    assert ClusterLayout.from_settings(settings.clickhouse) == ClusterLayout(
        "prod", True, ("http://a:8123", "http://b:8123"))
    assert ClusterLayout.from_settings(ClickHouseSettings()) is None


def test_cluster_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(StoreError, match="need a cluster name"):
        ClusterLayout.from_settings(ClickHouseSettings(replication=True))
    with pytest.raises(StoreError, match="needs a server URL"):
        connect(ClickHouseSettings(url="chdb://memory", cluster="prod"))
