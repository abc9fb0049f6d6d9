"""Normal activity of a web server and an API pod, as Tetragon and Falco report it, raises nothing above
informational through the whole detection library; the same library does fire on attacks (so this can fail)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vigil.detections.engine import Engine
from vigil.detections.replay import Replay
from vigil.sources.source import Rejected, get_source

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
BENIGN = {"tetragon": REPO / "tests" / "data" / "tetragon" / "benign.jsonl",
          "falco": REPO / "tests" / "data" / "falco" / "benign.jsonl"}
RUNTIME_DETECTIONS = {
    "runtime.container_drift", "runtime.container_escape_write", "runtime.crypto_miner",
    "runtime.etc_write_in_container", "runtime.exec_from_tmp", "runtime.host_mount_in_container",
    "runtime.kernel_module_load", "runtime.nsenter_host_namespaces", "runtime.package_manager_in_container",
    "runtime.ptrace_in_container", "runtime.reverse_shell", "runtime.sensitive_file_read",
    "runtime.shell_in_container", "runtime.ssh_from_container", "runtime.static_pod_manifest_write",
}


@pytest.fixture(scope="module")
def engine() -> Engine:
    loaded = Engine.load()
    assert not loaded.errors, loaded.errors
    assert {d.id for d in loaded.detections} >= RUNTIME_DETECTIONS
    return loaded


def kinds_in(source_name: str, path: Path) -> set[str]:
    source = get_source(source_name)
    records = [r for line in path.read_bytes().splitlines() for r in source.split(line, 1 << 20)]
    assert not [r for r in records if isinstance(r, Rejected)]
    return {source.normalize(r, "c", "n").kind for r in records}


@pytest.mark.parametrize("source_name", sorted(BENIGN))
def test_normal_activity_raises_nothing_above_informational(engine: Engine, source_name: str) -> None:
    path = BENIGN[source_name]
    # The corpus covers what a serving pod does: start, listen, accept, connect, read, write, probe, exit.
    assert {"process.exec", "process.exit", "net.listen", "net.accept", "net.connect", "file.open",
            "file.write"} <= kinds_in(source_name, path)

    report = Replay(get_source(source_name), engine, cluster="c", node="n", max_record_bytes=1 << 20).run([path])

    assert report.records == len(path.read_bytes().splitlines()) and not report.rejected
    assert [(a.detection, a.title) for a in report.alerts.values() if a.severity != "informational"] == []


def test_the_public_tetragon_samples_raise_only_the_etc_write_and_the_netcat_client(engine: Engine) -> None:
    files = sorted((SHARED_DATA / "tetragon").glob("*.json"))
    report = Replay(get_source("tetragon"), engine, cluster="c", node="n", max_record_bytes=1 << 20).run(files)

    assert report.records == 18 and not report.rejected
    alerts = list(report.alerts.values())
    # The lifecycle sample's nc connecting out from a shell in the pod is a low finding (a client, not a listener).
    assert sorted(a.detection for a in alerts if a.severity != "informational") == [
        "runtime.etc_write_in_container", "runtime.network_client_tool"]
    # The samples' curl and nc connect to public addresses, and a python server listens: recorded for hunting,
    # never above informational.
    assert sorted((a.detection, a.context["peer"]) for a in alerts if a.severity == "informational") == [
        ("runtime.interpreter_network_activity", ""),
        ("runtime.public_connection_from_container", "142.250.180.196:80"),
        ("runtime.public_connection_from_container", "64.225.45.153:443")]


def test_the_library_fires_on_the_attack_corpus(engine: Engine) -> None:
    attacks = REPO / "tests" / "data" / "falco" / "attacks.jsonl"
    report = Replay(get_source("falco"), engine, cluster="c", node="n", max_record_bytes=1 << 20).run([attacks])

    assert {a.detection for a in report.alerts.values()} >= RUNTIME_DETECTIONS
