"""The eBPF sensor on the real kernel: real processes exec, open, connect, unshare, and the records say so.

The sensor ignores its own process, so every action runs in a child and records are picked out by the
child's pid (other processes on the machine are recorded too). No Kafka is involved: these tests need root,
not the dev stack.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
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

from tests.integration.containerd_runtime import Containerd, containerd  # noqa: F401  (the fixture)
from tests.integration.harness import VIGIL, PipeLines
from vigil.collectors.ebpf import Sensor, SensorConfig, SensorUnavailable, build, cli
from vigil.collectors.ebpf.cgroups import CgroupResolver, cgroup2_mount, pids_mount
from vigil.collectors.ebpf.libbpf import BpfObject, LibbpfError, libbpf
from vigil.collectors.ebpf.sensor import DEFAULT_OPEN_WATCH, DEFAULT_WRITE_WATCH, MAX_RULES
from vigil.config import load_settings
from vigil.detections.library.runtime_path_traversal_read import DETECTION as TRAVERSAL
from vigil.detections.library.runtime_preload_library_at_exec import DETECTION as PRELOAD
from vigil.sources.ebpf import EBPF_SOURCE
from vigil.sources.host_sensors import SYSCALL_NUMBERS

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the eBPF sensor needs root")

Record = dict[str, Any]
REPEATS = 300_000_000  # the module sensor's repeat window for opens
FLUSH_S = 1.0  # the module sensor's syscall profile interval


@pytest.fixture(scope="module")
def watched_dir() -> Iterator[Path]:
    """A directory configured as sensitive (short path: kernel-side prefixes are at most 64 bytes)."""
    with tempfile.TemporaryDirectory(prefix="vigil-ebpf-", dir="/tmp") as path:
        yield Path(path)


@pytest.fixture(scope="module")
def sensor(watched_dir: Path) -> Iterator[Sensor]:
    """The sensor with every rule slot the kernel has in use: the test directory's rule is the last of them."""
    fillers = MAX_RULES - len(DEFAULT_OPEN_WATCH) - len(DEFAULT_WRITE_WATCH) - 1
    unused = tuple(f"{watched_dir}/unused-{index}/" for index in range(fillers))
    config = SensorConfig(open_watch=(*DEFAULT_OPEN_WATCH, *unused, f"{watched_dir}/secrets/"),
                          open_repeat_window_ns=REPEATS, syscall_flush_s=FLUSH_S)
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
        return [record for record in self.records if record.get("pid") == pid]  # syscall profiles have no pid


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
    assert "exe_deleted" not in record  # its file has links
    exited = recorder.wait_for(lambda r: r["type"] == "exit" and r["pid"] == child.pid)
    assert (exited["exit_code"], exited["signal"]) == (0, 0)
    orjson.dumps(record)  # JSON-able as it is


#: A child that copies /bin/true into a memory file (argv[1] "memfd") or into a file it unlinks after opening it
#: (argv[1] a path), then executes that through its descriptor (fexecve), as a fileless loader does.
_FEXECVE = """
import os, shutil, sys
where = sys.argv[1]
if where == "memfd":
    fd = os.memfd_create("vigil-payload", 0)
    with open("/bin/true", "rb") as source:
        os.write(fd, source.read())
else:
    shutil.copy("/bin/true", where)
    fd = os.open(where, os.O_RDONLY)
    os.unlink(where)
os.execve(fd, ["vigil-fexec"], {})
"""


@root_only
def test_an_exec_from_a_memory_file_is_named_and_has_no_links(recorder: Recorder) -> None:
    """A memory file's dentry is its own parent: the walk records its one name, as the kernel's d_path does."""
    pid = _python(_FEXECVE, "memfd")
    record = recorder.wait_for(lambda r: r["type"] == "exec" and r["pid"] == pid and r["args"] == ["vigil-fexec"])
    assert (record["exe"], record.get("exe_deleted")) == ("/memfd:vigil-payload", True)
    assert EBPF_SOURCE.normalize(record, "c1", "node-1").actor.exe_flags == ["from_memfd"]


@root_only
def test_an_exec_of_an_unlinked_file_is_flagged_deleted(recorder: Recorder, tmp_path: Path) -> None:
    pid = _python(_FEXECVE, str(tmp_path / "dropped"))
    record = recorder.wait_for(lambda r: r["type"] == "exec" and r["pid"] == pid and r["args"] == ["vigil-fexec"])
    assert (record["exe"], record.get("exe_deleted")) == (str(tmp_path / "dropped"), True)
    assert EBPF_SOURCE.normalize(record, "c1", "node-1").actor.exe_flags == ["deleted"]


@root_only
def test_exec_records_only_the_selected_environment_variables(recorder: Recorder) -> None:
    """The kernel scans the new process's environment for the loader's and the proxies' variables: a value is
    kept up to 127 bytes, a proxy's password is removed, a variable longer than a scan step is stepped over, a
    name that only starts like a selected one is not one, and nothing of any other variable is recorded."""
    secret = f"vigil-secret-{uuid.uuid4().hex}"
    env = {"PATH": "/usr/bin:/bin", "LONG": "x" * 700, "LD_PRELOADX": secret, "LD_PR": secret, "TOKEN": secret,
           "LD_PRELOAD": "/nonexistent/vigil-hook.so", "https_proxy": "http://bob:hunter2@proxy.example:3128",
           "ALL_PROXY": "socks5://" + "p" * 300, "AFTER": secret}
    child = subprocess.Popen(["/bin/true"], env=env, stderr=subprocess.DEVNULL)  # ld.so: cannot be preloaded
    assert child.wait(timeout=30) == 0
    record = recorder.wait_for(lambda r: r["type"] == "exec" and r["pid"] == child.pid)
    assert record["env"] == {"LD_PRELOAD": "/nonexistent/vigil-hook.so",
                             "https_proxy": "http://bob:***@proxy.example:3128",
                             "ALL_PROXY": ("socks5://" + "p" * 300)[:127]}
    assert "env_cut" not in record
    assert secret not in orjson.dumps(record).decode() and "hunter2" not in orjson.dumps(record).decode()
    (line,) = list(EBPF_SOURCE.split(orjson.dumps(record), 1 << 20))
    event = EBPF_SOURCE.normalize(line, "c1", "node-1")
    assert PRELOAD.match(event, PRELOAD.params) and event.actor.env == record["env"]
    plain = subprocess.Popen(["/bin/true"], env={"PATH": "/usr/bin:/bin"})
    assert plain.wait(timeout=30) == 0
    assert "env" not in recorder.wait_for(lambda r: r["type"] == "exec" and r["pid"] == plain.pid)


def _padded_env(variables: list[tuple[str, str, int]]) -> dict[str, str]:
    """An environment in which each (name, value) starts at its offset (in the order given): padding variables of
    at most 64 KiB (the kernel takes 128 KiB a string) fill the bytes from where the last one ended."""
    env: dict[str, str] = {}
    at = 0
    for name, value, offset in variables:
        while at < offset:
            size = offset - at if offset - at <= 65536 else 60000
            pad = f"PAD{len(env)}"
            env[pad] = "p" * (size - len(pad) - 2)
            at += size
        env[name] = value
        at = offset + len(name) + len(value) + 2
    return env


@root_only
def test_exec_environment_scan_reads_variables_across_its_blocks(recorder: Recorder) -> None:
    """The kernel reads the environment a 1 KiB block at a time: a name crossing a block's end, a variable starting
    a block and one far into a large environment are found; past the scan's 256 KiB bound the record says the
    environment was cut."""
    env = _padded_env([("HTTP_PROXY", "http://proxy.example:1", 1019), ("LD_AUDIT", "/audit.so", 2048),
                       ("LD_LIBRARY_PATH", "/far", 100_003)])
    child = subprocess.Popen(["/bin/true"], env=env, stderr=subprocess.DEVNULL)
    assert child.wait(timeout=30) == 0
    record = recorder.wait_for(lambda r: r["type"] == "exec" and r["pid"] == child.pid)
    assert record["env"] == {"HTTP_PROXY": "http://proxy.example:1", "LD_AUDIT": "/audit.so",
                             "LD_LIBRARY_PATH": "/far"}
    assert "env_cut" not in record
    beyond = subprocess.Popen(["/bin/true"], env=_padded_env([("HTTPS_PROXY", "http://p.example:1", 120_000),
                                                              ("LD_PRELOAD", "/late.so", 270_000)]),
                              stderr=subprocess.DEVNULL)
    assert beyond.wait(timeout=30) == 0
    record = recorder.wait_for(lambda r: r["type"] == "exec" and r["pid"] == beyond.pid)
    assert record["env"] == {"HTTPS_PROXY": "http://p.example:1"} and record["env_cut"] is True


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


@root_only
def test_writes_where_the_node_is_controlled_are_recorded_and_reads_there_are_not(recorder: Recorder) -> None:
    """/etc, the program directories, cron and root's dotfiles are watched for writes by default (issue 13: writes
    there produced no events, so the persistence and drift detections could not fire from the sensor)."""
    path = f"/etc/vigil-test-{uuid.uuid4().hex[:12]}"
    script = "import os, sys\nopen(sys.argv[1], 'w').close()\nopen(sys.argv[1]).close()\nos.unlink(sys.argv[1])"
    pid = _python(script, path)
    record = recorder.wait_for(lambda r: r["type"] == "file_write" and r["pid"] == pid)
    assert record["path"] == path and record["flags"] & os.O_CREAT
    assert [r["path"] for r in recorder.of_pid(pid) if r["type"] in ("open", "file_write")] == [path]


@root_only
@pytest.mark.parametrize(("spelling", "cwd"), [
    ("/etc/../etc/shadow", None), ("//etc/shadow", None), ("/var/lib/../../etc/./shadow", None),
    ("shadow", "/etc"), ("../etc/shadow", "/tmp"), ("../../../../../etc/shadow", "/proc/self"),
])
def test_watched_paths_are_matched_as_the_kernel_resolved_them(recorder: Recorder, spelling: str,
                                                               cwd: str | None) -> None:
    """Issue 13: an open of /etc/../etc/shadow, or of a path relative to the working directory, passed the kernel's
    filter unseen (it matched the path as spelled). Such paths are matched at the open's exit on the opened file."""
    pid = _python("import sys\nopen(sys.argv[1]).close()\nopen('/etc/./hostname').close()", spelling,
                  cwd=Path(cwd) if cwd else None)
    record = recorder.wait_for(lambda r: r["type"] == "open" and r["pid"] == pid)
    assert record["path"] == "/etc/shadow"
    assert [r["path"] for r in recorder.of_pid(pid) if r["type"] in ("open", "file_write")] == ["/etc/shadow"]


_TRAVERSALS = """
import os, sys
base, up = sys.argv[1], "../" * 16
for path in ("/etc/passwd", "/etc/./hostname", f"{base}/www/../x", "/etc/shadow",  # none a traversal
             f"{base}/www/{up}etc/passwd", f"{up}etc/hostname", f"{base}/www/../home/.ssh/id_ed25519",
             "/etc/../etc/shadow", f"{up}etc/vigil-missing"):  # the last fails: nothing opened, nothing recorded
    try:
        open(path).close()
    except FileNotFoundError:
        pass
"""


@root_only
def test_opens_spelled_with_dot_dot_are_flagged_and_of_etc_or_ssh_dirs_recorded(recorder: Recorder,
                                                                                 tmp_path: Path) -> None:
    """A path traversal (a web application opening ../../etc/passwd): an open spelled with ".." components is
    flagged, and recorded when it reaches a file under /etc or an SSH directory even where no rule watches it."""
    (tmp_path / "www").mkdir()
    (tmp_path / "x").touch()
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    (tmp_path / "home" / ".ssh" / "id_ed25519").touch()
    pid = _python(_TRAVERSALS, str(tmp_path), cwd=tmp_path / "www")
    recorder.wait_for(lambda r: r["type"] == "open" and r["pid"] == pid and r["path"] == "/etc/shadow"
                      and r.get("traversal"))
    opens = [(r["path"], r.get("traversal", False)) for r in recorder.of_pid(pid) if r["type"] == "open"]
    assert opens == [("/etc/shadow", False), ("/etc/passwd", True), ("/etc/hostname", True),
                     (f"{tmp_path}/home/.ssh/id_ed25519", True), ("/etc/shadow", True)]
    passwd = next(r for r in recorder.of_pid(pid) if r["type"] == "open" and r["path"] == "/etc/passwd")
    (line,) = list(EBPF_SOURCE.split(orjson.dumps(passwd), 1 << 20))
    assert TRAVERSAL.match(EBPF_SOURCE.normalize(line, "c1", "node-1"), TRAVERSAL.params)  # python is no shell


@root_only
def test_relative_writes_and_opens_through_a_directory_descriptor_are_matched_resolved(recorder: Recorder) -> None:
    name = f"vigil-test-{uuid.uuid4().hex[:12]}"
    script = ("import os, sys\nos.chdir('/etc')\nopen(sys.argv[1], 'w').close()\nos.unlink(sys.argv[1])\n"
              "etc = os.open('/etc', os.O_RDONLY)\nos.close(os.open('shadow', os.O_RDONLY, dir_fd=etc))\n"
              "try: open('../etc/' + sys.argv[1] + '-missing')\nexcept OSError: pass")
    pid = _python(script, name)
    written = recorder.wait_for(lambda r: r["type"] == "file_write" and r["pid"] == pid)
    assert written["path"] == f"/etc/{name}" and written["flags"] & os.O_CREAT
    opened = recorder.wait_for(lambda r: r["type"] == "open" and r["pid"] == pid)
    assert opened["path"] == "/etc/shadow"
    # an open that failed has no file to resolve: it is not recorded
    assert len([r for r in recorder.of_pid(pid) if r["type"] in ("open", "file_write")]) == 2


_SOCKETS = """
import socket
for family, kind, protocol in ((socket.AF_NETLINK, socket.SOCK_RAW, 0), (socket.AF_INET, socket.SOCK_STREAM, 0),
                               (socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)),
                               (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                               (socket.AF_PACKET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, socket.htons(0x0806))):
    socket.socket(family, kind, protocol).close()
"""


@root_only
def test_packet_and_raw_sockets_are_recorded_and_others_are_not(recorder: Recorder) -> None:
    pid = _python(_SOCKETS)
    recorder.wait_for(lambda r: r["type"] == "socket" and r["pid"] == pid and r["protocol"] == "arp")
    sockets = [(r["family"], r["socket_type"], r["protocol"]) for r in recorder.of_pid(pid) if r["type"] == "socket"]
    assert sockets == [("packet", "raw", "all"), ("inet", "raw", "icmp"), ("packet", "dgram", "arp")]


_STDIO_DUP = """
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
client = socket.socket()
client.connect(server.getsockname())
print(server.getsockname()[1], flush=True)
with open(os.devnull, "w") as null:
    os.dup2(null.fileno(), 1)  # a file onto stdout: not recorded
os.dup2(client.fileno(), 9)  # a socket onto another descriptor: not recorded
os.dup2(client.fileno(), 1)  # the reverse shell's dup2
os.close(0)
assert libc.dup(client.fileno()) == 0
os.close(2)
assert libc.fcntl(client.fileno(), 0, 0) == 2  # F_DUPFD
os.close(0)
stdin_socket = socket.socket()
assert stdin_socket.fileno() == 0
stdin_socket.connect(server.getsockname())  # a socket connecting as stdin
"""


@root_only
def test_a_socket_duplicated_onto_standard_input_or_output_is_recorded(recorder: Recorder) -> None:
    child = subprocess.run([sys.executable, "-c", _STDIO_DUP], capture_output=True, text=True, check=True)
    server_port = int(child.stdout.split()[0])
    recorder.wait_for(lambda r: r["type"] == "stdio_dup" and r["call"] == "connect" and r["remote_port"] == server_port)
    dups = [r for r in recorder.records if r["type"] == "stdio_dup" and r["remote_port"] == server_port]
    assert [(r["call"], r["new_fd"]) for r in dups] == [("dup2", 1), ("dup", 0), ("fcntl", 2), ("connect", 0)]
    assert {(r["family"], r["protocol"], r["remote_address"]) for r in dups} == {("inet", "tcp", "127.0.0.1")}


_MEMORY_AND_FAULTS = """
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall(323, 0)  # userfaultfd as root: not recorded
os.setresuid(65534, 65534, 0)
libc.syscall(323, 0)  # as nobody: recorded (whether or not the kernel allows it)
os.setresuid(0, 0, 0)
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
buffer = ctypes.create_string_buffer(8)
local = remote = iovec(ctypes.addressof(buffer), 8)
child = os.fork()
if child == 0:
    signal.pause()
libc.process_vm_writev(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)  # itself: not recorded
assert libc.process_vm_writev(child, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) == 8
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
print(child)
"""


@root_only
def test_userfaultfd_by_a_user_and_a_write_into_another_process_are_recorded(recorder: Recorder) -> None:
    child = subprocess.run([sys.executable, "-c", _MEMORY_AND_FAULTS], capture_output=True, text=True, check=True)
    target = int(child.stdout.split()[0])
    written = recorder.wait_for(lambda r: r["type"] == "process_vm_write" and r["target_pid"] == target)
    pid = written["pid"]
    assert written["iovecs"] == 1
    faults = recorder.wait_for(lambda r: r["type"] == "userfaultfd" and r["pid"] == pid)
    assert (faults["uid"], faults["flags"]) == (65534, 0)
    kinds = [r["type"] for r in recorder.of_pid(pid)]
    assert (kinds.count("userfaultfd"), kinds.count("process_vm_write")) == (1, 1)


_RELATIVE_CHANGES = """
import os, sys
name = sys.argv[1]
os.chdir("/etc")
open(name, "w").close()
os.chmod(name, 0o600)
os.unlink(name)
etc = os.open("/etc", os.O_RDONLY)
os.chdir("/")
os.mkdir(name, dir_fd=etc)
os.rmdir(f"etc/{name}")
"""


@root_only
def test_relative_names_of_file_changes_are_matched_under_their_directory(recorder: Recorder) -> None:
    """cd /etc; chmod x: the name is joined to the working directory (or the directory descriptor) it is relative
    to, walked in the kernel, before the watch rules are matched."""
    name = f"vigil-test-{uuid.uuid4().hex[:12]}"
    pid = _python(_RELATIVE_CHANGES, name)
    recorder.wait_for(lambda r: r["type"] == "file_change" and r["pid"] == pid and r["call"] == "rmdir")
    changes = [(r["call"], r["path"]) for r in recorder.of_pid(pid) if r["type"] == "file_change"]
    assert changes == [("chmod", f"/etc/{name}"), ("unlink", f"/etc/{name}"), ("mkdirat", f"/etc/{name}"),
                       ("rmdir", f"/etc/{name}")]


_WX_MEMORY = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
page = libc.mmap(None, 4096, 3, 0x22, -1, 0)  # read+write, private and anonymous: not recorded
assert libc.mprotect(page, 4096, 5) == 0  # read+exec: not recorded
assert libc.mprotect(page, 4096, 7) == 0  # read+write+exec: recorded
libc.mmap(None, 8192, 7, 0x22, -1, 0)  # again in the same process: not recorded again
"""


@root_only
def test_memory_made_writable_and_executable_is_recorded_once_per_process(recorder: Recorder) -> None:
    pid = _python(_WX_MEMORY)
    record = recorder.wait_for(lambda r: r["type"] == "wx_memory" and r["pid"] == pid)
    assert (record["call"], record["prot"], record["length"]) == ("mprotect", 7, 4096)
    again = _python(_WX_MEMORY)  # another process: recorded again
    recorder.wait_for(lambda r: r["type"] == "wx_memory" and r["pid"] == again)
    assert [r["type"] for r in recorder.of_pid(pid)].count("wx_memory") == 1


_PTRACE_SETREGS = """
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
child = os.fork()
if child == 0:
    signal.pause()
    os._exit(0)
regs = ctypes.create_string_buffer(4096)
assert libc.ptrace(16, child, None, None) == 0  # PTRACE_ATTACH: recorded
os.waitpid(child, 0)
getregs, setregs = (12, 13) if sys.argv[1] == "x86_64" else (0x4204, 0x4205)
if sys.argv[1] == "x86_64":
    assert libc.ptrace(getregs, child, None, regs) == 0  # PTRACE_GETREGS: a debugger's routine, not recorded
    assert libc.ptrace(setregs, child, None, regs) == 0  # PTRACE_SETREGS: recorded
else:  # arm64 has only the register-set requests: NT_PRSTATUS through an iovec
    iov = (ctypes.c_void_p * 2)(ctypes.addressof(regs), 4096)
    assert libc.ptrace(getregs, child, 1, iov) == 0
    assert libc.ptrace(setregs, child, 1, iov) == 0
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
"""


@root_only
def test_ptrace_register_writes_are_recorded_and_reads_are_not(recorder: Recorder) -> None:
    """Setting another process's registers points it at injected code (Falco's PTRACE_SETREGS)."""
    pid = _python(_PTRACE_SETREGS, platform.machine())
    written = "setregs" if platform.machine() == "x86_64" else "setregset"
    recorder.wait_for(lambda r: r["type"] == "ptrace" and r["pid"] == pid and r["request"] == written)
    assert [r["request"] for r in recorder.of_pid(pid) if r["type"] == "ptrace"] == ["attach", written]


_DATAGRAMS = """
import socket, sys
first, second, third = (int(port) for port in sys.argv[1:])
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in (first, first, second, first):  # once per destination port
    udp.sendto(b"x", ("127.0.0.1", port))
udp.sendmsg([b"x"], [], 0, ("127.0.0.1", third))
connected = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
connected.connect(("::1", first))  # a connect record of its own, and its sends name no address
connected.send(b"x")
"""


@root_only
def test_udp_datagrams_sent_to_an_address_are_recorded_once_per_destination_port(recorder: Recorder) -> None:
    """sendto and sendmsg on an unconnected UDP socket reach a destination no connect names: each destination
    port of a process is recorded once, as a connect to it named by its call."""
    ports = [str(port) for port in (40001, 40002, 40003)]
    pid = _python(_DATAGRAMS, *ports)
    recorder.wait_for(lambda r: r["type"] == "connect" and r["pid"] == pid and r["family"] == "inet6")
    sent = [(r.get("call", "connect"), r["protocol"], r["remote_address"], r["remote_port"])
            for r in recorder.of_pid(pid) if r["type"] == "connect"]
    assert sent == [("sendto", "udp", "127.0.0.1", 40001), ("sendto", "udp", "127.0.0.1", 40002),
                    ("sendmsg", "udp", "127.0.0.1", 40003), ("connect", "udp", "::1", 40001)]


_UNIX_CONNECTS = """
import socket, sys
for name in ("app.sock", "docker.sock", "run/containerd/containerd.sock"):
    path = f"{sys.argv[1]}/{name}"
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    socket.socket(socket.AF_UNIX).connect(path)
"""


@root_only
def test_connects_to_container_runtime_sockets_are_recorded_and_other_unix_ones_are_not(recorder: Recorder,
                                                                                      tmp_path: Path) -> None:
    (tmp_path / "run" / "containerd").mkdir(parents=True)
    pid = _python(_UNIX_CONNECTS, str(tmp_path))
    recorder.wait_for(lambda r: r["type"] == "unix_connect" and r["pid"] == pid and r["path"].endswith("d.sock"))
    paths = [r["path"] for r in recorder.of_pid(pid) if r["type"] == "unix_connect"]
    assert paths == [f"{tmp_path}/docker.sock", f"{tmp_path}/run/containerd/containerd.sock"]
    assert not [r for r in recorder.of_pid(pid) if r["type"] == "connect"]  # unix sockets are no inet connects


_FILE_CHANGES = """
import os, sys
name, scratch = sys.argv[1], sys.argv[2]
os.mkdir(f"/etc/{name}.d")
os.rmdir(f"/etc/{name}.d")
open(f"/etc/{name}", "w").close()
os.chmod(f"/etc/{name}", 0o600)
os.chown(f"/etc/{name}", 0, 0)
os.rename(f"/etc/{name}", f"/etc/{name}.bak")
os.symlink("/etc/shadow", f"{scratch}/shadow-link")
os.unlink(f"/etc/{name}.bak")
open(f"{scratch}/plain", "w").close()
os.chmod(f"{scratch}/plain", 0o755)  # not watched, no special bits: not recorded
os.chmod(f"{scratch}/plain", 0o4755)  # the setuid bit: recorded wherever the file is
os.unlink(f"{scratch}/plain")
"""


@root_only
def test_watched_paths_removed_renamed_linked_made_or_repermissioned_are_recorded(recorder: Recorder,
                                                                                  tmp_path: Path) -> None:
    name = f"vigil-test-{uuid.uuid4().hex[:12]}"
    pid = _python(_FILE_CHANGES, name, str(tmp_path))
    recorder.wait_for(lambda r: r["type"] == "file_change" and r["pid"] == pid and r["call"] == "chmod"
                      and r["mode"] == 0o4755)
    changes = [(r["call"], r["path"], r["other_path"]) for r in recorder.of_pid(pid) if r["type"] == "file_change"]
    etc = f"/etc/{name}"
    assert changes == [("mkdir", f"{etc}.d", ""), ("rmdir", f"{etc}.d", ""), ("chmod", etc, ""), ("chown", etc, ""),
                       ("rename", etc, f"{etc}.bak"), ("symlink", "/etc/shadow", f"{tmp_path}/shadow-link"),
                       ("unlink", f"{etc}.bak", ""), ("chmod", f"{tmp_path}/plain", "")]
    modes = [(r["call"], r["mode"], r["owner"], r["group"]) for r in recorder.of_pid(pid) if r["type"] == "file_change"]
    assert modes[2:4] == [("chmod", 0o600, -1, -1), ("chown", 0, 0, 0)]


#: Times set on a watched file and an unwatched one: "now" (an ordinary touch), explicit times by path, through a
#: descriptor (futimens: utimensat with no path) and with utimes(2)'s timevals (the syscall: glibc's utimes calls
#: utimensat), where the architecture has it (argv[3], its number); then the file is removed.
_TIMES = """
import ctypes, os, sys
watched, plain = sys.argv[1], sys.argv[2]
for path in (watched, plain):
    open(path, "w").close()
os.utime(watched)
os.utime(plain, (1_546_300_800, 1_546_300_800))
os.utime(watched, (1_546_300_800, 1_546_300_800))
fd = os.open(watched, os.O_RDONLY)
os.utime(fd, (1_262_304_000, 1_262_304_000))
if sys.argv[3]:
    timevals = (ctypes.c_long * 4)(946_684_800, 0, 946_684_800, 0)
    assert ctypes.CDLL(None).syscall(int(sys.argv[3]), watched.encode(), timevals) == 0
os.unlink(watched)
"""


@root_only
def test_explicit_times_set_on_watched_paths_are_recorded_and_now_is_not(recorder: Recorder,
                                                                           tmp_path: Path) -> None:
    watched = f"/etc/vigil-test-{uuid.uuid4().hex[:12]}"
    utimes = SYSCALL_NUMBERS[platform.machine()].get("utimes")
    pid = _python(_TIMES, watched, str(tmp_path / "plain"), str(utimes or ""))
    recorder.wait_for(lambda r: r["type"] == "file_change" and r["pid"] == pid and r["call"] == "unlink")
    times = [(r["call"], r["path"], r["mtime"]) for r in recorder.of_pid(pid)
             if r["type"] == "file_change" and r["call"] != "unlink"]
    assert times == [("utimensat", watched, 1_546_300_800), ("utimensat", watched, 1_262_304_000),
                     *([("utimes", watched, 946_684_800)] if utimes else [])]


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
def test_cgroup_ids_with_a_zero_byte_resolve_to_their_own_container() -> None:
    """One cgroup id in 256 has a zero low byte: its file handle must still carry the whole id (it was cut at the
    zero, so such a container's records had no container id). Creates cgroups until the kernel hands out one."""
    root = cgroup2_mount()
    assert root is not None
    resolver = CgroupResolver(root)
    parent = root / f"vigil-test-{uuid.uuid4().hex[:8]}"
    parent.mkdir()
    try:
        for _ in range(4096):
            container_id = uuid.uuid4().hex * 2
            cgroup = parent / container_id
            cgroup.mkdir()
            try:
                cgroup_id = cgroup.stat().st_ino
                if cgroup_id & 0xFF == 0:
                    assert resolver.container_id(cgroup_id) == container_id
                    return
            finally:
                cgroup.rmdir()
        pytest.fail("the kernel handed out no cgroup id with a zero low byte in 4096 tries")
    finally:
        parent.rmdir()
        resolver.close()


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


#: Opens argv[1] in bursts of argv[3], argv[2] times, saying "done" after each burst and waiting for a line back.
_BURSTS = """
import os, sys
path, bursts, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(bursts):
    for _ in range(size):
        os.close(os.open(path, os.O_RDONLY))
    print("done", flush=True)
    sys.stdin.readline()
"""


@root_only
def test_a_reader_that_keeps_up_loses_nothing_once_the_buffer_has_wrapped_round(watched_dir: Path) -> None:
    """Each burst is a quarter of the buffer and is read before the next begins, so the kernel never lacks room;
    the reader polls while the records are written, as a collector does, and moves its position each time. (A
    position written in two steps, zero then the value, let the kernel see a reader that had read nothing: once
    the producer had gone round, it refused about one record in 5,000.)"""
    (watched_dir / "wrap").write_text("")
    config = SensorConfig(open_watch=(str(watched_dir / "wrap"),), write_watch=(), ring_buffer_bytes=1 << 20,
                          wakeup_bytes=4096, open_repeat_window_ns=0, syscall_profiles=False)
    bursts, size = 60, 2000  # about 13 MiB of records: the 1 MiB buffer goes round 13 times
    with Sensor(config) as sensor:
        child = subprocess.Popen([sys.executable, "-c", _BURSTS, str(watched_dir / "wrap"), str(bursts), str(size)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert child.stdin is not None and child.stdout is not None
        read = 0
        arrived = threading.Condition()
        stop = threading.Event()

        def count() -> None:
            nonlocal read
            while not stop.is_set():
                records = sum(1 for r in sensor.poll(20) if r["pid"] == child.pid and r["type"] == "open")
                with arrived:
                    read += records
                    arrived.notify()

        reader = threading.Thread(target=count, daemon=True)
        reader.start()
        try:
            for burst in range(1, bursts + 1):
                assert child.stdout.readline() == b"done\n"
                with arrived:
                    arrived.wait_for(lambda: read >= burst * size or sensor.losses() > 0, timeout=30)  # noqa: B023
                assert sensor.losses() == 0, f"burst {burst}: the kernel refused {sensor.losses_by_reason()}"
                assert read == burst * size
                child.stdin.write(b"next\n")
                child.stdin.flush()
        finally:
            stop.set()
            reader.join()
            child.kill()
            child.wait()


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


def _log_line(message: str) -> Callable[[bytes], bool]:
    """Matches vigil's JSON log line (vigil.logs) with this ``msg``."""
    return lambda line: line.startswith(b"{") and orjson.loads(line).get("msg") == message


@root_only
def test_sensor_trace_prints_json_lines() -> None:
    """The exec is made once trace says its programs are attached (its stderr log line), not after a guess at
    how long loading takes; SIGTERM ends the trace (the 60 s bound only guards against a hung test)."""
    trace = subprocess.Popen([VIGIL, "sensor", "trace", "--seconds", "60"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=os.environ | {"VIGIL_LOG_LEVEL": "INFO"})
    assert trace.stdout is not None and trace.stderr is not None
    stdout, stderr = PipeLines(trace.stdout), PipeLines(trace.stderr)
    try:
        attached = orjson.loads(stderr.wait_for(_log_line("eBPF sensor attached"), timeout=120))
        child = subprocess.Popen(["/bin/true"])
        assert child.wait(timeout=30) == 0
        line = stdout.wait_for(lambda line: (r := orjson.loads(line))["type"] == "exec" and r["pid"] == child.pid,
                               timeout=30)
    finally:
        trace.terminate()
        stdout.until_closed()
        stderr.until_closed()
        assert trace.wait(timeout=30) == 0, b"\n".join(stderr.lines).decode(errors="replace")
    assert attached["programs"] > 0 and attached["pid"] == trace.pid
    assert orjson.loads(line)["args"] == ["/bin/true"]
    assert stderr.lines[-1].startswith(b"vigil sensor trace: kernel losses ")



class ContainerCgroup:
    """A cgroup v2 directory named like a runtime's container (and its cgroup v1 ``pids`` twin where the host
    has one): processes started in it are that container's to the sensor."""

    def __init__(self) -> None:
        root = cgroup2_mount()
        assert root is not None
        self.container_id = uuid.uuid4().hex * 2
        self.relative = f"vigil-test-{uuid.uuid4().hex[:8]}/{self.container_id}"
        self.groups = [root / self.relative] + ([pids / self.relative] if (pids := pids_mount()) else [])
        for group in self.groups:
            group.mkdir(parents=True)

    def popen(self, command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        def enter() -> None:
            for group in self.groups:
                (group / "cgroup.procs").write_text("0")

        return subprocess.Popen(command, preexec_fn=enter, **kwargs)

    def remove(self) -> None:
        for group in self.groups:
            with contextlib.suppress(FileNotFoundError):
                group.rmdir()
            with contextlib.suppress(FileNotFoundError):
                group.parent.rmdir()


@pytest.fixture
def container_cgroup() -> Iterator[ContainerCgroup]:
    cgroup = ContainerCgroup()
    try:
        yield cgroup
    finally:
        cgroup.remove()


def _syscalls_of(recorder: Recorder, container_id: str, **matching: Any) -> Record:
    return recorder.wait_for(lambda r: r["type"] == "syscalls" and r["container_id"] == container_id
                             and all(r[name] == value for name, value in matching.items()))


@root_only
def test_a_containers_syscalls_are_reported_when_its_cgroup_is_removed(recorder: Recorder,
                                                                       container_cgroup: ContainerCgroup,
                                                                       tmp_path: Path) -> None:
    made = tmp_path / "made"
    child = container_cgroup.popen(["/bin/busybox", "mkdir", str(made)])
    assert child.wait(timeout=30) == 0 and made.is_dir()
    container_cgroup.remove()
    record = _syscalls_of(recorder, container_cgroup.container_id, arch=platform.machine())
    assert {"mkdir", "execve", "exit_group"} <= set(record["syscalls"])
    assert not {"mkdirat", "socket", "connect", "unshare", "clone"} & set(record["syscalls"])
    assert record["syscalls"] == sorted(record["syscalls"])
    assert record["counts"]["exec"] == 1 and record["counts"]["fork"] == record["counts"]["connect"] == 0
    assert record["counts"]["syscalls"] >= len(record["syscalls"])
    assert record["cgroup_id"] > 0 and record["interval_s"] <= FLUSH_S * 2
    (line,) = list(EBPF_SOURCE.split(orjson.dumps(record), 1 << 20))
    event = EBPF_SOURCE.normalize(line, "c1", "node-1")
    assert (event.kind, event.action, event.k8s.container_id) == (
        "container.syscalls", "profile", container_cgroup.container_id)


_WORKLOAD = """
import os, socket, sys, time
os.mkdir(sys.argv[1], dir_fd=os.open("/", os.O_RDONLY))  # mkdirat
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(("127.0.0.1", 9))
print("ready", flush=True)
time.sleep(60)
"""


@root_only
def test_a_running_containers_syscalls_and_pids_are_reported_every_interval(recorder: Recorder,
                                                                            container_cgroup: ContainerCgroup,
                                                                            tmp_path: Path) -> None:
    child = container_cgroup.popen([sys.executable, "-c", _WORKLOAD, str(tmp_path / "made")], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        records: list[Record] = []
        while "connect" not in {name for record in records for name in record["syscalls"]}:  # may take 2 intervals
            records.append(_syscalls_of(recorder, container_cgroup.container_id))
            recorder.records.remove(records[-1])
        seen = {name for record in records for name in record["syscalls"]}
        assert {"mkdirat", "socket", "connect", "execve"} <= seen and "mkdir" not in seen
        assert sum(record["counts"]["connect"] for record in records) == 1
        assert {record["pids"] for record in records} == {1 if pids_mount() else -1}  # the python process, alive
        assert not [r for r in recorder.records if r["type"] == "syscalls" and not r["container_id"]]  # host cgroups
    finally:
        child.kill()
        child.wait()


@root_only
def test_drain_reports_every_containers_syscalls_so_far(sensor: Sensor, container_cgroup: ContainerCgroup) -> None:
    child = container_cgroup.popen(["/bin/busybox", "sleep", "60"])  # returns once the child has exec'd
    try:
        drained = [r for r in sensor.drain() if r["type"] == "syscalls"]
        assert container_cgroup.container_id in {r["container_id"] for r in drained}
    finally:
        child.kill()
        child.wait()


#: Installs a seccomp filter whose verdict for syscall argv[1] is argv[2] (every other syscall is allowed),
#: then makes that syscall: mkdirat(AT_FDCWD, argv[3], 0755).
_SECCOMP_VICTIM = """
import ctypes, platform, struct, sys
number, verdict, path = int(sys.argv[1]), int(sys.argv[2], 0), sys.argv[3].encode()
arch = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[platform.machine()]
def op(code, k, jt=0, jf=0): return struct.pack("<HBBI", code, jt, jf, k)
LOAD, JEQ, RET, ALLOW = 0x20, 0x15, 0x06, 0x7FFF0000
program = b"".join([op(LOAD, 4), op(JEQ, arch, 1, 0), op(RET, ALLOW),
                    op(LOAD, 0), op(JEQ, number, 0, 1), op(RET, verdict), op(RET, ALLOW)])
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(SockFprog(len(program) // 8, program)), 0, 0) == 0  # SECCOMP_MODE_FILTER
libc.syscall(number, -100, path, 0o755)
"""
SECCOMP_RET_TRAP, SECCOMP_RET_KILL_PROCESS = 0x00030000, 0x80000000


@root_only
@pytest.mark.parametrize(("verdict", "action"), [(SECCOMP_RET_TRAP, "trap"),
                                                 (SECCOMP_RET_KILL_PROCESS, "kill_process")])
def test_a_syscall_a_seccomp_filter_denies_with_sigsys_is_recorded(recorder: Recorder,
                                                                   container_cgroup: ContainerCgroup,
                                                                   tmp_path: Path, verdict: int, action: str) -> None:
    mkdirat = SYSCALL_NUMBERS[platform.machine()]["mkdirat"]
    child = container_cgroup.popen([sys.executable, "-c", _SECCOMP_VICTIM, str(mkdirat), hex(verdict),
                                    str(tmp_path / "denied")])
    assert child.wait(timeout=30) == -signal.SIGSYS and not (tmp_path / "denied").exists()
    record = recorder.wait_for(lambda r: r["type"] == "seccomp" and r["pid"] == child.pid)
    assert (record["syscall"], record["syscall_name"], record["action"]) == (mkdirat, "mkdirat", action)
    assert (record["arch"], record["container_id"]) == (platform.machine(), container_cgroup.container_id)
    event = EBPF_SOURCE.normalize(record, "c1", "node-1")
    assert (event.kind, event.action, event.target.name, event.outcome.result) == (
        "kernel.seccomp", action, "mkdirat", "denied")
    assert (event.actor.pid, event.actor.exe, event.k8s.container_id) == (
        child.pid, record["comm"], container_cgroup.container_id)
    assert record["comm"].startswith("python")


@root_only
def test_a_signal_that_is_not_from_seccomp_is_not_recorded(recorder: Recorder) -> None:
    child = subprocess.Popen(["/bin/busybox", "sleep", "30"])
    child.send_signal(signal.SIGSYS)
    assert child.wait(timeout=30) == -signal.SIGSYS
    recorder.wait_for(lambda r: r["type"] == "exit" and r["pid"] == child.pid)
    assert not [r for r in recorder.of_pid(child.pid) if r["type"] == "seccomp"]


@root_only
@pytest.mark.parametrize(("mode", "owner", "action"), [(0o4755, (65534, 0), "setuid_exec"),
                                                      (0o2755, (0, 65534), "setgid_exec")])
def test_running_a_setuid_or_setgid_binary_is_recorded_with_the_effective_ids(
        recorder: Recorder, tmp_path: Path, mode: int, owner: tuple[int, int], action: str) -> None:
    binary = tmp_path / "busybox"
    shutil.copy("/bin/busybox", binary)
    os.chown(binary, *owner)
    binary.chmod(mode)
    child = subprocess.Popen([str(binary), "true"])
    assert child.wait(timeout=30) == 0
    record = recorder.wait_for(lambda r: r["type"] == "exec" and r["pid"] == child.pid)
    assert (record["uid"], record["gid"], record["euid"], record["egid"]) == (0, 0, *owner)
    event = EBPF_SOURCE.normalize(record, "c1", "node-1")
    assert (event.action, event.actor.uid, event.target.path) == (action, 0, str(binary))
    plain = subprocess.Popen(["/bin/busybox", "true"])
    assert plain.wait(timeout=30) == 0
    record = recorder.wait_for(lambda r: r["type"] == "exec" and r["pid"] == plain.pid)
    assert EBPF_SOURCE.normalize(record, "c1", "node-1").action == "exec"


@root_only
def test_a_real_containers_syscalls_are_reported_when_it_is_removed(recorder: Recorder,
                                                                    containerd: Containerd) -> None:  # noqa: F811
    """runc's init sets the container up from inside its cgroup; only the workload's calls are its profile
    (the execve of the workload is runc's init's too, and busybox runs mkdir and ls without another)."""
    pod = containerd.run_pod("profiled", "vigil-test")
    container_id = containerd.run_container(pod, "worker", ["sh", "-c", "mkdir /tmp/made && ls /tmp/made"])
    try:
        record = _syscalls_of(recorder, container_id, arch=platform.machine())
    finally:
        containerd.remove_pod(pod)
    assert "mkdir" in record["syscalls"] and "connect" not in record["syscalls"]
    runc_setup = {"mount", "pivot_root", "umount2", "mkdirat", "sethostname", "keyctl", "unshare", "setns"}
    assert not runc_setup & set(record["syscalls"]), record["syscalls"]
