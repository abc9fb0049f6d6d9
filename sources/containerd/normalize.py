"""Runtime records (``raw.containerd``, see :mod:`vigil.collectors.runtime.events`) in and out of the envelope.

Runs in the stream workers and ``vigil replay``: it trusts no field's type, because a record can come
from an older collector or a hand-written file, and refuses what it cannot use with a stable reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vigil.event import Actor, Container, Event, Outcome, Target, event_id, now_ns
from vigil.sources.health import health_event, is_health_record
from vigil.sources.host_sensors import (
    host_identity,
    int_field,
    node_k8s_context,
    node_record_key,
    split_json_records,
    text_field,
    with_health_records,
)
from vigil.sources.source import RecordRejected, Rejected

SOURCE = "containerd"
#: The engine every record's container runs under (the record's own ``runtime`` is containerd's shim, e.g.
#: ``io.containerd.runc.v2``, not the engine).
RUNTIME = "containerd"

_KINDS = frozenset({"container.create", "container.start", "container.exit", "container.delete", "container.oom"})


def normalize_record(record: dict[str, Any], cluster: str, node: str) -> Event:
    """The Event for one runtime record; raises RecordRejected when its kind, time or container is missing."""
    if is_health_record(record):
        return health_event(record, SOURCE, cluster, node)
    kind, time_ns, container_id = _identity(record)
    k8s = node_k8s_context(record.get("k8s"))
    k8s.container_id = k8s.container_id or container_id
    return Event(
        id=event_id(SOURCE, kind, container_id, str(time_ns)),
        time_ns=time_ns,
        source=SOURCE,
        kind=kind,
        action=kind.removeprefix("container."),
        original_id=container_id,
        ingest_ns=now_ns(),
        cluster=cluster,
        node=text_field(record, "node") or node,
        k8s=k8s,
        actor=Actor(user=host_identity(record, k8s.namespace, k8s.pod), pid=int_field(record, "pid")),
        target=Target(name=container_id, resource="containers"),
        outcome=_outcome(kind, record),
        container=_container(record, container_id, k8s.container_name, text_field(record, "image") or k8s.image),
        raw=record,
    )


#: The key comes from the ``k8s`` object the node collector added to the record, or its node for a host process.
correlation_key = node_record_key


def split_payload(payload: bytes, max_record_bytes: int) -> Iterator[dict[str, Any] | Rejected]:
    """One JSON-lines line (a record, or a JSON array of records, as the node collector packs them) into
    records; never raises."""
    return split_json_records(payload, max_record_bytes, check=_check)


def _identity(record: dict[str, Any]) -> tuple[str, int, str]:
    kind = record.get("kind")
    if type(kind) is not str or kind not in _KINDS:  # a list or an object is not hashable: test the type first
        raise RecordRejected("wrong_kind", f"kind {kind!r} is not a container lifecycle kind")
    time_ns = record.get("time_ns")
    if type(time_ns) is not int or time_ns <= 0:
        raise RecordRejected("missing_field", f"time_ns must be a positive integer, got {time_ns!r}")
    container_id = record.get("container_id")
    if not isinstance(container_id, str) or not container_id:
        raise RecordRejected("missing_field", "container_id is missing")
    return kind, time_ns, container_id


_check = with_health_records(_identity)


def _container(record: dict[str, Any], container_id: str, name: str, image: str) -> Container:
    """The container, with what it was started with when the record carries the spec's summary (``security``,
    added to create records by the node collector; see :mod:`vigil.collectors.runtime.spec`)."""
    security = record.get("security")
    security = security if isinstance(security, dict) else {}
    mounts = security.get("host_mounts")
    return Container(
        id=container_id, runtime=RUNTIME, name=name, image=image,
        privileged=security.get("privileged") is True,
        capabilities=_strings(security.get("capabilities")),
        uid=security["uid"] if type(security.get("uid")) is int else -1,
        host_namespaces=_strings(security.get("host_namespaces")),
        host_mounts=[text_field(m, "source") for m in mounts if isinstance(m, dict) and text_field(m, "source")]
        if isinstance(mounts, list) else [],
    )


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _outcome(kind: str, record: dict[str, Any]) -> Outcome:
    if kind == "container.oom":
        return Outcome(result="failure", reason="oom")
    if kind == "container.exit":
        status = int_field(record, "exit_status")
        return Outcome(result="success" if status == 0 else "failure", code=status)
    return Outcome(result="success")
