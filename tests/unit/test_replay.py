"""``vigil replay`` over real sample audit logs, an authored attack, and broken input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from vigil.detections.engine import Engine
from vigil.detections.replay import Replay, ReplayReport
from vigil.sources.source import get_source

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
ATTACK = REPO / "tests" / "data" / "k8s-audit-attack.jsonl"
VIGIL = Path(sys.executable).parent / "vigil"

EXEC_AUDIT_ID = "0e9d3b7a-5f21-4c6b-8d44-2a7f9e3c1b55"

#: The replay tests are about replay, not about the library's coverage: they run these three detections only,
#: so the library can grow without changing what these tests expect.
LIBRARY = REPO / "detections" / "library"
DETECTIONS = [LIBRARY / f"{name}.py" for name in ("exec_into_pod", "privileged_container", "sensitive_host_path")]


def vigil_replay(*args: str | Path) -> subprocess.CompletedProcess[str]:
    only = [arg for path in DETECTIONS for arg in ("--detections", str(path))]
    return subprocess.run(
        [str(VIGIL), "replay", *only, *map(str, args)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "VIGIL_CLUSTER": "replay-test"},
    )


def alerts_of(stdout: str) -> list[dict]:
    return [orjson.loads(line) for line in stdout.splitlines()]


def replay(*paths: Path) -> ReplayReport:
    source = get_source("k8s-audit")
    engine = Engine.load(DETECTIONS)
    return Replay(source, engine, cluster="c", node="n", max_record_bytes=1 << 20).run(list(paths))


def test_benign_sample_logs_raise_nothing_above_informational() -> None:
    logs = sorted((SHARED_DATA / "k8s-audit").glob("*.log"))
    assert logs, f"no sample audit logs under {SHARED_DATA}"

    result = vigil_replay(*logs)

    assert result.returncode == 0, result.stderr
    assert "6 records" in result.stderr and "0 rejected" in result.stderr
    assert [a for a in alerts_of(result.stdout) if a["severity"] != "informational"] == []


def test_attack_file_raises_one_alert_per_technique() -> None:
    result = vigil_replay(ATTACK, "--cluster", "prod-eu")

    assert result.returncode == 0, result.stderr
    alerts = {a["detection"]: a for a in alerts_of(result.stdout)}
    assert set(alerts) == {"k8s.exec_into_pod", "k8s.privileged_container", "k8s.sensitive_host_path"}

    exec_alert = alerts["k8s.exec_into_pod"]
    assert exec_alert["evidence"] == [EXEC_AUDIT_ID], "two audit stages of one request must be one alert"
    assert exec_alert["count"] == 1
    assert (exec_alert["cluster"], exec_alert["namespace"]) == ("prod-eu", "payments")
    assert exec_alert["pod"] == "checkout-6d4cf56db6-x7x2p"
    assert exec_alert["user"] == "dev-intern@corp.example"
    assert (exec_alert["severity"], exec_alert["mitre"]) == ("high", ["T1609"])
    assert exec_alert["context"]["command"] == ["/bin/sh"]
    assert exec_alert["time"] == "2025-06-12T09:14:19.402117Z"
    assert exec_alert["time_ns"] == 1749719659402117000
    assert exec_alert["id"]

    privileged = alerts["k8s.privileged_container"]
    assert privileged["severity"] == "critical"
    assert privileged["context"]["images"] == ["docker.io/library/alpine:3.20"]
    assert privileged["context"]["workload"] == "Pod/node-debugger"

    host_path = alerts["k8s.sensitive_host_path"]
    assert host_path["context"]["host_paths"] == ["/var/run/docker.sock"], "/tmp/helper-cache is not sensitive"
    assert host_path["context"]["workload"] == "Deployment/metrics-helper"


def test_a_bad_line_is_reported_with_its_location_and_the_rest_is_replayed(tmp_path: Path) -> None:
    lines = ATTACK.read_bytes().splitlines(keepends=True)
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"".join([*lines[:2], b'{"kind": "Event", "verb": \n', *lines[2:]]))

    result = vigil_replay(broken, "--format", "table")

    assert result.returncode == 0, result.stderr
    assert f"{broken}:3:" in result.stderr
    assert "1 rejected" in result.stderr
    assert len(result.stdout.splitlines()) == 4, "a header and three alerts"


def test_a_file_that_cannot_be_opened_fails_the_run_after_the_others(tmp_path: Path) -> None:
    result = vigil_replay(tmp_path / "missing.log", ATTACK)

    assert result.returncode == 1
    assert "cannot read" in result.stderr and "missing.log" in result.stderr
    assert len(alerts_of(result.stdout)) == 3


@pytest.mark.parametrize("indent", [True, False], ids=["pretty-printed", "one-line"])
def test_an_event_list_document_is_replayed(tmp_path: Path, indent: bool) -> None:
    items = [orjson.loads(line) for line in ATTACK.read_bytes().splitlines()]
    document = tmp_path / "eventlist.json"
    event_list = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}
    document.write_bytes(orjson.dumps(event_list, option=orjson.OPT_INDENT_2 if indent else 0))

    report = replay(document)

    assert report.records == len(items)
    assert sorted(a.detection for a in report.alerts.values()) == [
        "k8s.exec_into_pod", "k8s.privileged_container", "k8s.sensitive_host_path",
    ]


def test_a_json_lines_file_with_a_bad_first_line_is_still_read_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "bad-first.jsonl"
    path.write_bytes(b"garbage\n" + ATTACK.read_bytes())

    report = replay(path)

    assert sum(report.rejected.values()) == 1
    assert report.samples[0].location == f"{path}:1"
    assert len(report.alerts) == 3


def test_empty_file_is_read_without_records(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"\n\n")

    report = replay(path)

    assert (report.records, report.alerts, report.unreadable) == (0, {}, [])
