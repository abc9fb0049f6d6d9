"""``vigil advise`` against real containers: a profile learned from what a container called lets the same
workload run under runc and containerd, and denies what it never called.

Where the syscalls come from, test by test:

- ``test_advised_profile_runs_the_workload_and_denies_the_rest``: the kernel itself. The learning run executes
  the workload under a seccomp filter whose default action is SCMP_ACT_LOG, so every call runs and the
  kernel writes an audit SECCOMP record for it, read here from the audit netlink multicast group (no strace,
  nothing in the workload's way). Only the records of the workload's own program (exe /bin/busybox, after
  runc's execve) are kept, so the profile works only if vigil's list of what runc needs is right. Those
  names become ``container.syscalls`` events as the contract describes the sensor's, and go the real way:
  Kafka ``events`` → the storage writer → ClickHouse → migration 4's rollups → ``vigil advise``. The denial
  is a real audit record too, normalized by the ``kernel-audit`` source in the stream step, then stored the
  same way, for ``vigil advise diff``.
- ``test_sensor_to_profile_end_to_end``: the eBPF sensor's own per-cgroup aggregation of a runc container,
  normalized by the ``ebpf`` source in the stream step, then Kafka → writer → ClickHouse → advise.
- ``test_containerd_loads_the_advised_profile_as_the_kubelet_hands_it_over``: containerd's own profile loader.

Pod context (namespace, pod, labels) is added to records as the node collector's CRI enrichment would: these
runc containers belong to no pod.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.integration.containerd_runtime import IMAGE, containerd  # noqa: F401  (the fixture)
from tests.integration.harness import LOGGED_GETPPID, wait_for
from vigil import kafka
from vigil.config import Settings
from vigil.detections.engine import Engine
from vigil.event import Event, K8sContext, Outcome, event_id
from vigil.sources.host_sensors import syscall_by_number
from vigil.sources.kernel_audit.records import record_from_netlink
from vigil.storage import cli
from vigil.storage.clickhouse import connect
from vigil.storage.profiles import seccomp
from vigil.storage.profiles.observed import Activity, Seen, Workload
from vigil.storage.schema import migrate
from vigil.storage.writer import run_writer
from vigil.streams.processor import StreamProcessor

pytestmark = pytest.mark.integration

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "cat", "ls", "echo")
WORKLOAD = ["/bin/sh", "-c", "cat /proc/self/status > /dev/null; ls / > /dev/null; echo workload-ran"]
NEVER_RAN = ["/bin/busybox", "mkdir", "/tmp/new"]  # mkdir(2) or mkdirat(2): the workload made neither
#: Calls runc's init makes in the container's cgroup while it sets the container up, and the workload does not.
RUNC_SETUP = {"mount", "pivot_root", "umount2", "mkdirat", "sethostname", "keyctl", "unshare", "seccomp"}

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1
AUDIT_SECCOMP = 1326
SECCOMP_RET_LOG = "0x7ffc0000"
SECCOMP_RET_KILL_PROCESS = "0x80000000"

# The deployment's two replicas (a pod-template-hash label, as Kubernetes stamps it), and a StatefulSet pod
# of the same namespace that did call mkdirat: it must not leak into the deployment's profile.
REPLICAS = ("web-6f9d5c7b8d-q2w4x", "web-6f9d5c7b8d-z8k5m")
WEB_LABELS = {"app": "web", "pod-template-hash": "6f9d5c7b8d"}


def _missing() -> str:
    if os.geteuid() != 0:
        return "running containers and reading the audit log need root"
    for tool in ("runc", "ctr"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh installs it)"
    if not BUSYBOX.exists():
        return "/bin/busybox (busybox-static) is not installed"
    if platform.machine() != "x86_64":
        return "the learned syscalls are named from the x86-64 table"
    return ""


class AuditLog:
    """The kernel's audit records, read from the netlink multicast group while the context is open.

    Records of the last calls may still be on their way from kauditd when the context closes, so it closes
    only once a marker record, made then, has arrived: kauditd sends records in the order they were made.
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
        self._socket.bind((0, AUDIT_NLGRP_READLOG))
        self._socket.settimeout(0.2)
        self._done = threading.Event()
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self.seccomp: list[dict] = []  # SECCOMP records as the kernel-audit source parses them

    def __enter__(self) -> AuditLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._wait_for_marker()
        finally:
            self._done.set()
            self._thread.join()
            self._socket.close()

    def _wait_for_marker(self, timeout: float = 30.0) -> None:
        """Make one logged call and wait for its record: every record made before it has arrived then."""
        marker = subprocess.Popen([sys.executable, "-c", LOGGED_GETPPID, "1"], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL)
        assert marker.wait(timeout=30) == 0
        with self._arrived:
            assert self._arrived.wait_for(lambda: any(r["fields"].get("pid") == str(marker.pid)
                                                      for r in self.seccomp), timeout), \
                f"the marker's audit record did not arrive within {timeout}s"
        self.seccomp = [r for r in self.seccomp if r["fields"].get("pid") != str(marker.pid)]

    def _read(self) -> None:
        while not self._done.is_set():
            try:
                data = self._socket.recv(1 << 16)
            except TimeoutError:
                continue
            records = list(_seccomp_records(data))
            if records:
                with self._arrived:
                    self.seccomp += records
                    self._arrived.notify_all()


def _seccomp_records(data: bytes) -> Iterator[dict]:
    """The SECCOMP records among the netlink messages of one read, as the kernel-audit source parses them."""
    offset = 0
    while offset + 16 <= len(data):
        length = int.from_bytes(data[offset:offset + 4], "little")
        if int.from_bytes(data[offset + 4:offset + 6], "little") == AUDIT_SECCOMP:
            yield record_from_netlink(AUDIT_SECCOMP, data[offset + 16:offset + length])
        offset += (length + 3) & ~3


def syscall_name(number: int) -> str:
    return syscall_by_number("x86_64", number)


class Bundle:
    """An OCI bundle with a busybox rootfs (read-only, /tmp a tmpfs), run by runc under its own root."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        rootfs = directory / "rootfs"
        for sub in ("bin", "proc", "sys", "dev", "tmp", "etc"):
            (rootfs / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in APPLETS:
            (rootfs / "bin" / applet).symlink_to("busybox")
        subprocess.run(["runc", "spec"], cwd=directory, check=True)
        self.spec = json.loads((directory / "config.json").read_text())
        self.spec["process"]["terminal"] = False
        self.spec["root"]["readonly"] = True
        self.spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                    "options": ["nosuid", "nodev", "mode=1777"]})

    def run(self, args: list[str], linux_seccomp: dict | None, no_new_privileges: bool = True,
            container_id: str = "") -> subprocess.CompletedProcess:
        """Run ``args`` to completion; ``container_id`` also names its cgroup (a 64-hex one is a container's
        to the sensor)."""
        spec = json.loads(json.dumps(self.spec))
        spec["process"]["args"] = args
        spec["process"]["noNewPrivileges"] = no_new_privileges
        if linux_seccomp is not None:
            spec["linux"]["seccomp"] = linux_seccomp
        (self.directory / "config.json").write_text(json.dumps(spec))
        name = container_id or f"vigil-advise-{uuid.uuid4().hex[:8]}"
        return subprocess.run(["runc", "--root", str(self.directory / "state"), "run", "--bundle",
                               str(self.directory), name], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    return Bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def learned(bundle: Bundle) -> list[str]:
    """The workload's syscalls, from the kernel's log of a run under a LOG-by-default filter."""
    log_everything = {"defaultAction": "SCMP_ACT_LOG", "architectures": list(seccomp.ARCHITECTURES["x86_64"])}
    with AuditLog() as audit:
        done = bundle.run(WORKLOAD, log_everything)
    assert done.returncode == 0 and "workload-ran" in done.stdout, done.stderr
    names = {syscall_name(int(r["fields"]["syscall"])) for r in audit.seccomp
             if r["fields"].get("code") == SECCOMP_RET_LOG and r["fields"].get("exe") == "/bin/busybox"}
    assert {"execve", "exit_group", "getdents64", "write"} <= names, names  # sh, ls and echo were seen
    return sorted(names)


def syscalls_event(pod: str, labels: dict[str, str], names: list[str], n: int, cluster: str) -> Event:
    """A ``container.syscalls`` event as the contract describes the sensor's."""
    time_ns = time.time_ns() - (10 - n) * 10**9
    return Event(id=event_id("ebpf", "node-a", "syscalls", pod, str(time_ns)), time_ns=time_ns, source="ebpf",
                 kind="container.syscalls", action="profile", cluster=cluster, node="node-a",
                 k8s=K8sContext(namespace="shop", pod=pod, pod_uid=str(uuid.uuid4()), container_id="c" * 64,
                                container_name="main", image=IMAGE, labels=labels),
                 outcome=Outcome("success"),
                 raw={"type": "syscalls", "cgroup_id": 4242 + n, "arch": "x86_64", "interval_s": 30.0,
                      "syscalls": names, "counts": {"syscalls": 100 * len(names), "fork": 3, "exec": 3, "open": 4,
                                                    "connect": 0}, "pids": -1})


def pod_context(pod: str) -> dict:
    """What the node collector's enrichment adds to a record of one of the deployment's containers (from CRI)."""
    return {"namespace": "shop", "pod": pod, "pod_uid": str(uuid.uuid4()), "container_id": "c" * 64,
            "container_name": "main", "image": IMAGE, "labels": WEB_LABELS}


async def store_records(settings: Settings, source: str, records: list[dict]) -> None:
    """Raw node records through the stream step (the source's normalization, as the worker runs it), then
    Kafka and the writer."""
    processed = StreamProcessor(settings, Engine.load([])).process(source, orjson.dumps(records), time.time_ns())
    assert not processed.deadletters, processed.deadletters
    [batch] = processed.events  # a few records make one JSON array
    await store_batch(settings, batch, [e["id"] for e in orjson.loads(batch)])


@pytest.fixture
async def advise_settings(kafka_settings: Settings) -> AsyncIterator[Settings]:
    kafka_settings.clickhouse.database = f"test_advise_{uuid.uuid4().hex[:10]}"
    kafka_settings.clickhouse.batch_seconds = 0.2
    store = connect(kafka_settings.clickhouse)
    migrate(store)
    yield kafka_settings
    store.command("DROP DATABASE IF EXISTS {db:Identifier}", {"db": store.database})
    store.close()


async def store_events(settings: Settings, events: list[Event]) -> None:
    await store_batch(settings, kafka.encode_batch([e.to_dict() for e in events]), [e.id for e in events])


async def store_batch(settings: Settings, batch: bytes, ids: list[str]) -> None:
    """An events batch through Kafka and the storage writer, until ClickHouse holds every one of ``ids``."""
    sender = kafka.producer(settings)
    await sender.start()
    try:
        await sender.send_and_wait(settings.topic("events"), batch)
    finally:
        await sender.stop()
    stop = asyncio.Event()
    task = asyncio.create_task(run_writer(settings, stop))

    def stored() -> bool:
        store = connect(settings.clickhouse)
        try:
            return store.query("SELECT count() FROM events WHERE event_id IN {ids:Array(String)}",
                               {"ids": ids}).result_rows[0][0] == len(ids)
        finally:
            store.close()

    try:
        await wait_for(lambda: asyncio.to_thread(stored), timeout=90)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def advise(settings: Settings, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["advise", *argv])
    return args.func(args, settings)


async def test_advised_profile_runs_the_workload_and_denies_the_rest(
        advise_settings: Settings, bundle: Bundle, learned: list[str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = advise_settings
    cluster = settings.cluster
    events = [syscalls_event(pod, WEB_LABELS, learned, n, cluster) for n, pod in enumerate(REPLICAS)]
    events.append(syscalls_event("db-0", {"statefulset.kubernetes.io/pod-name": "db-0"}, ["mkdirat"], 5, cluster))
    await store_events(settings, events)
    workload = ["--namespace", "shop", "--workload", "web", "--since", "1h"]

    assert advise(settings, "seccomp", "--namespace", "shop", "--workload", "web-6f9d5c7b8d-q2w4x") == 1
    assert "workloads with data there: db, web" in capsys.readouterr().err  # a pod's name is not a workload
    assert advise(settings, "seccomp", *workload) == 1  # 60 s of container time, less than the 1 h default
    assert "observed for 60 s of container time (2 pods), less than --min-observed 1h" in capsys.readouterr().err

    profile_path = tmp_path / "web.json"
    assert advise(settings, "seccomp", *workload, "--min-observed", "1m", "--output", str(profile_path)) == 0
    notes = capsys.readouterr().err
    profile = orjson.loads(profile_path.read_bytes())
    assert (profile["defaultAction"], profile["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", 1)
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    observed, runtime = profile["syscalls"]
    assert observed["names"] == learned and "mkdirat" not in learned  # the StatefulSet's call stayed out
    assert runtime["names"] == sorted(set(seccomp.RUNTIME_SYSCALLS) - set(learned))
    assert f"added for the container runtime: {', '.join(runtime['names'])}" in notes

    oci = seccomp.to_oci(seccomp.parse(profile_path.read_bytes()))
    without_runtime = bundle.run(WORKLOAD, oci | {"syscalls": oci["syscalls"][:1]})
    assert without_runtime.returncode != 0, "runc started the workload with the observed calls alone"
    for no_new_privileges in (True, False):  # runc installs the filter late, or (Kubernetes' default) early
        ran = bundle.run(WORKLOAD, oci, no_new_privileges)
        assert (ran.returncode, ran.stdout.strip()) == (0, "workload-ran"), ran.stderr
    allowed_anything = bundle.run(NEVER_RAN, None)
    assert allowed_anything.returncode == 0, allowed_anything.stderr  # mkdir works here without the profile
    denied = bundle.run(NEVER_RAN, oci)
    assert denied.returncode != 0 and "Operation not permitted" in denied.stderr, denied.stderr
    # runc 1.1 takes no SECCOMP_FILTER_FLAG_LOG, and the kernel logs an errno verdict only with it; a kill it
    # always logs, so the denial recorded for diff comes from the same rules with a killing default
    with AuditLog() as audit:
        killed = bundle.run(NEVER_RAN, oci | {"defaultAction": "SCMP_ACT_KILL_PROCESS"})
    assert killed.returncode != 0
    denials = [r for r in audit.seccomp
               if r["fields"].get("code") == SECCOMP_RET_KILL_PROCESS and r["fields"].get("exe") == "/bin/busybox"]
    assert {syscall_name(int(r["fields"]["syscall"])) for r in denials} & {"mkdir", "mkdirat"}

    # diff: nothing outside the advised profile, until the denial is recorded; a narrower profile misses ls's call
    assert advise(settings, "diff", *workload, "--profile", str(profile_path)) == 0
    narrower = profile | {"syscalls": [observed | {"names": [n for n in learned if n != "getdents64"]}, runtime]}
    narrower_path = tmp_path / "narrower.json"
    narrower_path.write_bytes(orjson.dumps(narrower))
    capsys.readouterr()
    assert advise(settings, "diff", *workload, "--profile", str(narrower_path), "--format", "json") == 1
    assert [orjson.loads(line)["syscall"] for line in capsys.readouterr().out.splitlines()] == ["getdents64"]
    mkdir = next(r for r in denials if syscall_name(int(r["fields"]["syscall"])) in ("mkdir", "mkdirat"))
    await store_records(settings, "kernel-audit", [mkdir | {"node": "node-a", "k8s": pod_context(REPLICAS[0])}])
    assert advise(settings, "diff", *workload, "--profile", str(profile_path), "--format", "json") == 1
    outside = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o["syscall"], o["reason"]) for o in outside] == [(syscall_name(int(mkdir["fields"]["syscall"])),
                                                                "denied by seccomp")]


def test_containerd_loads_the_advised_profile_as_the_kubelet_hands_it_over(
        containerd, bundle: Bundle, learned: list[str], tmp_path: Path) -> None:  # noqa: F811
    """ctr's --seccomp-profile reads the file with containerd's own loader, the one CRI uses for a pod's
    ``localhost/`` profile: the advised file works there unconverted."""
    moment = datetime.now(UTC)
    activity = Activity(Workload("shop", "web"), intervals=1, observed_seconds=30.0, pods=1, first=moment,
                        last=moment)
    activity.facets["syscall"] = [Seen(name, 1, moment, moment) for name in learned]
    activity.facets["arch"] = [Seen("x86_64", 1, moment, moment)]
    profile_path = tmp_path / "web.json"
    profile_path.write_bytes(seccomp.render(seccomp.advise(activity).profile))

    def ctr_run(args: list[str], *seccomp_options: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", "--address", containerd.address, "--namespace", "k8s.io", "run", "--rm",
                               *seccomp_options, IMAGE, f"advise-{uuid.uuid4().hex[:8]}", *args],
                              capture_output=True, text=True, timeout=60)

    with_profile = ("--seccomp", "--seccomp-profile", str(profile_path))
    ran = ctr_run(WORKLOAD, *with_profile)
    assert (ran.returncode, ran.stdout.strip()) == (0, "workload-ran"), ran.stderr
    assert ctr_run(NEVER_RAN).returncode == 0  # without a profile mkdir works in this image
    denied = ctr_run(NEVER_RAN, *with_profile)
    assert denied.returncode != 0 and "Operation not permitted" in denied.stdout + denied.stderr


async def test_sensor_to_profile_end_to_end(advise_settings: Settings, bundle: Bundle, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The sensor's own per-cgroup aggregation of a runc container, through the stream step, Kafka and the
    writer, into a profile the container then runs under, and that denies what the workload never called.

    runc's init sets the container up inside its cgroup (mount, pivot_root, mkdirat, ...); the sensor leaves
    those calls out, so ``busybox mkdir`` is denied under the profile although runc made mkdirat there.
    """
    sensor_module = pytest.importorskip("vigil.collectors.ebpf")
    sensor = sensor_module.Sensor(sensor_module.SensorConfig(syscall_flush_s=60.0))
    try:
        sensor.start()
    except sensor_module.SensorUnavailable as exc:
        pytest.skip(str(exc))
    container_id = secrets.token_hex(32)
    try:
        ran = bundle.run(WORKLOAD, None, container_id=container_id)
        assert ran.returncode == 0, ran.stderr
        found: list[dict] = []
        deadline = time.monotonic() + 30
        while not found and time.monotonic() < deadline:  # reported when runc removes the cgroup
            found = [r for r in sensor.poll(200) if r["type"] == "syscalls" and r["container_id"] == container_id]
    finally:
        sensor.close()
    assert found, "the sensor reported no syscalls for the container"
    assert not RUNC_SETUP & set(found[0]["syscalls"]), found[0]["syscalls"]
    record = found[0] | {"node": "node-a", "k8s": pod_context(REPLICAS[0]) | {"container_id": container_id}}
    await store_records(advise_settings, "ebpf", [record])

    profile_path = tmp_path / "web.json"
    assert advise(advise_settings, "seccomp", "--namespace", "shop", "--workload", "web", "--since", "1h",
                  "--min-observed", "0s", "--output", str(profile_path)) == 0
    profile = orjson.loads(profile_path.read_bytes())
    assert profile["syscalls"][0]["names"] == sorted(record["syscalls"])
    oci = seccomp.to_oci(seccomp.parse(profile_path.read_bytes()))
    for no_new_privileges in (True, False):
        ran = bundle.run(WORKLOAD, oci, no_new_privileges)
        assert (ran.returncode, ran.stdout.strip()) == (0, "workload-ran"), ran.stderr
    assert bundle.run(NEVER_RAN, None).returncode == 0  # mkdir works here without the profile
    denied = bundle.run(NEVER_RAN, oci)
    assert denied.returncode != 0 and "Operation not permitted" in denied.stderr, denied.stderr
