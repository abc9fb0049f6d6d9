"""The Tetragon source on the real export samples (minikube and GKE), on hooks mapped to kinds, and on bad input;
``vigil replay`` and ``vigil collect file`` run as users run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from vigil import addresses, kafka
from vigil.event import Event
from vigil.sources.source import RecordRejected, Rejected
from vigil.sources.tetragon import TETRAGON_SOURCE
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record
from vigil.sources.tetragon.normalize import split_arguments

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
SAMPLES = SHARED_DATA / "tetragon"
VIGIL = Path(sys.executable).parent / "vigil"
LIMIT = 1 << 20


def sample_payloads() -> list[tuple[str, bytes]]:
    """Each shared sample as Tetragon wrote it: the docs' pretty-printed files whole, the export file by line."""
    payloads = []
    for path in sorted(SAMPLES.glob("*.json")):
        data = path.read_bytes()
        if data.startswith(b"{\n"):
            payloads.append((path.name, data))
        else:
            payloads += [(path.name, line) for line in data.splitlines() if line.strip()]
    return payloads


def normalize(record: dict) -> Event:
    return TETRAGON_SOURCE.normalize(record, "test-cluster", "collector-node")


def events_by_file() -> dict[str, list[Event]]:
    found: dict[str, list[Event]] = {}
    for name, payload in sample_payloads():
        for record in TETRAGON_SOURCE.split(payload, LIMIT):
            assert not isinstance(record, Rejected), f"{name}: {record}"
            found.setdefault(name, []).append(normalize(record))
    return found


def one(name: str) -> Event:
    (event,) = events_by_file()[name]
    return event


def test_every_record_of_every_sample_parses_with_its_kind() -> None:
    events = events_by_file()
    assert len(events) == 16, f"expected the 16 sample files under {SAMPLES}"
    kinds = sorted(e.kind for found in events.values() for e in found)
    assert len(kinds) == 18
    assert kinds.count("process.exec") == 7 and kinds.count("process.exit") == 4
    assert kinds.count("net.connect") == 2 and kinds.count("net.close") == 2 and kinds.count("net.listen") == 1
    assert kinds.count("file.write") == 1 and kinds.count("file.open") == 1
    all_events = [e for found in events.values() for e in found]
    assert len({e.id for e in all_events}) == 18, "ids must tell every record apart"
    assert all(e.source == "tetragon" and e.cluster == "test-cluster" for e in all_events)


def test_gke_export_records_carry_pod_namespace_container_and_labels() -> None:
    tiefighter, first_deathstar, second_deathstar = events_by_file()["testdata-events.json"]

    assert tiefighter.node == "my-node"
    assert (tiefighter.k8s.namespace, tiefighter.k8s.pod) == ("default", "tiefighter")
    assert tiefighter.k8s.container_id == "19a02291e106ce6227b684197be232ea57c4e1a5ab2604a12608c325d701c7f4"
    assert tiefighter.k8s.container_name == "spaceship"
    assert tiefighter.k8s.image == "docker.io/tgraf/netperf:latest"
    assert tiefighter.k8s.labels == {"app.kubernetes.io/name": "tiefighter", "class": "tiefighter", "org": "empire"}
    assert tiefighter.actor.exe == "/usr/bin/netserver" and tiefighter.actor.args == ["/usr/bin/netserver", "-D"]
    assert tiefighter.actor.parent_exe == "/usr/bin/containerd-shim-runc-v2"
    assert (tiefighter.actor.pid, tiefighter.actor.ppid, tiefighter.actor.uid) == (68790, 68598, 0)
    assert tiefighter.original_id.startswith("Z2tlLW1pY2hpLTIyMDM4")
    # The first record has no "time": it is dated by the process start, to the nanosecond.
    assert tiefighter.time_ns == 1666062978273546829
    assert first_deathstar.time_ns == 1666062981373327754
    assert first_deathstar.k8s.labels["pod-template-hash"] == "6f87496b94"
    assert first_deathstar.actor.args == ["/starwars-docker", "--port", "80", "--host", "0.0.0.0"]
    assert second_deathstar.k8s.pod == "deathstar-6f87496b94-gjf74"
    assert tiefighter.correlation_key == "test-cluster/default/tiefighter"


def test_kprobe_write_from_gke_is_a_file_write_with_its_path() -> None:
    event = one("00_four_golden_signals--process_kprobe.json")

    assert (event.kind, event.action, event.target.path) == ("file.write", "write", "/etc/passwd")
    assert event.node == "gke-kprobe-validation-default-pool-b5e9dab6-k0cj"
    assert (event.k8s.namespace, event.k8s.pod) == ("tenant-jobs", "elasticsearch-56f8fc6988-sh8rm")
    assert event.k8s.container_id == "bae66fa9f18079f78500ad37e88eb8a88b3181b2d0767f26dc532f75e4024d27"
    assert event.actor.exe == "/usr/bin/vi" and event.actor.parent_exe == "/bin/bash"


def test_network_and_lifecycle_samples() -> None:
    listen = one("00_four_golden_signals--process_listen.json")
    assert (listen.kind, listen.target.address, listen.target.port) == ("net.listen", "0.0.0.0", 9080)
    assert listen.actor.args == ["/usr/local/bin/python", "app.py"]
    assert listen.k8s.container_id == "97329341d8b39598f7cab3edd3b01f4fd791828a0d7a45c54298503de11583af"

    connect = one("00_process_lifecycle--nc_process_connect.json")
    assert (connect.kind, connect.target.address, connect.target.port) == ("net.connect", "64.225.45.153", 443)
    assert connect.actor.args == ["/usr/bin/nc", "raiz3gjkgtfhkkc.not-reverse-shell.com", "443"]

    read = one("00_process_lifecycle--cat_process_kprobe.json")
    assert (read.kind, read.action) == ("file.open", "read")
    assert read.target.path == "/usr/share/elasticsearch/config/elasticsearch.keystore"

    exited = one("00_process_lifecycle--nc_process_exit.json")
    assert (exited.kind, exited.outcome.result) == ("process.exit", "success")
    assert exited.original_id == connect.original_id, "one process: one exec id"


def test_key_is_the_correlation_key_and_ids_are_deterministic() -> None:
    for name, payload in sample_payloads():
        for record in TETRAGON_SOURCE.split(payload, LIMIT):
            event = normalize(record)
            assert TETRAGON_SOURCE.key(record, "test-cluster") == event.correlation_key, name
            assert normalize(orjson.loads(orjson.dumps(record))).id == event.id
            assert Event.from_json(event.to_json()).raw == record


def test_arguments_are_split_like_argv() -> None:
    assert split_arguments('-c "PORT=9080 python app.py"') == ["-c", "PORT=9080 python app.py"]
    assert split_arguments('"a b" c "d e f"') == ["a b", "c", "d e f"]
    assert split_arguments("-g daemon  off;") == ["-g", "daemon", "off;"]
    assert split_arguments('-c "unbalanced quote') == ["-c", '"unbalanced', "quote"]
    assert split_arguments('"x"') == ["x"]
    assert split_arguments("") == []


@pytest.mark.parametrize(
    ("body", "kind", "action", "target"),
    [
        (kprobe("__x64_sys_openat", {"int_arg": -100}, {"string_arg": "/etc/cron.d/x"}, {"int_arg": 0o101}),
         "file.write", "openat", ("/etc/cron.d/x", "", 0)),
        (kprobe("__x64_sys_openat", {"int_arg": -100}, {"string_arg": "/etc/hosts"}, {"int_arg": 0o2000000}),
         "file.open", "openat", ("/etc/hosts", "", 0)),
        (kprobe("security_file_permission", {"file_arg": {"path": "/etc/shadow"}}, {"int_arg": 4}),
         "file.open", "file_permission", ("/etc/shadow", "", 0)),
        (kprobe("tcp_connect", {"sock_arg": {"saddr": "10.0.0.1", "daddr": "192.0.2.1", "sport": 1, "dport": 443}}),
         "net.connect", "tcp_connect", ("", "192.0.2.1", 443)),
        (kprobe("inet_csk_listen_start", {"sock_arg": {"saddr": "0.0.0.0", "sport": 8080}}),
         "net.listen", "inet_csk_listen_start", ("", "0.0.0.0", 8080)),
        ({**kprobe("inet_csk_accept"), "return": {"sock_arg": {"daddr": "10.1.1.1", "dport": 5555}}},
         "net.accept", "inet_csk_accept", ("", "10.1.1.1", 5555)),
        (kprobe("__arm64_sys_mount", {"string_arg": "/dev/sda1"}, {"string_arg": "/mnt"}, {"string_arg": "ext4"}),
         "fs.mount", "mount", ("/mnt", "", 0)),
        (kprobe("do_init_module", {"module_arg": {"name": "rk"}}), "kernel.module_load", "do_init_module", ("", "", 0)),
        (kprobe("__x64_sys_memfd_create", {"string_arg": "payload"}), "memfd.create", "memfd_create", ("", "", 0)),
        (kprobe("__x64_sys_ptrace", {"long_arg": 16}, {"long_arg": 4242}), "process.ptrace", "attach", ("", "", 0)),
        (kprobe("__x64_sys_ptrace", {"long_arg": 99}), "process.ptrace", "ptrace", ("", "", 0)),
        (kprobe("__x64_sys_setuid", {"int_arg": 0}), "process.setid", "setuid", ("", "", 0)),
        (kprobe("bpf_check", {"bpf_attr_arg": {"ProgType": "BPF_PROG_TYPE_KPROBE", "ProgName": "x"}}),
         "bpf.program", "bpf_check", ("", "", 0)),
        (kprobe("security_bprm_creds_for_exec", {"linux_binprm_arg": {"path": "/tmp/x"}}),
         "process.hook", "security_bprm_creds_for_exec", ("/tmp/x", "", 0)),
    ],
)
def test_hooks_map_to_kinds_and_targets(body: dict, kind: str, action: str, target: tuple[str, str, int]) -> None:
    event = normalize(tetragon_record("process_kprobe", binary="/bin/x", body=body))

    assert (event.kind, event.action) == (kind, action)
    assert (event.target.path, event.target.address, event.target.port) == target


def test_targets_name_what_they_act_on_as_the_ebpf_sensor_does() -> None:
    def target(body: dict) -> tuple[str, str, str]:
        found = normalize(tetragon_record("process_kprobe", binary="/bin/x", body=body)).target
        return found.resource, found.name, found.path

    mount = kprobe("__x64_sys_mount", {"string_arg": "/dev/sda1"}, {"string_arg": "/mnt"}, {"string_arg": "ext4"})
    assert target(mount) == ("ext4", "/dev/sda1", "/mnt")
    assert target(kprobe("__x64_sys_ptrace", {"long_arg": 16}, {"long_arg": 4242})) == ("processes", "4242", "")
    assert target(kprobe("__x64_sys_setns", {"int_arg": 3})) == ("namespaces", "", "")
    assert target(kprobe("do_init_module", {"module_arg": {"name": "rk"}})) == ("modules", "rk", "")
    connect = kprobe("tcp_connect", {"sock_arg": {"protocol": "IPPROTO_TCP", "daddr": "192.0.2.1", "dport": 443}})
    assert target(connect) == ("tcp", "", "")
    assert one("00_process_lifecycle--nc_process_connect.json").target.resource == "tcp"


def test_tracepoints_lsm_enforcement_and_errors() -> None:
    tracepoint = normalize(tetragon_record("process_tracepoint", binary="/bin/x",
                                           body={"subsys": "syscalls", "event": "sys_enter_setns", "args": []}))
    assert (tracepoint.kind, tracepoint.action) == ("process.ns_change", "setns")

    lsm = normalize(tetragon_record("process_lsm", binary="/bin/x",
                                    body={"function_name": "sb_mount", "args": [{"string_arg": "/dev/sda1"}]}))
    assert lsm.kind == "fs.mount" and lsm.target.name == "/dev/sda1"

    killed = normalize(tetragon_record("process_kprobe", binary="/bin/x",
                                       body={**kprobe("__x64_sys_setns"), "action": "KPROBE_ACTION_SIGKILL"}))
    assert (killed.outcome.result, killed.outcome.reason) == ("denied", "KPROBE_ACTION_SIGKILL")

    failed = normalize(tetragon_record("process_kprobe", binary="/bin/x", body=kprobe("tcp_connect", returned=-111)))
    assert (failed.outcome.result, failed.outcome.code) == ("failure", 111)

    exited = normalize(tetragon_record("process_exit", binary="/bin/x", body={"status": 0, "signal": "SIGKILL"}))
    assert (exited.outcome.result, exited.outcome.reason) == ("failure", "SIGKILL")


def test_record_cluster_name_and_host_processes() -> None:
    record = tetragon_record(binary="/usr/bin/kubelet", host=True) | {"cluster_name": "prod-eu"}
    event = normalize(record)

    assert event.cluster == "prod-eu" and event.node == "node-1"
    assert event.k8s.pod == "" and event.k8s.container_id == ""
    assert TETRAGON_SOURCE.key(record, "ignored") == event.correlation_key == "prod-eu/~"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe{}", "invalid_utf8"),
        (b'{"process_exec": {"process": ', "not_json"),
        (b'{"process_exec": "' + b"x" * LIMIT + b'"}', "too_large"),
        (b"[1]", "wrong_kind"),
        (b"17", "wrong_kind"),
        (b'"a string"', "wrong_kind"),
        (b'{"process_throttle": {"type": "THROTTLE_START"}, "time": "2025-03-04T06:22:18Z"}', "wrong_kind"),
        (b'{"something_else": {}}', "wrong_kind"),
        (b'{"process_exec": [], "time": "2025-03-04T06:22:18Z"}', "wrong_kind"),
        (b'{"process_exec": {"parent": {}}, "time": "2025-03-04T06:22:18Z"}', "missing_field"),
        (b'{"process_exec": {"process": {"pid": 1}}}', "missing_field"),
        (b'{"process_exec": {"process": {}}, "time": 7}', "missing_field"),
        (b'{"process_exec": {"process": {}, "args": ' + b"[" * 300 + b"]" * 300 + b"}}", "not_json"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    (rejected,) = TETRAGON_SOURCE.split(payload, LIMIT)

    assert isinstance(rejected, Rejected) and rejected.reason == reason, rejected
    assert rejected.raw


def test_an_array_yields_its_good_records_and_refuses_the_bad_ones() -> None:
    good = tetragon_record(binary="/bin/true")
    items = list(TETRAGON_SOURCE.split(orjson.dumps([good, {"test": {}}, 3]), LIMIT))

    assert items[0] == good
    assert [(i.reason, i.detail[:4]) for i in items[1:]] == [("wrong_kind", "[1]:"), ("wrong_kind", "[2]:")]


def test_normalize_never_fails_on_mistyped_fields_except_with_a_rejection() -> None:
    record = tetragon_record("process_kprobe", binary="/bin/x", body=kprobe("tcp_connect", {"sock_arg": {}}))
    body = record["process_kprobe"]
    for key, value in [("pid", "7"), ("pod", []), ("arguments", 5), ("binary", None), ("uid", "root")]:
        body["process"][key] = value
    body["args"] = [{"sock_arg": {"daddr": 5, "dport": "x"}}, "junk", {"int_arg": "nan"}]
    body["parent"] = "not an object"

    event = normalize(record)
    assert event.kind == "net.connect" and event.actor.pid == 0 and event.actor.args == [""]
    with pytest.raises(RecordRejected, match="time"):
        normalize({"process_exec": {"process": {}}, "time": "yesterday"})


def vigil(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VIGIL), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "VIGIL_CLUSTER": "replay-test", **(env or {})})


def test_vigil_replay_reads_every_sample() -> None:
    result = vigil("replay", "--source", "tetragon", *sorted(SAMPLES.glob("*.json")))

    assert result.returncode == 0, result.stderr
    assert "18 records" in result.stderr and "0 rejected" in result.stderr
    alerts = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert sorted((a["detection"], a["severity"], a["pod"]) for a in alerts) == [
        ("runtime.etc_write_in_container", "medium", "elasticsearch-56f8fc6988-sh8rm"),  # vi writing /etc/passwd
        # the python server's listen: an interpreter on the network, informational
        ("runtime.interpreter_network_activity", "informational", "coreapi-79568ff848-ljh8n"),
        ("runtime.network_client_tool", "low", "elasticsearch-56f8fc6988-65smb"),  # nc run from a shell in the pod
        # curl and nc reaching public addresses: recorded for hunting, informational
        ("runtime.public_connection_from_container", "informational", "elasticsearch-56f8fc6988-65smb"),
        ("runtime.public_connection_from_container", "informational", "elasticsearch-56f8fc6988-pb8c7"),
    ]


@pytest.mark.integration
async def test_vigil_collect_file_ships_every_sample(settings) -> None:
    """The agent's export file is JSON lines; the docs' samples are pretty-printed, so they are written one a line."""
    await kafka.ensure_topics(settings)
    export = settings.data_dir + "/tetragon.log"
    records = [orjson.loads(payload) for _, payload in sample_payloads()]
    Path(export).parent.mkdir(parents=True, exist_ok=True)
    Path(export).write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in records) + b"not json\n")
    env = {"VIGIL_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix, "VIGIL_DATA_DIR": settings.data_dir}

    result = vigil("collect", "file", "--source", "tetragon", "--file", export, "--once", env=env)
    assert result.returncode == 0, result.stderr
    shipped = vigil("stream", "tail", "raw.tetragon", "--since", "1h", "--max", "18", "--timeout", "30", env=env)
    dead = vigil("stream", "tail", "deadletter", "--since", "1h", "--max", "1", "--timeout", "30", env=env)

    canonical = sorted(orjson.dumps(record, option=orjson.OPT_SORT_KEYS) for record in records)
    assert sorted(orjson.dumps(orjson.loads(line), option=orjson.OPT_SORT_KEYS)
                  for line in shipped.stdout.splitlines()) == canonical
    (refused,) = [orjson.loads(line) for line in dead.stdout.splitlines()]
    assert (refused["source"], refused["reason"]) == ("tetragon", "not_json")


# --- the model's process, container, file and network parts ---------------------------------------------------


def test_samples_fill_container_process_lineage_and_network() -> None:
    connect = one("00_process_lifecycle--nc_process_connect.json")
    assert (connect.container.id, connect.container.runtime, connect.container.name) == (
        "e6af4dff4ea3b8d50313c59fbaa442e377da35671e79f43b8dc53c5efcc9b659", "docker", "elasticsearch")
    assert connect.container.image_id.startswith("quay.io/isovalent/jobs-app-elasticsearch@sha256:")
    assert (connect.actor.euid, connect.actor.auid, connect.actor.container_pid) == (0, -1, 192)
    assert connect.actor.parent_args == ["/usr/bin/sh", "lifecycle.sh"]
    network = connect.network
    assert (network.direction, network.protocol, network.local_address, network.local_port) == (
        "outbound", "tcp", "10.88.0.6", 48416)
    assert (network.remote_address, network.remote_port, network.remote_class) == ("64.225.45.153", 443, "public")
    listen = one("00_four_golden_signals--process_listen.json").network
    assert (listen.direction, listen.local_address, listen.local_port, listen.remote_address) == (
        "listen", "0.0.0.0", 9080, "")


def test_a_process_without_a_pod_keeps_the_container_id_prefix_tetragon_read() -> None:
    record = tetragon_record(binary="/bin/sh", host=True)
    record["process_exec"]["process"]["docker"] = "86eb9e29a77d432"
    event = normalize(record)
    assert (event.container.id, event.k8s.container_id, event.k8s.pod) == ("86eb9e29a77d432", "", "")


def test_credentials_grandparent_and_binaries_not_on_disk() -> None:
    record = tetragon_record(binary="/tmp/x", uid=1000, parent="/bin/bash", parent_arguments="-c ./x")
    exec_body = record["process_exec"]
    exec_body["process"]["process_credentials"] = {"uid": 1000, "gid": 1000, "euid": 0, "egid": 1000}
    exec_body["process"]["auid"] = 1001
    exec_body["ancestors"] = [{"binary": "/usr/sbin/sshd", "arguments": "-D -R"}, {"binary": "/sbin/init"}]
    exec_body["process"]["binary_properties"] = {"file": {"inode": {"number": 17, "links": 0},
                                                          "path": "memfd:payload (deleted)"}}
    actor = normalize(record).actor
    assert (actor.uid, actor.euid, actor.gid, actor.egid, actor.auid) == (1000, 0, 1000, 1000, 1001)
    assert (actor.parent_exe, actor.parent_args) == ("/bin/bash", ["/bin/bash", "-c", "./x"])
    assert (actor.grandparent_exe, actor.grandparent_args) == ("/usr/sbin/sshd", ["/usr/sbin/sshd", "-D", "-R"])
    assert actor.exe_flags == ["from_memfd"]
    exec_body["process"]["binary_properties"] = {"file": {"inode": {"number": 17, "links": 0}, "path": "/tmp/x"}}
    assert normalize(record).actor.exe_flags == ["deleted"]


FILE = {"file_arg": {"path": "/etc/shadow"}}


@pytest.mark.parametrize(("body", "access", "mode", "other"), [
    (kprobe("__x64_sys_openat", {"int_arg": -100}, {"string_arg": "/etc/cron.d/x"}, {"int_arg": 0o1101},
            {"int_arg": 0o644}), ["write", "create", "truncate"], 0o644, ""),
    (kprobe("security_file_permission", FILE, {"int_arg": 4}), ["read"], -1, ""),
    (kprobe("security_file_permission", FILE, {"int_arg": 0xA}), ["write", "append"], -1, ""),
    (kprobe("__x64_sys_renameat2", {"int_arg": -100}, {"string_arg": "/tmp/x"}, {"int_arg": -100},
            {"string_arg": "/usr/bin/ls"}), [], -1, "/usr/bin/ls"),
    (kprobe("security_path_truncate", {"path_arg": {"path": "var/log/auth.log"}}), ["truncate"], -1, ""),
    (kprobe("__x64_sys_fchmodat", {"int_arg": -100}, {"string_arg": "/tmp/x"}, {"int_arg": 0o4755}), [], 0o4755,
     ""),
])
def test_file_hooks_say_how_the_file_was_accessed(body: dict, access: list[str], mode: int, other: str) -> None:
    file = normalize(tetragon_record("process_kprobe", binary="/bin/sh", body=body)).file
    assert (file.access, file.mode, file.other_path) == (access, mode, other)
    assert file.path


def test_socket_hooks_fill_both_ends() -> None:
    sock = {"sock_arg": {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP", "saddr": "10.244.1.5",
                         "daddr": "10.96.0.1", "sport": 51000, "dport": 443}}
    addresses.configure("10.96.0.0/12", "10.244.0.0/16")
    try:
        network = normalize(tetragon_record("process_kprobe", binary="/bin/curl",
                                            body=kprobe("tcp_connect", sock))).network
    finally:
        addresses.configure("", "")
    assert (network.family, network.protocol, network.direction) == ("inet", "tcp", "outbound")
    assert (network.local_address, network.local_port, network.remote_address, network.remote_port) == (
        "10.244.1.5", 51000, "10.96.0.1", 443)
    assert network.remote_class == "service"
    connect = kprobe("__x64_sys_connect", {"int_arg": 3}, {"sockaddr_arg": {"family": "AF_INET6", "addr": "::1",
                                                                            "port": 53}})
    peer = normalize(tetragon_record("process_kprobe", binary="/bin/dig", body=connect)).network
    assert (peer.family, peer.remote_address, peer.remote_port, peer.remote_class) == ("inet6", "::1", 53, "loopback")
