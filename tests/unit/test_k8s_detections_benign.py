"""Normal cluster activity raises nothing above informational: an authored corpus of what a healthy cluster's
audit log is made of (an app deployed and scheduled, controllers and kubelets at work, leases, list/watch by
system components, the controller manager reading its token secrets) plus the public sample logs, replayed
through ``vigil replay`` with the whole library. The attack records beside it prove the replay can alert."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
BENIGN = REPO / "tests" / "data" / "k8s-benign.jsonl"
VIGIL = Path(sys.executable).parent / "vigil"


def replay(*paths: Path) -> tuple[list[dict], str]:
    result = subprocess.run(
        [str(VIGIL), "replay", *map(str, paths)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "VIGIL_CLUSTER": "benign-test"},
    )
    assert result.returncode == 0, result.stderr
    assert "detection disabled" not in result.stderr, result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines()], result.stderr


def test_normal_activity_raises_nothing_above_informational() -> None:
    samples = sorted((SHARED_DATA / "k8s-audit").glob("*.log"))
    assert samples, f"no sample audit logs under {SHARED_DATA}"
    corpus_records = len(BENIGN.read_bytes().splitlines())

    alerts, summary = replay(BENIGN, *samples)

    assert f"{corpus_records + 6} records" in summary and "0 rejected" in summary, summary
    loud = [f"{a['detection']} ({a['severity']}): {a['title']}" for a in alerts if a["severity"] != "informational"]
    assert loud == []


def test_the_same_replay_alerts_on_an_attack(tmp_path: Path) -> None:
    """The benign corpus with the controller manager's identity swapped for a person's: the secret reads it
    made are now an alert, so the test above passes because the activity is normal, not because replay is mute."""
    swapped = tmp_path / "swapped.jsonl"
    swapped.write_bytes(BENIGN.read_bytes().replace(b'"system:kube-controller-manager"', b'"mallory@example.com"'))

    alerts, _ = replay(swapped)

    assert "k8s.secret_access" in {a["detection"] for a in alerts}
