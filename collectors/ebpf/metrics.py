"""Prometheus metrics of the eBPF sensor (the shared pipeline metrics live in :mod:`vigil.metrics`).

The sensor counts in plain integers per record and adds them to these metrics once per poll: a Prometheus
counter increment per record would cost more than decoding the record.
"""

from __future__ import annotations

from prometheus_client import Counter

RECORDS = Counter("vigil_sensor_records_total", "Records captured by the eBPF sensor", ["type"])
KERNEL_LOSSES = Counter(
    "vigil_sensor_kernel_losses_total",
    "Records the kernel could not put in the sensor's ring buffer: it was full (reason=full, the reader fell "
    "behind) or its lock was not taken in time (reason=busy)",
    ["reason"],
)
CGROUP_CACHE = Counter(
    "vigil_sensor_cgroup_cache_total", "cgroup id to container id lookups, by cache result", ["result"]
)
UNPROFILED = Counter(
    "vigil_sensor_unprofiled_syscalls_total",
    "Syscalls missing from the per-container syscall profiles because the kernel's cgroup table was full",
)
