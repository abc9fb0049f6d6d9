"""An ECS validator built from Elastic's own generated field list (``ecs_flat.yml``), not from field names
copied into vigil's tests.

A document is flattened to dotted names; a name must be an ECS field, or sit under an ECS ``object`` field
that declares the type of its keys (``labels.*`` are keywords). Each value must suit the field's type as
Elasticsearch maps it, a list is allowed only where the field's ``normalize`` says ``array``, the categorization
fields (``event.kind``, ``event.category``, ``event.type``, ``event.outcome``) take their ``allowed_values``,
each ``event.type`` is one ECS expects with the document's ``event.category``, and the required fields
(``@timestamp``) are present.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

#: Fields whose values ECS enumerates.
CATEGORIZATION = ("event.kind", "event.category", "event.type", "event.outcome")
_STRINGS = frozenset({"keyword", "constant_keyword", "wildcard", "match_only_text", "text"})
_INTEGERS = {"long": 63, "integer": 31, "short": 15, "byte": 7, "unsigned_long": 64}
_FLOATS = frozenset({"float", "double", "scaled_float", "half_float"})
_OBJECTS = frozenset({"object", "flattened", "nested"})
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


class EcsSchema:
    """``ecs_flat.yml`` under ``root``, loaded once."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @cached_property
    def fields(self) -> dict[str, dict[str, Any]]:
        return yaml.safe_load((self.root / "ecs_flat.yml").read_text())

    @cached_property
    def version(self) -> str:
        return (self.root / "version").read_text().strip()

    def field(self, name: str) -> dict[str, Any] | None:
        """The definition of ``name``, or of the keys under an object field that types them (``labels.x``)."""
        if name in self.fields:
            return self.fields[name]
        parent, _, _ = name.rpartition(".")
        while parent:
            spec = self.fields.get(parent)
            if spec is not None:
                return {"type": spec["object_type"], "normalize": []} if "object_type" in spec else None
            parent, _, _ = parent.rpartition(".")
        return None

    def validate(self, doc: dict[str, Any]) -> list[str]:
        """Every way ``doc`` departs from ECS: ``"<field>: <problem>"``, empty when it conforms."""
        flat = flatten(doc)
        problems = [f"{name}: required by ECS, missing" for name, spec in self.fields.items()
                    if spec.get("required") and name not in flat]
        for name, value in flat.items():
            spec = self.field(name)
            if spec is None:
                problems.append(f"{name}: not an ECS field")
            else:
                problems += _value_problems(name, value, spec)
        return problems + self._expected_types(flat)

    def _expected_types(self, flat: dict[str, Any]) -> list[str]:
        """Each ``event.type`` must be one that some ``event.category`` of the document expects."""
        categories = {c["name"]: set(c.get("expected_event_types") or [])
                      for c in self.fields["event.category"]["allowed_values"]}
        chosen = _as_list(flat.get("event.category", []))
        expected = set().union(*(categories.get(c, set()) for c in chosen)) if chosen else set()
        return [f"event.type: {t!r} is not expected with event.category {chosen}"
                for t in _as_list(flat.get("event.type", [])) if chosen and t not in expected]


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists are values (ECS arrays hold scalars)."""
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _value_problems(name: str, value: Any, spec: dict[str, Any]) -> list[str]:
    if isinstance(value, list) and "array" not in (spec.get("normalize") or []):
        return [f"{name}: a list, but ECS does not normalize this field to an array"]
    problems = []
    allowed = {a["name"] for a in spec.get("allowed_values") or []}
    for item in _as_list(value):
        if not _fits(spec["type"], item):
            problems.append(f"{name}: {item!r} does not fit ECS type {spec['type']}")
        elif name in CATEGORIZATION and item not in allowed:
            problems.append(f"{name}: {item!r} is not one of {sorted(allowed)}")
    return problems


def _fits(ecs_type: str, item: Any) -> bool:
    """Whether Elasticsearch would index ``item`` into a field of ``ecs_type`` as what it means."""
    if ecs_type in _STRINGS:
        return isinstance(item, str)
    if ecs_type in _INTEGERS:
        bits = _INTEGERS[ecs_type]
        return type(item) is int and -(2**bits) <= item < 2**bits
    if ecs_type in _FLOATS:
        return isinstance(item, int | float) and not isinstance(item, bool)
    if ecs_type == "boolean":
        return isinstance(item, bool)
    if ecs_type == "date":
        return _is_date(item)
    if ecs_type == "ip":
        return _is_ip(item)
    return ecs_type in _OBJECTS and isinstance(item, dict)


def _is_date(item: Any) -> bool:
    """ISO 8601 / RFC 3339 text (Elasticsearch's default ``strict_date_optional_time``) or epoch millis."""
    if type(item) is int:
        return True
    if not isinstance(item, str) or not _ISO_DATE.match(item):
        return False
    try:
        datetime.fromisoformat(item.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_ip(item: Any) -> bool:
    try:
        ipaddress.ip_address(item)
    except ValueError:
        return False
    return True
