"""docker-compose.yml cannot run here (no Docker), so its wiring is checked as data: the services, what
they wait for, the ports, the Kafka KRaft settings, the environment that joins vigil to both stores, the
node collector's host access, and the monitoring: Prometheus scrapes every component where it serves
/metrics, and the Grafana dashboard and alert rules only query metrics vigil defines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import known_variables, parse_vigil_command, unknown_metrics, vigil_command_error
from vigil.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
VIGIL_COMMANDS = {
    "audit-webhook": ["vigil", "collect", "audit", "--webhook"],
    "node-collector": ["vigil", "collect", "node", "--no-kube-api", "--no-kernel-audit", "--containerd-address",
                       "/run/containerd/containerd.sock"],
    "stream-worker-1": ["vigil", "stream", "worker"],
    "stream-worker-2": ["vigil", "stream", "worker"],
    "storage-writer": ["vigil", "store"],
    "siem-publisher": ["vigil", "siem", "publish"],
}
NODE_HOST_MOUNTS = {"/sys/kernel/btf", "/sys/fs/cgroup", "/sys/kernel/tracing", "/run/containerd/containerd.sock"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _settings(service: dict[str, Any]) -> Settings:
    return load_settings(env={k: str(v) for k, v in service["environment"].items()})


def test_the_stores_and_monitoring_come_from_their_official_images(services):
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:v")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


def test_vigils_components_are_built_from_the_repository_and_run_real_commands(services):
    vigil_services = {name for name, service in services.items() if "build" in service}
    assert vigil_services == set(VIGIL_COMMANDS)
    for name, command in VIGIL_COMMANDS.items():
        assert services[name]["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name
        assert services[name]["command"] == command
        assert vigil_command_error(command) is None, vigil_command_error(command)


def test_every_dependency_exists_and_is_awaited_until_healthy(services):
    for name, service in services.items():
        for target, condition in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on a service that is not defined: {target}"
            assert condition == {"condition": "service_healthy"}, name
            assert "healthcheck" in services[target], f"{name} waits on {target}, which has no healthcheck"
    assert set(services["storage-writer"]["depends_on"]) == {"kafka", "clickhouse"}
    for name in ("audit-webhook", "node-collector", "stream-worker-1", "stream-worker-2", "siem-publisher"):
        assert set(services[name]["depends_on"]) == {"kafka"}, name
    assert set(services["grafana"]["depends_on"]) == {"prometheus"}


def test_every_service_has_a_healthcheck_command(services):
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name


def test_components_check_their_health_where_they_serve_metrics(services):
    for name in VIGIL_COMMANDS:
        settings = _settings(services[name])
        port = settings.collector.webhook_port if name == "audit-webhook" else settings.metrics_port
        path = "/healthz" if name == "audit-webhook" else "/metrics"
        assert f"http://127.0.0.1:{port}{path}" in " ".join(services[name]["healthcheck"]["test"]), name


def test_published_ports_are_distinct_and_local(services):
    published = [_parse_port(mapping) for service in services.values() for mapping in service.get("ports", [])]
    host_ports = [host_port for _, host_port, _ in published]
    assert len(host_ports) == len(set(host_ports))
    assert {ip for ip, _, _ in published} == {"127.0.0.1"}
    assert {(host, container) for _, host, container in published} >= {
        (9092, 9092), (8123, 8123), (8765, 8765), (9090, 9090), (3000, 3000)}


def test_named_volumes_are_declared_and_each_component_has_its_own(compose, services):
    declared = set(compose["volumes"])
    data_volumes = []
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if not source.startswith(("/", ".")):
                assert source in declared, f"{name} mounts an undeclared volume {source}"
            if target == "/var/lib/vigil":
                data_volumes.append(source)
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
    assert len(data_volumes) == len(set(data_volumes)) == len(VIGIL_COMMANDS)  # spools are per process


def test_kafka_is_one_kraft_node_whose_listeners_are_consistent(services):
    env = services["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    protocols = dict(pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    assert listeners.keys() <= protocols.keys() and advertised.keys() <= listeners.keys()
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    voter_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert int(voter_id) == env["KAFKA_NODE_ID"]
    assert voter.rpartition(":")[2] == listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]].rpartition(":")[2]
    assert advertised["PLAINTEXT_HOST"].endswith(":9092")
    for key, value in env.items():
        if key.endswith(("REPLICATION_FACTOR", "MIN_ISR", "MIN_INSYNC_REPLICAS")):
            assert value == 1, key
    max_message = Settings().kafka.max_message_bytes
    assert env["KAFKA_MESSAGE_MAX_BYTES"] >= max_message
    assert env["KAFKA_REPLICA_FETCH_MAX_BYTES"] >= max_message


def test_vigil_reaches_kafka_and_clickhouse_through_their_service_names(services):
    kafka_env = services["kafka"]["environment"]
    in_network = _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])[kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    clickhouse_env = services["clickhouse"]["environment"]
    for name in VIGIL_COMMANDS:
        settings = _settings(services[name])
        assert settings.kafka.bootstrap == in_network, name
        assert settings.clickhouse.url == "http://clickhouse:8123", name
        assert settings.clickhouse.username == clickhouse_env["CLICKHOUSE_USER"], name
        assert services[name]["environment"]["VIGIL_CLICKHOUSE_PASSWORD"] == clickhouse_env["CLICKHOUSE_PASSWORD"]
        assert settings.clickhouse.database == clickhouse_env["CLICKHOUSE_DB"], name


def test_vigil_environment_names_are_real_settings(services):
    for name in VIGIL_COMMANDS:
        unknown = {key for key in services[name]["environment"] if key.startswith("VIGIL_")} - known_variables()
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"


def test_the_webhook_listens_on_the_port_it_publishes(services):
    webhook = services["audit-webhook"]
    settings = _settings(webhook)
    assert settings.collector.webhook_host == "0.0.0.0"
    assert (8765, settings.collector.webhook_port) in {(h, c) for _, h, c in map(_parse_port, webhook["ports"])}


def test_the_node_collector_gets_the_host_it_observes(services):
    node = services["node-collector"]
    assert node["privileged"] is True and node["pid"] == "host" and node["cgroup"] == "host"
    assert node["user"] == "0:0"  # containerd's socket is root-only
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in node["volumes"]}
    assert {target: mounts.get(target) for target in NODE_HOST_MOUNTS} == {path: path for path in NODE_HOST_MOUNTS}
    args = parse_vigil_command(node["command"])
    assert args.containerd_address in mounts and not args.kube_api  # no Kubernetes API next to compose
    assert mounts[node["environment"]["VIGIL_CACHE_DIR"]].startswith("node-collector")  # compiled once per kernel


def test_two_stream_workers_share_one_consumer_group(services):
    first, second = services["stream-worker-1"], services["stream-worker-2"]
    assert first["environment"] == second["environment"]  # same prefix: same Faust app id, so one group
    assert first["volumes"] != second["volumes"]


def test_prometheus_scrapes_every_component_where_it_serves_metrics(services):
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {target for job in config["scrape_configs"] for static in job["static_configs"]
               for target in static["targets"]}
    expected = set()
    for name in VIGIL_COMMANDS:
        settings = _settings(services[name])
        if name == "audit-webhook":
            expected.add(f"{name}:{settings.collector.webhook_port}")
        else:
            assert settings.metrics_port and settings.metrics_host == "0.0.0.0", name
            expected.add(f"{name}:{settings.metrics_port}")
    assert expected <= targets
    for target in targets - expected:
        assert target.partition(":")[0] in services or target.startswith("localhost:"), target
    prometheus_mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in services["prometheus"]["volumes"]}
    for rule_file in config["rule_files"]:
        assert (ROOT / prometheus_mounts[rule_file]).is_file(), rule_file


def test_alert_rules_query_metrics_vigil_defines():
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    assert {"VigilRecordsDropped", "VigilConsumerLag", "VigilNoData"} <= set(names)
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert not unknown_metrics(rule["expr"]), (rule["alert"], unknown_metrics(rule["expr"]))


def test_grafana_is_provisioned_with_the_dashboard_over_prometheus(services):
    grafana_mounts = {volume.split(":")[1]: ROOT / volume.split(":")[0] for volume in services["grafana"]["volumes"]
                      if volume.startswith("./")}
    provisioning = grafana_mounts["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "vigil.yml").read_text())["providers"][0]
    dashboards = grafana_mounts[provider["options"]["path"]]
    dashboard = json.loads((dashboards / "vigil.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_dashboard_shows_ingest_drops_lag_and_alerts_by_severity_from_real_metrics():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "vigil.json").read_text())
    queries = {panel["title"]: [target["expr"] for target in panel["targets"]] for panel in dashboard["panels"]}
    for title, exprs in queries.items():
        for expr in exprs:
            assert not unknown_metrics(expr), (title, unknown_metrics(expr))
    every_query = " ".join(expr for exprs in queries.values() for expr in exprs)
    for needed in ("vigil_records_received_total", "vigil_records_dropped_total", "vigil_consumer_lag_records",
                   "sum by (severity) (increase(vigil_alerts_total"):
        assert needed in every_query, needed
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def _parse_port(mapping: str) -> tuple[str, int, int]:
    ip, host_port, container_port = mapping.split(":")
    return ip, int(host_port), int(container_port)


def _listeners(value: str) -> dict[str, str]:
    """``"A://h:1,B://:2"`` -> ``{"A": "h:1", "B": ":2"}``."""
    return dict(item.split("://") for item in value.split(","))
