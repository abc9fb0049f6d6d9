"""Turning the sensor's binary records into the JSON-able dicts the collector ships.

The layouts mirror the C structs of ``sensor.bpf.c`` (change both together). Decoding runs for every record
at hundreds of thousands per second, so each record type has one precompiled :class:`struct.Struct` and a
small function that reads only its own fields, file opens (most of a busy node's records) are decoded inline
in the batch loop, and names of flags and requests are table lookups.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

from vigil.event import ENV_NAMES, selected_env
from vigil.sources.host_sensors import AUDIT_ARCHES, syscall_by_number

HEADER = struct.Struct("<QQIIIIII16s")
_EXEC = struct.Struct("<IIIIIII4x")
_EXIT = struct.Struct("<I")
_OPEN = struct.Struct("<IIII")
_SOCK = struct.Struct("<HHHH16s16siI")
_PTRACE = struct.Struct("<qI")
_SETID = struct.Struct("<Iiii")
_NS = struct.Struct("<IIi")
_MOUNT = struct.Struct("<Q256s256s32s")
_MODULE = struct.Struct("<IIiI64s128s")
_BPF = struct.Struct("<II16s")
_MEMFD = struct.Struct("<II256s")
_CGROUP_DIR = struct.Struct("<Q256s")
_SECCOMP = struct.Struct("<iIIi")
_SOCKET = struct.Struct("<III")
_DUP = struct.Struct("<Ii")  # after the socket's fields (struct sock_record, with its padding: 48 bytes)
_USERFAULTFD = struct.Struct("<I")
_VM_WRITE = struct.Struct("<II")
_UNIX_CONNECT = struct.Struct("<iI")
_FILE_CHANGE = struct.Struct("<IIiiIIq")
_WX_MEMORY = struct.Struct("<IIQI")
EXEC_ENV = struct.Struct(f"<II{len(ENV_NAMES)}H2x")

ARGS_LEN = 1024
NAME_LEN = 64
MAX_DEPTH = 16
ENV_VALUE_LEN = 128
_BODY = HEADER.size  # every record's own fields start right after the header
_EXEC_ARGS = _BODY + _EXEC.size
_EXEC_EXE = _EXEC_ARGS + ARGS_LEN
_EXEC_CWD = _EXEC_EXE + MAX_DEPTH * NAME_LEN
_EXEC_PARENT_EXE = _EXEC_CWD + MAX_DEPTH * NAME_LEN
_EXEC_ENV_AT = _EXEC_PARENT_EXE + MAX_DEPTH * NAME_LEN
_EXEC_ENV_VALUES = _EXEC_ENV_AT + EXEC_ENV.size
_OPEN_PATH = _BODY + 16
_DUP_CALL = _BODY + 48
_UNIX_PATH = _BODY + _UNIX_CONNECT.size
_CHANGE_PATH = _BODY + _FILE_CHANGE.size
_CHANGE_OTHER = _CHANGE_PATH + 256
_OPEN_ALL = struct.Struct(HEADER.format + _OPEN.format[1:])
_TYPE_OFFSET = 16  # the low byte of header.type (little-endian)
_EXE_DELETED = 1  # the sensor's bit in an exec's exe_flags: the executable had no links left (i_nlink 0)
_OPEN_TRAVERSAL = 0x80000000  # the sensor's bit in an open's flags: the path was spelled with ".." components
_COMM_CACHE = 4096

#: Record type numbers of ``enum record_type`` and the names user space gives them.
TYPES = {
    1: "exec", 2: "exit", 3: "open", 4: "connect", 5: "accept", 6: "listen", 7: "ptrace", 8: "setid",
    9: "ns_change", 10: "mount", 11: "module_load", 12: "bpf", 13: "memfd_create", 14: "file_write",
    15: "cgroup_rmdir", 16: "seccomp", 17: "socket", 18: "stdio_dup", 19: "userfaultfd", 20: "process_vm_write",
    21: "unix_connect", 22: "file_change", 23: "wx_memory", 24: "cgroup_mkdir",
}
_CGROUP_RMDIR_TYPE = 15
_CGROUP_MKDIR_TYPE = 24

#: ``enum setid_call`` of sensor.bpf.c.
SETID_CALLS = ("setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid")
#: The calls that map memory writable and executable (the ``call`` of ``struct wx_record``).
WX_CALLS = ("mprotect", "pkey_mprotect", "mmap")
#: The calls that send a datagram to an address (``HANDLE_SEND``'s variants; a connect record's ``pad`` less one).
SEND_CALLS = ("sendto", "sendmsg", "sendmmsg")
#: ``enum file_op`` of sensor.bpf.c: the syscalls that change a file's name, links or permissions.
FILE_OPS = ("unlink", "unlinkat", "rmdir", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "chmod", "fchmodat",
            "link", "linkat", "symlink", "symlinkat", "chown", "lchown", "fchownat", "utimensat", "utimes",
            "futimesat", "utime")
#: The calls that set a file's times (recorded only with explicit times: timestomping).
TIME_CALLS = frozenset(FILE_OPS[-4:])
_PTRACE_REQUESTS = {4: "poketext", 5: "pokedata", 6: "pokeuser", 13: "setregs", 15: "setfpregs", 16: "attach",
                    0x4205: "setregset", 0x4206: "seize"}
_BPF_COMMANDS = {5: "prog_load", 8: "prog_attach", 17: "raw_tracepoint_open", 28: "link_create"}
_PROTOCOLS = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmpv6", 262: "mptcp"}
_NAMESPACE_FLAGS = (
    (0x00020000, "mnt"), (0x02000000, "cgroup"), (0x04000000, "uts"), (0x08000000, "ipc"),
    (0x10000000, "user"), (0x20000000, "pid"), (0x40000000, "net"), (0x00000080, "time"),
)
_AF_INET = 2
#: Socket families the sensor records socket(2) of (packet sockets, raw inet sockets).
_FAMILIES = {2: "inet", 10: "inet6", 17: "packet"}
_SOCKET_TYPES = {1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 10: "packet"}
#: Ethernet protocols of packet sockets (the socket(2) argument is in network byte order).
_ETHER_TYPES = {0x0003: "all", 0x0800: "ip", 0x0806: "arp", 0x86DD: "ipv6", 0x8035: "rarp"}
_DUP_CALLS = {0: "dup", 2: "dup2", 3: "dup3", 4: "fcntl", 5: "connect"}


def text(raw: bytes) -> str:
    """A NUL-terminated C string as text (invalid UTF-8 replaced, so the record stays JSON-able)."""
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def namespaces(flags: int) -> list[str]:
    """The namespace kinds named by CLONE_NEW* bits of unshare(2) flags or a setns(2) nstype."""
    return [name for bit, name in _NAMESPACE_FLAGS if flags & bit]


def _path(view: memoryview, offset: int, depth: int) -> str:
    """A path from the components the kernel walked, leaf first; "" when it walked none."""
    if not depth:
        return ""
    names = [text(view[offset + i * NAME_LEN : offset + (i + 1) * NAME_LEN].tobytes()) for i in range(depth)]
    return "/" + "/".join(reversed(names))


def _exec(record: dict[str, Any], view: memoryview, at: int) -> None:
    args_len, exe_depth, cwd_depth, parent_depth, record["euid"], record["egid"], exe_flags = _EXEC.unpack_from(
        view, at + _BODY)
    args = view[at + _EXEC_ARGS : at + _EXEC_ARGS + args_len].tobytes().split(b"\0")
    if args and not args[-1]:
        args.pop()
    record["args"] = [arg.decode(errors="replace") for arg in args]
    record["exe"] = _path(view, at + _EXEC_EXE, exe_depth)
    if exe_flags & _EXE_DELETED:
        record["exe_deleted"] = True
    record["cwd"] = _path(view, at + _EXEC_CWD, cwd_depth)
    record["parent_exe"] = _path(view, at + _EXEC_PARENT_EXE, parent_depth)
    present, cut, *lengths = EXEC_ENV.unpack_from(view, at + _EXEC_ENV_AT)
    if present:
        record["env"] = _env(view, at, present, lengths)
    if cut:
        record["env_cut"] = True


def _env(view: memoryview, at: int, present: int, lengths: list[int]) -> dict[str, str]:
    """The selected variables the kernel found (bit i of ``present``: ENV_NAMES[i]), values as long as it kept."""
    found = []
    for index, name in enumerate(ENV_NAMES):
        if present >> index & 1:
            start = at + _EXEC_ENV_VALUES + index * ENV_VALUE_LEN
            length = min(lengths[index], ENV_VALUE_LEN - 1)
            found.append((name, view[start : start + length].tobytes().decode(errors="replace")))
    return selected_env(found)


def _exit(record: dict[str, Any], view: memoryview, at: int) -> None:
    code = _EXIT.unpack_from(view, at + _BODY)[0]
    record["exit_code"] = code >> 8 & 0xFF
    record["signal"] = code & 0x7F


def _address(family: int, raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET, raw[:4]) if family == _AF_INET else socket.inet_ntop(socket.AF_INET6, raw)


def _sock(record: dict[str, Any], view: memoryview, at: int) -> None:
    family, protocol, local_port, remote_port, local, remote, fd, call = _SOCK.unpack_from(view, at + _BODY)
    record["family"] = "inet" if family == _AF_INET else "inet6"
    record["protocol"] = _PROTOCOLS.get(protocol, str(protocol))
    record["local_address"] = _address(family, local)
    record["local_port"] = local_port
    record["remote_address"] = _address(family, remote)
    record["remote_port"] = remote_port
    record["fd"] = fd
    if 0 < call <= len(SEND_CALLS):  # a datagram sent to an address, recorded as a connect to it
        record["call"] = SEND_CALLS[call - 1]


def _ptrace(record: dict[str, Any], view: memoryview, at: int) -> None:
    request, record["target_pid"] = _PTRACE.unpack_from(view, at + _BODY)
    record["request"] = _PTRACE_REQUESTS.get(request, str(request))


def _setid(record: dict[str, Any], view: memoryview, at: int) -> None:
    call, *ids = _SETID.unpack_from(view, at + _BODY)
    name = SETID_CALLS[call]
    record["call"] = name
    record["ids"] = ids[: 3 if name.startswith("setres") else 2 if name.startswith("setre") else 1]


def _ns_change(record: dict[str, Any], view: memoryview, at: int) -> None:
    setns, flags, fd = _NS.unpack_from(view, at + _BODY)
    record["call"] = "setns" if setns else "unshare"
    record["flags"] = flags
    record["namespaces"] = namespaces(flags)
    record["fd"] = fd


def _mount(record: dict[str, Any], view: memoryview, at: int) -> None:
    record["flags"], source, target, fstype = _MOUNT.unpack_from(view, at + _BODY)
    record["source"], record["target"], record["fstype"] = text(source), text(target), text(fstype)


def _module(record: dict[str, Any], view: memoryview, at: int) -> None:
    from_fd, flags, fd, _, name, args = _MODULE.unpack_from(view, at + _BODY)
    record["call"] = "finit_module" if from_fd else "init_module"
    record["flags"], record["fd"], record["name"], record["args"] = flags, fd, text(name), text(args)


def _bpf(record: dict[str, Any], view: memoryview, at: int) -> None:
    command, record["prog_type"], name = _BPF.unpack_from(view, at + _BODY)
    record["command"] = _BPF_COMMANDS.get(command, str(command))
    record["prog_name"] = text(name)


def _memfd(record: dict[str, Any], view: memoryview, at: int) -> None:
    record["flags"], _, name = _MEMFD.unpack_from(view, at + _BODY)
    record["name"] = text(name)


def _seccomp(record: dict[str, Any], view: memoryview, at: int) -> None:
    syscall, audit_arch, killed, data = _SECCOMP.unpack_from(view, at + _BODY)
    arch = AUDIT_ARCHES.get(audit_arch, f"0x{audit_arch:x}")
    record["syscall"], record["syscall_name"] = syscall, syscall_by_number(arch, syscall)
    record["arch"] = arch
    # A KILL verdict of the process's last thread and KILL_PROCESS look alike here; both kill the process.
    record["action"] = "kill_process" if killed else "trap"
    record["data"] = data


def _socket(record: dict[str, Any], view: memoryview, at: int) -> None:
    family, kind, protocol = _SOCKET.unpack_from(view, at + _BODY)
    record["family"] = _FAMILIES.get(family, str(family))
    record["socket_type"] = _SOCKET_TYPES.get(kind, str(kind))
    if family == 17:
        ether_type = socket.ntohs(protocol & 0xFFFF)
        record["protocol"] = _ETHER_TYPES.get(ether_type, f"0x{ether_type:04x}")
    else:
        record["protocol"] = _PROTOCOLS.get(protocol, str(protocol))


def _stdio_dup(record: dict[str, Any], view: memoryview, at: int) -> None:
    _sock(record, view, at)
    call, record["new_fd"] = _DUP.unpack_from(view, at + _DUP_CALL)
    record["call"] = _DUP_CALLS.get(call, str(call))


def _userfaultfd(record: dict[str, Any], view: memoryview, at: int) -> None:
    record["flags"] = _USERFAULTFD.unpack_from(view, at + _BODY)[0]


def _vm_write(record: dict[str, Any], view: memoryview, at: int) -> None:
    record["target_pid"], record["iovecs"] = _VM_WRITE.unpack_from(view, at + _BODY)


def _unix_connect(record: dict[str, Any], view: memoryview, at: int) -> None:
    record["fd"], path_len = _UNIX_CONNECT.unpack_from(view, at + _BODY)
    record["family"] = "unix"
    record["path"] = view[at + _UNIX_PATH : at + _UNIX_PATH + path_len].tobytes().decode(errors="replace")


def _file_change(record: dict[str, Any], view: memoryview, at: int) -> None:
    op, record["mode"], record["owner"], record["group"], path_len, other_len, mtime = _FILE_CHANGE.unpack_from(
        view, at + _BODY)
    record["call"] = FILE_OPS[op] if op < len(FILE_OPS) else str(op)
    if record["call"] in TIME_CALLS:
        record["mtime"] = mtime  # seconds since the epoch; -1: only the access time was set
    record["path"] = view[at + _CHANGE_PATH : at + _CHANGE_PATH + path_len].tobytes().decode(errors="replace")
    record["other_path"] = view[at + _CHANGE_OTHER : at + _CHANGE_OTHER + other_len].tobytes().decode(
        errors="replace")


def _wx_memory(record: dict[str, Any], view: memoryview, at: int) -> None:
    call, record["prot"], record["length"], record["flags"] = _WX_MEMORY.unpack_from(view, at + _BODY)
    record["call"] = WX_CALLS[call] if call < len(WX_CALLS) else str(call)


_Fields = Callable[[dict[str, Any], memoryview, int], None]
_FIELDS: dict[int, _Fields] = {
    1: _exec, 2: _exit, 4: _sock, 5: _sock, 6: _sock, 7: _ptrace, 8: _setid, 9: _ns_change,
    10: _mount, 11: _module, 12: _bpf, 13: _memfd, 16: _seccomp, 17: _socket, 18: _stdio_dup, 19: _userfaultfd,
    20: _vm_write, 21: _unix_connect, 22: _file_change, 23: _wx_memory,
}


class RecordDecoder:
    """Decodes records of one sensor: kernel boot-clock times become wall-clock epoch nanoseconds and cgroup
    ids become container ids (``known_containers`` is read directly, ``resolve_container`` asked on a miss).

    File opens are most of a busy node's records, so the batch loop decodes them inline: one unpack, one dict
    literal, and process names decoded once per distinct name.
    """

    def __init__(self, known_containers: dict[int, str], resolve_container: Callable[[int], str],
                 boot_offset_ns: int, learn_cgroup: Callable[[int, str], None] = lambda cgroup_id, path: None,
                 ) -> None:
        self.known_containers = known_containers
        self.resolve_container = resolve_container
        #: Told each new cgroup's id and path before the records of its processes are decoded (a container
        #: that exits before they are read has no directory left to resolve its id by).
        self.learn_cgroup = learn_cgroup
        self.boot_offset_ns = boot_offset_ns
        #: (cgroup id, path) of removed cgroups, for the sensor to report their syscalls at once (these
        #: records are the sensor's own business, not telemetry).
        self.removed_cgroups: list[tuple[int, str]] = []
        self._comms: dict[bytes, str] = {}

    def comm(self, raw: bytes) -> str:
        name = self._comms.get(raw)
        if name is None:
            if len(self._comms) >= _COMM_CACHE:
                self._comms.clear()
            name = self._comms[raw] = raw.split(b"\0", 1)[0].decode(errors="replace")
        return name

    def container_id(self, cgroup_id: int) -> str:
        found = self.known_containers.get(cgroup_id)
        return self.resolve_container(cgroup_id) if found is None else found

    def __call__(self, view: memoryview, offsets: list[int]) -> list[dict[str, Any]]:
        """The records starting at ``offsets`` in ``view``."""
        out: list[dict[str, Any]] = []
        append = out.append
        unpack_open, known, comms = _OPEN_ALL.unpack_from, self.known_containers, self._comms
        boot_offset, traversal, path_at = self.boot_offset_ns, _OPEN_TRAVERSAL, _OPEN_PATH
        for at in offsets:
            kind = view[at + _TYPE_OFFSET]
            if kind != 3 and kind != 14:
                if kind in (_CGROUP_MKDIR_TYPE, _CGROUP_RMDIR_TYPE):
                    cgroup_id, path = _CGROUP_DIR.unpack_from(view, at + _BODY)
                    if kind == _CGROUP_MKDIR_TYPE:
                        self.learn_cgroup(cgroup_id, text(path))
                    else:
                        self.removed_cgroups.append((cgroup_id, text(path)))
                else:
                    append(self.decode(view, at))
                continue
            boot_ns, cgroup_id, _, pid, tid, ppid, uid, gid, comm, flags, mode, path_len, repeats = unpack_open(
                view, at
            )
            container_id = known.get(cgroup_id)
            record = {
                "type": "open" if kind == 3 else "file_write",
                "time_ns": boot_ns + boot_offset,
                "pid": pid,
                "tid": tid,
                "ppid": ppid,
                "uid": uid,
                "gid": gid,
                "comm": comms.get(comm) or self.comm(comm),
                "cgroup_id": cgroup_id,
                "container_id": self.resolve_container(cgroup_id) if container_id is None else container_id,
                "flags": flags & ~traversal,
                "mode": mode,
                "path": str(view[at + path_at : at + path_at + path_len], "utf-8", "replace"),
                "repeats": repeats,
            }
            if flags & traversal:
                record["traversal"] = True
            append(record)
        return out

    def decode(self, view: memoryview, at: int) -> dict[str, Any]:
        """One record of any type other than the file opens the batch loop decodes itself."""
        boot_ns, cgroup_id, kind, pid, tid, ppid, uid, gid, comm = HEADER.unpack_from(view, at)
        record = {
            "type": TYPES[kind],
            "time_ns": boot_ns + self.boot_offset_ns,
            "pid": pid,
            "tid": tid,
            "ppid": ppid,
            "uid": uid,
            "gid": gid,
            "comm": self.comm(comm),
            "cgroup_id": cgroup_id,
            "container_id": self.container_id(cgroup_id),
        }
        _FIELDS[kind](record, view, at)
        return record
