"""Kubernetes API audit logs as a vigil source: the formats they arrive in (``parse``), their mapping into
the normalized Event (``normalize``), and the collectors that receive them (webhook receiver, file tailer).

:data:`AUDIT_SOURCE` is what the collector and the stream workers look up by the name ``k8s-audit``.
"""

from __future__ import annotations

from collectors.audit.normalize import SOURCE, correlation_key, normalize_record
from collectors.audit.parse import split_payload
from collectors.source import ModuleSource

AUDIT_SOURCE = ModuleSource(SOURCE, split_payload, correlation_key, normalize_record)

__all__ = ["AUDIT_SOURCE"]
