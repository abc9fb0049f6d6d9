"""Tetragon's JSON export (``GetEventsResponse`` objects, one a line) mapped into the normalized Event.

A record holds one event under a key naming its type (``process_exec``, ``process_kprobe``, …) next to
``node_name``, ``time`` and, on newer agents, ``cluster_name``. Every event carries the ``process`` that
acted, with its pod, container and labels, and usually its ``parent``. Kprobe, LSM and tracepoint events
name the kernel function or syscall a TracingPolicy hooked; that name decides the vigil kind (an
``__x64_sys_write`` is a ``file.write``), and a hook vigil has no kind for stays a ``process.hook`` event,
queryable but outside the detections' kinds.

The process's container (``pod.container``, else the id prefix in ``docker`` when Tetragon knows no pod), its
credentials (``process_credentials`` with ``--enable-process-cred``, else ``uid``, which agents since 1.1 report as
the effective uid), ``auid``, its pid in the container, how its binary got there (``binary_properties.file``: a
binary only in memory or deleted), and its parent and first ancestor (the grandparent) fill the envelope's process
fields; a hook's arguments fill ``file`` (access from the open flags or the permission mask, the second path of a
rename or link, a chmod's or creating open's mode) and ``network`` (``saddr``/``sport`` the local end,
``daddr``/``dport`` the remote one).

Runs in the stream workers for every record: it reads fields directly, trusts no field's type, and builds
nothing it does not return.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from vigil.event import (
    Actor,
    Container,
    Event,
    File,
    K8sContext,
    Network,
    Outcome,
    Target,
    correlation_key_for,
    event_id,
    now_ns,
)
from vigil.sources.health import HEALTH_RECORD_KIND, check_health_record, health_event, health_key, is_health_record
from vigil.sources.host_sensors import (
    KIND_RESOURCES,
    OPEN_SYSCALLS,
    OPEN_WRITE_FLAGS,
    PTRACE_REQUESTS,
    SYSCALL_KINDS,
    shown,
    syscall_name,
)
from vigil.sources.parts import network, open_access, runtime_and_id
from vigil.sources.source import RecordRejected
from vigil.sources.timestamps import parse_timestamp_ns

SOURCE = "tetragon"

#: The kind of an event whose hook vigil has no kind for (its action is the hook's name).
HOOK_KIND = "process.hook"

#: The export entry counting events the agent's export rate limit dropped: it becomes a health record.
RATE_LIMIT_INFO = "rate_limit_info"
#: Tetragon counts rate-limit drops over this period and reports each period's count at its end
#: (its exporter's rate limiter is set per minute).
RATE_LIMIT_PERIOD_NS = 60 * 1_000_000_000
#: Export entries that are not events of a process: sensor status, refused with this explanation. A throttle
#: notice carries no count of what it cost, so it cannot become a health record.
_NOT_EVENTS = {
    "process_throttle": "a Tetragon throttle notice (the sensor rate-limited a cgroup), not an event",
    "test": "a Tetragon test event",
}
#: Kprobe actions that stopped the call: the process did not get what it asked for.
_ENFORCING_ACTIONS = frozenset({"KPROBE_ACTION_SIGKILL", "KPROBE_ACTION_OVERRIDE", "KPROBE_ACTION_NOTIFYENFORCER"})
#: May-flags of ``security_file_permission`` that make it a write: MAY_WRITE, MAY_APPEND.
_MAY_WRITE = 0x2 | 0x8
_MAY_READ, _MAY_APPEND = 0x4, 0x8
_INT_ARGS = frozenset({"int_arg", "uint_arg", "long_arg", "size_arg"})
#: ``(uid_t)-1``: the kernel's "not set" (the ``auid`` of a process no login started).
_UNSET_ID = 4294967295
_BODY_ONLY = ("process", "parent", "ancestors")

_NOTHING: dict[str, Any] = {}


def check_record(record: dict[str, Any]) -> None:
    """Refuse a record that is not a Tetragon process event or a drop report (used by ``split`` at the edge)."""
    if is_health_record(record) or RATE_LIMIT_INFO in record:
        check_health_record(_health_record(record))
        return
    event_type, body = _event_body(record)
    if type(body.get("process")) is not dict:
        raise RecordRejected("missing_field", f"{event_type} has no process object")
    _time_text(record, body)


def normalize_record(record: dict[str, Any], cluster: str, node: str) -> Event:
    """The Event for one export record; raises RecordRejected when it lacks its process or its time."""
    if is_health_record(record) or RATE_LIMIT_INFO in record:
        return health_event(_health_record(record), SOURCE, _text(record, "cluster_name") or cluster, node)
    event_type, body = _event_body(record)
    process = body.get("process")
    if type(process) is not dict:
        raise RecordRejected("missing_field", f"{event_type} has no process object")
    time_text = _time_text(record, body)
    try:
        time_ns = parse_timestamp_ns(time_text)
    except ValueError as exc:
        raise RecordRejected("missing_field", str(exc)) from None
    kind, action, target, outcome, parts = _DECODERS[event_type](body, process)
    exec_id = _text(process, "exec_id")
    k8s, container, container_pid = _pod(process)
    return Event(
        id=event_id(SOURCE, event_type, exec_id, time_text, _details(event_type, body)),
        time_ns=time_ns,
        source=SOURCE,
        kind=kind,
        action=action,
        original_id=exec_id,
        ingest_ns=now_ns(),
        cluster=_text(record, "cluster_name") or cluster,
        node=_text(record, "node_name") or node,
        k8s=k8s,
        actor=_actor(process, container_pid, _mapping(body.get("parent")), body.get("ancestors")),
        target=target,
        outcome=outcome,
        container=container,
        raw=record,
        **parts,
    )


def correlation_key(record: dict[str, Any], cluster: str) -> str:
    """``normalize_record(record, cluster, node).correlation_key``, computed without building the Event."""
    cluster = _text(record, "cluster_name") or cluster
    if is_health_record(record) or RATE_LIMIT_INFO in record:
        return health_key(cluster)
    _, body = _event_body(record)
    pod = _mapping(_mapping(body.get("process")).get("pod"))
    namespace, name = _text(pod, "namespace"), _text(pod, "name")
    return correlation_key_for(cluster, namespace, name)


def _health_record(record: dict[str, Any]) -> dict[str, Any]:
    """A collector's health record as it is, or the health record of Tetragon's ``rate_limit_info`` (whose
    uint64 count protojson writes as a string) with the original entry under ``tetragon``."""
    if is_health_record(record):
        return record
    info = record[RATE_LIMIT_INFO]
    count = info.get("number_of_dropped_process_events") if type(info) is dict else None
    dropped = int(count) if type(count) is str and count.isdigit() else count
    if type(dropped) is not int:
        raise RecordRejected("missing_field", f"rate_limit_info without a drop count: {shown(info)}")
    try:
        time_ns = parse_timestamp_ns(_time_text(record, {}))
    except ValueError as exc:
        raise RecordRejected("missing_field", str(exc)) from None
    return {"kind": HEALTH_RECORD_KIND, "source": SOURCE, "node": _text(record, "node_name"), "component": "tetragon",
            "dropped": dropped, "reasons": {"export_rate_limit": dropped},
            "since_ns": max(1, time_ns - RATE_LIMIT_PERIOD_NS), "time_ns": time_ns, "tetragon": record}


def _event_body(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The event type and its object; the type is the one key of the record that names an event."""
    for key in record:
        if key in _DECODERS:
            body = record[key]
            if type(body) is not dict:
                raise RecordRejected("wrong_kind", f"{key} is {shown(body)}, not an object")
            return key, body
        if key in _NOT_EVENTS:
            raise RecordRejected("wrong_kind", _NOT_EVENTS[key])
    keys = ", ".join(key[:40] for key in list(record)[:8]) or "(none)"
    raise RecordRejected("wrong_kind", f"no Tetragon event type among the keys {keys}")


def _time_text(record: dict[str, Any], body: dict[str, Any]) -> str:
    """The export time, else the event's own (process_exit), else when the process started (an exec
    record written without ``time`` is stamped with its start by the agent itself)."""
    text = record.get("time") or body.get("time") or _mapping(body.get("process")).get("start_time")
    if type(text) is not str:
        raise RecordRejected("missing_field", "no time: neither time nor process.start_time is a string")
    return text


def _details(event_type: str, body: dict[str, Any]) -> str:
    """What tells two events of one process apart beyond their time: an exec and an exit happen once per
    exec id, every other event is told apart by its own fields (hook, arguments, addresses)."""
    if event_type in ("process_exec", "process_exit"):
        return ""
    own = {key: value for key, value in body.items() if key not in _BODY_ONLY}
    return orjson.dumps(own, option=orjson.OPT_SORT_KEYS).decode()


# --- Event types ------------------------------------------------------------------------------------------

#: (kind, action, target, outcome, the parts beyond process and container as Event fields: ``file``, ``network``).
Decoded = tuple[str, str, Target, Outcome, dict[str, Any]]
_NO_PARTS: dict[str, Any] = {}


def _exec(body: dict[str, Any], process: dict[str, Any]) -> Decoded:
    return "process.exec", "exec", Target(path=_text(process, "binary")), Outcome("success"), _NO_PARTS


def _exit(body: dict[str, Any], process: dict[str, Any]) -> Decoded:
    status, signal = body.get("status"), _text(body, "signal")
    status = status if type(status) is int else 0
    result = "success" if status == 0 and not signal else "failure"
    return "process.exit", "exit", Target(path=_text(process, "binary")), Outcome(result, status, signal), _NO_PARTS


def _hooked(hook: str, body: dict[str, Any]) -> Decoded:
    """A kprobe/LSM/tracepoint/uprobe event: its kind from the hooked function, its target from the arguments."""
    name = syscall_name(hook)
    kind = SYSCALL_KINDS.get(name, HOOK_KIND)
    arguments = _Arguments(body.get("args"))
    if kind == "file.open" and _opens_for_writing(name, arguments):
        kind = "file.write"
    elif kind == "net.accept" and not arguments.sock:
        arguments.add_return(body.get("return"))  # inet_csk_accept returns the accepted socket
    action = name if kind != HOOK_KIND else hook
    if kind == "process.ptrace" and arguments.ints:
        action = PTRACE_REQUESTS.get(arguments.ints[0], action)
    return kind, action, arguments.target(kind), _hook_outcome(body), arguments.parts(name, kind)


def _kprobe(body: dict[str, Any], process: dict[str, Any]) -> Decoded:
    return _hooked(_text(body, "function_name"), body)


def _tracepoint(body: dict[str, Any], process: dict[str, Any]) -> Decoded:
    return _hooked(_text(body, "event") or _text(body, "subsys"), body)


def _uprobe(body: dict[str, Any], process: dict[str, Any]) -> Decoded:
    kind, action, target, outcome, parts = _hooked(_text(body, "symbol"), body)
    target.path = target.path or _text(body, "path")
    return kind, action, target, outcome, parts


def _loader(body: dict[str, Any], process: dict[str, Any]) -> Decoded:
    return HOOK_KIND, "load", Target(path=_text(body, "path")), Outcome("success"), _NO_PARTS


def _connection(kind: str) -> Callable[[dict[str, Any], dict[str, Any]], Decoded]:
    """process_connect/close (peer = destination) and process_listen (the local address), of older agents."""

    def decode(body: dict[str, Any], process: dict[str, Any]) -> Decoded:
        protocol = _protocol(_text(body, "protocol"))
        if kind == "net.listen":
            address, port = _text(body, "ip"), _int(body, "port", 0)
            part = network(kind, protocol=protocol, local=(address, port))
        else:
            address, port = _text(body, "destination_ip"), _int(body, "destination_port", 0)
            part = network(kind, protocol=protocol, remote=(address, port),
                           local=(_text(body, "source_ip"), _int(body, "source_port", 0)))
        target = Target(address=address, port=port, resource=protocol)
        return kind, kind.partition(".")[2], target, Outcome("success"), {"network": part}

    return decode


_DECODERS: dict[str, Callable[[dict[str, Any], dict[str, Any]], Decoded]] = {
    "process_exec": _exec,
    "process_exit": _exit,
    "process_kprobe": _kprobe,
    "process_lsm": _kprobe,
    "process_tracepoint": _tracepoint,
    "process_uprobe": _uprobe,
    "process_usdt": _uprobe,
    "process_loader": _loader,
    "process_connect": _connection("net.connect"),
    "process_close": _connection("net.close"),
    "process_listen": _connection("net.listen"),
}


def _opens_for_writing(name: str, arguments: _Arguments) -> bool:
    """open(dirfd, path, flags) and file_permission(file, mask) both take the number after the file."""
    numbers = arguments.numbers_after_path
    if name in OPEN_SYSCALLS:
        return bool(numbers and numbers[0] & OPEN_WRITE_FLAGS)
    if name == "file_permission":
        return bool(numbers and numbers[0] & _MAY_WRITE)
    return False


def _hook_outcome(body: dict[str, Any]) -> Outcome:
    """Denied when the policy killed the process or overrode the call, failure when the hooked call returned
    an error (a negative errno), else success or, without a return value, unknown."""
    if body.get("action") in _ENFORCING_ACTIONS:
        return Outcome("denied", 0, str(body["action"]))
    returned = body.get("return")
    value = next(iter(returned.values()), None) if type(returned) is dict and returned else None
    if type(value) is int:
        return Outcome("failure", -value, "") if value < 0 else Outcome("success", value, "")
    return Outcome()


class _Arguments:
    """A hook's typed arguments (``[{"file_arg": {...}}, {"int_arg": 2}, ...]``), sorted by type once."""

    __slots__ = ("ints", "name", "numbers_after_path", "path", "paths", "sock", "strings")

    def __init__(self, args: Any) -> None:
        self.ints: list[int] = []
        self.numbers_after_path: list[int] = []  # the numbers after a file or string argument: flags then mode, a mask
        self.strings: list[str] = []
        self.paths: list[str] = []  # every file and path argument, in order (rename: the old, then the new)
        self.path = self.name = ""
        self.sock: dict[str, Any] = _NOTHING
        for arg in args if type(args) is list else ():
            if type(arg) is dict:
                for key, value in arg.items():
                    self._add(key, value)

    def add_return(self, returned: Any) -> None:
        if type(returned) is dict:
            for key, value in returned.items():
                self._add(key, value)

    def _add(self, key: str, value: Any) -> None:
        if key in _INT_ARGS:
            number = int(value) if type(value) is str and value.lstrip("-").isdigit() else value
            if type(number) is int:
                self.ints.append(number)
                if self.strings or self.path:
                    self.numbers_after_path.append(number)
        elif key == "string_arg" and type(value) is str:
            self.strings.append(value)
        elif type(value) is not dict:
            return
        elif key in ("file_arg", "path_arg", "linux_binprm_arg"):
            path = _text(value, "path")
            path = path if not path or path[0] == "/" else "/" + path  # older agents drop the root slash
            self.paths.append(path)
            self.path = self.path or path
        elif key in ("sock_arg", "sockaddr_arg"):
            self.sock = value
        elif key == "module_arg":
            self.name = _text(value, "name")
        elif key == "bpf_attr_arg":
            self.name = _text(value, "ProgName")

    def target(self, kind: str) -> Target:
        strings = self.strings
        if kind == "fs.mount":  # mount(source, target, fstype, ...) or sb_mount(source, path, fstype, ...)
            path = self.path or (strings[1] if len(strings) > 1 else "")
            fstype = strings[-1] if len(strings) > (1 if self.path else 2) else ""
            return Target(path=path, name=strings[0] if strings else "", resource=fstype)
        if kind in ("kernel.module_load", "memfd.create", "bpf.program"):
            return Target(name=self.name or (strings[0] if strings else ""), resource=KIND_RESOURCES.get(kind, ""))
        if kind == "process.ptrace":  # ptrace(request, pid, ...)
            return Target(resource="processes", name=str(self.ints[1]) if len(self.ints) > 1 else "")
        if kind.startswith("net."):
            return self._peer(kind)
        if kind in KIND_RESOURCES:
            return Target(resource=KIND_RESOURCES[kind])
        return Target(path=self.path or (strings[0] if strings else ""))

    def parts(self, name: str, kind: str) -> dict[str, Any]:
        """The ``file`` or ``network`` part of a hooked call of ``kind``, as Event fields."""
        if kind in ("file.open", "file.write"):
            return {"file": self._file(name, kind)}
        if kind in ("net.connect", "net.accept", "net.listen", "net.close"):
            return {"network": self._network(kind)}
        return _NO_PARTS

    def _file(self, name: str, kind: str) -> File:
        named = self.paths or self.strings
        numbers = self.numbers_after_path
        mode = -1
        if name in OPEN_SYSCALLS or name == "creat":
            flags = numbers[0] if numbers and name != "creat" else _CREAT_FLAGS
            access = open_access(flags)
            if flags & _O_CREAT and len(numbers) > (0 if name == "creat" else 1):
                mode = numbers[0 if name == "creat" else 1]
        elif name == "file_permission":
            mask = numbers[0] if numbers else 0
            access = [access for bit, access in ((_MAY_READ, "read"), (_MAY_WRITE, "write"), (_MAY_APPEND, "append"))
                      if mask & bit]
        else:
            access = _HOOK_ACCESS.get(name, [])
            if name in _CHMODS and numbers:
                mode = numbers[0]
        other = named[1] if name in _TWO_PATHS and len(named) > 1 else ""
        return File(path=self.path or (self.strings[0] if self.strings else ""), access=list(access), mode=mode,
                    other_path=other)

    def _network(self, kind: str) -> Network:
        sock = self.sock
        protocol, family = sock.get("protocol"), sock.get("family")
        protocol = _protocol(protocol) if type(protocol) is str else ""
        family = family if type(family) is str else ""
        if "addr" in sock:  # sockaddr_arg: the address the call names (connect's peer, bind's own)
            end = (_text(sock, "addr"), _int(sock, "port", 0))
            if kind == "net.listen":
                return network(kind, family=family, protocol=protocol, local=end)
            return network(kind, family=family, protocol=protocol, remote=end)
        local = (_text(sock, "saddr"), _int(sock, "sport", 0))
        remote = ("", 0) if kind == "net.listen" else (_text(sock, "daddr"), _int(sock, "dport", 0))
        return network(kind, family=family, protocol=protocol, local=local, remote=remote)

    def _peer(self, kind: str) -> Target:
        sock = self.sock
        if "addr" in sock:  # sockaddr_arg
            address, port = sock.get("addr"), sock.get("port")
        elif kind == "net.listen":
            address, port = sock.get("saddr"), sock.get("sport")
        else:
            address, port = sock.get("daddr"), sock.get("dport")
        protocol = sock.get("protocol")
        return Target(address=address if type(address) is str else "", port=port if type(port) is int else 0,
                      resource=_protocol(protocol) if type(protocol) is str else "")


_O_CREAT = 0o100
#: creat(path, mode) is open(path, O_CREAT|O_WRONLY|O_TRUNC, mode).
_CREAT_FLAGS = 0o100 | 0o1 | 0o1000
#: What the other file hooks do to the file they name.
_HOOK_ACCESS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("read", "pread64", "readv", "preadv", "preadv2"), ("read",)),
    **dict.fromkeys(("write", "pwrite64", "writev", "pwritev", "pwritev2"), ("write",)),
    **dict.fromkeys(("truncate", "ftruncate", "path_truncate", "file_truncate"), ("truncate",)),
    **dict.fromkeys(("link", "linkat", "symlink", "symlinkat"), ("create",)),
}
#: Hooks that name two paths, the second being the new name (rename, link, symlink).
_TWO_PATHS = frozenset({"rename", "renameat", "renameat2", "path_rename", "link", "linkat", "symlink", "symlinkat"})
_CHMODS = frozenset({"chmod", "fchmod", "fchmodat", "path_chmod"})


# --- Process and pod ------------------------------------------------------------------------------------------


def _pod(process: dict[str, Any]) -> tuple[K8sContext, Container, int]:
    """The pod's k8s context, the process's container and its pid in that container, reading the pod, its
    ``container`` and the container's ``image`` once: the context and the container name the same container.
    Without a resolved pod, the container is the id prefix Tetragon read from the cgroup (``docker``)."""
    pod = process.get("pod")
    if type(pod) is not dict:
        return K8sContext(), Container(id=_text(process, "docker")), 0
    container = _mapping(pod.get("container"))
    image = _mapping(container.get("image"))
    runtime, container_id = runtime_and_id(_text(container, "id"))
    name, image_name = _text(container, "name"), _text(image, "name")
    labels = pod.get("pod_labels")
    k8s = K8sContext(
        namespace=_text(pod, "namespace"),
        pod=_text(pod, "name"),
        container_id=container_id,
        container_name=name,
        image=image_name,
        labels={k: v for k, v in labels.items() if type(v) is str} if type(labels) is dict else {},
    )
    if not container_id:
        return k8s, Container(id=_text(process, "docker")), _int(container, "pid", 0)
    _, image_id = runtime_and_id(_text(image, "id"))  # docker-pullable://registry/app@sha256:…
    runtime_container = Container(id=container_id, runtime=runtime, name=name, image=image_name, image_id=image_id)
    return k8s, runtime_container, _int(container, "pid", 0)


def bare_container_id(container_id: str) -> str:
    """``19a0…f7c4`` for ``containerd://19a0…f7c4``: the id as CRI and cgroup paths spell it."""
    return container_id.partition("://")[2] if "://" in container_id else container_id


def _actor(process: dict[str, Any], container_pid: int, parent: dict[str, Any], ancestors: Any) -> Actor:
    binary = _text(process, "binary")  # argv[0]: Tetragon does not report it, the executed path stands for it
    parent_exe, parent_args = _lineage(parent)
    grandparent = _mapping(ancestors[0]) if type(ancestors) is list and ancestors else _NOTHING
    grandparent_exe, grandparent_args = _lineage(grandparent)
    auid, uid = _int(process, "auid", -1), _int(process, "uid", -1)
    gid, euid, egid = _credentials(process, uid)
    return Actor(
        pid=_int(process, "pid", 0),
        ppid=_int(parent, "pid", 0),
        uid=uid,
        gid=gid,
        exe=binary,
        args=[binary, *split_arguments(_text(process, "arguments"))],
        cwd=_text(process, "cwd"),
        parent_exe=parent_exe,
        euid=euid,
        egid=egid,
        auid=-1 if auid == _UNSET_ID else auid,
        container_pid=container_pid,
        exe_flags=_exe_flags(process, binary) if "binary_properties" in process else [],
        parent_args=parent_args,
        grandparent_exe=grandparent_exe,
        grandparent_args=grandparent_args,
    )


def _credentials(process: dict[str, Any], uid: int) -> tuple[int, int, int]:
    """(gid, euid, egid): ``process_credentials`` exist only with ``--enable-process-cred``; without them the
    gids are not known and the effective uid is ``uid`` (which agents since 1.1 report as the effective one)."""
    credentials = process.get("process_credentials")
    if type(credentials) is not dict:
        return -1, uid, -1
    return _int(credentials, "gid", -1), _int(credentials, "euid", uid), _int(credentials, "egid", -1)


def _lineage(process: dict[str, Any]) -> tuple[str, list[str]]:
    """An ancestor's executable and argv, reading its ``binary`` once; no argv for an ancestor without one."""
    binary = _text(process, "binary")
    if not binary:
        return "", []
    return binary, [binary, *split_arguments(_text(process, "arguments"))]


def _exe_flags(process: dict[str, Any], binary: str) -> list[str]:
    """``binary_properties.file`` is set only for a binary that is not on disk: an anonymous memory file (memfd,
    shm) or a deleted one; the kernel names a memfd's file ``memfd:<name>``."""
    file = _mapping(_mapping(process.get("binary_properties")).get("file"))
    if not file:
        return []
    path = _text(file, "path") or binary
    return ["from_memfd"] if "memfd:" in path else ["deleted"]


def split_arguments(arguments: str) -> list[str]:
    """argv[1:] from Tetragon's ``arguments``: the agent joins them with spaces and wraps an argument that
    contains a space in double quotes (without escaping), so ``-c "PORT=9080 python app.py"`` is two."""
    if not arguments:  # most events' processes, and the runtime's shim that parents a container's first one
        return []
    if '"' not in arguments:
        return [word for word in arguments.split(" ") if word]
    argv: list[str] = []
    quoted: list[str] | None = None
    for word in arguments.split(" "):
        if quoted is not None:
            quoted.append(word)
            if word.endswith('"'):
                argv.append(" ".join(quoted)[1:-1])
                quoted = None
        elif word.startswith('"') and not (len(word) > 1 and word.endswith('"')):
            quoted = [word]
        elif word:
            argv.append(word[1:-1] if len(word) > 1 and word[0] == word[-1] == '"' else word)
    if quoted is not None:  # an unbalanced quote: keep the words as they came
        argv.extend(word for word in quoted if word)
    return argv


def _protocol(name: str) -> str:
    """``tcp`` for Tetragon's ``TCP`` and ``IPPROTO_TCP``: protocols as the eBPF sensor's events name them."""
    return name.removeprefix("IPPROTO_").lower()


def _mapping(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else _NOTHING


def _text(mapping: dict[str, Any], key: str) -> str:
    value = mapping.get(key)
    return value if type(value) is str else ""


def _int(mapping: dict[str, Any], key: str, default: int) -> int:
    value = mapping.get(key)
    return value if type(value) is int else default
