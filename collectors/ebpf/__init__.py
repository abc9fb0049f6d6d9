"""vigil's own eBPF syscall sensor, and its records as a vigil source.

The sensor (:class:`Sensor`, :mod:`collectors.ebpf.sensor`) is a CO-RE BPF program compiled for the running
kernel (``build``), loaded through libbpf (``libbpf``), read from its ring buffer's shared memory
(``ringbuf``) and decoded into JSON-able records (``records``) that carry their container id (``cgroups``).
:data:`EBPF_SOURCE` is what the collectors and stream workers look up by the name ``ebpf``: the mapping of
those records into the envelope (``normalize``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from collectors.ebpf.normalize import SOURCE, correlation_key, normalize_record, split_payload
from collectors.ebpf.sensor import Sensor, SensorConfig, SensorUnavailable
from collectors.source import Rejected
from vigil.event import Event


class EbpfSource:
    """The ``collectors.source.Source`` for the sensor's records (``raw.ebpf``)."""

    name = SOURCE

    def split(self, payload: bytes, max_record_bytes: int) -> Iterator[dict[str, Any] | Rejected]:
        return split_payload(payload, max_record_bytes)

    def key(self, record: dict[str, Any], cluster: str) -> str:
        return correlation_key(record, cluster)

    def normalize(self, record: dict[str, Any], cluster: str, node: str) -> Event:
        return normalize_record(record, cluster, node)


EBPF_SOURCE = EbpfSource()

__all__ = ["EBPF_SOURCE", "EbpfSource", "Sensor", "SensorConfig", "SensorUnavailable"]
