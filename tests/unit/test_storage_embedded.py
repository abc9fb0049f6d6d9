"""The embedded ClickHouse (chdb, for real) is not bricked by one table: ``vigil query`` refuses table engines it
cannot run, and at start a table that would stop the data directory from opening is set aside and reported.

Each ``vigil`` command runs as its own process on a data directory of the test's own, as a user runs it (the
embedded engine is the default when ``VIGIL_CLICKHOUSE_URL`` is unset). The broken directories are made for real:
by the statement the issue is about, sent to chdb directly, and by a table whose metadata no longer loads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from vigil.storage import embedded

VIGIL = str(Path(sys.executable).with_name("vigil"))
KAFKA_TABLE = ("CREATE TABLE vigil.from_kafka (line String) ENGINE = Kafka SETTINGS "
               "kafka_broker_list = '127.0.0.1:1', kafka_topic_list = 'x', kafka_group_name = 'g', "
               "kafka_format = 'JSONEachRow'")


def _vigil(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {"VIGIL_DATA_DIR": str(data_dir)}
    return subprocess.run([VIGIL, *args], env=env, capture_output=True, text=True, timeout=300, check=False)


def _chdb(data_dir: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Python on chdb directly (no vigil in between), in a process of its own: how a directory gets broken."""
    prelude = f"import clickhouse_connect\nclient = clickhouse_connect.get_client(dsn='chdb://{data_dir}')\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=300, check=False)


def _logs(stderr: str) -> list[dict]:
    return [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    """A data dir whose embedded engine holds vigil's schema and one stored alert status row."""
    result = _vigil(tmp_path, "storage", "migrate")
    assert result.returncode == 0, result.stderr
    return tmp_path


def test_a_kafka_table_is_refused_and_the_directory_keeps_opening(migrated):
    disguised = KAFKA_TABLE.lower().replace("engine = kafka", "ENGINE=`Kafka`")
    refused = _vigil(migrated, "query", f"/* a comment */ {disguised}")
    assert refused.returncode == 1
    assert "ENGINE = Kafka is refused on the embedded ClickHouse" in refused.stderr
    assert "VIGIL_CLICKHOUSE_URL" in refused.stderr  # says what to do instead
    after = _vigil(migrated, "query", "SELECT count() AS n FROM system.tables WHERE name = 'from_kafka'",
                   "--format", "json")
    assert after.returncode == 0, after.stderr
    assert orjson.loads(after.stdout.splitlines()[0])["n"] in (0, "0")


def test_a_bricking_kafka_table_is_set_aside_at_start(migrated):
    clickhouse = migrated / "clickhouse"
    created = _chdb(clickhouse, f"client.command({KAFKA_TABLE!r})")
    assert "Shutdown was called" in created.stderr  # chdb fails the CREATE, and keeps the metadata
    bricked = _chdb(clickhouse, "client.query('SELECT 1')")
    assert bricked.returncode != 0 and "Error initializing EmbeddedServer" in bricked.stderr

    result = _vigil(migrated, "query", "SELECT count() FROM vigil.events")
    assert result.returncode == 0, result.stderr
    (report,) = [r for r in _logs(result.stderr) if r["msg"] == "embedded ClickHouse: table set aside"]
    assert (report["level"], report["database"], report["table"]) == ("warning", "vigil", "from_kafka")
    assert report["reason"].startswith("ENGINE = Kafka")
    assert Path(report["metadata"]).is_file()
    status = _vigil(migrated, "storage", "status")
    assert status.returncode == 0, status.stderr
    assert f"set aside (the embedded engine could not load it): {report['metadata']}" in status.stdout
    assert _chdb(clickhouse, "client.query('SELECT 1')").returncode == 0  # the directory opens for anyone again


def test_a_table_that_no_longer_loads_is_found_from_the_engines_report(migrated):
    """Not an engine vigil knows about: the engine's own report at start names the table."""
    clickhouse = migrated / "clickhouse"
    made = _chdb(clickhouse, "client.command('CREATE TABLE vigil.notes (x UInt8) ENGINE = MergeTree ORDER BY x')")
    assert made.returncode == 0, made.stderr
    (metadata,) = (clickhouse / "metadata" / "vigil").glob("notes.sql")
    metadata.write_text(metadata.read_text().replace("ORDER BY x", "ORDER BY missing_column"))
    assert _chdb(clickhouse, "client.query('SELECT 1')").returncode != 0

    result = _vigil(migrated, "query", "SELECT count() FROM vigil.alerts", "--format", "json")
    assert result.returncode == 0, result.stderr
    (report,) = [r for r in _logs(result.stderr) if r["msg"] == "embedded ClickHouse: table set aside"]
    assert (report["database"], report["table"]) == ("vigil", "notes")
    assert "missing_column" in report["reason"]
    assert not metadata.exists() and Path(report["metadata"]).is_file()


def test_a_broken_database_fails_as_before_with_nothing_set_aside(migrated):
    """Setting aside is for tables: any other failure to open (here, the database's own metadata is damaged) is
    reported with the engine's error, and nothing is moved."""
    clickhouse = migrated / "clickhouse"
    (clickhouse / "metadata" / "vigil.sql").write_text("ATTACH DATABASE _ ENGINE = NoSuchEngine\n")
    result = _vigil(migrated, "query", "SELECT 1")
    assert result.returncode == 1
    assert "vigil query: cannot open the embedded ClickHouse" in result.stderr
    assert not embedded.set_aside_dir(clickhouse).exists()


@pytest.mark.parametrize("sql", [
    KAFKA_TABLE,
    "create table t (x String) engine=kafka settings kafka_broker_list='b'",
    "-- note\nATTACH TABLE t (x String) ENGINE = Kafka('b', 't', 'g', 'JSONEachRow')",
    "CREATE OR REPLACE TABLE t (x String) ENGINE = `Kafka` SETTINGS kafka_broker_list = 'b'",
])
def test_unrunnable_engines_are_refused_however_written(sql):
    with pytest.raises(embedded.UnrunnableEngine, match="refused on the embedded ClickHouse"):
        embedded.refuse_unrunnable(sql)


@pytest.mark.parametrize("sql", [
    "SELECT 'ENGINE = Kafka' AS text",
    "CREATE TABLE t (x String) ENGINE = MergeTree ORDER BY x",
    "SELECT engine FROM system.tables WHERE engine = 'Kafka'",
])
def test_other_statements_pass(sql):
    embedded.refuse_unrunnable(sql)
