"""`vigil dev up --clickhouse-shards N`: where each server listens and lives, and the cluster its config names (the
servers themselves run in tests/integration/test_storage_cluster.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vigil.config import ClickHouseSettings, Settings
from vigil.devstack.clickhouse import choose_shard_count, clickhouse_servers, cluster_environment
from vigil.devstack.clickhouse_server import ClusterConfig, write_config
from vigil.devstack.errors import DevStackError


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("VIGIL_DEV_CLICKHOUSE_TCP_PORT", "9500")
    return Settings(clickhouse=ClickHouseSettings(url="http://127.0.0.1:8500"))


def test_shards_listen_on_consecutive_ports_each_in_a_directory_of_its_own(settings: Settings, tmp_path: Path) -> None:
    servers = clickhouse_servers(settings, tmp_path, 3)
    assert [(s.name, s.url, s.ports, s.home.name) for s in servers] == [
        ("clickhouse", "http://127.0.0.1:8500", (8500, 9500), "clickhouse"),
        ("clickhouse-2", "http://127.0.0.1:8501", (8501, 9501), "clickhouse-2"),
        ("clickhouse-3", "http://127.0.0.1:8502", (8502, 9502), "clickhouse-3")]
    assert all(s.cluster == "vigil" and s.shard_tcp_ports == (9500, 9501, 9502) for s in servers)
    assert len({s.process.pid_file for s in servers if s.process}) == 3
    assert cluster_environment(servers) == {"VIGIL_CLICKHOUSE_CLUSTER": "vigil",
                                            "VIGIL_CLICKHOUSE_CLUSTER_NODES": "http://127.0.0.1:8500,"
                                                                              "http://127.0.0.1:8501,"
                                                                              "http://127.0.0.1:8502"}


def test_one_server_is_no_cluster(settings: Settings, tmp_path: Path) -> None:
    (server,) = clickhouse_servers(settings, tmp_path)
    assert server.cluster == "" and server.shard_tcp_ports == () and cluster_environment([server]) == {}


def test_the_shard_count_is_kept_for_later_starts_of_the_run_dir(settings: Settings, tmp_path: Path) -> None:
    choose_shard_count(settings, tmp_path, 2)
    assert [s.name for s in clickhouse_servers(settings, tmp_path)] == ["clickhouse", "clickhouse-2"]
    with pytest.raises(DevStackError, match="at least 1"):
        choose_shard_count(settings, tmp_path, 0)


def test_the_cluster_name_follows_the_settings(settings: Settings, tmp_path: Path) -> None:
    settings.clickhouse.cluster = "analytics"
    assert {s.cluster for s in clickhouse_servers(settings, tmp_path, 2)} == {"analytics"}


def test_the_config_lists_every_shard_and_the_zookeeper_and_macros(tmp_path: Path) -> None:
    write_config(tmp_path / "config.xml", 8500, 9500,
                 ClusterConfig("vigil", (9500, 9501), "127.0.0.1:2181", (("shard", "01"), ("replica", "r1"))))
    root = ET.parse(tmp_path / "config.xml").getroot()
    shards = root.findall("remote_servers/vigil/shard/replica")
    assert [(r.findtext("host"), r.findtext("port")) for r in shards] == [("127.0.0.1", "9500"), ("127.0.0.1", "9501")]
    assert (root.findtext("zookeeper/node/host"), root.findtext("zookeeper/node/port")) == ("127.0.0.1", "2181")
    assert (root.findtext("macros/shard"), root.findtext("macros/replica")) == ("01", "r1")
    assert root.findtext("tcp_port") == "9500" and root.findtext("keep_alive_timeout") == "1"
