"""What every telemetry source provides: parsing its wire format, a partition key, and the mapping into
the normalized :class:`~vigil.event.Event`.

A source is one module (``vigil.collectors.audit`` for Kubernetes audit logs, later the eBPF sensor, containerd,
Tetragon, Falco). The collector uses ``split`` and ``key`` at the edge and ships the source's own records
to ``raw.<name>``; the stream workers and ``vigil replay`` call ``normalize``. Keeping all three in one
place per source means adding a source never touches the pipeline.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from vigil.event import Event


@dataclass(slots=True)
class Rejected:
    """A record refused as bad input. ``reason`` is a short stable label (a metric label value);
    ``detail`` explains it to a person; ``raw`` is the offending bytes, kept for the dead-letter topic."""

    reason: str
    detail: str
    raw: bytes = b""


class RecordRejected(ValueError):
    """Raised by ``normalize`` (and inside ``split``) for a record that cannot be used."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Source(Protocol):
    name: str

    def split(self, payload: bytes, max_record_bytes: int) -> Iterator[dict[str, Any] | Rejected]:
        """Parse one payload (a log line, an HTTP body, a whole file) into source records, refusing bad ones."""
        ...

    def key(self, record: dict[str, Any], cluster: str) -> str:
        """The Kafka key: must equal :attr:`Event.correlation_key` of ``normalize(record)``."""
        ...

    def normalize(self, record: dict[str, Any], cluster: str, node: str) -> Event:
        """Map one source record into the envelope (``raw`` keeps the record)."""
        ...


@dataclass(frozen=True, slots=True)
class ModuleSource:
    """A :class:`Source` made of a source module's three functions, which is all a source needs."""

    name: str
    split_payload: Callable[[bytes, int], Iterator[dict[str, Any] | Rejected]]
    correlation_key: Callable[[dict[str, Any], str], str]
    normalize_record: Callable[[dict[str, Any], str, str], Event]

    def split(self, payload: bytes, max_record_bytes: int) -> Iterator[dict[str, Any] | Rejected]:
        return self.split_payload(payload, max_record_bytes)

    def key(self, record: dict[str, Any], cluster: str) -> str:
        return self.correlation_key(record, cluster)

    def normalize(self, record: dict[str, Any], cluster: str, node: str) -> Event:
        return self.normalize_record(record, cluster, node)


#: Every source vigil knows, as ``module:attribute`` so that a source is imported only when used.
SOURCES: dict[str, str] = {
    "k8s-audit": "vigil.sources.audit:AUDIT_SOURCE",
    "ebpf": "vigil.sources.ebpf:EBPF_SOURCE",
    "containerd": "vigil.sources.containerd:CONTAINERD_SOURCE",
    "tetragon": "vigil.sources.tetragon:TETRAGON_SOURCE",
    "falco": "vigil.sources.falco:FALCO_SOURCE",
    "kernel-audit": "vigil.sources.kernel_audit:KERNEL_AUDIT_SOURCE",
}


def get_source(name: str) -> Source:
    """Look a source up by its name as used on the command line and in topic names."""
    try:
        module, attribute = SOURCES[name].split(":")
    except KeyError:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}") from None
    return getattr(importlib.import_module(module), attribute)
