"""Decoding the sensor's binary records, naming containers from cgroup paths, and the watch patterns.

Records are packed here with the C struct layouts of ``sensor.bpf.c``; the integration tests check the same
decoding against what the kernel really writes.
"""

from __future__ import annotations

import socket
import struct

import pytest

from collectors.ebpf.cgroups import container_id_of_path
from collectors.ebpf.records import HEADER, MAX_DEPTH, NAME_LEN, RecordDecoder, namespaces
from collectors.ebpf.sensor import MAX_RULES, SensorConfig, split_pattern

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
    raw = (_header(1) + struct.pack("<IIII", len(args), 3, 2, 0) + args.ljust(1024, b"\0")
           + _components("dash", "bin", "usr") + _components("tmp", "var") + _components())
    record = _decode(raw)
    assert record["type"] == "exec"
    assert (record["time_ns"], record["pid"], record["tid"], record["ppid"]) == (BOOT_OFFSET + 1_000, 10, 11, 9)
    assert (record["uid"], record["gid"], record["comm"], record["cgroup_id"]) == (1000, 1001, "curl", 42)
    assert record["container_id"] == CID and record["_resolved"] == [42]
    assert record["args"] == ["/bin/sh", "-c", "echo hi"]
    assert (record["exe"], record["cwd"], record["parent_exe"]) == ("/usr/bin/dash", "/var/tmp", "")


def test_known_cgroups_are_not_resolved_again() -> None:
    raw = _header(3) + struct.pack("<IIII", 0o1, 0, 11, 7) + b"/etc/shadow"
    record = _decode(raw, known={42: ""})
    assert (record["container_id"], record["_resolved"]) == ("", [])
    assert (record["type"], record["path"], record["flags"], record["repeats"]) == ("open", "/etc/shadow", 1, 7)


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


def test_syscall_records() -> None:
    ptrace = _decode(_header(7) + struct.pack("<qII", 0x4206, 77, 0))
    assert (ptrace["request"], ptrace["target_pid"]) == ("seize", 77)
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
