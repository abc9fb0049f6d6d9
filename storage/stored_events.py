"""The events topic decoded into what the ``events`` table stores, and nothing more.

The storage writer used to decode every event into the whole envelope (:class:`vigil.event.Event`) and hold it until
its batch was stored: 3-6 KB of Python objects per event besides its message (an audit event's request and response
objects as dicts, a fresh list or dict for every empty field, nine parts), every one of them tracked by the cyclic
garbage collector. Decoding the bench's 100k events took 29 µs each, 24 of them the collector walking what was
decoded already.

Now it decodes into :data:`StoredEvent`, a shape derived from the envelope at import, with the envelope's field
names, nesting and defaults, and moves the values into its columns at once (storage/writer.py):

- a field that a column of ``events`` reads keeps its type, except that an array becomes a tuple (the empty one is
  a shared constant, not an allocation);
- every other field, and every ``Any`` field (``raw``), is kept as the JSON it arrived as (``msgspec.Raw``): not
  parsed, not type-checked, since nothing stores it parsed;
- no instance is tracked by the garbage collector (they hold strings, numbers, tuples and label maps: no cycles).

A field the envelope does not know still refuses the event, as the envelope does: it comes from a newer writer,
and storing the rest would lose it quietly. Encoding a :data:`StoredEvent` gives the whole event back, its
unparsed fields as they came (the dead letter of a row ClickHouse refuses).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

import msgspec
from msgspec.structs import FieldInfo

from vigil.event import ENCODER, SCHEMA_VERSION, Event, SchemaError, decode_event
from vigil.storage.clickhouse import STORED_EVENT_COLUMNS

#: (reason, detail, original bytes) of input that is not an event: the writer dead-letters it.
Refusal = tuple[str, str, bytes]


def _stored_type(model: type[msgspec.Struct], stored: frozenset[str], prefix: str = "") -> type[msgspec.Struct]:
    """``model`` with only the fields under ``stored`` (dotted paths from ``prefix``) parsed; see the module."""
    fields = [_stored_field(field, stored, prefix) for field in msgspec.structs.fields(model)]
    return msgspec.defstruct(f"Stored{model.__name__}", fields, module=__name__, gc=False,
                             forbid_unknown_fields=model.__struct_config__.forbid_unknown_fields,
                             namespace={"to_json": _to_json})


def _to_json(event: msgspec.Struct) -> bytes:
    """The whole event as JSON again, its unparsed fields as they came."""
    return ENCODER.encode(event)


def _stored_field(field: FieldInfo, stored: frozenset[str], prefix: str) -> tuple[Any, ...]:
    path = prefix + field.name
    default = field.default_factory() if field.default_factory is not msgspec.NODEFAULT else field.default
    if isinstance(field.type, type) and issubclass(field.type, msgspec.Struct) and \
            any(p.startswith(f"{path}.") for p in stored):
        part = _stored_type(field.type, stored, f"{path}.")
        return field.name, part, msgspec.field(default_factory=part)
    if path in stored and field.type is not Any:
        if typing.get_origin(field.type) is list:
            kind: Any = tuple[(*typing.get_args(field.type), ...)]  # type: ignore[misc]
            default = tuple(default)
        else:
            kind = field.type
    else:
        kind, default = msgspec.Raw, msgspec.Raw(ENCODER.encode(default))
    if field.required:
        return field.name, kind
    return field.name, kind, default


#: An event of the events topic as the writer keeps it (see the module docstring).
StoredEvent = _stored_type(Event, frozenset(path for column in STORED_EVENT_COLUMNS for path in column.reads))

# Not strict, as the envelope's own decoder: a number sent as a string loads.
_MESSAGE = msgspec.json.Decoder(list[StoredEvent], strict=False)  # type: ignore[valid-type]
_EVENT = msgspec.json.Decoder(StoredEvent, strict=False)
_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])


def decode_message(value: bytes) -> tuple[list[Any], Sequence[int], list[Refusal]]:
    """The stored events of one events-topic message (a JSON array of events), their places in the array, and what
    is refused in it.

    A message whose events all fit (as the stream worker writes them) costs one decode; any other is judged event
    by event, so one bad event refuses itself alone, with its own bytes.
    """
    try:
        events = _MESSAGE.decode(value)
    except msgspec.DecodeError:  # a bad message or event (ValidationError is one): judged one by one below
        events = None
    if events is not None and all(event.schema <= SCHEMA_VERSION for event in events):
        return events, range(len(events)), []
    try:
        parts = _ARRAY.decode(value)
    except msgspec.DecodeError as exc:
        return [], (), [("undecodable", f"not a JSON array of events: {exc}", value)]
    kept, places, refused = [], [], []
    for place, part in enumerate(parts):
        try:
            kept.append(decode_event(_EVENT, part))
            places.append(place)
        except SchemaError as exc:
            refused.append(("invalid_event", str(exc), bytes(part)))
    return kept, places, refused


def event_bytes(value: bytes, place: int) -> bytes:
    """The JSON of the event at ``place`` in the message ``value``, as it came."""
    return bytes(_ARRAY.decode(value)[place])
