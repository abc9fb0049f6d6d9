"""Decoding the sensor's binary records, naming containers from cgroup paths, and the watch patterns.

Records are packed here with the C struct layouts of ``sensor.bpf.c``; the integration tests check the same
decoding against what the kernel really writes.
"""

from __future__ import annotations

import socket
import struct
import sys

import pytest

from vigil.collectors.ebpf import profiles
from vigil.collectors.ebpf.cgroups import container_id_of_path
from vigil.collectors.ebpf.profiles import SyscallProfiles, profile_records
from vigil.collectors.ebpf.sensor import MAX_RULES, SensorConfig, head_slot, split_pattern
from vigil.collectors.ebpf.syscall_table import CLASSES, COMPAT_BASE, HANDLERS, entries
from vigil.event import ENV_NAMES
from vigil.sources.ebpf.records import (
    ENV_VALUE_LEN,
    EXEC_ENV,
    HEADER,
    MAX_DEPTH,
    NAME_LEN,
    RecordDecoder,
    namespaces,
)
from vigil.sources.host_sensors import SYSCALL_NUMBERS, syscall_by_number

CID = "0123456789abcdef" * 4
BOOT_OFFSET = 1_700_000_000_000_000_000


def _header(record_type: int, cgroup_id: int = 42) -> bytes:
    return HEADER.pack(1_000, cgroup_id, record_type, 10, 11, 9, 1000, 1001, b"curl\0garbage!!!")


def _components(*names: str) -> bytes:
    """Path components leaf first, as the kernel walks them."""
    slots = b"".join(name.encode().ljust(NAME_LEN, b"\0") for name in names)
    return slots.ljust(MAX_DEPTH * NAME_LEN, b"\0")


def _decode(raw: bytes, known: dict[int, str] | None = None) -> dict:
    resolved: list[int] = []

    def resolve(cgroup_id: int) -> str:
        resolved.append(cgroup_id)
        return CID

    decoder = RecordDecoder(known if known is not None else {}, resolve, BOOT_OFFSET)
    (record,) = decoder(memoryview(raw), [0])
    record["_resolved"] = resolved
    return record


def test_exec_record_paths_args_and_header() -> None:
    args = b"/bin/sh\0-c\0echo hi\0"
    raw = (_header(1) + struct.pack("<IIIIIII4x", len(args), 3, 2, 0, 0, 1001, 0) + args.ljust(1024, b"\0")
           + _components("dash", "bin", "usr") + _components("tmp", "var") + _components() + _no_env())
    record = _decode(raw)
    assert record["type"] == "exec" and "env" not in record
    assert (record["time_ns"], record["pid"], record["tid"], record["ppid"]) == (BOOT_OFFSET + 1_000, 10, 11, 9)
    assert (record["uid"], record["gid"], record["comm"], record["cgroup_id"]) == (1000, 1001, "curl", 42)
    assert record["container_id"] == CID and record["_resolved"] == [42]
    assert record["args"] == ["/bin/sh", "-c", "echo hi"]
    assert (record["exe"], record["cwd"], record["parent_exe"]) == ("/usr/bin/dash", "/var/tmp", "")
    assert (record["euid"], record["egid"]) == (0, 1001)  # effective ids after the exec (a setuid binary)
    assert "exe_deleted" not in record


def test_an_exec_of_a_file_without_links_says_so_and_a_memory_file_is_named() -> None:
    """Bit 1 of exe_flags: the executable's inode had no links when it ran (exec'd through a descriptor after its
    unlink, or a memory file, whose one name the kernel walk now records: ``memfd:<name>``)."""
    raw = (_header(1) + struct.pack("<IIIIIII4x", 0, 1, 0, 0, 0, 0, 1) + b"\0" * 1024
           + _components("memfd:payload") + _components() + _components() + _no_env())
    record = _decode(raw)
    assert (record["exe"], record["exe_deleted"]) == ("/memfd:payload", True)


def _no_env() -> bytes:
    return b"\0" * (EXEC_ENV.size + len(ENV_NAMES) * ENV_VALUE_LEN)


def test_exec_record_carries_the_selected_environment_variables_the_kernel_found() -> None:
    """Bit i of the present mask names ENV_NAMES[i]; lengths say how much of each slot is the value (the rest of
    a slot is whatever the ring buffer held); a proxy URL's password never leaves the decoder."""
    values = [b""] * len(ENV_NAMES)
    values[ENV_NAMES.index("LD_PRELOAD")] = b"/tmp/hook.so"
    values[ENV_NAMES.index("https_proxy")] = b"http://bob:hunter2@proxy:3128"
    present = 1 << ENV_NAMES.index("LD_PRELOAD") | 1 << ENV_NAMES.index("https_proxy")
    slots = b"".join(value.ljust(ENV_VALUE_LEN, b"x") for value in values)
    env = EXEC_ENV.pack(present, 1, *(len(value) for value in values)) + slots
    raw = _header(1) + struct.pack("<IIIIIII4x", 0, 0, 0, 0, 0, 0, 0) + b"\0" * (1024 + 3 * MAX_DEPTH * NAME_LEN) + env
    record = _decode(raw)
    assert record["env"] == {"LD_PRELOAD": "/tmp/hook.so", "https_proxy": "http://bob:***@proxy:3128"}
    assert record["env_cut"] is True


def test_known_cgroups_are_not_resolved_again() -> None:
    raw = _header(3) + struct.pack("<IIII", 0o1, 0, 11, 7) + b"/etc/shadow"
    record = _decode(raw, known={42: ""})
    assert (record["container_id"], record["_resolved"]) == ("", [])
    assert (record["type"], record["path"], record["flags"], record["repeats"]) == ("open", "/etc/shadow", 1, 7)
    assert "traversal" not in record


def test_an_open_spelled_with_dot_dot_is_flagged_and_its_flags_are_the_opens_own() -> None:
    raw = _header(3) + struct.pack("<IIII", 0x80000000 | 0o100000, 0, 11, 0) + b"/etc/passwd"
    record = _decode(raw)
    assert (record["path"], record["flags"], record["traversal"]) == ("/etc/passwd", 0o100000, True)


def test_file_write_and_undecodable_bytes() -> None:
    raw = _header(14) + struct.pack("<IIII", 0o1101, 0o644, 4, 0) + b"a\xffgent"
    record = _decode(raw)
    assert (record["type"], record["path"], record["mode"]) == ("file_write", "a\ufffdge", 0o644)


@pytest.mark.parametrize(("record_type", "name"), [(4, "connect"), (5, "accept"), (6, "listen")])
def test_socket_records_ipv4_and_ipv6(record_type: int, name: str) -> None:
    v4 = _header(record_type) + struct.pack("<HHHH16s16si", 2, 6, 8080, 443, socket.inet_aton("10.0.0.1"),
                                             socket.inet_aton("1.2.3.4"), 5) + b"\0" * 4
    record = _decode(v4)
    assert (record["type"], record["family"], record["protocol"]) == (name, "inet", "tcp")
    assert (record["local_address"], record["local_port"]) == ("10.0.0.1", 8080)
    assert (record["remote_address"], record["remote_port"], record["fd"]) == ("1.2.3.4", 443, 5)
    v6 = _header(record_type) + struct.pack("<HHHH16s16si", 10, 17, 53, 5353,
                                             socket.inet_pton(socket.AF_INET6, "fe80::1"),
                                             socket.inet_pton(socket.AF_INET6, "::1"), -1) + b"\0" * 4
    record = _decode(v6)
    assert (record["family"], record["protocol"], record["local_address"], record["remote_address"]) == (
        "inet6", "udp", "fe80::1", "::1")


def test_a_datagram_sent_to_an_address_is_a_connect_named_by_its_call() -> None:
    sent = _decode(_header(4) + struct.pack("<HHHH16s16siI", 2, 17, 40000, 9999, b"\0" * 16,
                                            socket.inet_aton("203.0.113.9"), 5, 1))
    assert (sent["type"], sent["call"], sent["protocol"], sent["remote_port"]) == ("connect", "sendto", "udp", 9999)
    plain = _decode(_header(4) + struct.pack("<HHHH16s16siI", 2, 17, 40000, 9999, b"\0" * 16, b"\0" * 16, 5, 0))
    assert "call" not in plain


def test_syscall_records() -> None:
    ptrace = _decode(_header(7) + struct.pack("<qII", 0x4206, 77, 0))
    assert (ptrace["request"], ptrace["target_pid"]) == ("seize", 77)
    setregs = _decode(_header(7) + struct.pack("<qII", 13, 78, 0))
    assert (setregs["request"], setregs["target_pid"]) == ("setregs", 78)
    setid = _decode(_header(8) + struct.pack("<Iiii", 3, 0, -1, -1))
    assert (setid["call"], setid["ids"]) == ("setregid", [0, -1])
    ns = _decode(_header(9) + struct.pack("<IIiI", 1, 0x40000000, 4, 0))
    assert (ns["call"], ns["namespaces"], ns["fd"]) == ("setns", ["net"], 4)
    mount = _decode(_header(10) + struct.pack("<Q256s256s32s", 4096, b"proc", b"/host/proc", b"proc"))
    assert (mount["source"], mount["target"], mount["fstype"], mount["flags"]) == ("proc", "/host/proc", "proc", 4096)
    module = _decode(_header(11) + struct.pack("<IIiI64s128s", 1, 0, 3, 0, b"evil.ko", b"x=1"))
    assert (module["call"], module["name"], module["args"]) == ("finit_module", "evil.ko", "x=1")
    bpf = _decode(_header(12) + struct.pack("<II16s", 5, 26, b"kprobe_hide"))
    assert (bpf["command"], bpf["prog_type"], bpf["prog_name"]) == ("prog_load", 26, "kprobe_hide")
    memfd = _decode(_header(13) + struct.pack("<II256s", 3, 0, b"payload"))
    assert (memfd["name"], memfd["flags"]) == ("payload", 3)
    exited = _decode(_header(2) + struct.pack("<II", (3 << 8) | 0, 0))
    assert (exited["exit_code"], exited["signal"]) == (3, 0)
    trap = _decode(_header(16) + struct.pack("<iIIi", 258, 0xC000003E, 0, 1))
    assert (trap["syscall"], trap["syscall_name"], trap["arch"], trap["action"]) == (258, "mkdirat", "x86_64", "trap")
    killed = _decode(_header(16) + struct.pack("<iIIi", 39, 0x40000003, 1, 0))
    assert (killed["syscall_name"], killed["arch"], killed["action"]) == ("mkdir", "i386", "kill_process")


def test_packet_and_raw_socket_records() -> None:
    packet = _decode(_header(17) + struct.pack("<IIII", 17, 3, socket.htons(0x0003), 0))
    assert (packet["type"], packet["family"], packet["socket_type"], packet["protocol"]) == (
        "socket", "packet", "raw", "all")
    arp = _decode(_header(17) + struct.pack("<IIII", 17, 2, socket.htons(0x0806), 0))
    assert (arp["socket_type"], arp["protocol"]) == ("dgram", "arp")
    icmp = _decode(_header(17) + struct.pack("<IIII", 10, 3, 58, 0))
    assert (icmp["family"], icmp["socket_type"], icmp["protocol"]) == ("inet6", "raw", "icmpv6")


def test_stdio_dup_records_carry_the_socket_and_the_stream() -> None:
    ends = struct.pack("<HHHH16s16siI", 2, 6, 40112, 4444, socket.inet_aton("10.0.0.5"),
                       socket.inet_aton("203.0.113.9"), 4, 0)
    record = _decode(_header(18) + ends + struct.pack("<Ii", 3, 0))
    assert (record["type"], record["call"], record["fd"], record["new_fd"]) == ("stdio_dup", "dup3", 4, 0)
    assert (record["family"], record["remote_address"], record["remote_port"]) == ("inet", "203.0.113.9", 4444)
    assert _decode(_header(18) + ends + struct.pack("<Ii", 4, 2))["call"] == "fcntl"
    assert _decode(_header(18) + ends + struct.pack("<Ii", 5, 0))["call"] == "connect"  # a socket connecting as fd 0


def test_userfaultfd_process_vm_write_and_unix_connect_records() -> None:
    uffd = _decode(_header(19) + struct.pack("<II", 1, 0))
    assert (uffd["type"], uffd["flags"], uffd["uid"]) == ("userfaultfd", 1, 1000)
    vm_write = _decode(_header(20) + struct.pack("<II", 4321, 2))
    assert (vm_write["type"], vm_write["target_pid"], vm_write["iovecs"]) == ("process_vm_write", 4321, 2)
    path = b"/run/containerd/containerd.sock"
    unix = _decode(_header(21) + struct.pack("<iI", 5, len(path)) + path.ljust(128, b"\0"))
    assert (unix["type"], unix["fd"], unix["family"], unix["path"]) == ("unix_connect", 5, "unix", path.decode())


def test_file_change_records_carry_the_call_both_paths_and_the_mode() -> None:
    raw = (_header(22) + struct.pack("<IIiiIIq", 5, 0, -1, -1, 9, 9, 0) + b"/etc/a.sw".ljust(256, b"\0")
           + b"/etc/a.tx".ljust(256, b"\0"))
    record = _decode(raw)
    assert (record["type"], record["call"], record["path"], record["other_path"]) == (
        "file_change", "renameat2", "/etc/a.sw", "/etc/a.tx")
    chmod = _decode(_header(22) + struct.pack("<IIiiIIq", 8, 0o4755, -1, -1, 4, 0, 0) + b"/tmp".ljust(512, b"\0"))
    assert (chmod["call"], chmod["mode"], chmod["other_path"]) == ("chmod", 0o4755, "")
    chown = _decode(_header(22) + struct.pack("<IIiiIIq", 16, 0, 0, 42, 4, 0, 0) + b"/etc".ljust(512, b"\0"))
    assert (chown["call"], chown["owner"], chown["group"]) == ("fchownat", 0, 42)
    assert "mtime" not in chown  # only a time change has one


def test_a_time_change_carries_the_modification_time_it_set() -> None:
    """Ops 17-20 set a file's times; the kernel records them only with explicit times (timestomping)."""
    record = _decode(_header(22) + struct.pack("<IIiiIIq", 17, 0, -1, -1, 12, 0, 1_546_300_800)
                     + b"/usr/bin/top".ljust(512, b"\0"))
    assert (record["call"], record["path"], record["mtime"]) == ("utimensat", "/usr/bin/top", 1_546_300_800)
    atime_only = _decode(_header(22) + struct.pack("<IIiiIIq", 19, 0, -1, -1, 4, 0, -1) + b"/etc".ljust(512, b"\0"))
    assert (atime_only["call"], atime_only["mtime"]) == ("futimesat", -1)


def test_writable_executable_memory_records() -> None:
    record = _decode(_header(23) + struct.pack("<IIQII", 2, 7, 8192, 0x22, 0))
    assert (record["type"], record["call"], record["prot"], record["length"], record["flags"]) == (
        "wx_memory", "mmap", 7, 8192, 0x22)


def test_removed_cgroups_are_kept_for_the_sensor_not_returned_as_records() -> None:
    decoder = RecordDecoder({}, lambda cgroup_id: "", BOOT_OFFSET)
    removed = _header(15) + struct.pack("<Q256s", 4242, f"/k8s.io/{CID}".encode())
    exited = _header(2) + struct.pack("<II", 0, 0)
    raw = removed + exited
    records = decoder(memoryview(raw), [0, len(removed)])
    assert [record["type"] for record in records] == ["exit"]
    assert decoder.removed_cgroups == [(4242, f"/k8s.io/{CID}")]


def test_a_new_cgroup_is_learned_before_the_records_of_its_processes_are_decoded() -> None:
    """The container's cgroup may be gone when its records are read: the mkdir record ahead of them names it."""
    known: dict[int, str] = {}

    def learn(cgroup_id: int, path: str) -> None:
        known[cgroup_id] = path.rpartition("/")[2]

    decoder = RecordDecoder(known, lambda cgroup_id: "", BOOT_OFFSET, learn)
    made = _header(24, cgroup_id=1) + struct.pack("<Q256s", 4243, f"/k8s.io/{CID}".encode())
    exited = _header(2, cgroup_id=4243) + struct.pack("<II", 0, 0)
    records = decoder(memoryview(made + exited), [0, len(made)])
    assert [(record["type"], record["container_id"]) for record in records] == [("exit", CID)]


def test_namespace_flags() -> None:
    assert namespaces(0x10000000 | 0x00020000 | 0x80) == ["mnt", "user", "time"]
    assert namespaces(0) == []


@pytest.mark.parametrize("path", [
    f"/sys/fs/cgroup/unified/k8s.io/{CID}",
    f"/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-{CID}.scope",
    f"/sys/fs/cgroup/system.slice/docker-{CID}.scope",
    f"/sys/fs/cgroup/docker/{CID}",
    f"/sys/fs/cgroup/kubepods/burstable/pod1234/{CID}",
    f"/sys/fs/cgroup/kubepods.slice/crio-{CID}.scope/init.scope",
])
def test_container_ids_from_every_runtime_layout(path: str) -> None:
    assert container_id_of_path(path) == CID


@pytest.mark.parametrize("path", ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/system.slice/ssh.service",
                                  "/sys/fs/cgroup/user.slice/user-0.slice", "/sys/fs/cgroup/x/" + "a" * 63])
def test_host_cgroups_have_no_container(path: str) -> None:
    assert container_id_of_path(path) == ""


def test_watch_patterns_split_into_prefix_and_suffix() -> None:
    assert split_pattern("/etc/shadow") == (b"/etc/shadow", b"")
    assert split_pattern("/proc/*/mem") == (b"/proc/", b"/mem")
    assert split_pattern("*release_agent") == (b"", b"release_agent")
    for bad in ("", "/a*b*c", "/" + "x" * 64, "*" + "y" * 33):
        with pytest.raises(ValueError):
            split_pattern(bad)


def test_config_is_checked_and_encoded_write_rules_first() -> None:
    config = SensorConfig(open_watch=("/etc/shadow",), write_watch=("*core_pattern",))
    write, read = config.encoded_rules()
    assert len(write) == len(read) == 176  # sizeof(struct open_rule)
    prefix, mask, suffix, prefix_len, suffix_len, write_only, _ = struct.unpack("<64s64s32sIIII", read)
    assert (prefix.rstrip(b"\0"), mask.count(b"\xff"), suffix, prefix_len, suffix_len, write_only) == (
        b"/etc/shadow", 11, b"\0" * 32, 11, 0, 0)
    assert struct.unpack("<64s64s32sIIII", write)[2].rstrip(b"\0") == b"core_pattern"
    with pytest.raises(ValueError, match="at most"):
        SensorConfig(open_watch=tuple(f"/p{i}" for i in range(MAX_RULES)), write_watch=("*x",))
    with pytest.raises(ValueError, match="power of two"):
        SensorConfig(ring_buffer_bytes=5000)


def _profile_value(numbers: list[int], counts: list[int]) -> bytes:
    """One CPU's ``struct cgroup_syscalls``: a bit per syscall slot, then [native, compat] x 8 counters."""
    used = [0] * 16
    for number in numbers:
        used[number // 64] |= 1 << number % 64
    return struct.pack("<16Q16Q", *used, *counts)


def test_a_profile_unites_the_cpus_and_keeps_compat_syscalls_apart() -> None:
    cpu0 = _profile_value([0, 83, 59], [10, 0, 1, 0, 0, 0, 0, 0] + [0] * 8)
    native_counts, compat_counts = [5, 1, 0, 2, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0, 0, 0]
    cpu1 = _profile_value([83, 60, 511, COMPAT_BASE + 39], [*native_counts, *compat_counts])
    native, compat = profile_records(7, [cpu0, cpu1], "x86_64")
    assert (native["arch"], native["cgroup_id"]) == ("x86_64", 7)
    assert native["syscalls"] == ["execve", "exit", "mkdir", "read", "syscall_511"]
    assert native["counts"] == {"syscalls": 15, "fork": 1, "exec": 1, "open": 2, "connect": 0}
    assert (compat["arch"], compat["syscalls"], compat["counts"]["syscalls"]) == ("i386", ["mkdir"], 3)
    assert profile_records(7, [_profile_value([], [0] * 16)], "x86_64") == []


class _Slots:
    """The per-CPU ``profile_slots`` of a four-CPU node, each holding the cgroup id given (0: empty)."""

    def __init__(self, held: list[int]) -> None:
        self.values = [struct.pack("<Q", cgroup_id) + _profile_value([], [0] * 16) for cgroup_id in held]

    def lookup_per_cpu(self, name: str, key: bytes, value_size: int) -> list[bytes]:
        assert (name, key, value_size) == (profiles.SLOTS, b"\0\0\0\0", len(self.values[0]))
        return self.values


@pytest.mark.parametrize(("cgroup_ids", "visited"), [(None, [0, 2, 3]), ({7}, [0, 3]), ({9}, [])])
def test_slots_are_flushed_by_a_syscall_on_each_cpu_that_holds_a_cgroup_taken(
        monkeypatch: pytest.MonkeyPatch, cgroup_ids: set[int] | None, visited: list[int]) -> None:
    """CPU 1's slot is empty and CPU 2's holds another cgroup; the thread moves to each CPU to flush (a move is a
    syscall there), then back to the CPUs it may run on."""
    moves: list[set[int]] = []
    monkeypatch.setattr(profiles.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(profiles.os, "sched_setaffinity", lambda pid, cpus: moves.append(set(cpus)))
    SyscallProfiles(_Slots([7, 0, 8, 7]), None, 30.0, False).flush_slots(cgroup_ids)  # type: ignore[arg-type]
    assert moves == ([{cpu} for cpu in visited] + [{0, 1, 2, 3}] if visited else [])


def test_a_slot_on_a_cpu_the_collector_may_not_run_on_is_left_to_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    moves: list[set[int]] = []
    monkeypatch.setattr(profiles.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(profiles.os, "sched_setaffinity", lambda pid, cpus: moves.append(set(cpus)))
    SyscallProfiles(_Slots([0, 7, 7, 7]), None, 30.0, False).flush_slots({7})  # type: ignore[arg-type]
    assert moves == [{1}, {0, 1}]


def test_the_kernels_syscall_table_follows_the_architectures_numbers() -> None:
    table = entries("x86_64")
    classes = {slot: entry & 0xFF for slot, entry in table.items()}
    named = {CLASSES[number]: sorted(slot for slot, c in classes.items() if c == number) for number in {1, 2, 3, 4}}
    assert named["exec"] == [59, 322, COMPAT_BASE + 11, COMPAT_BASE + 358]  # execve, execveat; i386 too
    assert SYSCALL_NUMBERS["x86_64"]["connect"] in named["connect"]
    assert table[257] == CLASSES.index("open") | HANDLERS["openat"][0] << 8  # openat: counted and recorded
    assert table[117] == HANDLERS["setresuid"][0] << 8 | 4 << 16  # setresuid: recorded, variant SET_RESUID
    assert all(entry >> 8 == 0 for slot, entry in table.items() if slot >= COMPAT_BASE)  # compat: counted only
    assert 0 not in table.values() and 0 not in table  # read: neither counted apart nor recorded
    assert entries("aarch64")[SYSCALL_NUMBERS["aarch64"]["clone"]] == CLASSES.index("fork")
    recorded = {slot: entry >> 8 & 0xFF for slot, entry in table.items() if entry >> 8}
    for syscall in ("socket", "dup", "dup2", "dup3", "fcntl", "userfaultfd", "process_vm_writev", "renameat2",
                    "unlink", "mprotect", "mmap", "sendto", "sendmsg", "sendmmsg"):
        assert recorded[SYSCALL_NUMBERS["x86_64"][syscall]] == HANDLERS[syscall][0]
    assert table[SYSCALL_NUMBERS["x86_64"]["sendmsg"]] >> 16 == 1  # variant: how the handler finds the address
    assert "dup2" not in SYSCALL_NUMBERS["aarch64"] and SYSCALL_NUMBERS["aarch64"]["dup3"] in entries("aarch64")


def test_syscall_tables_name_numbers_per_architecture() -> None:
    assert [syscall_by_number("x86_64", n) for n in (0, 83, 258, 435)] == ["read", "mkdir", "mkdirat", "clone3"]
    assert [syscall_by_number("aarch64", n) for n in (34, 56, 221)] == ["mkdirat", "openat", "execve"]
    assert syscall_by_number("i386", 11) == "execve"
    assert (syscall_by_number("x86_64", 400), syscall_by_number("riscv", 1)) == ("syscall_400", "syscall_1")
    assert syscall_by_number("x86_64", -1) == "syscall_-1"


def test_the_kernel_is_told_which_opens_rules_without_a_prefix_apply_to() -> None:
    short, heads = SensorConfig(open_watch=("*.pem", "/etc/shadow", "/root/.ssh/"),
                                write_watch=("*release_agent", "/etc/", "/lib")).rule_sets()
    # rules in encoded order: the write rules (0-2), then the others (3-5); bit = rule index
    assert (short.reads, short.writes) == (0b001000, 0b001001)  # *.pem for every open, *release_agent for writes
    # /etc/ and /lib by their first 4 bytes (slots under 256), /etc/shadow and /root/.ssh/ by their first 8
    etc, lib = head_slot(b"/etc/"), head_slot(b"/lib")
    shadow, ssh = head_slot(b"/etc/shadow"), head_slot(b"/root/.ssh/")
    assert etc == head_slot(b"/etc") < 256 <= shadow == head_slot(b"/etc/sha") and head_slot(b"/et") is None
    assert set(heads) == {etc, lib, shadow, ssh}
    assert [(heads[slot].reads, heads[slot].writes) for slot in (etc, lib, shadow, ssh)] == [
        (0, 0b000010), (0, 0b000100), (0b010000, 0b010000), (0b100000, 0b100000)]
    assert heads[shadow].encoded() == struct.pack("<QQ", 0b010000, 0b010000)
    # the kernel's hash: the top 8 bits of the bytes (as loaded on this machine) times 0x9e3779b97f4a7c15
    assert etc == (int.from_bytes(b"/etc", sys.byteorder) * 0x9E3779B97F4A7C15) % 2**64 >> 56
