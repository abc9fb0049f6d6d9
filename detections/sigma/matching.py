"""The matchers a Sigma rule compiles to: what generated detection files are written in.

A generated file declares each search identifier of the rule as a tree of these objects (read like the
rule: ``FieldMatch("verb", Text("create"), Text("patch"))``) and its condition as a Python expression over
them. Matching follows the Sigma specification: strings compare case-insensitively unless ``cased``, ``*``
and ``?`` are wildcards (``\\`` escapes them), a list of values is an OR (``every=True`` for the ``all``
modifier), a field that is absent or null only matches ``Null()``, and a field with several values (a list
in the audit event, every container of a pod) matches when one of them does.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vigil.detections.sigma.fields import resolver, string_values
from vigil.event import Event


class Value(ABC):
    """One value of a detection item, tested against every value the event has for the item's field."""

    @abstractmethod
    def matches(self, values: list[Any], event: Event) -> bool:
        """Whether one of ``values`` (the field's values in ``event``) matches."""


def _as_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def sigma_pattern(text: str) -> re.Pattern[str] | None:
    """The regex for a Sigma string with wildcards, or ``None`` when it has none (plain comparison)."""
    parts, escaped, wildcard = [], False, False
    for char in text:
        if escaped:
            parts.append(re.escape(char) if char in "*?\\" else re.escape("\\" + char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "*?":
            parts.append(".*" if char == "*" else ".")
            wildcard = True
        else:
            parts.append(re.escape(char))
    if escaped:
        parts.append(re.escape("\\"))
    return re.compile("".join(parts), re.DOTALL) if wildcard else None


def sigma_literal(text: str) -> str:
    """A Sigma string without wildcards as the literal it stands for (escapes removed)."""
    return re.sub(r"\\([*?\\])", r"\1", text)


@dataclass(frozen=True)
class Text(Value):
    """A Sigma string: case-insensitive, ``*``/``?`` wildcards, ``\\`` escapes them; ``cased`` for the
    ``cased`` modifier. Numbers and booleans in the event compare by their text, as in Sigma backends."""

    pattern: str
    cased: bool = False
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _literal: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = sigma_pattern(self.pattern)
        if regex is not None and not self.cased:
            regex = re.compile(regex.pattern, re.DOTALL | re.IGNORECASE)
        literal = sigma_literal(self.pattern)
        object.__setattr__(self, "_regex", regex)
        object.__setattr__(self, "_literal", literal if self.cased else literal.casefold())

    def matches(self, values: list[Any], event: Event) -> bool:
        for value in values:
            text = _as_text(value)
            if text is None:
                continue
            if self._regex is not None:
                if self._regex.fullmatch(text):
                    return True
            elif (text if self.cased else text.casefold()) == self._literal:
                return True
        return False

    def __repr__(self) -> str:
        return f"Text({self.pattern!r}, cased=True)" if self.cased else f"Text({self.pattern!r})"


@dataclass(frozen=True)
class Number(Value):
    """A Sigma number: equal to a numeric value, or to a string that spells it."""

    number: int | float

    def matches(self, values: list[Any], event: Event) -> bool:
        for value in values:
            if isinstance(value, bool):
                continue
            if isinstance(value, int | float) and value == self.number:
                return True
            if isinstance(value, str) and value.strip() == str(self.number):
                return True
        return False

    def __repr__(self) -> str:
        return f"Number({self.number!r})"


@dataclass(frozen=True)
class Boolean(Value):
    """A Sigma boolean: a JSON boolean of the same value, or its text (``true``/``false``, any case)."""

    value: bool

    def matches(self, values: list[Any], event: Event) -> bool:
        return any(_as_text(v) in (("true",) if self.value else ("false",)) for v in values)

    def __repr__(self) -> str:
        return f"Boolean({self.value!r})"


@dataclass(frozen=True)
class Null(Value):
    """``field: null``: the field is absent or null."""

    def matches(self, values: list[Any], event: Event) -> bool:
        return not values

    def __repr__(self) -> str:
        return "Null()"


@dataclass(frozen=True)
class Exists(Value):
    """The ``exists`` modifier."""

    exists: bool

    def matches(self, values: list[Any], event: Event) -> bool:
        return bool(values) == self.exists

    def __repr__(self) -> str:
        return f"Exists({self.exists!r})"


@dataclass(frozen=True)
class Regex(Value):
    """The ``re`` modifier: an unanchored search, with the ``i``, ``m`` and ``s`` sub-modifiers as flags."""

    pattern: str
    flags: str = ""
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        flags = 0
        for letter in self.flags:
            flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}[letter]
        object.__setattr__(self, "_regex", re.compile(self.pattern, flags))

    def matches(self, values: list[Any], event: Event) -> bool:
        return any((text := _as_text(v)) is not None and self._regex.search(text) for v in values)

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r}, flags={self.flags!r})" if self.flags else f"Regex({self.pattern!r})"


@dataclass(frozen=True)
class Cidr(Value):
    """The ``cidr`` modifier: an IP address value inside the network."""

    network: str
    _network: ipaddress.IPv4Network | ipaddress.IPv6Network = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_network", ipaddress.ip_network(self.network, strict=False))

    def matches(self, values: list[Any], event: Event) -> bool:
        for value in values:
            try:
                if isinstance(value, str) and ipaddress.ip_address(value.strip()) in self._network:
                    return True
            except ValueError:
                continue
        return False

    def __repr__(self) -> str:
        return f"Cidr({self.network!r})"


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge
}


@dataclass(frozen=True)
class Compare(Value):
    """The ``lt``/``lte``/``gt``/``gte`` modifiers, on numeric values (or strings that are numbers)."""

    op: str
    number: int | float

    def matches(self, values: list[Any], event: Event) -> bool:
        compare = _COMPARISONS[self.op]
        for value in values:
            if isinstance(value, bool):
                continue
            try:
                number = float(value) if isinstance(value, str) else value
            except ValueError:
                continue
            if isinstance(number, int | float) and compare(number, self.number):
                return True
        return False

    def __repr__(self) -> str:
        return f"Compare({self.op!r}, {self.number!r})"


@dataclass(frozen=True)
class FieldRef(Value):
    """The ``fieldref`` modifier: equal (case-insensitively) to a value of another field of the same event."""

    field: str

    def matches(self, values: list[Any], event: Event) -> bool:
        others = {t.casefold() for v in resolver(self.field)(event) if (t := _as_text(v)) is not None}
        return any((t := _as_text(v)) is not None and t.casefold() in others for v in values)

    def __repr__(self) -> str:
        return f"FieldRef({self.field!r})"


class Search(ABC):
    """A search identifier's content, or a part of it."""

    @abstractmethod
    def matches(self, event: Event) -> bool:
        """Whether the event matches."""


class FieldMatch(Search):
    """One detection item: a field and its values, any of which may match (each of them with ``every=True``,
    Sigma's ``all`` modifier)."""

    def __init__(self, field_name: str, *values: Value, every: bool = False) -> None:
        self.field = field_name
        self.values = values
        self.every = every
        self._resolve = resolver(field_name)

    def matches(self, event: Event) -> bool:
        found = self._resolve(event)
        test = all if self.every else any
        return test(value.matches(found, event) for value in self.values)

    def __repr__(self) -> str:
        return _call("FieldMatch", [repr(self.field), *map(repr, self.values), *(["every=True"] if self.every else [])])


class Keywords(Search):
    """Keyword items (values without a field): any string anywhere in the original record matches."""

    def __init__(self, *values: Value, every: bool = False) -> None:
        self.values = values
        self.every = every

    def matches(self, event: Event) -> bool:
        found = string_values(event.raw)
        test = all if self.every else any
        return test(value.matches(found, event) for value in self.values)

    def __repr__(self) -> str:
        return _call("Keywords", [*map(repr, self.values), *(["every=True"] if self.every else [])])


class AllOf(Search):
    """Items of a map: all must match."""

    def __init__(self, *items: Search) -> None:
        self.items = items

    def matches(self, event: Event) -> bool:
        return all(item.matches(event) for item in self.items)

    def __repr__(self) -> str:
        return _render("AllOf", self.items)


class AnyOf(Search):
    """Maps of a list: one must match."""

    def __init__(self, *items: Search) -> None:
        self.items = items

    def matches(self, event: Event) -> bool:
        return any(item.matches(event) for item in self.items)

    def __repr__(self) -> str:
        return _render("AnyOf", self.items)


def _render(name: str, items: Iterable[Search]) -> str:
    inner = "".join(f"    {line}\n" for item in items for line in f"{item!r},".splitlines())
    return f"{name}(\n{inner})"


def _call(name: str, args: list[str]) -> str:
    """``name(args)`` on one line when short, else one argument a line (how generated files stay readable)."""
    line = f"{name}({', '.join(args)})"
    return line if len(line) <= 100 else f"{name}(\n" + "".join(f"    {arg},\n" for arg in args) + ")"


# --- Correlations -----------------------------------------------------------------------------------------------


def first_value(event: Event, field_name: str) -> str:
    """The first value of a field as text ("" when absent): what ``value_count`` counts distinct values of."""
    values = resolver(field_name)(event)
    return _as_text(values[0]) or "" if values else ""


def group_key(event: Event, fields: Iterable[str]) -> str:
    """The group of a correlation: the cluster and the first value of each ``group-by`` field (absent fields
    group together, as in Sigma), so events without any group-by field still count per cluster."""
    return "|".join([event.cluster, *(first_value(event, name) for name in fields)])
