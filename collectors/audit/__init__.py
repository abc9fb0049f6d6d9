"""Kubernetes API audit logs as a vigil source: the formats they arrive in (``parse``), their mapping into
the normalized Event (``normalize``), and the collectors that receive them (webhook receiver, file tailer).

:data:`AUDIT_SOURCE` is what the collector and the stream workers look up by the name ``k8s-audit``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from collectors.audit.normalize import SOURCE, correlation_key, normalize_record
from collectors.audit.parse import split_payload
from collectors.source import Rejected
from vigil.event import Event


class AuditSource:
    """The ``collectors.source.Source`` for Kubernetes audit events (records are ``audit.k8s.io/v1`` events)."""

    name = SOURCE

    def split(self, payload: bytes, max_record_bytes: int) -> Iterator[dict[str, Any] | Rejected]:
        return split_payload(payload, max_record_bytes)

    def key(self, record: dict[str, Any], cluster: str) -> str:
        return correlation_key(record, cluster)

    def normalize(self, record: dict[str, Any], cluster: str, node: str) -> Event:
        return normalize_record(record, cluster, node)


AUDIT_SOURCE = AuditSource()

__all__ = ["AUDIT_SOURCE", "AuditSource"]
