"""The kernel's audit records as a vigil source: seccomp verdicts, SELinux and AppArmor decisions, crashes.

``records`` parses the kernel's record text (from netlink or an audit.log line), ``netlink`` reads it live
from the audit socket's read-only multicast group, and ``normalize`` maps records into ``kernel.seccomp``,
``kernel.lsm`` and ``process.exit`` events. The node collector (``vigil collect node``) runs the reader and
adds each record's pod; ``vigil collect file --source kernel-audit --file /var/log/audit/audit.log``
follows auditd's log with the same parser.

:data:`KERNEL_AUDIT_SOURCE` is what the collectors and stream workers look up by the name ``kernel-audit``.
"""

from __future__ import annotations

from collectors.kernel_audit.normalize import SOURCE, correlation_key, is_decision, normalize_record, split_payload
from collectors.kernel_audit.records import record_from_netlink
from collectors.source import ModuleSource

KERNEL_AUDIT_SOURCE = ModuleSource(SOURCE, split_payload, correlation_key, normalize_record)

__all__ = ["KERNEL_AUDIT_SOURCE", "is_decision", "record_from_netlink"]
