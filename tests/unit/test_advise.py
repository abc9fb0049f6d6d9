"""``vigil advise`` on the embedded engine (chdb): workloads derived from pods by migration 4's rollups, the
activity read back, seccomp profiles written, read (OCI and Docker formats), converted and compared, AppArmor
drafts, the commands' answers and exit codes, and the hunts over kernel denials and setuid executions."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from vigil.config import ClickHouseSettings, Settings
from vigil.event import Actor, Event, K8sContext, Outcome, Target
from vigil.storage import cli
from vigil.storage.clickhouse import ClickHouseStore, connect
from vigil.storage.profiles import apparmor, seccomp
from vigil.storage.profiles.observed import Activity, Seen, Workload, load_activity
from vigil.storage.schema import migrate

NOW = time.time_ns()
HOUR = 3600 * 10**9
DEPLOYMENT = {"pod-template-hash": "7d4b9c8f6d", "app.kubernetes.io/name": "shop"}
POD = "api-7d4b9c8f6d-x2z9q"


def syscalls(pod: str, labels: dict[str, str], names: list[str], *, at: int = NOW, namespace: str = "shop",
             container: str = "api", interval_s: float = 1800.0, capabilities: list[str] | None = None) -> Event:
    raw = {"type": "syscalls", "cgroup_id": 7, "arch": "x86_64", "interval_s": interval_s, "syscalls": names,
           "counts": {"syscalls": 10, "fork": 0, "exec": 0, "open": 0, "connect": 0}, "pids": 3}
    if capabilities is not None:
        raw["capabilities"] = capabilities
    return Event(id=uuid.uuid4().hex, time_ns=at, source="ebpf", kind="container.syscalls", action="profile",
                 k8s=K8sContext(namespace=namespace, pod=pod, container_name=container, labels=labels),
                 outcome=Outcome("success"), raw=raw)


def runtime(kind: str, *, pod: str = POD, labels: dict[str, str] = DEPLOYMENT, exe: str = "/usr/bin/api",
            target: Target | None = None, raw: dict | None = None, result: str = "unknown", action: str = "") -> Event:
    return Event(id=uuid.uuid4().hex, time_ns=NOW, source="ebpf", kind=kind, action=action or kind.split(".")[1],
                 k8s=K8sContext(namespace="shop", pod=pod, container_name="api", labels=labels),
                 actor=Actor(pid=10, exe=exe, uid=1000), target=target or Target(), outcome=Outcome(result),
                 raw=raw or {})


@pytest.fixture
def store() -> Iterator[ClickHouseStore]:
    """A migrated database; the in-memory engine lives while this client is open, across the commands' own."""
    store = connect(ClickHouseSettings(url="chdb://memory", database=f"advise_{uuid.uuid4().hex[:12]}"))
    migrate(store)
    yield store
    store.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": store.database})
    store.close()


@pytest.fixture
def settings(store: ClickHouseStore) -> Settings:
    return Settings(clickhouse=ClickHouseSettings(url="chdb://memory", database=store.database))


def test_workload_is_the_controller_that_owns_the_pod(store: ClickHouseStore) -> None:
    pods = {
        "deployment": ("api-7d4b9c8f6d-x2z9q", DEPLOYMENT, "api"),
        "statefulset": ("db-2", {"statefulset.kubernetes.io/pod-name": "db-2", "controller-revision-hash": "x"}, "db"),
        "daemonset": ("node-agent-x7k2p", {"pod-template-generation": "3", "controller-revision-hash": "y"},
                      "node-agent"),
        "job": ("migrate-4kx9z", {"job-name": "migrate", "batch.kubernetes.io/job-name": "migrate"}, "migrate"),
        "cronjob": ("backup-28912345-7wq2n", {"job-name": "backup-28912345"}, "backup"),
        "unlabelled-deployment": ("web-6f9d5c7b8d-q2w4x", {}, "web"),
        "bare-pod": ("debug-shell", {"app": "debug"}, "debug-shell"),
        "numbered-bare-pod": ("cache-1", {}, "cache-1"),
        "not-generated": ("my-service-abcdefgh-abcde", {}, "my-service-abcdefgh-abcde"),  # vowels: a chosen name
    }
    store.insert_events([syscalls(pod, labels, ["read"], namespace=case) for case, (pod, labels, _) in pods.items()],
                        "workloads")
    found = dict(store.query("SELECT namespace, workload FROM workload_observations").result_rows)
    assert found == {case: workload for case, (_, _, workload) in pods.items()}


def test_activity_by_facet_from_every_kind_of_event(store: ClickHouseStore) -> None:
    other_replica = "api-7d4b9c8f6d-b2c4d"
    store.insert_events([
        syscalls(POD, DEPLOYMENT, ["openat", "read"], capabilities=["CAP_NET_BIND_SERVICE"]),
        syscalls(other_replica, DEPLOYMENT, ["read", "write"]),
        syscalls(POD, DEPLOYMENT, ["ptrace"], at=NOW - 72 * HOUR),  # before the period
        syscalls(POD, DEPLOYMENT, ["mount"], container="sidecar"),
        syscalls("db-0", {"statefulset.kubernetes.io/pod-name": "db-0"}, ["mkdirat"]),
        runtime("process.exec", target=Target(path="/usr/bin/api")),
        runtime("file.open", target=Target(path="/etc/ssl/cert.pem"), raw={"flags": 0}),
        runtime("file.open", target=Target(path="/tmp/tmpa8k2x9q1/out"), raw={"flags": 0o1101}),
        runtime("file.write", target=Target(path="/sys/fs/cgroup/release_agent")),
        runtime("net.connect", target=Target(address="2001:db8::1", port=53, resource="udp")),
        runtime("net.listen", target=Target(address="0.0.0.0", port=8080, resource="tcp"), raw={"family": "inet"}),
        runtime("kernel.seccomp", target=Target(name="unshare"), result="denied", action="errno"),
        runtime("kernel.seccomp", target=Target(name="uname"), result="success", action="log"),
    ], "activity")
    activity = load_activity(store, Workload("shop", "api", "api"), datetime.now(UTC) - timedelta(days=1))
    values = {facet: [s.value for s in seen] for facet, seen in activity.facets.items()}
    assert values == {
        "arch": ["x86_64"], "capability": ["CAP_NET_BIND_SERVICE"], "exec": ["/usr/bin/api"],
        "file_read": ["/etc/ssl/cert.pem"], "file_write": ["/sys/fs/cgroup/release_agent", "/tmp/tmpa8k2x9q1/out"],
        "network": ["inet tcp", "inet6 udp"], "seccomp_denied": ["unshare"], "syscall": ["openat", "read", "write"],
    }
    assert next(s.count for s in activity.facets["syscall"] if s.value == "read") == 2  # in two intervals
    assert (activity.intervals, activity.observed_seconds, activity.pods) == (2, 3600.0, 2)
    assert load_activity(store, Workload("shop", "api"), datetime.now(UTC) - timedelta(days=1)).values("syscall") == \
        ["mount", "openat", "read", "write"]  # every container
    assert load_activity(store, Workload("shop", "api", cluster="elsewhere"),
                         datetime.now(UTC) - timedelta(days=1)).is_empty()


def activity_of(syscall_names: list[str], **facets: list[str]) -> Activity:
    moment = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    activity = Activity(Workload("shop", "api"), intervals=4, observed_seconds=7200.0, pods=2, first=moment,
                        last=moment + timedelta(hours=1))
    for facet, values in ({"syscall": syscall_names, "arch": ["x86_64"]} | facets).items():
        activity.facets[facet] = [Seen(value, 1, moment, moment) for value in values]
    return activity


def test_advised_profile_allows_what_was_seen_and_what_the_runtime_needs() -> None:
    advice = seccomp.advise(activity_of(["write", "read", "execve", "syscall_462"]))
    profile = advice.profile
    assert (profile["defaultAction"], profile["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", 1)
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    observed, runtime_rule = profile["syscalls"]
    assert observed["names"] == advice.observed == ["execve", "read", "write"]
    assert "shop/api (2026-11-20 12:00 to 2026-11-20 13:00 UTC, 2 pods, 2.00 container-hours)" in observed["comment"]
    assert runtime_rule["names"] == advice.runtime_added == sorted(set(seccomp.RUNTIME_SYSCALLS) - {"execve",
                                                                                                    "read", "write"})
    assert {"capset", "setgroups", "futex", "rt_sigreturn", "getdents64"} <= set(advice.runtime_added)
    assert advice.unnamed == ["syscall_462"]
    assert orjson.loads(seccomp.render(profile)) == profile
    with_32_bit = seccomp.advise(activity_of(["read"], arch=["i386", "x86_64"])).profile
    assert with_32_bit["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    with pytest.raises(seccomp.ProfileError, match="no seccomp architectures known for riscv64"):
        seccomp.advise(activity_of(["read"], arch=["riscv64"]))


DOCKER_PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "basics"},
        {"name": "arch_prctl", "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["uname"], "action": "SCMP_ACT_LOG", "excludes": {"arches": ["arm64"]}},
        {"names": ["open_by_handle_at"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    ],
}


def test_docker_profile_is_read_for_an_architecture_and_capabilities_and_converted_for_runc() -> None:
    profile = seccomp.parse(orjson.dumps(DOCKER_PROFILE), "x86_64")
    assert profile.architectures == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")
    assert profile.allowed() == {"read", "write", "arch_prctl", "personality", "uname"}
    assert seccomp.to_oci(profile) == {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0,
                                                                               "op": "SCMP_CMP_EQ"}]},
            {"names": ["uname"], "action": "SCMP_ACT_LOG"},
            {"names": ["open_by_handle_at"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ],
    }
    arm = seccomp.parse(orjson.dumps(DOCKER_PROFILE), "aarch64", capabilities=["sys_admin"])
    assert arm.architectures == ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")
    assert arm.allowed() == {"read", "write", "mount", "personality"}


def test_an_advised_profile_converts_to_itself_without_comments() -> None:
    profile = seccomp.advise(activity_of(["read"])).profile
    oci = seccomp.to_oci(seccomp.parse(seccomp.render(profile)))
    assert oci == profile | {"syscalls": [{k: v for k, v in rule.items() if k != "comment"}
                                          for rule in profile["syscalls"]]}


def test_profiles_that_cannot_be_read_say_why() -> None:
    for text, message in ((b"{", "not JSON"), (b"[]", "no defaultAction"),
                          (b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}',
                           "needs an action"),
                          (b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": "read", "action": "x"}]}',
                           "names must be a list")):
        with pytest.raises(seccomp.ProfileError, match=message):
            seccomp.parse(text)
    with pytest.raises(seccomp.ProfileError, match="names no architecture"):
        seccomp.to_oci(seccomp.parse(b'{"defaultAction": "SCMP_ACT_ERRNO"}'))


def test_outside_lists_calls_the_profile_stops_and_recorded_denials() -> None:
    activity = activity_of(["read", "write", "ptrace"], seccomp_denied=["unshare"])
    narrow = seccomp.parse(b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write"], '
                           b'"action": "SCMP_ACT_ALLOW"}]}')
    assert [(o.syscall, o.reason) for o in seccomp.outside(narrow, activity)] == [
        ("ptrace", "not allowed by the profile"), ("unshare", "denied by seccomp")]
    permissive = seccomp.parse(b'{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["ptrace"], '
                               b'"action": "SCMP_ACT_ERRNO"}]}')
    assert [o.syscall for o in seccomp.outside(permissive, activity_of(["read", "ptrace"]))] == ["ptrace"]


@pytest.mark.parametrize(("path", "globbed"), [
    ("/proc/1234/status", "/proc/[0-9]*/status"),
    ("/proc/12/task/13/comm", "/proc/[0-9]*/task/[0-9]*/comm"),
    ("/proc/self/mounts", "/proc/self/mounts"),
    ("/tmp/tmpa8k2x9q1/out", "/tmp/*/out"),
    ("/tmp/tmp.Xa8k2L", "/tmp/tmp.*"),
    ("/tmp/report.txt", "/tmp/report.txt"),
    ("/run/containerd/k8s.io/" + "ab" * 32 + "/rootfs", "/run/containerd/k8s.io/*/rootfs"),
    ("/var/lib/kubelet/pods/0f8e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5b/volumes", "/var/lib/kubelet/pods/*/volumes"),
    ("/usr/lib/python3.11/os.py", "/usr/lib/python3.11/os.py"),
])
def test_per_instance_parts_of_paths_are_globbed(path: str, globbed: str) -> None:
    assert apparmor.glob_path(path) == globbed


def apparmor_activity() -> Activity:
    return activity_of(["read"], exec=["/usr/bin/api", "/bin/my tool"], capability=["CAP_NET_BIND_SERVICE"],
                       network=["inet tcp", "inet6 udp", "inet sctp"],
                       file_read=["/proc/1234/status", "/proc/99/status", "/etc/ssl/cert.pem"],
                       file_write=["/tmp/tmpa8k2x9q1/out"])


def test_apparmor_draft_confines_programs_network_and_capabilities() -> None:
    text = apparmor.draft(apparmor_activity())
    body = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert body[0] == "profile vigil-shop-api flags=(attach_disconnected,mediate_deleted) {" and body[-1] == "}"
    rules = body[1:-1]
    assert all(rule.endswith(",") for rule in rules)
    assert rules[:4] == ["capability net_bind_service,", "network inet tcp,", "network inet,", "network inet6 udp,"]
    assert '"/bin/my tool" rix,' in rules and "/usr/bin/api rix," in rules
    assert rules.count("/proc/[0-9]*/status r,") == 1 and "/tmp/*/out rw," in rules
    assert "/** rwlk," in rules and "signal (send,receive) peer=vigil-shop-api," in rules
    strict = apparmor.draft(apparmor_activity(), name="api-strict", strict_files=True)
    assert "/** rwlk," not in strict and "profile api-strict " in strict


@pytest.mark.skipif(shutil.which("apparmor_parser") is None,
                    reason="apparmor_parser is not installed (Debian package apparmor): the draft's syntax is "
                           "checked structurally only")
def test_apparmor_parser_accepts_the_draft(tmp_path: Path) -> None:
    for strict in (False, True):
        path = tmp_path / f"draft-{strict}"
        path.write_text(apparmor.draft(apparmor_activity(), strict_files=strict))
        # -Q: parse and compile, load nothing (this kernel has no AppArmor); -K -T: no cache
        parsed = subprocess.run(["apparmor_parser", "-Q", "-K", "-T", str(path)], capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr
    broken = tmp_path / "broken"
    broken.write_text(apparmor.draft(apparmor_activity()).replace("capability net_bind_service,", "capability nope,"))
    assert subprocess.run(["apparmor_parser", "-Q", "-K", "-T", str(broken)], capture_output=True).returncode != 0


def run(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args, settings)


WORKLOAD = ("--namespace", "shop", "--workload", "api")


def test_advise_commands(settings: Settings, store: ClickHouseStore, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    assert run(settings, "advise", "apparmor", *WORKLOAD) == 1
    assert "nothing recorded for shop/api in the last 7d (none in that namespace" in capsys.readouterr().err
    store.insert_events([runtime("process.exec")], "cli-exec")
    assert run(settings, "advise", "seccomp", *WORKLOAD, "--min-observed", "0s") == 1  # programs, but no syscalls
    assert "no syscalls recorded for shop/api in the last 7d" in capsys.readouterr().err
    store.insert_events([syscalls(POD, DEPLOYMENT, ["read", "write", "syscall_462"], interval_s=600.0)], "cli")
    assert run(settings, "advise", "seccomp", "--namespace", "shop", "--workload", POD) == 1
    assert "(workloads with data there: api)" in capsys.readouterr().err
    assert run(settings, "advise", "apparmor", *WORKLOAD) == 1
    assert "observed for 600 s of container time (1 pod" in capsys.readouterr().err

    assert run(settings, "advise", "seccomp", *WORKLOAD, "--min-observed", "10m") == 0
    out, err = capsys.readouterr()
    assert orjson.loads(out)["syscalls"][0]["names"] == ["read", "write"]
    assert "left out syscalls the sensor could not name: syscall_462" in err
    draft = tmp_path / "api.apparmor"
    assert run(settings, "advise", "apparmor", *WORKLOAD, "--min-observed", "0s", "--output", str(draft)) == 0
    assert "/usr/bin/api rix," in draft.read_text()

    profile = tmp_path / "profile.json"
    profile.write_bytes(b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write", '
                        b'"syscall_462"], "action": "SCMP_ACT_ALLOW"}]}')
    assert run(settings, "advise", "diff", *WORKLOAD, "--profile", str(profile)) == 0
    store.insert_events([syscalls(POD, DEPLOYMENT, ["ptrace"])], "cli-2")
    assert run(settings, "advise", "diff", *WORKLOAD, "--profile", str(profile)) == 1
    assert "ptrace   not allowed by the profile" in capsys.readouterr().out
    assert run(settings, "advise", "diff", *WORKLOAD, "--profile", str(tmp_path / "missing.json")) == 2
    assert run(settings, "advise", "diff", "--namespace", "shop", "--workload", "nope", "--profile",
               str(profile)) == 2


def test_hunts_over_kernel_denials_and_setuid_executions(settings: Settings, store: ClickHouseStore,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    store.insert_events([
        runtime("kernel.seccomp", target=Target(name="unshare"), result="denied", action="errno"),
        runtime("kernel.seccomp", target=Target(name="unshare"), result="denied", action="errno"),
        runtime("kernel.seccomp", target=Target(name="uname"), result="success", action="log"),
        runtime("kernel.lsm", target=Target(path="/etc/shadow", name="read", resource="file"), result="denied",
                action="apparmor"),
        runtime("process.exec", exe="/usr/bin/su", action="setuid_exec", raw={"euid": 0, "egid": 1000}),
        runtime("process.exec", exe="/usr/bin/ls"),
    ], "hunts")

    def hunt(name: str) -> list[dict]:
        assert run(settings, "hunt", "run", name, "--format", "json") == 0
        return [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert [(r["syscall"], r["denials"]) for r in hunt("seccomp-denials")] == [("unshare", 2)]
    assert [(r["lsm"], r["object"], r["permission"]) for r in hunt("lsm-denials")] == [
        ("apparmor", "/etc/shadow", "read")]
    assert [(r["exe"], r["uid"], r["euid"]) for r in hunt("setuid-executions")] == [("/usr/bin/su", 1000, 0)]
