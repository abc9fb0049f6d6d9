"""The kernel's audit records as a vigil source: seccomp verdicts, SELinux and AppArmor decisions, crashes.

``records`` parses the kernel's record text (from netlink or an audit.log line), ``normalize`` maps records into
``kernel.seccomp``, ``kernel.lsm`` and ``process.exit`` events, and ``fixtures`` builds complete records for
examples. The reader of the audit socket is :mod:`vigil.collectors.kernel_audit`.

:data:`KERNEL_AUDIT_SOURCE` is what the collectors and stream workers look up by the name ``kernel-audit``.
"""

from __future__ import annotations

from vigil.sources.kernel_audit.normalize import SOURCE, correlation_key, normalize_record, split_payload
from vigil.sources.source import ModuleSource

KERNEL_AUDIT_SOURCE = ModuleSource(SOURCE, split_payload, correlation_key, normalize_record)

__all__ = ["KERNEL_AUDIT_SOURCE"]
