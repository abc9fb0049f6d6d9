"""Container-runtime events as a vigil source: containerd's event stream (``watcher``, ``events``), the CRI
RuntimeService that maps a container to its pod (``cri``), and the records' mapping into the envelope
(``normalize``).

:data:`RUNTIME_SOURCE` is what the collectors and stream workers look up by the name ``containerd``; its
records are what ``vigil collect node`` ships to ``raw.containerd``.
"""

from __future__ import annotations

from collectors.runtime.normalize import SOURCE, correlation_key, normalize_record, split_payload
from collectors.source import ModuleSource

RUNTIME_SOURCE = ModuleSource(SOURCE, split_payload, correlation_key, normalize_record)

__all__ = ["RUNTIME_SOURCE"]
