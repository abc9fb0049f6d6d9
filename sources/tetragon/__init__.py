"""Tetragon's JSON export as a vigil source, so clusters that already run Tetragon feed vigil's detections.

The export (``export-filename`` of the agent, or ``tetra getevents -o json``) is one ``GetEventsResponse``
object a line; ``vigil collect file --source tetragon`` follows such files and ``vigil replay --source
tetragon`` runs them through the detections. :data:`TETRAGON_SOURCE` is what both look up by name.
"""

from __future__ import annotations

import functools

from vigil.sources.host_sensors import split_json_records
from vigil.sources.source import ModuleSource
from vigil.sources.tetragon.normalize import SOURCE, check_record, correlation_key, normalize_record

TETRAGON_SOURCE = ModuleSource(
    SOURCE, functools.partial(split_json_records, check=check_record), correlation_key, normalize_record
)

__all__ = ["TETRAGON_SOURCE"]
