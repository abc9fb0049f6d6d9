"""Container-runtime events as a vigil source: containerd's event stream (``watcher``, ``events``), the CRI
RuntimeService that maps a container to its pod (``cri``), and the records' mapping into the envelope
(``normalize``).

:data:`RUNTIME_SOURCE` is what the collectors and stream workers look up by the name ``containerd``; its
records are what ``vigil collect node`` ships to ``raw.containerd``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from collectors.runtime.normalize import SOURCE, correlation_key, normalize_record, split_payload
from collectors.source import Rejected
from vigil.event import Event


class RuntimeSource:
    """The ``collectors.source.Source`` for container lifecycle records (``container.*`` kinds)."""

    name = SOURCE

    def split(self, payload: bytes, max_record_bytes: int) -> Iterator[dict[str, Any] | Rejected]:
        return split_payload(payload, max_record_bytes)

    def key(self, record: dict[str, Any], cluster: str) -> str:
        return correlation_key(record, cluster)

    def normalize(self, record: dict[str, Any], cluster: str, node: str) -> Event:
        return normalize_record(record, cluster, node)


RUNTIME_SOURCE = RuntimeSource()

__all__ = ["RUNTIME_SOURCE", "RuntimeSource"]
