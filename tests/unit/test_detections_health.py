"""Health thresholds configured in detections.toml (``[[health]]``): parsed with errors that name the table and
field, built into threshold detections the engine loads beside the library, and firing on the sensor's
per-container aggregation records normalized by the real eBPF source."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from vigil.detections.engine import LIBRARY, Engine
from vigil.detections.health import METRICS, health_detection, parse_health_rules
from vigil.detections.tuning import Tuning, TuningError
from vigil.event import Event
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.source import get_source

VIGIL = Path(sys.executable).parent / "vigil"
#: A minute boundary: tumbling windows are aligned on the epoch.
T0_NS = EXAMPLE_START_NS - EXAMPLE_START_NS % (60 * 10**9)
FORK_RATE = {"name": "fork-rate", "metric": "fork", "threshold": 200, "per": "1m", "severity": "high",
             "namespaces": ["prod-*"]}


def profile_record(at_s: float, *, fork: int = 0, connect: int = 0, pids: int = -1, namespace: str = "prod-shop",
                   pod: str = "api-1", container: str = "api") -> dict[str, Any]:
    """A ``container.syscalls`` sensor record as the contract defines it, with its pod."""
    record = {"type": "syscalls", "time_ns": T0_NS + int(at_s * 1e9), "cgroup_id": 4242, "arch": "x86_64",
              "interval_s": 10.0, "syscalls": ["clone", "connect", "read"],
              "counts": {"syscalls": 1000, "fork": fork, "exec": 0, "open": 0, "connect": connect}, "pids": pids}
    return in_pod(record, namespace=namespace, pod=pod, container=container)


def events(*records: dict[str, Any]) -> list[Event]:
    source = get_source("ebpf")
    return [source.normalize(record, "c", "worker-1") for record in records]


def engine_with(*rules: dict[str, Any], detections: dict[str, Any] | None = None) -> Engine:
    tuning = Tuning.parse({"health": list(rules), "detections": detections or {}})
    return Engine.load([], tuning=tuning)


def test_a_configured_threshold_is_loaded_beside_the_library_and_catalogued() -> None:
    engine = Engine.load(tuning=Tuning.parse({"health": [FORK_RATE]}))

    by_id = {d.id: d for d in engine.detections}
    assert not engine.errors
    assert "k8s.privileged_container" in by_id
    entry = by_id["health.fork_rate"].catalogue_entry()
    assert entry["threshold"] == 200 and entry["window_s"] == 60 and entry["aggregate"] == "sum"
    assert entry["severity"] == "high" and entry["kinds"] == ["container.syscalls"]


def test_configured_thresholds_survive_a_reload_of_the_detection_files(tmp_path: Path) -> None:
    detection_file = tmp_path / "extra.py"
    detection_file.write_text(LIBRARY.joinpath("runtime_container_oom_killed.py").read_text())
    engine = Engine.load([tmp_path], tuning=Tuning.parse({"health": [FORK_RATE]}))
    detection_file.write_text(detection_file.read_text() + "\n")
    os.utime(detection_file, ns=(time.time_ns(), time.time_ns() + 10**9))

    assert engine.reload_if_changed()
    assert {d.id for d in engine.detections} == {"runtime.container_oom_killed", "health.fork_rate"}


def test_forks_summed_over_a_window_fire_once_the_threshold_is_reached() -> None:
    engine = engine_with(FORK_RATE)

    below = engine.process_many(events(*(profile_record(i * 10, fork=30) for i in range(6))))  # 180 in a minute
    reached = engine.process_many(events(profile_record(65, fork=150), profile_record(75, fork=60)))

    assert below == []
    (alert,) = reached
    assert alert.detection == "health.fork_rate" and alert.severity == "high"
    assert alert.context["value"] == 210 and alert.context["threshold"] == 200 and alert.context["window_s"] == 60
    assert alert.title == "prod-shop/api-1 api: 210 forks within 60 s (threshold 200)"
    assert alert.pod == "api-1" and len(alert.evidence) == 2


def test_the_namespaces_of_a_rule_limit_it_and_containers_count_apart() -> None:
    engine = engine_with(FORK_RATE)

    staging = engine.process_many(events(profile_record(0, fork=500, namespace="staging")))
    two_containers = engine.process_many(events(profile_record(0, fork=150, container="api"),
                                                profile_record(1, fork=150, container="sidecar")))

    assert staging == [] and two_containers == []


def test_the_process_count_is_a_level_whose_maximum_counts() -> None:
    engine = engine_with({"name": "processes", "metric": "processes", "threshold": 100, "per": 60})

    steady = engine.process_many(events(*(profile_record(i * 10, pids=60) for i in range(5)), profile_record(
        55, pids=-1)))
    spike = engine.process_many(events(profile_record(70, pids=40), profile_record(80, pids=130)))

    assert steady == []
    (alert,) = spike
    assert alert.context["value"] == 130 and alert.context["aggregate"] == "max"


def test_an_event_count_metric_counts_connections_from_any_sensor() -> None:
    engine = engine_with({"name": "outbound", "metric": "connect_events", "threshold": 3, "per": "30s",
                          "window": "sliding", "severity": "low"})
    connects = [in_pod({"type": "connect", "time_ns": EXAMPLE_START_NS + i * 10**9, "pid": 7, "uid": 0, "gid": 0,
                        "exe": "/usr/bin/curl", "remote_address": "198.51.100.7", "remote_port": 443,
                        "protocol": "tcp"}) for i in range(3)]

    (alert,) = engine.process_many(events(*connects))

    assert alert.context["count"] == 3 and alert.severity == "low"


def test_a_health_detection_is_tuned_like_any_other() -> None:
    engine = engine_with(FORK_RATE, detections={"health.fork_rate": {
        "severity": "critical", "exceptions": [{"pod": "batch-*"}]}})

    excepted = engine.process_many(events(profile_record(0, fork=500, pod="batch-7")))
    (alert,) = engine.process_many(events(profile_record(0, fork=500)))

    assert excepted == [] and alert.severity == "critical"


def test_every_metric_builds_a_detection() -> None:
    for metric in METRICS:
        threshold = 5 if METRICS[metric].value is None else 5.5
        (rule,) = parse_health_rules([{"name": f"m-{metric}", "metric": metric, "threshold": threshold, "per": "2h"}])
        detection = health_detection(rule)
        assert detection.window_s == 7200 and detection.kinds == {METRICS[metric].kind}


@pytest.mark.parametrize(("entry", "message"), [
    ({"metric": "fork", "threshold": 1, "per": 60}, "[[health]] #1: name must be"),
    ({**FORK_RATE, "metric": "forks"}, "[[health]] #1 ('fork-rate'): metric must be one of processes"),
    ({**FORK_RATE, "threshold": 0}, "('fork-rate'): threshold must be a positive number"),
    ({**FORK_RATE, "threshold": "200"}, "('fork-rate'): threshold must be a positive number"),
    ({**FORK_RATE, "metric": "exec_events", "threshold": 2.5}, "threshold of exec_events counts events"),
    ({**FORK_RATE, "per": "1 minute"}, "('fork-rate'): per must be a positive duration"),
    ({**FORK_RATE, "per": "0s"}, "('fork-rate'): per must be a positive duration"),
    ({**FORK_RATE, "severity": "urgent"}, "('fork-rate'): severity must be one of"),
    ({**FORK_RATE, "namespaces": "prod"}, "('fork-rate'): namespaces must be a list"),
    ({**FORK_RATE, "window": "hopping"}, "('fork-rate'): window must be one of tumbling, sliding"),
    ({**FORK_RATE, "treshold": 5}, "('fork-rate'): unknown fields ['treshold']"),
])
def test_a_bad_health_table_is_refused_naming_the_table_and_field(entry: dict, message: str) -> None:
    with pytest.raises(TuningError, match=re.escape(message)):
        Tuning.parse({"health": [entry]}, "detections.toml")


def test_health_names_must_be_unique_and_health_an_array() -> None:
    with pytest.raises(TuningError, match=r"health\.fork_rate is declared more than once"):
        Tuning.parse({"health": [FORK_RATE, {**FORK_RATE, "name": "fork_rate"}]})
    with pytest.raises(TuningError, match="must be an array of tables"):
        Tuning.parse({"health": FORK_RATE})


def test_replay_runs_thresholds_from_the_tuning_file(tmp_path: Path) -> None:
    config = tmp_path / "detections.toml"
    config.write_text('[[health]]\nname = "fork-rate"\nmetric = "fork"\nthreshold = 200\nper = "1m"\n'
                      'namespaces = ["prod-*"]\n')
    recording = tmp_path / "sensor.jsonl"
    recording.write_bytes(b"\n".join(orjson.dumps(profile_record(i * 10, fork=60)) for i in range(4)))

    result = subprocess.run(
        [str(VIGIL), "replay", "--source", "ebpf", "--detections-config", str(config), str(recording)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "VIGIL_CLUSTER": "c"},
    )

    assert result.returncode == 0, result.stderr
    alerts = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(a["detection"], a["context"]["value"]) for a in alerts] == [("health.fork_rate", 240)]


def test_replay_refuses_a_bad_health_table(tmp_path: Path) -> None:
    config = tmp_path / "detections.toml"
    config.write_text('[[health]]\nname = "fork-rate"\nmetric = "forks"\nthreshold = 200\nper = "1m"\n')

    result = subprocess.run([str(VIGIL), "replay", "--detections-config", str(config), str(config)],
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 2
    assert "[[health]] #1 ('fork-rate'): metric must be one of" in result.stderr
