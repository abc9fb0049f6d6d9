"""containerd's event stream as vigil runtime records: which topics matter and how an envelope maps.

A runtime record is a flat JSON object, the ``raw.containerd`` wire format::

    {"kind": "container.exit", "topic": "/tasks/exit", "time_ns": 1795706911569526498,
     "containerd_namespace": "k8s.io", "container_id": "<64 hex>", "pid": 4242, "exit_status": 0,
     "exited_at_ns": 1795706911569000000, "node": "node-1", "k8s": {...}}

``pid`` (start, exit), ``exit_status``/``exited_at_ns`` (exit) and ``image``/``runtime`` (create) appear
only where the event carries them. The node collector adds ``k8s`` (the container's pod, from the
enrichment cache) before shipping, and to create records ``security``, what the container was started with
(:mod:`vigil.collectors.runtime.spec`). Exits of ``exec``'d processes (``TaskExit.id`` differs from the
container id) are not container exits and yield no record; the eBPF sensor sees those processes.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError, Message

from vigil.collectors.runtime.api import containerd_events_pb2 as payloads
from vigil.collectors.runtime.api.containerd_events_service_pb2 import Envelope
from vigil.sources.source import Rejected

#: containerd topic → vigil event kind. ``/tasks/create`` and ``/tasks/delete`` repeat what these say.
TOPIC_KINDS: dict[str, str] = {
    "/containers/create": "container.create",
    "/tasks/start": "container.start",
    "/tasks/exit": "container.exit",
    "/tasks/oom": "container.oom",
    "/containers/delete": "container.delete",
}

#: The subscription's filters (OR'ed by containerd), so other events never cross the socket.
SUBSCRIBE_FILTERS = [f'topic=="{topic}"' for topic in TOPIC_KINDS]

_PAYLOADS: dict[str, type[Message]] = {
    "containerd.events.ContainerCreate": payloads.ContainerCreate,
    "containerd.events.ContainerDelete": payloads.ContainerDelete,
    "containerd.events.TaskStart": payloads.TaskStart,
    "containerd.events.TaskExit": payloads.TaskExit,
    "containerd.events.TaskOOM": payloads.TaskOOM,
}


def record_from_envelope(envelope: Envelope, node: str) -> dict[str, Any] | Rejected | None:
    """The runtime record for one event; ``None`` for events that are not about a container's lifecycle.

    A payload that does not decode is refused with the envelope's bytes, for the dead-letter topic.
    """
    kind = TOPIC_KINDS.get(envelope.topic)
    if kind is None:
        return None
    # containerd 1.6 sends bare type names ("containerd.events.TaskExit"); newer ones may add a prefix.
    type_name = envelope.event.type_url.rsplit("/", 1)[-1]
    message_class = _PAYLOADS.get(type_name)
    if message_class is None:
        return Rejected("unknown_event", f"{envelope.topic} carries {type_name!r}", envelope.SerializeToString())
    payload = message_class()
    try:
        payload.ParseFromString(envelope.event.value)
    except DecodeError as exc:
        return Rejected("bad_event", f"{envelope.topic}: {type_name} does not decode: {exc}",
                        envelope.SerializeToString())
    record: dict[str, Any] = {
        "kind": kind,
        "topic": envelope.topic,
        "time_ns": envelope.timestamp.ToNanoseconds(),
        "containerd_namespace": envelope.namespace,
        "node": node,
    }
    return _add_payload(record, payload)


def _add_payload(record: dict[str, Any], payload: Message) -> dict[str, Any] | None:
    if isinstance(payload, payloads.ContainerCreate):
        record.update(container_id=payload.id, image=payload.image, runtime=payload.runtime.name)
    elif isinstance(payload, payloads.ContainerDelete):
        record["container_id"] = payload.id
    elif isinstance(payload, payloads.TaskStart):
        record.update(container_id=payload.container_id, pid=payload.pid)
    elif isinstance(payload, payloads.TaskExit):
        if payload.id and payload.id != payload.container_id:
            return None  # an exec'd process ended, not the container
        record.update(container_id=payload.container_id, pid=payload.pid, exit_status=payload.exit_status,
                      exited_at_ns=payload.exited_at.ToNanoseconds())
    else:
        record["container_id"] = payload.container_id
    return record
