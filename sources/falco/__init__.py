"""Falco's JSON output as a vigil source, so clusters that already run Falco feed vigil's detections.

Falco writes one alert object a line (``json_output: true`` with the file or stdout output, or
falcosidekick's webhook payloads saved as lines); ``vigil collect file --source falco`` follows such files
and ``vigil replay --source falco`` runs them through the detections. :data:`FALCO_SOURCE` is what both
look up by name.
"""

from __future__ import annotations

import functools

from vigil.sources.falco.normalize import SOURCE, check_record, correlation_key, normalize_record
from vigil.sources.host_sensors import split_json_records
from vigil.sources.source import ModuleSource

FALCO_SOURCE = ModuleSource(
    SOURCE, functools.partial(split_json_records, check=check_record), correlation_key, normalize_record
)

__all__ = ["FALCO_SOURCE"]
