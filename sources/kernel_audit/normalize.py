"""Kernel audit records (``raw.kernel-audit``, see :mod:`vigil.sources.kernel_audit.records`) in the envelope.

- ``SECCOMP`` → ``kernel.seccomp``: the filter's verdict (``code``) as the action, the syscall named for the
  record's architecture (``arch=c000003e syscall=83`` is x86_64's ``mkdir``; ``syscall_<nr>`` for a number or
  architecture the shared table does not know), ``denied`` unless the verdict was ``log``.
- ``AVC`` (SELinux, or AppArmor's ``apparmor=`` lines, which modern kernels log as type 1400) and the
  ``APPARMOR_*`` types → ``kernel.lsm``. AppArmor's ``STATUS``, ``HINT`` and ``ERROR`` records (profile
  loads, parser errors) are not access decisions and are refused as ``wrong_kind`` if they reach here.
- ``ANOM_ABEND`` (a process ended by a signal that dumps core) → ``process.exit`` with action ``crash``:
  it is how a process died, whatever the signal; for SIGSYS the seccomp verdict itself comes from the
  ``SECCOMP`` record the kernel writes for it, so it is not counted twice as a seccomp event. The kernel
  writes these only while audit is enabled (auditd running, or ``auditctl -e 1``); vigil does not enable it.

Runs in the stream workers and ``vigil replay``; trusts no field's type. The ``k8s`` object the node
collector adds is the context; the record's own ``container_id`` (from the process's cgroup) fills in when the pod
was not resolved, and names ``container`` either way. The actor's ``auid`` is the record's login uid. An LSM
decision about a file also fills ``file``: its path and the permissions asked that are file accesses.
"""

from __future__ import annotations

import errno
import functools
import signal
from collections.abc import Callable, Iterator
from typing import Any

from vigil.event import FILE_ACCESS, Actor, Event, File, Outcome, Target, event_id, now_ns
from vigil.sources.health import health_event, is_health_record
from vigil.sources.host_sensors import (
    AUDIT_ARCHES,
    host_identity,
    node_container,
    node_k8s_context,
    node_record_key,
    split_json_records,
    syscall_by_number,
    text_field,
    with_health_records,
)
from vigil.sources.kernel_audit.records import MAX_RECORD_BYTES, TYPE_IDS, record_from_log_line
from vigil.sources.source import RecordRejected, Rejected

SOURCE = "kernel-audit"

#: ``SECCOMP_RET_*`` action values (the high 16 bits of ``code``) → the contract's verdict names.
SECCOMP_ACTIONS = {
    0x80000000: "kill_process",
    0x00000000: "kill_thread",
    0x00030000: "trap",
    0x00050000: "errno",
    0x7FC00000: "user_notif",
    0x7FF00000: "trace",
    0x7FFC0000: "log",
    0x7FFF0000: "allow",
}
_APPARMOR_DECISIONS = {"DENIED": "denied", "KILL": "denied", "ALLOWED": "success", "AUDIT": "success"}
#: AppArmor's one-letter file permissions (``requested_mask="rw"``), spelled out like SELinux's.
_APPARMOR_MASK = {"r": "read", "w": "write", "a": "append", "x": "exec", "m": "mmap_exec", "l": "link",
                  "k": "lock", "c": "create", "d": "delete", "N": "change_profile"}
_APPARMOR_CLASSES = {"cap": "capability", "net": "network"}
#: ``(uid_t)-1``: the kernel's "not set" (``auid`` of a process no login started, for example).
_UNSET_ID = 4294967295


def normalize_record(record: dict[str, Any], cluster: str, node: str) -> Event:
    """The Event for one kernel audit record; raises RecordRejected when it cannot be used."""
    if is_health_record(record):
        return health_event(record, SOURCE, cluster, node)
    record_type, time_ns, serial, fields = _identity(record)
    kind, action, target, outcome = _MAPPINGS[record_type](fields)
    node = text_field(record, "node") or node
    k8s = node_k8s_context(record.get("k8s"))
    k8s.container_id = k8s.container_id or text_field(record, "container_id")
    seconds, millis = divmod(time_ns // 1_000_000, 1000)
    actor = _actor(fields)
    actor.user = host_identity(record, k8s.namespace, k8s.pod)
    return Event(
        id=event_id(SOURCE, node, record_type, str(time_ns), str(serial)),
        time_ns=time_ns,
        source=SOURCE,
        kind=kind,
        action=action,
        original_id=f"audit({seconds}.{millis:03d}:{serial})",
        ingest_ns=now_ns(),
        cluster=cluster,
        node=node,
        k8s=k8s,
        actor=actor,
        target=target,
        outcome=outcome,
        container=node_container(k8s),
        file=_file(kind, target),
        raw=record,
    )


#: The key comes from the ``k8s`` object the node collector added to the record, or its node for a host process.
correlation_key = node_record_key


def split_payload(payload: bytes, max_record_bytes: int) -> Iterator[dict[str, Any] | Rejected]:
    """One payload into records; never raises. A JSON record or array is what the node collector ships to
    ``raw.kernel-audit``; any other line is an audit.log line (``vigil collect file --source kernel-audit``)."""
    if payload.lstrip()[:1] in (b"{", b"["):
        yield from split_json_records(payload, max_record_bytes, check=_check)
        return
    if not payload.strip():
        return
    if len(payload) > min(max_record_bytes, MAX_RECORD_BYTES):
        yield Rejected("too_large", f"line of {len(payload)} bytes exceeds {min(max_record_bytes, MAX_RECORD_BYTES)}",
                       payload)
        return
    try:
        record = record_from_log_line(payload)
    except RecordRejected as exc:
        yield Rejected(exc.reason, exc.detail, payload)
        return
    if record is not None and is_decision(record):
        yield record


def is_decision(record: dict[str, Any]) -> bool:
    """False for AppArmor's status, hint and error records (profile loads, parser errors): they decide no
    access, so collectors skip them like the audit types vigil does not map."""
    record_type, fields = record["type"], record["fields"]
    if record_type.startswith("APPARMOR") or (record_type == "AVC" and "apparmor" in fields):
        return _apparmor_decision(record_type, fields) in _APPARMOR_DECISIONS
    return True


def _identity(record: dict[str, Any]) -> tuple[str, int, int, dict[str, Any]]:
    record_type = record.get("type")
    if record_type not in _MAPPINGS:
        raise RecordRejected("wrong_kind", f"type {record_type!r} is not a kernel audit type vigil maps")
    time_ns, serial, fields = record.get("time_ns"), record.get("serial"), record.get("fields")
    if type(time_ns) is not int or time_ns <= 0:
        raise RecordRejected("missing_field", f"time_ns must be a positive integer, got {time_ns!r}")
    if type(serial) is not int or serial < 0:
        raise RecordRejected("missing_field", f"serial must be a non-negative integer, got {serial!r}")
    if type(fields) is not dict:
        raise RecordRejected("missing_field", "fields must be an object")
    return record_type, time_ns, serial, fields


_check = with_health_records(_identity)


def _actor(fields: dict[str, Any]) -> Actor:
    exe = text_field(fields, "exe")
    uid, gid, auid = (_number(fields, name, -1) for name in ("uid", "gid", "auid"))
    return Actor(pid=_number(fields, "pid", 0), uid=-1 if uid == _UNSET_ID else uid,
                 gid=-1 if gid == _UNSET_ID else gid, auid=-1 if auid == _UNSET_ID else auid,
                 exe=exe if exe and exe not in ("?", "(null)") else text_field(fields, "comm"))


def _file(kind: str, target: Target) -> File:
    """The file an LSM decision is about, with the permissions asked that are file accesses; empty otherwise."""
    if kind != "kernel.lsm" or not target.path.startswith("/"):
        return File()
    asked = target.name.split()
    return File(path=target.path, access=[access for access in FILE_ACCESS if access in asked])


# -- per type: (kind, action, target, outcome) ---------------------------------------------------------------

_Mapping = tuple[str, str, Target, Outcome]


def _seccomp(fields: dict[str, Any]) -> _Mapping:
    code, arch, number = _number(fields, "code", -1), _number(fields, "arch", -1), _number(fields, "syscall", -1)
    if code < 0 or arch < 0 or number < 0:
        raise RecordRejected("missing_field", "a SECCOMP record needs code, arch and syscall")
    action = SECCOMP_ACTIONS.get(code & 0xFFFF0000)
    if action is None:
        raise RecordRejected("wrong_kind", f"unknown seccomp action in code {code:#x}")
    name, data = syscall_by_number(AUDIT_ARCHES.get(arch, ""), number), code & 0xFFFF
    if action == "errno" and data:  # the kernel logs the action alone (0x50000): the errno is seldom known
        reason = f"seccomp errno {data} ({errno.errorcode.get(data, '?')}) on {name}"
    elif action in ("kill_process", "kill_thread", "trap"):
        reason = f"seccomp {action} ({_signal_name(_number(fields, 'sig', 0)) or 'SIGSYS'}) on {name}"
    else:
        reason = f"seccomp {action} on {name}"
    result = "success" if action in ("log", "allow") else "denied"
    return "kernel.seccomp", action, Target(name=name), Outcome(result, number, reason)


def _avc(fields: dict[str, Any]) -> _Mapping:
    if "apparmor" in fields:
        return _apparmor("AVC", fields)
    verdict = text_field(fields, "avc")
    if verdict not in ("denied", "granted"):
        raise RecordRejected("missing_field", "an AVC record needs 'avc: denied|granted { ... }' or apparmor=")
    reason = f"scontext={text_field(fields, 'scontext')} tcontext={text_field(fields, 'tcontext')}"
    if text_field(fields, "permissive") == "1":
        reason += " permissive=1"
    target = Target(path=text_field(fields, "path") or text_field(fields, "name"),
                    name=text_field(fields, "permissions"), resource=text_field(fields, "tclass"))
    return "kernel.lsm", "selinux", target, Outcome("denied" if verdict == "denied" else "success", 0, reason)


def _apparmor(record_type: str, fields: dict[str, Any]) -> _Mapping:
    decision = _apparmor_decision(record_type, fields)
    result = _APPARMOR_DECISIONS.get(decision)
    if result is None:
        raise RecordRejected("wrong_kind", f"apparmor={decision[:40]!r} is not an access decision")
    operation = text_field(fields, "operation")
    if operation == "capable" or "capability" in fields:
        resource, permissions = "capability", text_field(fields, "capname") or text_field(fields, "capability")
    else:
        resource = _APPARMOR_CLASSES.get(text_field(fields, "class"), text_field(fields, "class")) or (
            "network" if "family" in fields else "file")
        permissions = _spelled_mask(text_field(fields, "requested_mask") or text_field(fields, "denied_mask"))
    reason = f"profile={text_field(fields, 'profile')}" + (f" operation={operation}" if operation else "")
    target = Target(path=text_field(fields, "name"), name=permissions, resource=resource)
    return "kernel.lsm", "apparmor", target, Outcome(result, 0, reason)


def _abend(fields: dict[str, Any]) -> _Mapping:
    number = _number(fields, "sig", 0)
    if number <= 0:
        raise RecordRejected("missing_field", "an ANOM_ABEND record needs sig")
    reason = f"killed by signal {number} ({_signal_name(number) or '?'}), core dumped"
    return "process.exit", "crash", Target(), Outcome("failure", number, reason)


_MAPPINGS: dict[str, Callable[[dict[str, Any]], _Mapping]] = {
    "SECCOMP": _seccomp,
    "AVC": _avc,
    "ANOM_ABEND": _abend,
    **{name: functools.partial(_apparmor, name) for name in TYPE_IDS if name.startswith("APPARMOR")},
}


def _apparmor_decision(record_type: str, fields: dict[str, Any]) -> str:
    """``apparmor="DENIED"``; older kernels said it only in the type (``APPARMOR_DENIED``)."""
    return text_field(fields, "apparmor") or record_type.removeprefix("APPARMOR").lstrip("_")


def _spelled_mask(mask: str) -> str:
    if mask and all(letter in _APPARMOR_MASK for letter in mask):
        return " ".join(_APPARMOR_MASK[letter] for letter in mask)
    return mask


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return ""


def _number(fields: dict[str, Any], name: str, default: int) -> int:
    """An audit number: decimal, or hex for ``arch`` (``c000003e``) and ``code`` (``0x50000``)."""
    value = fields.get(name)
    if type(value) is int:
        return value
    if not isinstance(value, str) or not value or len(value) > 20:
        return default
    try:
        return int(value, 16) if name == "arch" else int(value, 0) if value.startswith("0x") else int(value)
    except ValueError:
        return default
