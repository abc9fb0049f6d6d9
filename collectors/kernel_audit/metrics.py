"""Prometheus metrics of the kernel audit reader, beside the node collector's per-source counts.

Refused records are counted by the shared ``vigil_records_rejected_total{source="kernel-audit"}`` and kept
in the dead-letter topic; these say what the socket delivered and what the kernel or the socket lost.
"""

from __future__ import annotations

from prometheus_client import Counter

READ = Counter("vigil_kernel_audit_records_read_total",
               "Audit records read from the kernel's netlink multicast group, by type (\"other\": types vigil skips)",
               ["type"])
LOST = Counter("vigil_kernel_audit_records_lost_total",
               "Audit events lost before vigil read them: socket_overflow (ENOBUFS, counted from serial gaps), "
               "kernel_backlog (the kernel's own lost counter)", ["reason"])
