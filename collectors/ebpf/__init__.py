"""vigil's own eBPF syscall sensor, and its records as a vigil source.

The sensor (:class:`Sensor`, :mod:`collectors.ebpf.sensor`) is a CO-RE BPF program compiled for the running
kernel (``build``), loaded through libbpf (``libbpf``), read from its ring buffer's shared memory
(``ringbuf``) and decoded into JSON-able records (``records``) that carry their container id (``cgroups``).
Its kernel side also keeps each container's syscall profile (``syscall_table``: what it does with each syscall
number), which user space reports as ``syscalls`` records (``profiles``).
:data:`EBPF_SOURCE` is what the collectors and stream workers look up by the name ``ebpf``: the mapping of
those records into the envelope (``normalize``).
"""

from __future__ import annotations

from collectors.ebpf.normalize import SOURCE, correlation_key, normalize_record, split_payload
from collectors.ebpf.sensor import Sensor, SensorConfig, SensorUnavailable
from collectors.source import ModuleSource

EBPF_SOURCE = ModuleSource(SOURCE, split_payload, correlation_key, normalize_record)

__all__ = ["EBPF_SOURCE", "Sensor", "SensorConfig", "SensorUnavailable"]
