"""The ``ebpf`` source: sensor records (as recorded on a real kernel) into the envelope, and refusals."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from vigil.event import KINDS, Event
from vigil.sources.ebpf import EBPF_SOURCE
from vigil.sources.ebpf.normalize import KIND_OF_TYPE
from vigil.sources.source import Rejected, get_source

_HEADER = {"time_ns": 1795707065092577812, "pid": 3787, "tid": 3787, "ppid": 3783, "uid": 0, "gid": 0,
           "comm": "python", "cgroup_id": 1, "container_id": ""}

#: One record of every type, as ``vigil sensor trace`` printed them on this project's machines.
RECORDED: dict[str, dict[str, Any]] = {
    "exec": {"type": "exec", **_HEADER, "comm": "echo", "args": ["/bin/echo", "hello", "world"],
             "exe": "/usr/bin/echo", "cwd": "/work/main", "parent_exe": "/usr/bin/bash"},
    "exit": {"type": "exit", **_HEADER, "exit_code": 0, "signal": 9},
    "open": {"type": "open", **_HEADER, "flags": 524288, "mode": 0, "path": "/etc/shadow"},
    "file_write": {"type": "file_write", **_HEADER, "flags": 524865, "mode": 438, "path": "/tmp/release_agent"},
    "connect": {"type": "connect", **_HEADER, "family": "inet6", "protocol": "tcp", "local_address": "::",
                "local_port": 0, "remote_address": "::1", "remote_port": 50139, "fd": 4},
    "accept": {"type": "accept", **_HEADER, "family": "inet", "protocol": "tcp", "local_address": "127.0.0.1",
               "local_port": 50029, "remote_address": "127.0.0.1", "remote_port": 58370, "fd": 4},
    "listen": {"type": "listen", **_HEADER, "family": "inet", "protocol": "tcp", "local_address": "127.0.0.1",
               "local_port": 50029, "remote_address": "0.0.0.0", "remote_port": 0, "fd": 6},
    "ptrace": {"type": "ptrace", **_HEADER, "request": "attach", "target_pid": 1},
    "setid": {"type": "setid", **_HEADER, "call": "setresuid", "ids": [0, 0, 0]},
    "ns_change": {"type": "ns_change", **_HEADER, "call": "unshare", "flags": 1073741824, "namespaces": ["net"],
                  "fd": -1},
    "mount": {"type": "mount", **_HEADER, "flags": 0, "source": "/dev/sda1", "target": "/mnt/host",
              "fstype": "ext4"},
    "module_load": {"type": "module_load", **_HEADER, "call": "finit_module", "flags": 0, "fd": 3,
                    "name": "rootkit.ko", "args": ""},
    "bpf": {"type": "bpf", **_HEADER, "command": "prog_load", "prog_type": 2, "prog_name": "on_exec"},
    "memfd_create": {"type": "memfd_create", **_HEADER, "flags": 1, "name": "evil"},
    "seccomp": {"type": "seccomp", **_HEADER, "syscall": 258, "syscall_name": "mkdirat", "arch": "x86_64",
                "action": "trap", "data": 0},
    "socket": {"type": "socket", **_HEADER, "family": "packet", "socket_type": "raw", "protocol": "all"},
    "stdio_dup": {"type": "stdio_dup", **_HEADER, "family": "inet", "protocol": "tcp", "local_address": "127.0.0.1",
                  "local_port": 39544, "remote_address": "127.0.0.1", "remote_port": 53363, "fd": 4, "new_fd": 1,
                  "call": "dup2"},
    "userfaultfd": {"type": "userfaultfd", **_HEADER, "flags": 0},
    "process_vm_write": {"type": "process_vm_write", **_HEADER, "target_pid": 22808, "iovecs": 1},
    "unix_connect": {"type": "unix_connect", **_HEADER, "fd": 6, "family": "unix", "path": "/run/docker.sock"},
    "wx_memory": {"type": "wx_memory", **_HEADER, "prot": 7, "length": 4096, "flags": 0, "call": "mprotect"},
    "file_change": {"type": "file_change", **_HEADER, "mode": 0, "owner": -1, "group": -1, "call": "rename",
                    "path": "/etc/vigil-h1-f", "other_path": "/etc/vigil-h1-g"},
}
#: A container's syscall profile for one interval, as the sensor reported it on this project's machines.
SYSCALLS = {
    "type": "syscalls", "cgroup_id": 4262, "arch": "x86_64",
    "syscalls": ["arch_prctl", "brk", "close", "close_range", "execve", "exit_group", "getrandom", "getuid", "mkdir",
                 "mprotect", "prctl", "prlimit64", "readlink", "rseq", "set_robust_list", "set_tid_address"],
    "counts": {"syscalls": 21, "fork": 0, "exec": 1, "open": 0, "connect": 0}, "time_ns": 1795712931659545404,
    "container_id": "9bea2f1ee7514635a3bbd7bb7d403b299bea2f1ee7514635a3bbd7bb7d403b29", "interval_s": 0.024,
    "pids": -1,
}

_K8S = {"namespace": "shop", "pod": "web-0", "pod_uid": "u-1", "container_id": "c" * 64,
        "container_name": "web", "image": "busybox:1", "service_account": "shop/web", "labels": {"app": "web"}}


def _normalize(record: dict[str, Any]) -> Event:
    return EBPF_SOURCE.normalize(record, "c1", "node-1")


def test_the_source_is_registered_under_its_name() -> None:
    assert get_source("ebpf") is EBPF_SOURCE


@pytest.mark.parametrize("record_type", sorted(RECORDED))
def test_every_record_type_becomes_an_event_of_a_known_kind(record_type: str) -> None:
    record = RECORDED[record_type]
    event = _normalize(record)
    assert event.kind == KIND_OF_TYPE[record_type] and event.kind in KINDS
    assert (event.source, event.cluster, event.node, event.time_ns) == ("ebpf", "c1", "node-1", record["time_ns"])
    assert (event.actor.pid, event.actor.ppid, event.actor.uid, event.actor.gid) == (3787, 3783, 0, 0)
    assert event.raw is record
    assert EBPF_SOURCE.key(record, "c1") == event.correlation_key == "c1/~"
    assert Event.from_json(event.to_json()) == event


def test_covers_every_type_the_sensor_records() -> None:
    from vigil.sources.ebpf.records import TYPES

    # cgroup records are the sensor's own business: a new cgroup names its container for the records after it, a
    # removed one tells the sensor to report its syscalls, which it makes itself
    internal = {"cgroup_mkdir", "cgroup_rmdir"}
    assert {*RECORDED, "syscalls"} == set(KIND_OF_TYPE) == set(TYPES.values()) - internal | {"syscalls"}


def test_a_datagram_sent_without_connecting_is_a_connect_whose_action_is_the_call() -> None:
    event = _normalize({**RECORDED["connect"], "protocol": "udp", "call": "sendmsg"})
    assert (event.kind, event.action, event.network.protocol) == ("net.connect", "sendmsg", "udp")
    assert _normalize(RECORDED["connect"]).action == "connect"


def test_an_open_spelled_with_dot_dot_is_a_traversal() -> None:
    assert _normalize({**RECORDED["open"], "traversal": True}).file.traversal is True
    assert _normalize({**RECORDED["open"], "traversal": "yes"}).file.traversal is False
    assert _normalize(RECORDED["open"]).file.traversal is False


def test_exec_carries_only_the_selected_environment_variables() -> None:
    """A record from the bus is not trusted to hold only the selected names: the normalizer selects again."""
    env = {"LD_PRELOAD": "/tmp/hook.so", "AWS_SECRET_ACCESS_KEY": "x", "HTTPS_PROXY": "http://u:p@proxy:80",
           "LD_AUDIT": 7}
    event = _normalize({**RECORDED["exec"], "env": env})
    assert event.actor.env == {"LD_PRELOAD": "/tmp/hook.so", "HTTPS_PROXY": "http://u:***@proxy:80"}
    assert _normalize({**RECORDED["exec"], "env": "LD_PRELOAD=/x"}).actor.env == {}
    assert _normalize(RECORDED["exec"]).actor.env == {}


def test_exec_carries_the_process_identity() -> None:
    event = _normalize(RECORDED["exec"])
    assert (event.action, event.actor.exe, event.target.path) == ("exec", "/usr/bin/echo", "/usr/bin/echo")
    assert event.actor.args == ["/bin/echo", "hello", "world"]
    assert (event.actor.cwd, event.actor.parent_exe) == ("/work/main", "/usr/bin/bash")
    assert event.outcome.result == "success"


def test_targets_name_what_was_acted_on() -> None:
    assert _normalize(RECORDED["open"]).target.path == "/etc/shadow"
    write = _normalize(RECORDED["file_write"])
    assert (write.kind, write.action, write.target.path) == ("file.write", "open_write", "/tmp/release_agent")
    connect = _normalize(RECORDED["connect"]).target
    assert (connect.address, connect.port, connect.resource) == ("::1", 50139, "tcp")
    accept = _normalize(RECORDED["accept"]).target
    assert (accept.address, accept.port) == ("127.0.0.1", 58370)
    listen = _normalize(RECORDED["listen"]).target
    assert (listen.address, listen.port) == ("127.0.0.1", 50029)
    ptrace = _normalize(RECORDED["ptrace"])
    assert (ptrace.action, ptrace.target.name) == ("attach", "1")
    setid = _normalize(RECORDED["setid"])
    assert (setid.action, setid.target.name) == ("setresuid", "0,0,0")
    ns = _normalize(RECORDED["ns_change"])
    assert (ns.action, ns.target.name) == ("unshare", "net")
    mount = _normalize(RECORDED["mount"]).target
    assert (mount.path, mount.name, mount.resource) == ("/mnt/host", "/dev/sda1", "ext4")
    assert _normalize(RECORDED["module_load"]).target.name == "rootkit.ko"
    bpf = _normalize(RECORDED["bpf"])
    assert (bpf.action, bpf.target.name) == ("prog_load", "on_exec")
    assert _normalize(RECORDED["memfd_create"]).target.name == "evil"


def test_exit_outcome_reflects_code_and_signal() -> None:
    killed = _normalize(RECORDED["exit"]).outcome
    assert (killed.result, killed.reason) == ("failure", "signal 9")
    clean = _normalize({**RECORDED["exit"], "signal": 0}).outcome
    assert (clean.result, clean.code) == ("success", 0)


def test_enrichment_from_the_node_collector_becomes_the_k8s_context_and_key() -> None:
    record = {**RECORDED["open"], "k8s": _K8S, "node": "worker-7", "container_id": "c" * 64}
    event = _normalize(record)
    assert event.k8s.pod == "web-0" and event.k8s.labels == {"app": "web"} and event.k8s.image == "busybox:1"
    assert event.node == "worker-7"
    assert event.correlation_key == EBPF_SOURCE.key(record, "c1") == "c1/shop/web-0"


def test_container_id_comes_from_the_record_when_not_enriched() -> None:
    event = _normalize({**RECORDED["exec"], "container_id": "d" * 64})
    assert event.k8s.container_id == "d" * 64 and event.k8s.pod == ""


def test_ids_are_deterministic_and_distinct_per_record() -> None:
    first, again = _normalize(RECORDED["open"]), _normalize(copy.deepcopy(RECORDED["open"]))
    assert first.id == again.id
    assert first.id != _normalize({**RECORDED["open"], "time_ns": RECORDED["open"]["time_ns"] + 1}).id


def test_wrong_field_types_become_empty_values() -> None:
    event = _normalize({**RECORDED["exec"], "args": "rm -rf /", "uid": "0", "k8s": "web", "exe": 7})
    assert (event.actor.args, event.actor.uid, event.actor.exe, event.k8s.pod) == ([], -1, "", "")


def test_split_yields_records_and_refuses_bad_ones() -> None:
    good = RECORDED["open"]
    payload = orjson.dumps([good, {"type": "teleport", "time_ns": 1, "pid": 1}, {**good, "time_ns": "x"}, 3])
    items = list(EBPF_SOURCE.split(payload, 1 << 20))
    assert items[0] == good
    assert [item.reason for item in items[1:] if isinstance(item, Rejected)] == [
        "wrong_kind", "missing_field", "wrong_kind"]
    assert next(iter(EBPF_SOURCE.split(b"{not json", 1 << 20))).reason == "not_json"
    assert next(iter(EBPF_SOURCE.split(orjson.dumps(good), 10))).reason == "too_large"
    assert next(iter(EBPF_SOURCE.split(orjson.dumps({**good, "pid": 0}), 1 << 20))).reason == "missing_field"


def test_normalize_refuses_a_record_without_identity() -> None:
    from vigil.sources.source import RecordRejected

    with pytest.raises(RecordRejected) as refused:
        _normalize({"type": "exec", "pid": 1})
    assert refused.value.reason == "missing_field"


def test_an_exec_that_changes_the_effective_uid_or_gid_is_a_setuid_or_setgid_exec() -> None:
    assert _normalize({**RECORDED["exec"], "euid": 0, "egid": 0}).action == "exec"
    setuid = _normalize({**RECORDED["exec"], "uid": 1000, "euid": 0, "egid": 0})
    assert (setuid.action, setuid.actor.uid, setuid.raw["euid"]) == ("setuid_exec", 1000, 0)
    assert _normalize({**RECORDED["exec"], "euid": 0, "egid": 42}).action == "setgid_exec"
    assert _normalize({**RECORDED["exec"], "uid": 5, "euid": 0, "egid": 42}).action == "setuid_exec"


def test_sigsys_from_seccomp_is_a_denied_syscall() -> None:
    event = _normalize(RECORDED["seccomp"])
    assert (event.kind, event.action, event.target.name) == ("kernel.seccomp", "trap", "mkdirat")
    assert (event.outcome.result, event.outcome.code, event.outcome.reason) == (
        "denied", 258, "seccomp trap on mkdirat")
    assert event.actor.exe == "python"  # the process name where the kernel gave no executable path
    killed = _normalize({**RECORDED["seccomp"], "action": "kill_process"})
    assert (killed.action, killed.outcome.reason) == ("kill_process", "seccomp kill_process on mkdirat")


def test_a_syscall_profile_is_a_container_event_without_a_process() -> None:
    event = _normalize({**SYSCALLS, "k8s": _K8S})
    assert (event.kind, event.action, event.outcome.result) == ("container.syscalls", "profile", "success")
    assert (event.actor.pid, event.target.name, event.time_ns) == (0, "", SYSCALLS["time_ns"])
    assert (event.k8s.pod, event.raw["syscalls"][-1]) == ("web-0", "set_tid_address")
    assert event.id != _normalize({**SYSCALLS, "arch": "i386"}).id  # one per architecture per interval
    assert Event.from_json(event.to_json()) == event
    (line,) = EBPF_SOURCE.split(orjson.dumps(SYSCALLS), 1 << 20)
    assert line == SYSCALLS


@pytest.mark.parametrize("record_type", ["exec", "syscalls"])
def test_a_host_process_keys_by_its_node_not_with_every_nodes_host_activity(record_type: str) -> None:
    record = {**(SYSCALLS if record_type == "syscalls" else RECORDED[record_type]), "node": "worker-7"}
    event = _normalize(record)
    assert event.k8s.pod == "" and event.actor.user == "node:worker-7"
    assert EBPF_SOURCE.key(record, "c1") == event.correlation_key == "c1/~node:worker-7"
    other = {**record, "node": "worker-8"}
    assert EBPF_SOURCE.key(other, "c1") == _normalize(other).correlation_key != event.correlation_key
    namespaced = {**record, "k8s": {"namespace": "shop"}}
    assert EBPF_SOURCE.key(namespaced, "c1") == _normalize(namespaced).correlation_key == "c1/shop"
    assert _normalize(namespaced).actor.user == ""


# -- the model's runtime parts ------------------------------------------------------------------------------

def test_an_exec_carries_effective_ids_and_the_container_the_cgroup_named() -> None:
    record = {**RECORDED["exec"], "uid": 1000, "gid": 1000, "euid": 0, "egid": 1000, "container_id": "c" * 64,
              "k8s": _K8S}
    event = _normalize(record)
    assert (event.actor.uid, event.actor.euid, event.actor.gid, event.actor.egid) == (1000, 0, 1000, 1000)
    assert (event.container.id, event.container.name, event.container.image) == ("c" * 64, "web", "busybox:1")
    assert event.actor.exe_flags == [] and event.actor.auid == -1


def test_a_container_without_pod_context_is_still_a_container() -> None:
    event = _normalize({**RECORDED["exec"], "container_id": "9bea" * 16})
    assert event.container.id == event.k8s.container_id == "9bea" * 16 and event.k8s.pod == ""


def test_an_exec_from_a_memory_file_is_flagged() -> None:
    event = _normalize({**RECORDED["exec"], "exe": "/memfd:payload (deleted)"})
    assert event.actor.exe_flags == ["from_memfd"]
    # A memory file has no links either: it is flagged as what it is, not also as deleted.
    event = _normalize({**RECORDED["exec"], "exe": "/memfd:payload", "exe_deleted": True})
    assert event.actor.exe_flags == ["from_memfd"]


@pytest.mark.parametrize(("mtime", "name"), [
    (1_546_300_800, "mtime=2019-01-01T00:00:00Z"),
    (-1, "atime"),  # only the access time was set
    (10**13, "mtime=10000000000000"),  # past the calendar's end: the seconds as recorded
])
def test_a_time_change_names_the_times_it_set(mtime: int, name: str) -> None:
    event = _normalize({**RECORDED["file_change"], "call": "utimensat", "path": "/usr/bin/../bin/top",
                        "mtime": mtime})
    assert (event.kind, event.action, event.target.path, event.target.name) == (
        "file.write", "utimensat", "/usr/bin/top", name)


def test_an_exec_of_an_unlinked_executable_is_flagged_deleted() -> None:
    event = _normalize({**RECORDED["exec"], "exe": "/tmp/.x", "exe_deleted": True})
    assert event.actor.exe_flags == ["deleted"]
    assert _normalize({**RECORDED["exec"], "exe": "/tmp/.x", "exe_deleted": "yes"}).actor.exe_flags == []


@pytest.mark.parametrize(("flags", "access", "mode"), [
    (524288, ["read"], -1),  # O_RDONLY|O_CLOEXEC: no mode without O_CREAT
    (524865, ["write", "create", "truncate"], 438),  # O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, mode 0666
    (0o2002, ["read", "write", "append"], -1),  # O_RDWR|O_APPEND
])
def test_an_open_says_how_the_file_was_accessed(flags: int, access: list[str], mode: int) -> None:
    event = _normalize({**RECORDED["file_write"], "flags": flags})
    assert (event.file.path, event.file.access, event.file.mode) == ("/tmp/release_agent", access, mode)


@pytest.mark.parametrize(("flags", "kind", "action"), [
    (0o2000000, "file.open", "open"),  # O_RDONLY|O_CLOEXEC
    (0o1101, "file.write", "open_write"),  # O_WRONLY|O_CREAT|O_TRUNC: the shell's '>' through a hostPath mount
    (0o2, "file.write", "open_write"),  # O_RDWR
])
def test_an_open_of_a_watched_path_for_writing_is_a_write(flags: int, kind: str, action: str) -> None:
    event = _normalize({**RECORDED["open"], "path": "/host/etc/cron.d/sync", "flags": flags})
    assert (event.kind, event.action, event.target.path) == (kind, action, "/host/etc/cron.d/sync")


def test_sockets_carry_both_ends_their_direction_and_the_remote_class() -> None:
    connect = _normalize(RECORDED["connect"]).network
    assert (connect.family, connect.protocol, connect.direction) == ("inet6", "tcp", "outbound")
    assert (connect.remote_address, connect.remote_port, connect.remote_class) == ("::1", 50139, "loopback")
    accept = _normalize({**RECORDED["accept"], "remote_address": "10.2.3.4"}).network
    assert (accept.direction, accept.local_port, accept.remote_address, accept.remote_class) == (
        "inbound", 50029, "10.2.3.4", "private")
    listen = _normalize(RECORDED["listen"]).network
    assert (listen.direction, listen.local_address, listen.local_port) == ("listen", "127.0.0.1", 50029)
    assert (listen.remote_address, listen.remote_class) == ("", "")  # the sensor's 0.0.0.0 is no peer


def test_a_syscall_profile_carries_its_activity() -> None:
    activity = _normalize(SYSCALLS).activity
    assert activity.counts == SYSCALLS["counts"] and activity.syscalls == SYSCALLS["syscalls"]
    assert (activity.interval_s, activity.processes) == (0.024, -1)
    assert _normalize({**SYSCALLS, "pids": 3}).activity.processes == 3


def test_parts_of_other_record_types_stay_empty() -> None:
    event = _normalize(RECORDED["ptrace"])
    assert (event.file.path, event.network.direction, event.activity.counts) == ("", "", {})


def test_a_packet_or_raw_socket_names_its_family_type_and_protocol() -> None:
    event = _normalize(RECORDED["socket"])
    assert (event.kind, event.action, event.target.name, event.target.resource) == ("net.socket", "socket", "raw",
                                                                                    "all")
    assert (event.network.family, event.network.protocol, event.network.remote_address) == ("packet", "all", "")
    icmp = _normalize({**RECORDED["socket"], "family": "inet", "protocol": "icmp"}).network
    assert (icmp.family, icmp.protocol) == ("inet", "icmp")


@pytest.mark.parametrize(("new_fd", "stream"), [(0, "stdin"), (1, "stdout"), (2, "stderr"), (7, "7")])
def test_a_socket_on_standard_input_or_output_names_the_stream_and_the_peer(new_fd: int, stream: str) -> None:
    event = _normalize({**RECORDED["stdio_dup"], "new_fd": new_fd, "remote_address": "93.184.216.34"})
    assert (event.kind, event.action, event.target.name) == ("net.stdio_redirect", "dup2", stream)
    assert (event.target.address, event.target.port, event.target.resource) == ("93.184.216.34", 53363, "tcp")
    assert (event.network.family, event.network.remote_address, event.network.remote_class) == (
        "inet", "93.184.216.34", "public")
    assert event.network.local_port == 39544


def test_a_connect_to_a_runtime_socket_is_a_unix_connect_with_its_path() -> None:
    event = _normalize(RECORDED["unix_connect"])
    assert (event.kind, event.action, event.target.path) == ("net.connect", "connect", "/run/docker.sock")
    assert (event.network.family, event.network.direction, event.network.remote_class) == ("unix", "outbound", "")


def test_userfaultfd_and_process_vm_writev_are_syscall_events() -> None:
    uffd = _normalize({**RECORDED["userfaultfd"], "uid": 1000})
    assert (uffd.kind, uffd.action, uffd.target.name, uffd.actor.uid) == (
        "process.syscall", "userfaultfd", "userfaultfd", 1000)
    write = _normalize(RECORDED["process_vm_write"])
    assert (write.kind, write.action, write.target.resource, write.target.name) == (
        "process.syscall", "process_vm_writev", "processes", "22808")


def test_file_changes_name_the_call_both_paths_and_the_mode() -> None:
    rename = _normalize(RECORDED["file_change"])
    assert (rename.kind, rename.action, rename.target.path) == ("file.write", "rename", "/etc/vigil-h1-f")
    assert (rename.file.path, rename.file.other_path, rename.file.access, rename.file.mode) == (
        "/etc/vigil-h1-f", "/etc/vigil-h1-g", [], -1)
    chmod = _normalize({**RECORDED["file_change"], "call": "fchmodat", "mode": 0o4755, "other_path": ""})
    assert (chmod.kind, chmod.action, chmod.file.mode, chmod.file.other_path) == ("file.write", "fchmodat", 0o4755, "")
    link = _normalize({**RECORDED["file_change"], "call": "symlink", "path": "/etc/shadow", "other_path": "/tmp/l"})
    assert (link.file.path, link.file.other_path, link.file.access) == ("/etc/shadow", "/tmp/l", ["create"])
    chown = _normalize({**RECORDED["file_change"], "call": "fchownat", "owner": 0, "group": -1})
    assert (chown.action, chown.target.name) == ("fchownat", "0:-1")


def test_a_mkdir_is_a_syscall_event_with_its_path_as_other_sources_name_it() -> None:
    event = _normalize({**RECORDED["file_change"], "call": "mkdirat", "mode": 0o755, "other_path": "",
                        "path": "/usr/bin/.x/../.hidden"})
    assert (event.kind, event.action, event.target.path, event.file.mode) == (
        "process.syscall", "mkdirat", "/usr/bin/.hidden", 0o755)


def test_writable_executable_memory_is_a_syscall_event_named_by_its_call() -> None:
    event = _normalize(RECORDED["wx_memory"])
    assert (event.kind, event.action, event.target.resource, event.target.name) == (
        "process.syscall", "mprotect", "memory", "write,exec")
    assert _normalize({**RECORDED["wx_memory"], "call": "mmap"}).action == "mmap"
