"""Every bundled detection passes its own examples (so CI fails on a broken detection), and the harness and
``vigil detections`` commands catch a detection that does not do what its examples say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from vigil.detections.engine import LIBRARY, load_detections
from vigil.detections.harness import check_examples

VIGIL = Path(sys.executable).parent / "vigil"
LOADED, LOAD_ERRORS = load_detections([LIBRARY])
BUNDLED = sorted(LOADED.values(), key=lambda d: d.id)

MISFIRING = '''
from vigil.sources.audit.fixtures import audit_record
from vigil.detections.sdk import EventDetection, Example

DETECTION = EventDetection(
    id="test.misfiring",
    title="Fires on reads instead of exec",
    description="Its examples say exec, its logic says get.",
    severity="low",
    kinds=["k8s.api"],
    match=lambda event: event.action == "get",
    examples=[
        Example(name="exec", source="k8s-audit", fires=True,
                record=audit_record("create", "pods", name="p", subresource="exec")),
        Example(name="read", source="k8s-audit", fires=False, record=audit_record("get", "pods", name="p")),
    ],
)
'''


def test_the_library_loads_without_errors() -> None:
    assert LOAD_ERRORS == []
    assert {d.id for d in BUNDLED} >= {"k8s.exec_into_pod", "k8s.privileged_container", "k8s.sensitive_host_path"}


@pytest.mark.parametrize("detection", BUNDLED, ids=lambda d: d.id)
def test_bundled_detection_passes_its_examples(detection) -> None:
    failures = [f"{r.example}: {r.reason}" for r in check_examples(detection) if not r.passed]

    assert failures == []


@pytest.mark.parametrize("detection", BUNDLED, ids=lambda d: d.id)
def test_bundled_detection_is_catalogued_for_analysts(detection) -> None:
    assert detection.mitre and detection.references and detection.false_positives
    assert sum(e.fires for e in detection.examples) >= 2 and sum(not e.fires for e in detection.examples) >= 2


def test_the_harness_reports_each_wrong_example(tmp_path: Path) -> None:
    (tmp_path / "misfiring.py").write_text(MISFIRING)
    (detection,) = load_detections([tmp_path])[0].values()

    results = {r.example: r for r in check_examples(detection)}

    assert results["exec"].reason == "expected an alert, got none"
    assert results["read"].reason.startswith("expected no alert")


def test_detections_test_command_fails_on_a_broken_detection(tmp_path: Path) -> None:
    (tmp_path / "misfiring.py").write_text(MISFIRING)
    (tmp_path / "syntax.py").write_text("DETECTION = (\n")

    command = [str(VIGIL), "detections", "test", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert result.returncode == 1
    assert "FAIL test.misfiring" in result.stdout
    assert "exec: expected an alert, got none" in result.stdout
    assert "syntax.py: cannot load: SyntaxError" in result.stdout


def test_detections_list_prints_the_catalogue_as_json() -> None:
    result = subprocess.run([str(VIGIL), "detections", "list", "--format", "json"], capture_output=True, timeout=120)

    assert result.returncode == 0, result.stderr
    catalogue = {entry["id"]: entry for entry in orjson.loads(result.stdout)}
    assert catalogue["k8s.exec_into_pod"]["mitre"] == ["T1609"]
    assert catalogue["k8s.privileged_container"]["severity"] == "critical"
    assert catalogue["k8s.sensitive_host_path"]["title"] == "Sensitive hostPath mount"
