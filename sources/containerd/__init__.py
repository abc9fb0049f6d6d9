"""containerd's events, as the node collector ships them to ``raw.containerd``, as a vigil source: their mapping
into the envelope (``normalize``) and complete records for examples (``fixtures``).

:data:`CONTAINERD_SOURCE` is what the collectors and stream workers look up by the name ``containerd``.
"""

from __future__ import annotations

from vigil.sources.containerd.normalize import SOURCE, correlation_key, normalize_record, split_payload
from vigil.sources.source import ModuleSource

CONTAINERD_SOURCE = ModuleSource(SOURCE, split_payload, correlation_key, normalize_record)

__all__ = ["CONTAINERD_SOURCE"]
