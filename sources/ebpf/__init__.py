"""The records of vigil's eBPF sensor as a vigil source: their decoding from the ring buffer's bytes
(``records``), their mapping into the envelope (``normalize``) and complete records for examples (``fixtures``).

:data:`EBPF_SOURCE` is what the collectors and stream workers look up by the name ``ebpf``.
"""

from __future__ import annotations

from vigil.sources.ebpf.normalize import SOURCE, correlation_key, normalize_record, split_payload
from vigil.sources.source import ModuleSource

EBPF_SOURCE = ModuleSource(SOURCE, split_payload, correlation_key, normalize_record)

__all__ = ["EBPF_SOURCE"]
