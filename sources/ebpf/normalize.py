"""Sensor records (``raw.ebpf``, the dicts :meth:`vigil.collectors.ebpf.Sensor.poll` returns) in and out of the
envelope.

Runs in the stream workers and ``vigil replay``. It trusts no field's type: a record can come from an older
collector or a hand-written file, so a wrong type becomes an empty value, and a record without its type,
time or process is refused with a stable reason.

The node collector may add ``k8s`` (the pod the container belongs to) and ``node`` to a record; the pod
context is mapped into :class:`~vigil.event.K8sContext`, and the record's own ``container_id`` fills in when
the collector could not resolve one.

A record of a pod's process keys by its pod; a host process by its node (``actor.user`` is ``node:<node>``, see
:func:`~vigil.sources.host_sensors.host_identity`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from vigil.event import Activity, Actor, Event, File, Network, Outcome, Target, event_id, now_ns, selected_env
from vigil.sources.ebpf.records import TIME_CALLS
from vigil.sources.health import health_event, is_health_record
from vigil.sources.host_sensors import (
    host_identity,
    int_field,
    node_container,
    node_k8s_context,
    node_record_key,
    split_json_records,
    text_field,
    with_health_records,
)
from vigil.sources.parts import network, open_access
from vigil.sources.source import RecordRejected, Rejected

SOURCE = "ebpf"

#: Record type → event kind (every kind is one of :data:`vigil.event.KINDS`).
KIND_OF_TYPE = {
    "exec": "process.exec",
    "exit": "process.exit",
    "open": "file.open",
    "file_write": "file.write",
    "connect": "net.connect",
    "accept": "net.accept",
    "listen": "net.listen",
    "ptrace": "process.ptrace",
    "setid": "process.setid",
    "ns_change": "process.ns_change",
    "mount": "fs.mount",
    "module_load": "kernel.module_load",
    "bpf": "bpf.program",
    "memfd_create": "memfd.create",
    "seccomp": "kernel.seccomp",
    "syscalls": "container.syscalls",
    "socket": "net.socket",
    "stdio_dup": "net.stdio_redirect",
    "unix_connect": "net.connect",
    "userfaultfd": "process.syscall",
    "process_vm_write": "process.syscall",
    "file_change": "file.write",
    "wx_memory": "process.syscall",
}
#: File changes that make a directory: ``process.syscall`` as other sources name them (the path in ``target.path``).
_MKDIRS = frozenset({"mkdir", "mkdirat"})
#: Records about a cgroup over an interval rather than about one process: they carry no pid.
_CGROUP_RECORDS = frozenset({"syscalls"})


def normalize_record(record: dict[str, Any], cluster: str, node: str) -> Event:
    """The Event for one sensor record; raises RecordRejected when its type, time or pid is missing."""
    if is_health_record(record):
        return health_event(record, SOURCE, cluster, node)
    record_type, time_ns, pid = _identity(record)
    tid = int_field(record, "tid") or pid
    k8s = node_k8s_context(record.get("k8s"))
    k8s.container_id = k8s.container_id or text_field(record, "container_id")
    node = text_field(record, "node") or node
    action, target, outcome = _DETAILS[record_type](record)
    if record_type in _CGROUP_RECORDS:
        subject = f"{int_field(record, 'cgroup_id')}/{text_field(record, 'arch')}"
    else:
        subject = str(tid)
    actor = _actor(record, pid) if pid else Actor()
    actor.user = host_identity(record, k8s.namespace, k8s.pod)
    # Only exec records carry the executable's path; every other record has the process name (comm) the kernel
    # keeps, which names the program in alerts and tells the runtime's own set-up (runc's init calls itself
    # ``runc:[2:INIT]`` while it mounts and joins namespaces) from the workload's calls.
    if record_type != "exec":
        actor.exe = actor.exe or text_field(record, "comm")
    part = _PARTS.get(record_type)
    return Event(
        id=event_id(SOURCE, node, record_type, subject, str(time_ns)),
        time_ns=time_ns,
        source=SOURCE,
        kind=_kind(record_type, record),
        action=action,
        original_id=f"{record_type}:{subject}:{time_ns}",
        ingest_ns=now_ns(),
        cluster=cluster,
        node=node,
        k8s=k8s,
        actor=actor,
        target=target,
        outcome=outcome,
        container=node_container(k8s),
        raw=record,
        **({part[0]: part[1](record)} if part else {}),
    )


def _kind(record_type: str, record: dict[str, Any]) -> str:
    if record_type == "file_change" and record.get("call") in _MKDIRS:
        return "process.syscall"
    if record_type == "open" and _opens_for_writing(record):
        return "file.write"
    return KIND_OF_TYPE[record_type]


def _opens_for_writing(record: dict[str, Any]) -> bool:
    """Whether an open asks to write (the sensor's test): a watched path that only an open rule covers
    (``/host/etc/``, a node's files through a hostPath mount) is recorded as an ``open`` even when written, and
    a write is a ``file.write``, as Falco's and Tetragon's opens for writing are."""
    flags = int_field(record, "flags")
    return (flags & _O_ACCMODE) in (_O_WRONLY, _O_RDWR) or bool(flags & (_O_CREAT | _O_TRUNC))


#: The key comes from the ``k8s`` object the node collector added to the record, or its node for a host process.
correlation_key = node_record_key


def split_payload(payload: bytes, max_record_bytes: int) -> Iterator[dict[str, Any] | Rejected]:
    """One JSON-lines line (a record, or a JSON array of records, as the node collector packs them) into
    records; never raises."""
    return split_json_records(payload, max_record_bytes, check=_check)


def _identity(record: dict[str, Any]) -> tuple[str, int, int]:
    record_type = record.get("type")
    if record_type not in KIND_OF_TYPE:
        raise RecordRejected("wrong_kind", f"type {record_type!r} is not a sensor record type")
    time_ns = record.get("time_ns")
    if type(time_ns) is not int or time_ns <= 0:
        raise RecordRejected("missing_field", f"time_ns must be a positive integer, got {time_ns!r}")
    pid = record.get("pid")
    if record_type in _CGROUP_RECORDS:
        return record_type, time_ns, 0
    if type(pid) is not int or pid <= 0:
        raise RecordRejected("missing_field", f"pid must be a positive integer, got {pid!r}")
    return record_type, time_ns, pid


_check = with_health_records(_identity)


def _actor(record: dict[str, Any], pid: int) -> Actor:
    """The process; exec records also carry the effective ids and how the executable got there (see
    :func:`exe_flags`)."""
    uid, gid, euid, egid = record.get("uid"), record.get("gid"), record.get("euid"), record.get("egid")
    args = record.get("args")
    exe = text_field(record, "exe")
    return Actor(
        pid=pid,
        ppid=int_field(record, "ppid"),
        uid=uid if type(uid) is int else -1,
        gid=gid if type(gid) is int else -1,
        exe=exe,
        args=[arg for arg in args if isinstance(arg, str)] if isinstance(args, list) else [],
        cwd=text_field(record, "cwd"),
        parent_exe=text_field(record, "parent_exe"),
        euid=euid if type(euid) is int else -1,
        egid=egid if type(egid) is int else -1,
        exe_flags=exe_flags(exe, record.get("exe_deleted") is True),
        env=_env(record),
    )


def exe_flags(exe: str, no_links: bool) -> list[str]:
    """``from_memfd`` for an executable the kernel names ``/memfd:…`` (an anonymous memory file, which also has no
    links: not flagged deleted as well, so ``deleted`` keeps meaning a file unlinked from a disk); ``deleted`` for
    an executable whose file had no links left when it ran (exec'd through a descriptor after its unlink)."""
    if exe.startswith(MEMFD_PREFIX):
        return ["from_memfd"]
    return ["deleted"] if no_links else []


def _env(record: dict[str, Any]) -> dict[str, str]:
    """The selected environment variables an exec record carries (the decoder kept only those names)."""
    env = record.get("env")
    if not isinstance(env, dict):
        return {}
    return selected_env((name, value) for name, value in env.items() if isinstance(value, str))


#: How the kernel names the file of an anonymous memory file (memfd_create's name follows).
MEMFD_PREFIX = "/memfd:"
_O_ACCMODE, _O_WRONLY, _O_RDWR, _O_CREAT, _O_TRUNC, _O_TMPFILE = 0o3, 0o1, 0o2, 0o100, 0o1000, 0o20000000


def resolved_path(path: str) -> str:
    """An absolute path as the process passed it to open(2), with ``.``, ``..`` and repeated slashes resolved
    (``/etc/../etc/shadow`` is ``/etc/shadow``), so detections match the file that was opened, not its spelling.
    The resolution is lexical (symlinks are not followed); a relative path stays as given: its directory is not
    in the record."""
    if not path.startswith("/"):
        return path
    resolved = posixpath.normpath(path)
    return "/" + resolved.lstrip("/")  # normpath keeps a leading "//"; the kernel treats it as "/"


def _file(record: dict[str, Any]) -> File:
    """An open's access from its flags; its mode only when the open could create the file."""
    flags = int_field(record, "flags")
    creates = flags & (_O_CREAT | _O_TMPFILE)
    return File(path=resolved_path(text_field(record, "path")), access=open_access(flags),
                mode=int_field(record, "mode") if creates else -1, traversal=record.get("traversal") is True)


def _network(record: dict[str, Any]) -> Network:
    """Both ends of the socket; a listening socket has no remote end (the sensor's zero address is not one)."""
    kind = KIND_OF_TYPE[record["type"]]
    remote = ("", 0) if kind == "net.listen" else (text_field(record, "remote_address"),
                                                   int_field(record, "remote_port"))
    return network(kind, family=text_field(record, "family"), protocol=text_field(record, "protocol"),
                   local=(text_field(record, "local_address"), int_field(record, "local_port")), remote=remote)


_CREATES = frozenset({"link", "linkat", "symlink", "symlinkat", "mkdir", "mkdirat"})
_MODES = frozenset({"chmod", "fchmodat", "mkdir", "mkdirat"})


def _changed_file(record: dict[str, Any]) -> File:
    """The file a rename, link, removal, mkdir, chmod or chown names; ``other_path`` is a rename's or link's new
    name (a symlink's ``path`` is its target, as the program passed it)."""
    call = text_field(record, "call")
    return File(path=resolved_path(text_field(record, "path")), access=["create"] if call in _CREATES else [],
                mode=int_field(record, "mode") if call in _MODES else -1,
                other_path=resolved_path(text_field(record, "other_path")))


def _socket_network(record: dict[str, Any]) -> Network:
    """A new socket's family (``packet``, ``inet``, ``inet6``) and protocol: it has no ends yet."""
    return Network(family=text_field(record, "family"), protocol=text_field(record, "protocol"))


def _unix_network(record: dict[str, Any]) -> Network:
    """A unix socket connecting: its peer is a path (``target.path``), not an address."""
    return Network(family="unix", direction="outbound")


def _activity(record: dict[str, Any]) -> Activity:
    counts, syscalls, interval = record.get("counts"), record.get("syscalls"), record.get("interval_s")
    pids = record.get("pids")
    return Activity(
        interval_s=float(interval) if type(interval) in (int, float) else 0.0,
        counts={k: v for k, v in counts.items() if type(v) is int} if isinstance(counts, dict) else {},
        syscalls=[name for name in syscalls if isinstance(name, str)] if isinstance(syscalls, list) else [],
        processes=pids if type(pids) is int else -1,
    )


#: Record type → (the Event field, the part built from the record) for types that fill one beyond the process.
_PARTS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "open": ("file", _file),
    "file_write": ("file", _file),
    "connect": ("network", _network),
    "accept": ("network", _network),
    "listen": ("network", _network),
    "syscalls": ("activity", _activity),
    "socket": ("network", _socket_network),
    "stdio_dup": ("network", _network),
    "unix_connect": ("network", _unix_network),
    "file_change": ("file", _changed_file),
}


# -- per record type: (action, target, outcome) ------------------------------------------------------------
# Records other than exec and exit are taken at syscall entry: they say what was attempted, not whether the
# kernel allowed it, so their outcome is "unknown".

_Details = tuple[str, Target, Outcome]


def _exec(record: dict[str, Any]) -> _Details:
    """A binary whose setuid (setgid) bit changed the effective uid (gid) is a ``setuid_exec`` (``setgid_exec``);
    the actor keeps the real ids, the record the effective ones."""
    uid, gid, euid, egid = record.get("uid"), record.get("gid"), record.get("euid"), record.get("egid")
    action = "exec"
    if type(euid) is int and type(uid) is int and euid != uid:
        action = "setuid_exec"
    elif type(egid) is int and type(gid) is int and egid != gid:
        action = "setgid_exec"
    return action, Target(path=text_field(record, "exe")), Outcome("success")


def _exit(record: dict[str, Any]) -> _Details:
    code, signal = int_field(record, "exit_code"), int_field(record, "signal")
    return "exit", Target(), Outcome("success" if not code and not signal else "failure", code,
                                     f"signal {signal}" if signal else "")


def _open(record: dict[str, Any]) -> _Details:
    action = "open_write" if _opens_for_writing(record) else "open"
    return action, Target(path=resolved_path(text_field(record, "path"))), Outcome()


def _file_write(record: dict[str, Any]) -> _Details:
    return "open_write", Target(path=resolved_path(text_field(record, "path"))), Outcome()


def _peer(action: str) -> Callable[[dict[str, Any]], _Details]:
    """connect and accept name the remote end; listen names the local address it listens on. A datagram sent to
    an address without connecting is a connect to it, its call (``sendto``, ``sendmsg``) the action."""
    side = "local" if action == "listen" else "remote"

    def details(record: dict[str, Any]) -> _Details:
        target = Target(address=text_field(record, f"{side}_address"), port=int_field(record, f"{side}_port"),
                        resource=text_field(record, "protocol"))
        return text_field(record, "call") or action, target, Outcome()

    return details


def _ptrace(record: dict[str, Any]) -> _Details:
    target = Target(resource="processes", name=str(int_field(record, "target_pid")))
    return text_field(record, "request") or "ptrace", target, Outcome()


def _setid(record: dict[str, Any]) -> _Details:
    ids = record.get("ids")
    shown = ",".join(str(i) for i in ids if type(i) is int) if isinstance(ids, list) else ""
    return text_field(record, "call") or "setid", Target(resource="credentials", name=shown), Outcome()


def _ns_change(record: dict[str, Any]) -> _Details:
    kinds = record.get("namespaces")
    shown = ",".join(k for k in kinds if isinstance(k, str)) if isinstance(kinds, list) else ""
    return text_field(record, "call") or "unshare", Target(resource="namespaces", name=shown), Outcome()


def _mount(record: dict[str, Any]) -> _Details:
    target = Target(path=text_field(record, "target"), name=text_field(record, "source"),
                    resource=text_field(record, "fstype"))
    return "mount", target, Outcome()


def _module_load(record: dict[str, Any]) -> _Details:
    target = Target(resource="modules", name=text_field(record, "name"))
    return text_field(record, "call") or "init_module", target, Outcome()


def _bpf(record: dict[str, Any]) -> _Details:
    target = Target(resource="bpf", name=text_field(record, "prog_name"))
    return text_field(record, "command") or "bpf", target, Outcome()


def _memfd(record: dict[str, Any]) -> _Details:
    return "memfd_create", Target(name=text_field(record, "name")), Outcome()


def _seccomp(record: dict[str, Any]) -> _Details:
    """SIGSYS from a seccomp filter: the syscall was not run (trap) or the process was killed for it."""
    action = text_field(record, "action") or "trap"
    number = int_field(record, "syscall")
    name = text_field(record, "syscall_name") or f"syscall_{number}"
    return action, Target(name=name), Outcome("denied", number, f"seccomp {action} on {name}")


def _socket(record: dict[str, Any]) -> _Details:
    """``target.name`` is the socket's type (``raw``, ``dgram``, ...), ``target.resource`` its protocol."""
    target = Target(resource=text_field(record, "protocol"), name=text_field(record, "socket_type"))
    return "socket", target, Outcome()


_STDIO = ("stdin", "stdout", "stderr")


def _stdio_dup(record: dict[str, Any]) -> _Details:
    """A socket duplicated onto standard input, output or error (``target.name``), and the peer it is connected
    to; the action is the call (``dup2``, ``dup3``, ``dup``, ``fcntl``, or ``connect`` for a socket that connected
    as descriptor 0-2)."""
    new_fd = int_field(record, "new_fd")
    target = Target(name=_STDIO[new_fd] if 0 <= new_fd < len(_STDIO) else str(new_fd),
                    address=text_field(record, "remote_address"), port=int_field(record, "remote_port"),
                    resource=text_field(record, "protocol"))
    return text_field(record, "call") or "dup2", target, Outcome()


def _unix_connect(record: dict[str, Any]) -> _Details:
    return "connect", Target(path=text_field(record, "path"), resource="unix"), Outcome()


def _userfaultfd(record: dict[str, Any]) -> _Details:
    return "userfaultfd", Target(resource="syscalls", name="userfaultfd"), Outcome()


def _vm_write(record: dict[str, Any]) -> _Details:
    """process_vm_writev into another process: ``target.name`` is its pid."""
    return "process_vm_writev", Target(resource="processes", name=str(int_field(record, "target_pid"))), Outcome()


def _file_change(record: dict[str, Any]) -> _Details:
    """The call is the action; a chown's new owner and group are ``target.name`` (``uid:gid``, -1 unchanged), a
    time change's explicit times too (see :func:`times_set`)."""
    call = text_field(record, "call") or "file_change"
    if "chown" in call:
        name = f"{int_field(record, 'owner')}:{int_field(record, 'group')}"
    else:
        name = times_set(record) if call in TIME_CALLS else ""
    return call, Target(path=resolved_path(text_field(record, "path")), name=name), Outcome()


def times_set(record: dict[str, Any]) -> str:
    """The explicit times a time change set (the sensor records no other): ``mtime=<UTC time>``, or ``atime`` when
    it set only the access time."""
    mtime = record.get("mtime")
    if type(mtime) is not int or mtime == -1:
        return "atime"
    try:
        when = datetime.fromtimestamp(mtime, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return f"mtime={mtime}"
    return f"mtime={when.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def _wx_memory(record: dict[str, Any]) -> _Details:
    """Memory made writable and executable at once (the first time in the process): the call is the action."""
    return text_field(record, "call") or "mprotect", Target(resource="memory", name="write,exec"), Outcome()


def _syscalls(record: dict[str, Any]) -> _Details:
    return "profile", Target(), Outcome("success")


_DETAILS: dict[str, Callable[[dict[str, Any]], _Details]] = {
    "exec": _exec,
    "exit": _exit,
    "open": _open,
    "file_write": _file_write,
    "connect": _peer("connect"),
    "accept": _peer("accept"),
    "listen": _peer("listen"),
    "ptrace": _ptrace,
    "setid": _setid,
    "ns_change": _ns_change,
    "mount": _mount,
    "module_load": _module_load,
    "bpf": _bpf,
    "memfd_create": _memfd,
    "seccomp": _seccomp,
    "syscalls": _syscalls,
    "socket": _socket,
    "stdio_dup": _stdio_dup,
    "unix_connect": _unix_connect,
    "userfaultfd": _userfaultfd,
    "process_vm_write": _vm_write,
    "file_change": _file_change,
    "wx_memory": _wx_memory,
}
