"""Kernel audit records as vigil records: the text the kernel writes, parsed, from netlink or from audit.log.

The kernel sends one record per netlink message: its type as the message type and a text body
``audit(1795712736.005:2): pid=27361 comm="python3" ... syscall=83 code=0x50000``. auditd writes the same
body to ``/var/log/audit/audit.log`` behind ``type=SECCOMP msg=`` (and ``node=NAME`` when configured, and
the interpreted fields after a ``\\x1d`` separator in its ENRICHED format). Both forms end up as the same
record, the ``raw.kernel-audit`` wire format::

    {"type": "SECCOMP", "type_id": 1326, "time_ns": 1795712736005000000, "serial": 2,
     "fields": {"pid": "27361", "comm": "python3", "syscall": "83", "code": "0x50000", ...},
     "line": "audit(1795712736.005:2): pid=27361 ..."}

to which the node collector adds ``container_id`` (from ``/proc/<pid>/cgroup``), ``node`` and ``k8s``.
Field values stay the strings the kernel wrote, except strings the kernel hex-encoded because they came
from an untrusted source (a ``comm`` with a space), which are decoded. An SELinux AVC's
``avc:  denied  { read write } for`` prefix becomes the fields ``avc`` ("denied") and ``permissions``
("read write").

Only the types vigil maps are kept (:data:`TYPES`); the others (SYSCALL, PATH, logins, ...) are not
wanted here and are skipped, not refused. A line that claims to be an audit record and is not is refused
with a stable reason: ``not_audit``, ``invalid_utf8``, ``too_large``, ``missing_field``.
"""

from __future__ import annotations

import re
from typing import Any

from vigil.sources.source import RecordRejected

#: Audit record types vigil maps (``include/uapi/linux/audit.h``; AppArmor's from the audit userspace).
TYPES: dict[int, str] = {
    1326: "SECCOMP",
    1400: "AVC",
    1500: "APPARMOR",
    1501: "APPARMOR_AUDIT",
    1502: "APPARMOR_ALLOWED",
    1503: "APPARMOR_DENIED",
    1504: "APPARMOR_HINT",
    1505: "APPARMOR_STATUS",
    1506: "APPARMOR_ERROR",
    1507: "APPARMOR_KILL",
    1701: "ANOM_ABEND",
}
TYPE_IDS: dict[str, int] = {name: type_id for type_id, name in TYPES.items()}

#: The kernel bounds one record's text (MAX_AUDIT_MESSAGE_LENGTH); auditd's line adds its prefix.
MAX_RECORD_BYTES = 8970 + 256

#: Fields the kernel writes with ``audit_log_untrustedstring``: quoted when plain, hex when not.
_UNTRUSTED = frozenset({"comm", "exe", "name", "path", "cwd", "proctitle", "profile", "peer", "target",
                        "info", "key", "capname"})
_HEADER = re.compile(r"audit\((\d{1,12})\.(\d{3}):(\d{1,20})\):\s?")
_LOG_PREFIX = re.compile(r"(?:node=(\S+) )?type=(\w+|UNKNOWN\[\d+\]) msg=")
_FIELD = re.compile(r"([A-Za-z_][\w-]*)=(\"[^\"]*\"|'[^']*'|\S*)")
_AVC = re.compile(r"avc:\s+(denied|granted)\s+\{\s*([^}]*?)\s*\}\s+for\s+")
_HEX = re.compile(r"(?:[0-9A-F]{2})+")


def record_from_netlink(type_id: int, body: bytes) -> dict[str, Any] | None:
    """The record of one netlink message, ``None`` for a type vigil does not map; raises RecordRejected."""
    type_name = TYPES.get(type_id)
    if type_name is None:
        return None
    return _record(type_name, _text(body.rstrip(b"\0")))


def record_from_log_line(line: bytes) -> dict[str, Any] | None:
    """The record of one audit.log line, ``None`` for a type vigil does not map; raises RecordRejected."""
    text = _text(line.rstrip(b"\r\n"))
    prefix = _LOG_PREFIX.match(text)
    if prefix is None:
        raise RecordRejected("not_audit", f"not an audit log line: {text[:80]!r}")
    type_name = prefix.group(2)
    if type_name not in TYPE_IDS:
        return None
    record = _record(type_name, text[prefix.end():])
    if prefix.group(1):
        record["node"] = prefix.group(1)
    return record


def parse_fields(body: str) -> dict[str, str]:
    """``key=value`` pairs of a record body (after its ``audit(...)`` header), untrusted strings decoded."""
    fields: dict[str, str] = {}
    interpreted = body.find("\x1d")  # auditd's ENRICHED format appends its own interpretations
    if interpreted >= 0:
        body = body[:interpreted]
    avc = _AVC.match(body)
    if avc:
        fields["avc"], fields["permissions"] = avc.group(1), " ".join(avc.group(2).split())
        body = body[avc.end():]
    for key, value in _FIELD.findall(body):
        if key in fields:
            continue  # the kernel writes each field once: a repeat is not the kernel's, the first one counts
        if value[:1] in ('"', "'"):
            value = value[1:-1]
        elif key in _UNTRUSTED and _HEX.fullmatch(value):
            value = bytes.fromhex(value).decode("utf-8", "replace")
        fields[key] = value
    return fields


def _record(type_name: str, line: str) -> dict[str, Any]:
    header = _HEADER.match(line)
    if header is None:
        raise RecordRejected("not_audit", f"{type_name} record without an audit(time:serial) header: {line[:80]!r}")
    seconds, millis, serial = (int(part) for part in header.groups())
    if seconds <= 0:
        raise RecordRejected("missing_field", f"{type_name} record with time {seconds}")
    return {"type": type_name, "type_id": TYPE_IDS[type_name], "time_ns": seconds * 1_000_000_000 + millis * 1_000_000,
            "serial": serial, "fields": parse_fields(line[header.end():]), "line": line}


def _text(raw: bytes) -> str:
    if len(raw) > MAX_RECORD_BYTES:
        raise RecordRejected("too_large", f"audit record of {len(raw)} bytes exceeds {MAX_RECORD_BYTES}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # the kernel hex-encodes what is not plain text: this was not the kernel
        raise RecordRejected("invalid_utf8", f"invalid UTF-8 at byte {exc.start}") from None
