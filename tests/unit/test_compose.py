"""docker-compose.yml cannot run here (no Docker), so its wiring is checked as data: the services, what
they wait for, the ports, the Kafka KRaft settings and the environment that joins vigil to both stores."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigil.config import Settings, load_settings

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
VIGIL_COMMANDS = {
    "audit-webhook": ["vigil", "collect", "audit", "--webhook"],
    "stream-worker": ["vigil", "stream", "worker"],
    "storage-writer": ["vigil", "store"],
}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def test_the_stores_come_from_their_official_images(services):
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")


def test_vigils_components_are_built_from_the_repository_and_run_their_commands(services):
    for name, command in VIGIL_COMMANDS.items():
        assert services[name]["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name
        assert services[name]["command"] == command


def test_every_dependency_exists_and_is_awaited_until_healthy(services):
    for name, service in services.items():
        for target, condition in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on a service that is not defined: {target}"
            assert condition == {"condition": "service_healthy"}, name
            assert "healthcheck" in services[target], f"{name} waits on {target}, which has no healthcheck"
    assert set(services["storage-writer"]["depends_on"]) == {"kafka", "clickhouse"}
    assert set(services["stream-worker"]["depends_on"]) == {"kafka"}
    assert set(services["audit-webhook"]["depends_on"]) == {"kafka"}


def test_every_service_has_a_healthcheck_command(services):
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name


def test_published_ports_are_distinct_and_local(services):
    published = [_parse_port(mapping) for service in services.values() for mapping in service.get("ports", [])]
    host_ports = [host_port for _, host_port, _ in published]
    assert len(host_ports) == len(set(host_ports))
    assert {ip for ip, _, _ in published} == {"127.0.0.1"}
    assert {(host, container) for _, host, container in published} >= {(9092, 9092), (8123, 8123), (8765, 8765)}


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
        settings = load_settings(env={k: str(v) for k, v in services[name]["environment"].items()})
        assert settings.kafka.bootstrap == in_network, name
        assert settings.clickhouse.url == "http://clickhouse:8123", name
        assert settings.clickhouse.username == clickhouse_env["CLICKHOUSE_USER"], name
        assert services[name]["environment"]["VIGIL_CLICKHOUSE_PASSWORD"] == clickhouse_env["CLICKHOUSE_PASSWORD"]
        assert settings.clickhouse.database == clickhouse_env["CLICKHOUSE_DB"], name


def test_vigil_environment_names_are_real_settings(services):
    known = _setting_variables()
    for name in VIGIL_COMMANDS:
        unknown = {key for key in services[name]["environment"] if key.startswith("VIGIL_")} - known
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"


def test_the_webhook_listens_on_the_port_it_publishes(services):
    webhook = services["audit-webhook"]
    settings = load_settings(env={k: str(v) for k, v in webhook["environment"].items()})
    assert settings.collector.webhook_host == "0.0.0.0"
    assert (8765, settings.collector.webhook_port) in {(h, c) for _, h, c in map(_parse_port, webhook["ports"])}
    assert f":{settings.collector.webhook_port}/" in " ".join(webhook["healthcheck"]["test"])


def _parse_port(mapping: str) -> tuple[str, int, int]:
    ip, host_port, container_port = mapping.split(":")
    return ip, int(host_port), int(container_port)


def _listeners(value: str) -> dict[str, str]:
    """``"A://h:1,B://:2"`` -> ``{"A": "h:1", "B": ":2"}``."""
    return dict(item.split("://") for item in value.split(","))


def _setting_variables() -> set[str]:
    top = {f"VIGIL_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    for section in ("kafka", "clickhouse", "collector"):
        section_type = type(getattr(Settings(), section))
        top |= {f"VIGIL_{section.upper()}_{f.name.upper()}" for f in dataclasses.fields(section_type)}
    return top
