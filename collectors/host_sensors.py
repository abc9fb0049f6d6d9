"""What the host-sensor adapters share (Tetragon, Falco, the eBPF sensor, containerd): JSON records, syscalls.

Both sensors export one JSON object per line, and both name what a process did by a syscall or kernel
function (Falco's ``evt.type``, Tetragon's kprobe ``function_name`` or tracepoint). Splitting a payload
into records and mapping those names onto vigil's event kinds happens here once, so the two adapters
refuse bad input with the same reasons and agree on what, say, ``setns`` or ``finit_module`` is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson

from collectors.health import check_health_record, health_key, is_health_record
from collectors.source import RecordRejected, Rejected
from vigil.event import correlation_key_for

#: orjson refuses to encode more than 254 nested levels, and the pipeline wraps a record in a few levels
#: of its own (batch array, event envelope, dead-letter document); a record nested deeper than the rest
#: would parse here and then fail to ship, so it is refused here.
_ENVELOPE_LEVELS = 8
_DEEP_BRACKETS = 254 - _ENVELOPE_LEVELS

#: A syscall, kernel function or LSM hook (without its ``__x64_sys_``-style prefix) → the event kind it is.
SYSCALL_KINDS: dict[str, str] = {
    **dict.fromkeys(("execve", "execveat", "bprm_check", "bprm_check_security"), "process.exec"),
    **dict.fromkeys(("procexit",), "process.exit"),
    **dict.fromkeys(
        ("open", "openat", "openat2", "open_by_handle_at", "fd_install", "file_open", "file_permission",
         "mmap_file", "read", "pread64", "readv", "preadv", "preadv2"),
        "file.open",
    ),
    **dict.fromkeys(
        ("creat", "write", "pwrite64", "writev", "pwritev", "pwritev2", "truncate", "ftruncate", "path_truncate",
         "file_truncate", "rename", "renameat", "renameat2", "path_rename", "unlink", "unlinkat", "path_unlink",
         "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "path_chmod", "chown",
         "fchown", "fchownat", "lchown", "path_chown"),
        "file.write",
    ),
    **dict.fromkeys(("connect", "tcp_connect", "socket_connect"), "net.connect"),
    **dict.fromkeys(("accept", "accept4", "inet_csk_accept", "socket_accept"), "net.accept"),
    **dict.fromkeys(("listen", "inet_csk_listen_start", "socket_listen"), "net.listen"),
    **dict.fromkeys(("tcp_close",), "net.close"),
    **dict.fromkeys(("ptrace", "ptrace_access_check"), "process.ptrace"),
    **dict.fromkeys(
        ("setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid",
         "task_fix_setuid", "task_fix_setgid", "commit_creds"),
        "process.setid",
    ),
    **dict.fromkeys(("setns", "unshare"), "process.ns_change"),
    **dict.fromkeys(("mount", "fsmount", "move_mount", "sb_mount", "path_mount", "do_mount"), "fs.mount"),
    **dict.fromkeys(
        ("init_module", "finit_module", "do_init_module", "load_module", "kernel_module_request",
         "kernel_load_data"),
        "kernel.module_load",
    ),
    **dict.fromkeys(("bpf", "bpf_check", "bpf_prog", "bpf_prog_load"), "bpf.program"),
    **dict.fromkeys(("memfd_create",), "memfd.create"),
}

#: What each kind acts on, as ``target.resource`` (the eBPF sensor's events say the same).
KIND_RESOURCES = {
    "process.ptrace": "processes",
    "process.setid": "credentials",
    "process.ns_change": "namespaces",
    "kernel.module_load": "modules",
    "bpf.program": "bpf",
}
#: ptrace(2) requests by number, named as the eBPF sensor names them (``PTRACE_ATTACH`` is ``attach``).
PTRACE_REQUESTS = {0: "traceme", 4: "poketext", 5: "pokedata", 6: "pokeuser", 16: "attach", 0x4206: "seize"}

#: Syscalls that open a file: whether they count as a read or a write depends on their flags.
OPEN_SYSCALLS = frozenset({"open", "openat", "openat2", "open_by_handle_at"})
#: open(2) flags that make an open a write: O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND.
OPEN_WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000

#: How kernels spell a syscall's entry point, and the LSM prefix; stripped to find the syscall's own name.
_HOOK_PREFIXES = (
    "__x64_sys_", "__arm64_sys_", "__ia32_compat_sys_", "__ia32_sys_", "__se_sys_", "__do_sys_", "__sys_",
    "ksys_", "sys_enter_", "sys_exit_", "sys_", "security_",
)


def syscall_name(hook: str) -> str:
    """``openat`` for ``__x64_sys_openat``, ``sys_enter_openat``, ``sys_openat``; ``sb_mount`` for
    ``security_sb_mount``: the name :data:`SYSCALL_KINDS` knows, whatever the sensor hooked."""
    for prefix in _HOOK_PREFIXES:
        if hook.startswith(prefix):
            return hook[len(prefix) :]
    return hook


def node_record_key(record: dict[str, Any], cluster: str) -> str:
    """The correlation key of a record the node collector enriched with a ``k8s`` object (eBPF, containerd)."""
    if is_health_record(record):
        return health_key(cluster)
    k8s = record.get("k8s")
    k8s = k8s if isinstance(k8s, dict) else {}
    namespace, pod = k8s.get("namespace"), k8s.get("pod")
    namespace = namespace if isinstance(namespace, str) else ""
    return correlation_key_for(cluster, namespace, pod if isinstance(pod, str) else "")


def with_health_records(check: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
    """A source's record check that also accepts the collector's health records about that source."""

    def check_record(record: dict[str, Any]) -> None:
        if is_health_record(record):
            check_health_record(record)
        else:
            check(record)

    return check_record


def split_json_records(
    payload: bytes, max_record_bytes: int, check: Callable[[dict[str, Any]], None]
) -> Iterator[dict[str, Any] | Rejected]:
    """The JSON objects in one payload (a line, or a whole file holding one object or an array of them);
    never raises. ``check`` refuses a record that is not the sensor's by raising RecordRejected.

    Bad input becomes a :class:`Rejected` with one of the stable reasons ``invalid_utf8``, ``not_json``,
    ``too_large``, ``wrong_kind``, ``missing_field``; good records of the same payload are still yielded.
    """
    if len(payload) > max_record_bytes:
        yield Rejected("too_large", f"record of {len(payload)} bytes exceeds the limit of {max_record_bytes}", payload)
        return
    try:
        document = orjson.loads(payload)
        if payload.count(b"{") + payload.count(b"[") > _DEEP_BRACKETS:
            _check_depth(document)
    except RecordRejected as exc:
        yield Rejected(exc.reason, exc.detail, payload)
        return
    except orjson.JSONDecodeError as exc:
        yield Rejected(*_decode_failure(payload, exc), payload)
        return
    if type(document) is dict:
        yield _checked(document, check, payload)
    elif type(document) is list:
        for index, item in enumerate(document):
            record = _checked(item, check, b"")
            if type(record) is Rejected:
                record.detail = f"[{index}]: {record.detail}"
                record.raw = orjson.dumps(item)
            yield record
    else:
        yield Rejected("wrong_kind", f"a JSON {type(document).__name__} is not a record", payload)


def _checked(item: Any, check: Callable[[dict[str, Any]], None], raw: bytes) -> dict[str, Any] | Rejected:
    if type(item) is not dict:
        return Rejected("wrong_kind", f"a JSON {type(item).__name__} is not a record", raw)
    try:
        check(item)
    except RecordRejected as exc:
        return Rejected(exc.reason, exc.detail, raw)
    return item


def _decode_failure(payload: bytes, exc: orjson.JSONDecodeError) -> tuple[str, str]:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as bad:
        return "invalid_utf8", f"invalid UTF-8 at byte {bad.start}"
    return "not_json", str(exc)


def _check_depth(document: Any) -> None:
    nested: Any = document
    for _ in range(_ENVELOPE_LEVELS):
        nested = (nested,)
    try:
        orjson.dumps(nested)
    except orjson.JSONEncodeError:
        raise RecordRejected("not_json", f"nested deeper than {_DEEP_BRACKETS} levels") from None


def shown(value: Any) -> str:
    """A hostile value, bounded for a detail message (the record itself is kept whole in ``raw``)."""
    if type(value) is str:
        return repr(value[:80])
    if value is None or type(value) in (bool, int, float):
        return repr(value)
    return f"a JSON {type(value).__name__}"
