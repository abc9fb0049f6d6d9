"""Falco's JSON output as a vigil source, so clusters that already run Falco feed vigil's detections.

Falco writes one alert object a line (``json_output: true`` with the file or stdout output, or
falcosidekick's webhook payloads saved as lines); ``vigil collect file --source falco`` follows such files
and ``vigil replay --source falco`` runs them through the detections. :data:`FALCO_SOURCE` is what both
look up by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from collectors.falco.normalize import SOURCE, check_record, correlation_key, normalize_record
from collectors.host_sensors import split_json_records
from collectors.source import Rejected
from vigil.event import Event


class FalcoSource:
    """The ``collectors.source.Source`` for Falco alerts of its syscall source (one alert object each)."""

    name = SOURCE

    def split(self, payload: bytes, max_record_bytes: int) -> Iterator[dict[str, Any] | Rejected]:
        return split_json_records(payload, max_record_bytes, check_record)

    def key(self, record: dict[str, Any], cluster: str) -> str:
        return correlation_key(record, cluster)

    def normalize(self, record: dict[str, Any], cluster: str, node: str) -> Event:
        return normalize_record(record, cluster, node)


FALCO_SOURCE = FalcoSource()

__all__ = ["FALCO_SOURCE", "FalcoSource"]
