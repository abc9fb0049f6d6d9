"""vigil's own eBPF syscall sensor.

The sensor (:class:`Sensor`, :mod:`vigil.collectors.ebpf.sensor`) is a CO-RE BPF program compiled for the running
kernel (``build``), loaded through libbpf (``libbpf``) and read from its ring buffer's shared memory (``ringbuf``);
its records are decoded by :mod:`vigil.sources.ebpf.records` and carry their container id (``cgroups``). Its kernel
side also keeps each container's syscall profile (``syscall_table``: what it does with each syscall number), which
user space reports as ``syscalls`` records (``profiles``).
"""

from __future__ import annotations

from vigil.collectors.ebpf.sensor import Sensor, SensorConfig, SensorUnavailable

__all__ = ["Sensor", "SensorConfig", "SensorUnavailable"]
