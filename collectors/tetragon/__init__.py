"""Tetragon's JSON export as a vigil source, so clusters that already run Tetragon feed vigil's detections.

The export (``export-filename`` of the agent, or ``tetra getevents -o json``) is one ``GetEventsResponse``
object a line; ``vigil collect file --source tetragon`` follows such files and ``vigil replay --source
tetragon`` runs them through the detections. :data:`TETRAGON_SOURCE` is what both look up by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from collectors.host_sensors import split_json_records
from collectors.source import Rejected
from collectors.tetragon.normalize import SOURCE, check_record, correlation_key, normalize_record
from vigil.event import Event


class TetragonSource:
    """The ``collectors.source.Source`` for Tetragon export records (one event object each)."""

    name = SOURCE

    def split(self, payload: bytes, max_record_bytes: int) -> Iterator[dict[str, Any] | Rejected]:
        return split_json_records(payload, max_record_bytes, check_record)

    def key(self, record: dict[str, Any], cluster: str) -> str:
        return correlation_key(record, cluster)

    def normalize(self, record: dict[str, Any], cluster: str, node: str) -> Event:
        return normalize_record(record, cluster, node)


TETRAGON_SOURCE = TetragonSource()

__all__ = ["TETRAGON_SOURCE", "TetragonSource"]
