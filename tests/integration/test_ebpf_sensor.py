"""The eBPF sensor on the real kernel: real processes exec, open, connect, unshare, and the records say so.

The sensor ignores its own process, so every action runs in a child and records are picked out by the
child's pid (other processes on the machine are recorded too). No Kafka is involved: these tests need root,
not the dev stack.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from collectors.ebpf import EBPF_SOURCE, Sensor, SensorConfig, SensorUnavailable, build, cli
from collectors.ebpf.cgroups import cgroup2_mount
from collectors.ebpf.libbpf import BpfObject, LibbpfError, libbpf
from collectors.ebpf.sensor import DEFAULT_OPEN_WATCH
from vigil.config import load_settings

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the eBPF sensor needs root")

Record = dict[str, Any]
REPEATS = 300_000_000  # the module sensor's repeat window for opens


@pytest.fixture(scope="module")
def watched_dir() -> Iterator[Path]:
    """A directory configured as sensitive (short path: kernel-side prefixes are at most 64 bytes)."""
    with tempfile.TemporaryDirectory(prefix="vigil-ebpf-", dir="/tmp") as path:
        yield Path(path)


@pytest.fixture(scope="module")
def sensor(watched_dir: Path) -> Iterator[Sensor]:
    config = SensorConfig(open_watch=(*DEFAULT_OPEN_WATCH, f"{watched_dir}/secrets/"), open_repeat_window_ns=REPEATS)
    with Sensor(config) as running:
        yield running


class Recorder:
    """Everything the sensor returned during one test, searched for the records a test expects."""

    def __init__(self, sensor: Sensor) -> None:
        self.sensor = sensor
        self.records: list[Record] = []

    def wait_for(self, match: Callable[[Record], bool], timeout: float = 10.0) -> Record:
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for record in self.records[checked:]:
                if match(record):
                    return record
            checked = len(self.records)
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching record among {checked} within {timeout}s")
            self.records.extend(self.sensor.poll(100))

    def of_pid(self, pid: int) -> list[Record]:
        return [record for record in self.records if record["pid"] == pid]


@pytest.fixture
def recorder(sensor: Sensor) -> Recorder:
    sensor.poll(0)  # earlier tests' records are not this test's business
    return Recorder(sensor)


def _python(script: str, *args: str, cwd: Path | None = None) -> int:
    """Run ``script`` in a child interpreter; its pid (the records' pid)."""
    child = subprocess.Popen([sys.executable, "-c", script, *args], cwd=cwd)
    assert child.wait(timeout=30) == 0
    return child.pid


@root_only
def test_exec_of_a_known_binary_records_exe_args_cwd_parent_and_exit(recorder: Recorder, tmp_path: Path) -> None:
    child = subprocess.Popen(["/bin/echo", "vigil-marker", "two words"], cwd=tmp_path, stdout=subprocess.DEVNULL)
    assert child.wait(timeout=30) == 0
    record = recorder.wait_for(lambda r: r["type"] == "exec" and r["pid"] == child.pid)
    assert record["args"] == ["/bin/echo", "vigil-marker", "two words"]
    assert record["exe"] == os.path.realpath("/bin/echo")
    assert record["cwd"] == str(tmp_path)
    assert record["parent_exe"] == os.path.realpath(sys.executable)
    assert (record["ppid"], record["uid"], record["gid"], record["comm"]) == (os.getpid(), 0, 0, "echo")
    assert abs(record["time_ns"] - time.time_ns()) < 60e9  # wall clock, not time since boot
    assert record["container_id"] == ""  # a host process
    exited = recorder.wait_for(lambda r: r["type"] == "exit" and r["pid"] == child.pid)
    assert (exited["exit_code"], exited["signal"]) == (0, 0)
    orjson.dumps(record)  # JSON-able as it is


@root_only
def test_only_watched_paths_are_recorded_when_opened(recorder: Recorder, watched_dir: Path) -> None:
    secrets = watched_dir / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "token").write_text("t")
    (watched_dir / "public").write_text("p")
    pid = _python("import sys\nfor p in sys.argv[1:]: open(p).close()", str(watched_dir / "public"),
                  str(secrets / "token"))
    record = recorder.wait_for(lambda r: r["type"] == "open" and r["pid"] == pid)
    assert record["path"] == str(secrets / "token")
    assert record["flags"] & os.O_ACCMODE == os.O_RDONLY
    assert [r["path"] for r in recorder.of_pid(pid) if r["type"] in ("open", "file_write")] == [record["path"]]


@root_only
def test_repeated_opens_are_counted_in_the_kernel_not_recorded_one_by_one(recorder: Recorder,
                                                                          watched_dir: Path) -> None:
    secrets = watched_dir / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "key").write_text("k")
    script = "import sys, time\nfor _ in range(5): open(sys.argv[1]).close()\ntime.sleep(float(sys.argv[2]))\n" \
             "open(sys.argv[1]).close()"
    pid = _python(script, str(secrets / "key"), str(REPEATS / 1e9 * 2))
    recorder.wait_for(lambda r: r["type"] == "open" and r["pid"] == pid and r["repeats"] == 4)
    assert [r["repeats"] for r in recorder.of_pid(pid) if r["type"] == "open"] == [0, 4]


@root_only
def test_proc_mem_and_shadow_opens_are_recorded(recorder: Recorder) -> None:
    pid = _python("open('/proc/self/mem', 'rb').close()\nopen('/etc/shadow').close()")
    recorder.wait_for(lambda r: r["type"] == "open" and r["pid"] == pid and r["path"] == "/etc/shadow")
    assert "/proc/self/mem" in [r.get("path") for r in recorder.of_pid(pid)]


@root_only
def test_opening_release_agent_for_writing_is_a_file_write(recorder: Recorder, tmp_path: Path) -> None:
    agent = tmp_path / "release_agent"
    agent.write_text("")
    pid = _python("import sys\nopen(sys.argv[1]).close()\nopen(sys.argv[1], 'w').close()", str(agent))
    record = recorder.wait_for(lambda r: r["type"] == "file_write" and r["pid"] == pid)
    assert record["path"] == str(agent)
    assert record["flags"] & os.O_ACCMODE == os.O_WRONLY
    assert len([r for r in recorder.of_pid(pid) if r.get("path") == str(agent)]) == 1  # the read-only open is not


_LOOPBACK = """
import socket, sys
family, host = (socket.AF_INET6, "::1") if sys.argv[1] == "6" else (socket.AF_INET, "127.0.0.1")
server = socket.socket(family)
server.bind((host, 0))
server.listen()
client = socket.socket(family)
client.connect(server.getsockname()[:2])
peer, address = server.accept()
print(server.getsockname()[1], client.getsockname()[1])
"""


@root_only
@pytest.mark.parametrize(("version", "host", "family"), [("4", "127.0.0.1", "inet"), ("6", "::1", "inet6")])
def test_loopback_tcp_listen_connect_accept(recorder: Recorder, version: str, host: str, family: str) -> None:
    child = subprocess.run([sys.executable, "-c", _LOOPBACK, version], capture_output=True, text=True, check=True)
    server_port, client_port = map(int, child.stdout.split())

    def of(kind: str) -> Record:
        port = "remote_port" if kind == "connect" else "local_port"  # the server's port, seen from each side
        return recorder.wait_for(lambda r: r["type"] == kind and r.get(port) == server_port)

    listen, connect, accept = of("listen"), of("connect"), of("accept")
    assert (listen["family"], listen["protocol"], listen["local_address"]) == (family, "tcp", host)
    assert (connect["remote_address"], connect["remote_port"], connect["protocol"]) == (host, server_port, "tcp")
    assert (accept["remote_address"], accept["remote_port"]) == (host, client_port)
    assert listen["pid"] == connect["pid"] == accept["pid"]


@root_only
def test_unshare_is_a_namespace_change(recorder: Recorder) -> None:
    command = subprocess.Popen(["unshare", "-n", "true"])
    assert command.wait(timeout=30) == 0
    record = recorder.wait_for(lambda r: r["type"] == "ns_change" and r["pid"] == command.pid)
    assert (record["call"], record["namespaces"]) == ("unshare", ["net"])
    # unshare(2) itself (os.unshare is Python 3.12+): CLONE_NEWUTS | CLONE_NEWNS
    pid = _python("import ctypes\nassert ctypes.CDLL(None, use_errno=True).unshare(0x04000000 | 0x00020000) == 0")
    record = recorder.wait_for(lambda r: r["type"] == "ns_change" and r["pid"] == pid)
    assert sorted(record["namespaces"]) == ["mnt", "uts"]


@root_only
def test_setuid_and_memfd_create_are_recorded(recorder: Recorder) -> None:
    pid = _python("import os\nos.memfd_create('vigil-payload')\nos.setresuid(0, 0, 0)")
    memfd = recorder.wait_for(lambda r: r["type"] == "memfd_create" and r["pid"] == pid)
    assert memfd["name"] == "vigil-payload"
    setid = recorder.wait_for(lambda r: r["type"] == "setid" and r["pid"] == pid)
    assert (setid["call"], setid["ids"]) == ("setresuid", [0, 0, 0])


@root_only
def test_a_process_in_a_container_cgroup_carries_its_container_id(recorder: Recorder) -> None:
    root = cgroup2_mount()
    assert root is not None
    container_id = uuid.uuid4().hex * 2
    cgroup = root / f"vigil-test-{uuid.uuid4().hex[:8]}" / container_id
    cgroup.mkdir(parents=True)
    try:
        child = subprocess.Popen(["/bin/true"], preexec_fn=lambda: (cgroup / "cgroup.procs").write_text("0"))
        assert child.wait(timeout=30) == 0
        record = recorder.wait_for(lambda r: r["type"] == "exec" and r["pid"] == child.pid)
        assert record["container_id"] == container_id
        assert record["cgroup_id"] == cgroup.stat().st_ino
    finally:
        cgroup.rmdir()
        cgroup.parent.rmdir()


@root_only
def test_ring_buffer_overflow_is_counted_in_the_kernel(watched_dir: Path) -> None:
    (watched_dir / "flood").write_text("")
    config = SensorConfig(open_watch=(str(watched_dir / "flood"),), write_watch=(), ring_buffer_bytes=8192,
                          open_repeat_window_ns=0)
    with Sensor(config) as small:
        pid = _python("import sys\nfor _ in range(2000): open(sys.argv[1]).close()", str(watched_dir / "flood"))
        received = [r for r in small.poll(100) + small.poll(100) if r["pid"] == pid]
        assert small.losses() > 0
        assert len(received) + small.losses() >= 2000


@root_only
def test_normalize_maps_live_records_into_the_envelope(recorder: Recorder) -> None:
    child = subprocess.Popen(["/bin/true"])
    assert child.wait(timeout=30) == 0
    record = recorder.wait_for(lambda r: r["type"] == "exec" and r["pid"] == child.pid)
    (line,) = list(EBPF_SOURCE.split(orjson.dumps(record), 1 << 20))
    event = EBPF_SOURCE.normalize(line, "c1", "node-1")
    assert (event.kind, event.actor.pid, event.actor.exe) == ("process.exec", child.pid, os.path.realpath("/bin/true"))
    assert EBPF_SOURCE.key(line, "c1") == event.correlation_key


def test_a_bogus_btf_path_makes_the_sensor_unavailable_and_says_so() -> None:
    with pytest.raises(SensorUnavailable, match="no kernel BTF at /nonexistent/vmlinux"):
        Sensor(SensorConfig(btf_path=Path("/nonexistent/vmlinux"))).start()


def test_missing_tracefs_makes_the_sensor_unavailable_and_says_so(tmp_path: Path) -> None:
    with pytest.raises(SensorUnavailable, match=f"tracefs is not mounted at {tmp_path}"):
        Sensor(SensorConfig(tracefs_path=tmp_path, mount_tracefs=False)).start()


_REFUSED_PROGRAM = """
#define SEC(name) __attribute__((section(name), used))
char LICENSE[] SEC("license") = "GPL";
SEC("tracepoint/syscalls/sys_enter_openat")
int reads_a_wild_pointer(void *ctx) { return *(volatile int *)0x1000; }
"""


@root_only
def test_a_program_the_kernel_refuses_reports_the_verifier_log(tmp_path: Path) -> None:
    source = tmp_path / "refused.bpf.c"
    source.write_text(_REFUSED_PROGRAM)
    subprocess.run(["clang", "-target", "bpf", "-O2", "-g", "-c", str(source), "-o", str(tmp_path / "refused.o")],
                   check=True)
    refused = BpfObject(libbpf(), str(tmp_path / "refused.o"), "/sys/kernel/btf/vmlinux")
    try:
        with pytest.raises(LibbpfError) as error:
            refused.load()
    finally:
        refused.close()
    message = str(error.value)
    assert "the kernel refused the BPF object" in message
    assert "reads_a_wild_pointer" in message and "invalid mem access" in message


@root_only
def test_build_compiles_a_bpf_object_into_the_cache(tmp_path: Path) -> None:
    path = build.build(tmp_path, Path("/sys/kernel/btf/vmlinux"))
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 247  # EM_BPF
    assert path.parent.name == os.uname().release
    assert build.build(tmp_path, Path("/nonexistent")) == path  # cached: no second compile


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="vigil")
    cli.register(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return args.func(args, load_settings(env={}))


@root_only
def test_sensor_check_says_the_host_can_run_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("sensor", "check") == 0
    out = capsys.readouterr().out
    assert "loaded and attached" in out and "MISSING" not in out


@root_only
def test_sensor_trace_prints_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    exec_later = threading.Timer(0.5, subprocess.run, args=(["/bin/true"],))
    exec_later.start()
    assert _cli("sensor", "trace", "--seconds", "1.5") == 0
    exec_later.join()
    lines = capsys.readouterr().out.splitlines()
    types = {orjson.loads(line)["type"] for line in lines}
    assert "exec" in types
