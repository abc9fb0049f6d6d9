"""An OCSF validator built from the schema's own source files (``dictionary.json``, ``categories.json``,
``events/``, ``objects/``, ``profiles/``), not from a list of fields copied into vigil's tests.

A class or object is its ``extends`` chain merged from the root down; at each level the attributes of the
profiles named in ``$include`` come first (each tagged with its profile, unless the level says ``profile``
itself) and the level's own definitions override them. An attribute's type, array-ness and base enum come from
the dictionary; enums along the chain add to the dictionary's. What a document is checked for: every attribute
defined for its class or object, the required ones present, attributes of a profile only when
``metadata.profiles`` names it, enum values among the enum's keys (and a sibling caption such as ``severity``
that matches its ``*_id``), values of the dictionary's scalar types (with their regex, range, length), the
objects' ``at_least_one``/``just_one`` constraints, no deprecated attributes, and ``class_uid``/``type_uid``
computed from the category and class.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

#: The OCSF enum value that defers to the free-text sibling: its caption need not match.
OTHER = "99"
#: The generic object (``unmapped``, ``data``…): "used to log objects that are not otherwise defined by the
#: schema", so its content is the producer's own and not checked.
GENERIC_OBJECT = "object"
_INT_BOUNDS = {"integer_t": (-(2**31), 2**31 - 1), "long_t": (-(2**63), 2**63 - 1)}


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute of a class or object, resolved against the dictionary and the extends chain."""

    name: str
    type: str  # a dictionary scalar type (``string_t``…) or an object name
    is_array: bool
    requirement: str
    enum: dict[str, str]  # key → caption; empty when the attribute has no enum
    profile: str | None  # the profile it belongs to; None: it always applies
    sibling: str | None
    deprecated: bool


@dataclass(frozen=True, slots=True)
class Definition:
    """A class or an object: its attributes and its constraints."""

    name: str
    attributes: dict[str, Attribute]
    constraints: dict[str, list[str]]


class OcsfSchema:
    """The schema under ``root`` (a checkout of ocsf-schema's sources), loaded lazily and cached."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._objects: dict[str, Definition] = {}

    @cached_property
    def version(self) -> str:
        return json.loads((self.root / "version.json").read_text())["version"]

    @cached_property
    def dictionary(self) -> dict[str, dict[str, Any]]:
        return json.loads((self.root / "dictionary.json").read_text())["attributes"]

    @cached_property
    def types(self) -> dict[str, dict[str, Any]]:
        return json.loads((self.root / "dictionary.json").read_text())["types"]["attributes"]

    @cached_property
    def profiles(self) -> frozenset[str]:
        return frozenset(json.loads(p.read_text())["name"] for p in (self.root / "profiles").glob("*.json"))

    @cached_property
    def _classes(self) -> dict[str, dict[str, Any]]:
        raw = (json.loads(p.read_text()) for p in (self.root / "events").rglob("*.json"))
        return {c["name"]: c for c in raw}

    def category_uid(self, category: str) -> int:
        return json.loads((self.root / "categories.json").read_text())["attributes"][category]["uid"]

    def class_uid(self, name: str) -> int:
        """``category uid * 1000 + class uid``, the category named by the class or its nearest parent."""
        chain = self._chain(self._classes[name], self._classes)
        category = next(c["category"] for c in reversed(chain) if "category" in c)
        return self.category_uid(category) * 1000 + self._classes[name]["uid"]

    def event_class(self, name: str) -> Definition:
        """The class with the enum values its identity takes, as the OCSF server compiles them: its own
        ``class_uid``, its category's ``category_uid``, and one ``type_uid`` per activity."""
        definition = self._definition(self._classes[name], self._classes)
        class_uid = self.class_uid(name)
        caption = self._classes[name]["caption"]
        activities = definition.attributes["activity_id"].enum
        identity = {
            "class_uid": {str(class_uid): caption},
            "category_uid": {str(class_uid // 1000): self._category_caption(class_uid // 1000)},
            "type_uid": {str(class_uid * 100 + int(k)): f"{caption}: {v}" for k, v in activities.items()},
        }
        for attribute, values in identity.items():
            resolved = definition.attributes[attribute]
            definition.attributes[attribute] = replace(resolved, enum=resolved.enum | values)
        return definition

    def _category_caption(self, uid: int) -> str:
        categories = json.loads((self.root / "categories.json").read_text())["attributes"].values()
        return next(c["caption"] for c in categories if c["uid"] == uid)

    def object(self, name: str) -> Definition:
        if name not in self._objects:
            self._objects[name] = self._definition(self._raw_object(name), None)
        return self._objects[name]

    def _raw_object(self, name: str) -> dict[str, Any]:
        return json.loads((self.root / "objects" / f"{name}.json").read_text())

    def _chain(self, raw: dict[str, Any], classes: dict[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
        """``raw`` and its ancestors, root first."""
        chain = [raw]
        while "extends" in chain[0]:
            parent = chain[0]["extends"]
            chain.insert(0, classes[parent] if classes is not None else self._raw_object(parent))
        return chain

    def _definition(self, raw: dict[str, Any], classes: dict[str, dict[str, Any]] | None) -> Definition:
        merged: dict[str, dict[str, Any]] = {}
        constraints: dict[str, list[str]] = {}
        for level in self._chain(raw, classes):
            for name, spec in self._level_attributes(level).items():
                _merge_attribute(merged.setdefault(name, {}), spec)
            constraints |= level.get("constraints", {})
        attributes = {name: self._attribute(name, spec) for name, spec in merged.items()}
        return Definition(raw["name"], attributes, constraints)

    def _level_attributes(self, level: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """One level's attributes: its ``$include``d profiles' first, tagged with the profile, then its own."""
        attributes: dict[str, dict[str, Any]] = {}
        for include in level.get("attributes", {}).get("$include", []):
            profile = json.loads((self.root / include).read_text())
            for name, spec in profile["attributes"].items():
                tagged = {"profile": profile["name"]} | spec if profile.get("meta") == "profile" else spec
                _merge_attribute(attributes.setdefault(name, {}), tagged)
        for name, spec in level.get("attributes", {}).items():
            if name != "$include":
                _merge_attribute(attributes.setdefault(name, {}), spec)
        return attributes

    def _attribute(self, name: str, spec: dict[str, Any]) -> Attribute:
        base = self.dictionary.get(name, {})
        enum = {key: value.get("caption", "") for key, value in {**base.get("enum", {}),
                                                                 **spec.get("enum", {})}.items()}
        return Attribute(
            name=name, type=spec.get("type") or base.get("type", ""),
            is_array=bool(spec.get("is_array", base.get("is_array", False))),
            requirement=spec.get("requirement", "optional"), enum=enum, profile=spec.get("profile"),
            sibling=base.get("sibling"), deprecated="@deprecated" in spec or "@deprecated" in base,
        )

    def validate(self, doc: dict[str, Any], class_name: str) -> list[str]:
        """Every way ``doc`` departs from the class ``class_name``: ``"<path>: <problem>"``, empty when valid."""
        problems = _identity_problems(self, doc, class_name)
        metadata = doc.get("metadata")
        active = frozenset(metadata.get("profiles") or []) if isinstance(metadata, dict) else frozenset()
        problems += [f"metadata.profiles: {p!r} is not a profile of this schema" for p in active - self.profiles]
        return problems + _Check(self, active).definition(doc, self.event_class(class_name), "")


def _merge_attribute(target: dict[str, Any], spec: dict[str, Any]) -> None:
    """A later definition of an attribute overrides an earlier one field by field; enums add up."""
    enum = {**target.get("enum", {}), **spec.get("enum", {})}
    target.update(spec)
    if enum:
        target["enum"] = enum


def _identity_problems(schema: OcsfSchema, doc: dict[str, Any], class_name: str) -> list[str]:
    problems = []
    class_uid = schema.class_uid(class_name)
    if doc.get("class_uid") != class_uid:
        problems.append(f"class_uid: {doc.get('class_uid')!r}, {class_name} is {class_uid}")
    if doc.get("category_uid") != class_uid // 1000:
        problems.append(f"category_uid: {doc.get('category_uid')!r}, {class_name} is in {class_uid // 1000}")
    if isinstance(doc.get("activity_id"), int) and doc.get("type_uid") != class_uid * 100 + doc["activity_id"]:
        problems.append(f"type_uid: {doc.get('type_uid')!r} is not class_uid * 100 + activity_id")
    return problems


class _Check:
    """One document's walk: definitions, attributes and values, with the profiles it declares."""

    def __init__(self, schema: OcsfSchema, active_profiles: frozenset[str]) -> None:
        self.schema = schema
        self.active = active_profiles

    def definition(self, value: dict[str, Any], definition: Definition, path: str) -> list[str]:
        problems = []
        for name, item in value.items():
            attribute = definition.attributes.get(name)
            where = f"{path}{name}"
            if attribute is None:
                problems.append(f"{where}: not an attribute of {definition.name}")
            elif attribute.profile is not None and attribute.profile not in self.active:
                problems.append(f"{where}: belongs to profile {attribute.profile!r}, not in metadata.profiles")
            else:
                problems += self.attribute(item, attribute, where, value)
        for name, attribute in definition.attributes.items():
            applies = attribute.profile is None or attribute.profile in self.active
            if attribute.requirement == "required" and applies and name not in value:
                problems.append(f"{path}{name}: required by {definition.name}, missing")
        return problems + self.constraints(value, definition, path)

    def constraints(self, value: dict[str, Any], definition: Definition, path: str) -> list[str]:
        problems = []
        where = path.rstrip(".") or "."
        for kind, names in definition.constraints.items():
            present = [n for n in names if n in value]
            if kind == "at_least_one" and not present:
                problems.append(f"{where}: {definition.name} needs at least one of {names}")
            elif kind == "just_one" and len(present) != 1:
                problems.append(f"{where}: {definition.name} needs exactly one of {names}, has {present}")
        return problems

    def attribute(self, item: Any, attribute: Attribute, path: str, parent: dict[str, Any]) -> list[str]:
        problems = [f"{path}: deprecated"] if attribute.deprecated else []
        if attribute.is_array:
            if not isinstance(item, list):
                return [*problems, f"{path}: {attribute.type} array expected, got {type(item).__name__}"]
            for index, element in enumerate(item):
                problems += self.value(element, attribute, f"{path}[{index}]")
        else:
            problems += self.value(item, attribute, path)
        return problems + _enum_problems(item, attribute, path, parent)

    def value(self, item: Any, attribute: Attribute, path: str) -> list[str]:
        if attribute.type in self.schema.types:
            return _scalar_problems(self.schema.types, attribute.type, item, path)
        if not isinstance(item, dict):
            return [f"{path}: {attribute.type} object expected, got {type(item).__name__}"]
        if attribute.type == GENERIC_OBJECT:
            return []
        return self.definition(item, self.schema.object(attribute.type), f"{path}.")


def _enum_problems(item: Any, attribute: Attribute, path: str, parent: dict[str, Any]) -> list[str]:
    if not attribute.enum:
        return []
    values = item if isinstance(item, list) else [item]
    problems = [f"{path}: {v!r} is not one of {sorted(attribute.enum, key=int)}"
                for v in values if str(v) not in attribute.enum]
    sibling = attribute.sibling
    applies = not problems and sibling in parent and not attribute.is_array and str(item) != OTHER
    if applies and parent[sibling] != attribute.enum[str(item)]:
        problems.append(f"{sibling}: {parent[sibling]!r} is not the caption of {attribute.name} {item} "
                            f"({attribute.enum[str(item)]!r})")
    return problems


def _scalar_problems(types: dict[str, dict[str, Any]], type_name: str, item: Any, path: str) -> list[str]:
    """``item`` against a dictionary type and every type it refines (``timestamp_t`` → ``long_t``)."""
    problems = []
    name: str | None = type_name
    while name is not None:
        spec = types[name]
        problems += _base_type_problems(name, item, path)
        if "regex" in spec and isinstance(item, str) and not re.search(spec["regex"], item):
            problems.append(f"{path}: {item!r} does not match {name}'s pattern")
        if "max_len" in spec and isinstance(item, str) and len(item) > spec["max_len"]:
            problems.append(f"{path}: longer than {name}'s {spec['max_len']} characters")
        if "range" in spec and isinstance(item, int | float) and not spec["range"][0] <= item <= spec["range"][1]:
            problems.append(f"{path}: {item!r} outside {name}'s range {spec['range']}")
        name = spec.get("type")
    return problems


def _base_type_problems(name: str, item: Any, path: str) -> list[str]:
    expected = {"string_t": str, "boolean_t": bool, "float_t": (int, float)}.get(name)
    if name in _INT_BOUNDS:
        low, high = _INT_BOUNDS[name]
        if type(item) is not int or not low <= item <= high:
            return [f"{path}: {item!r} is not a {name}"]
    elif name == "float_t" and isinstance(item, bool):
        return [f"{path}: {item!r} is not a float_t"]
    elif expected is not None and not isinstance(item, expected):
        return [f"{path}: {item!r} is not a {name}"]
    return []
