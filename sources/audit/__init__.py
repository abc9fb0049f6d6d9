"""Kubernetes API audit logs as a vigil source: the formats they arrive in (``parse``), their mapping into the
normalized Event (``normalize``) and complete audit records for examples (``fixtures``).

:data:`AUDIT_SOURCE` is what the collectors and the stream workers look up by the name ``k8s-audit``.
"""

from __future__ import annotations

from vigil.sources.audit.normalize import SOURCE, correlation_key, normalize_record
from vigil.sources.audit.parse import split_payload
from vigil.sources.source import ModuleSource

AUDIT_SOURCE = ModuleSource(SOURCE, split_payload, correlation_key, normalize_record)

__all__ = ["AUDIT_SOURCE"]
