"""Every saved hunt, run on the embedded engine (chdb) against one small incident inserted for the purpose.

The incident: alice execs into payments/api-1 and runs sh and curl, which reads the pod's token and calls
out to 203.0.113.9:4444; bob reads a secret, alice binds a cluster role, mallory probes and is denied, and
the pod's service-account token is used with kubectl from an outside address.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from vigil.alert import Alert
from vigil.config import ClickHouseSettings, Settings
from vigil.event import Actor, Event, K8sContext, Outcome, Target
from vigil.storage import cli
from vigil.storage.clickhouse import ClickHouseStore, connect
from vigil.storage.hunts import HuntError, load_hunts, parse_duration
from vigil.storage.schema import migrate

NOW = time.time_ns()
T = NOW - 3600 * 10**9  # the incident, an hour ago
S = 10**9
DAY = 86_400 * S
API = "registry.example/api:1.0"
SA = "system:serviceaccount:payments:api"


def proc(n: int, at: int, exe: str, pid: int, ppid: int, parent: str = "", pod: str = "api-1") -> Event:
    return Event(id=f"p{n}", time_ns=at, source="ebpf", kind="process.exec", action="exec",
                 k8s=K8sContext(namespace="payments", pod=pod, image=API, container_name="api"),
                 actor=Actor(pid=pid, ppid=ppid, exe=exe, args=[exe.rsplit("/", 1)[-1]], parent_exe=parent, uid=0))


def runtime(n: int, at: int, kind: str, exe: str, **target: object) -> Event:
    return Event(id=f"r{n}", time_ns=at, source="ebpf", kind=kind, action=kind.split(".")[1],
                 k8s=K8sContext(namespace="payments", pod="api-1", image=API, container_name="api"),
                 actor=Actor(exe=exe, pid=12), target=Target(**target))


def api(n: int, at: int, user: str, verb: str, resource: str, *, namespace: str = "payments", name: str = "",
        subresource: str = "", group: str = "", result: str = "success", code: int = 200, pod: str = "",
        audit_id: str = "", ips: tuple[str, ...] = ("10.0.0.2",), agent: str = "kubectl/v1.30") -> Event:
    return Event(id=f"a{n}", time_ns=at, source="k8s-audit", kind="k8s.api", action=verb,
                 original_id=audit_id or f"audit-{n}",
                 k8s=K8sContext(namespace=namespace, pod=pod),
                 actor=Actor(user=user, source_ips=list(ips), user_agent=agent),
                 target=Target(resource=resource, subresource=subresource, api_group=group, namespace=namespace,
                               name=name),
                 outcome=Outcome(result=result, code=code))


EVENTS = [
    proc(0, NOW - 40 * DAY, "/usr/bin/python", 10, 1, "/usr/bin/containerd-shim"),  # long known
    api(1, T - S, "alice", "create", "pods", subresource="exec", name="api-1", pod="api-1", audit_id="exec-1",
        code=101),
    api(2, T + 10 * S, "alice", "create", "pods", subresource="exec", name="api-1", pod="api-1", audit_id="exec-1",
        code=101),
    proc(1, T, "/bin/sh", 11, 0, ""),
    proc(2, T + 2 * S, "/usr/bin/curl", 12, 11, "/bin/sh"),
    proc(3, T + 60 * S, "/bin/ls", 13, 11, "/bin/sh"),  # after the session closed
    proc(4, T, "/usr/bin/python", 20, 1, "/usr/bin/containerd-shim", pod="api-2"),
    runtime(1, T + 3 * S, "net.connect", "/usr/bin/curl", address="203.0.113.9", port=4444),
    runtime(2, T + 4 * S, "net.connect", "/usr/bin/curl", address="203.0.113.9", port=4444),
    runtime(3, T + 5 * S, "net.connect", "/usr/bin/python", address="10.0.0.5", port=5432),
    runtime(4, T + 2 * S, "file.open", "/usr/bin/curl", path="/var/run/secrets/kubernetes.io/serviceaccount/token"),
    runtime(5, T + 2 * S, "file.open", "/usr/bin/curl", path="/etc/hosts"),
    api(3, T + 20 * S, "bob", "get", "secrets", name="db-creds"),
    api(4, T + 21 * S, "bob", "get", "secrets", name="db-creds"),
    api(5, T + 22 * S, "bob", "list", "secrets"),
    api(6, T + 30 * S, "alice", "create", "clusterrolebindings", namespace="", name="pwn",
        group="rbac.authorization.k8s.io", code=201),
    api(7, T + 31 * S, "alice", "get", "clusterrolebindings", namespace="", name="pwn",
        group="rbac.authorization.k8s.io"),
    *(api(10 + i, T + (40 + i) * S, "mallory", "list", resource, namespace="kube-system", result="denied", code=403)
      for i, resource in enumerate(["secrets", "pods", "configmaps", "secrets", "serviceaccounts"])),
    api(20, T + 50 * S, "carol", "get", "pods", result="denied", code=403),
    api(21, T + 60 * S, SA, "get", "configmaps", ips=("10.0.0.7",), agent="python-requests"),
    api(22, T + 61 * S, SA, "get", "configmaps", ips=("10.0.0.7",), agent="python-requests"),
    api(23, T + 62 * S, SA, "list", "secrets", ips=("198.51.100.4",), agent="kubectl/v1.30"),
    api(24, NOW - 3 * DAY, "alice", "delete", "rolebindings", name="old", group="rbac.authorization.k8s.io"),
]

ALERTS = [
    Alert(detection="k8s.exec_into_pod", title="Exec into pod", severity="high", time_ns=T - S, namespace="payments",
          pod="api-1", user="alice", evidence=["exec-1"], event_ids=["p1"], count=2, last_seen_ns=T + 10 * S),
    Alert(detection="k8s.privileged_container", title="Privileged pod", severity="critical", time_ns=T + 70 * S,
          namespace="kube-system", pod="evil", user="mallory", evidence=["audit-none"]),
    Alert(detection="k8s.exec_into_pod", title="Old exec", severity="high", time_ns=NOW - 3 * DAY,
          namespace="payments", pod="api-1", user="alice", evidence=["audit-old"]),
]


@pytest.fixture(scope="module")
def incident() -> Iterator[Settings]:
    settings = Settings(clickhouse=ClickHouseSettings(url="chdb://memory", database=f"hunt_{uuid.uuid4().hex[:12]}"))
    store = connect(settings.clickhouse)
    migrate(store)
    assert store.insert_events(EVENTS, "incident").written == len(EVENTS)
    assert store.insert_alerts(ALERTS, "incident-alerts").written == len(ALERTS)
    yield settings
    store.command("DROP DATABASE {db:Identifier}", {"db": settings.clickhouse.database})
    store.close()


@pytest.fixture
def store(incident: Settings) -> Iterator[ClickHouseStore]:
    store = connect(incident.clickhouse)
    yield store
    store.close()


def hunt(store: ClickHouseStore, name: str, since: timedelta = timedelta(hours=24), start: datetime | None = None,
         **values: str) -> list[dict]:
    found = load_hunts()[name]
    output = store.query_raw(found.sql, found.bind(values, start or datetime.now(UTC) - since), "JSONEachRow")
    return [orjson.loads(line) for line in output.splitlines()]


def test_at_least_ten_hunts_each_declares_its_parameters() -> None:
    hunts = load_hunts()
    assert len(hunts) >= 10
    for found in hunts.values():
        assert found.title and found.description and "{since:DateTime64(9, 'UTC')}" in found.sql


def test_process_tree_of_a_pod(store: ClickHouseStore) -> None:
    rows = hunt(store, "process-tree", namespace="payments", pod="api-1")
    assert [(r["pid"], r["ppid"], r["exe"], r["parent_exe"]) for r in rows] == [
        (11, 0, "/bin/sh", ""), (12, 11, "/usr/bin/curl", "/bin/sh"), (13, 11, "/bin/ls", "/bin/sh")]


def test_identity_activity(store: ClickHouseStore) -> None:
    rows = hunt(store, "identity-activity", user="alice")
    assert [(r["action"], r["resource"], r["subresource"], r["name"]) for r in rows] == [
        ("create", "pods", "exec", "api-1"), ("create", "pods", "exec", "api-1"),
        ("create", "clusterrolebindings", "", "pwn"), ("get", "clusterrolebindings", "", "pwn")]
    assert len(hunt(store, "identity-activity", since=timedelta(days=7), user="alice")) == 5


def test_first_seen_binaries(store: ClickHouseStore) -> None:
    rows = hunt(store, "first-seen-binaries", image=API)
    assert sorted(r["exe"] for r in rows) == ["/bin/ls", "/bin/sh", "/usr/bin/curl"]  # python ran 40 days ago
    assert [r["runs"] for r in rows if r["exe"] == "/bin/sh"] == [1]


def test_outbound_destinations(store: ClickHouseStore) -> None:
    rows = hunt(store, "outbound-destinations", pod="api-1")
    assert [(r["address"], r["port"], r["connections"]) for r in rows] == [
        ("203.0.113.9", 4444, 2), ("10.0.0.5", 5432, 1)]


def test_exec_sessions_with_what_ran_in_them(store: ClickHouseStore) -> None:
    rows = hunt(store, "exec-sessions", namespace="payments")
    assert len(rows) == 1
    session = rows[0]
    assert (session["user"], session["pod"], session["audit_id"]) == ("alice", "api-1", "exec-1")
    assert [p[2] for p in session["processes"]] == ["/bin/sh", "/usr/bin/curl"]  # not ls, after the session


def test_exec_session_without_its_end_lasts_the_maximum(store: ClickHouseStore) -> None:
    # Only the last stage is in the period: the session is taken to run 5 minutes from it.
    rows = hunt(store, "exec-sessions", start=datetime.fromtimestamp((T + 5 * S) / S, UTC), max_session_minutes="5")
    assert [[p[2] for p in row["processes"]] for row in rows] == [["/bin/ls"]]
    found = load_hunts()["exec-sessions"]
    with pytest.raises(HuntError, match="max_session_minutes must be UInt32"):
        found.bind({"max_session_minutes": "soon"}, datetime.now(UTC))


def test_secret_reads(store: ClickHouseStore) -> None:
    rows = hunt(store, "secret-reads", namespace="payments")
    assert [(r["user"], r["secret"], r["action"], r["requests"]) for r in rows] == [
        ("bob", "db-creds", "get", 2), ("bob", "*", "list", 1), (SA, "*", "list", 1)]


def test_rbac_changes(store: ClickHouseStore) -> None:
    assert [(r["user"], r["action"], r["name"]) for r in hunt(store, "rbac-changes")] == [("alice", "create", "pwn")]
    assert len(hunt(store, "rbac-changes", since=timedelta(days=7))) == 2


def test_alerts_timeline(store: ClickHouseStore) -> None:
    rows = hunt(store, "alerts-timeline")
    assert [(r["detection"], r["status"]) for r in rows] == [
        ("k8s.exec_into_pod", "new"), ("k8s.privileged_container", "new")]
    assert [r["pod"] for r in hunt(store, "alerts-timeline", severity="critical")] == ["evil"]


def test_denied_requests(store: ClickHouseStore) -> None:
    rows = hunt(store, "denied-requests")
    assert [(r["user"], r["denied"], r["resources"]) for r in rows] == [("mallory", 5, 4)]  # carol: 1, below 5
    assert [r["user"] for r in hunt(store, "denied-requests", min_denied="1")] == ["mallory", "carol"]


def test_service_account_sources(store: ClickHouseStore) -> None:
    rows = hunt(store, "service-account-sources", service_account=SA)
    assert [(r["source_ip"], r["user_agents"], r["requests"]) for r in rows] == [
        ("10.0.0.7", ["python-requests"], 2), ("198.51.100.4", ["kubectl/v1.30"], 1)]


def test_pod_timeline(store: ClickHouseStore) -> None:
    rows = hunt(store, "pod-timeline", namespace="payments", pod="api-1")
    assert rows[0]["summary"] == "alice create pods/exec"
    assert "/usr/bin/curl 203.0.113.9:4444" in [r["summary"] for r in rows]
    assert len(rows) == 2 + 3 + 3 + 2  # audit stages, processes, connections, files


def test_sensitive_file_access(store: ClickHouseStore) -> None:
    rows = hunt(store, "sensitive-file-access")
    assert [(r["exe"], r["path"]) for r in rows] == [
        ("/usr/bin/curl", "/var/run/secrets/kubernetes.io/serviceaccount/token")]
    assert len(hunt(store, "sensitive-file-access", paths="['/etc/']")) == 1


def test_unknown_and_missing_parameters_are_refused() -> None:
    found = load_hunts()["process-tree"]
    with pytest.raises(HuntError, match="has no parameter podd"):
        found.bind({"namespace": "a", "podd": "b"}, datetime.now(UTC))
    with pytest.raises(HuntError, match="needs --param pod="):
        found.bind({"namespace": "a"}, datetime.now(UTC))


def test_values_are_bound_not_spliced(store: ClickHouseStore) -> None:
    assert hunt(store, "identity-activity", user="alice' OR '1'='1") == []


@pytest.mark.parametrize(("text", "expected"), [("30s", timedelta(seconds=30)), ("24h", timedelta(hours=24)),
                                                 ("30d", timedelta(days=30)), ("2w", timedelta(weeks=2))])
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_parse_duration_refuses_other_text() -> None:
    with pytest.raises(HuntError, match="duration"):
        parse_duration("yesterday")


def run(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args, settings)


def test_hunt_run_command(incident: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(incident, "hunt", "run", "process-tree", "--param", "namespace=payments", "--param", "pod=api-1",
               "--format", "json") == 0
    assert [orjson.loads(line)["exe"] for line in capsys.readouterr().out.splitlines()] == [
        "/bin/sh", "/usr/bin/curl", "/bin/ls"]


def test_hunt_run_command_errors(incident: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(incident, "hunt", "run", "no-such-hunt") == 1
    assert "no hunt named 'no-such-hunt'" in capsys.readouterr().err
    assert run(incident, "hunt", "run", "process-tree", "--param", "namespace=payments") == 1
    assert "needs --param pod=" in capsys.readouterr().err


def test_hunt_list_and_show(incident: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(incident, "hunt", "list") == 0
    out = capsys.readouterr().out
    assert "exec-sessions" in out and "(15 rows)" in out
    assert run(incident, "hunt", "show", "secret-reads") == 0
    assert "FROM events" in capsys.readouterr().out
