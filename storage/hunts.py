"""Saved, parameterized hunts: the questions SOC analysts ask of stored events, kept as data files.

A hunt is one TOML file in ``storage/hunts/`` (its name is the file's stem): a title, a description, the SQL,
and its parameters with their ClickHouse types and optional defaults. Adding a hunt never touches code.

Values reach ClickHouse only as server-side parameters (``{name:Type}`` placeholders, bound by the driver);
nothing an analyst types is ever spliced into the SQL. Every hunt also gets ``{since:DateTime64(9, 'UTC')}``,
the start of the period asked for with ``--since``.
"""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

#: Where the bundled hunts live.
HUNTS_DIR = Path(__file__).with_name("hunts")

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_INTEGER_TYPE = re.compile(r"^U?Int(8|16|32|64|128|256)$")


class HuntError(ValueError):
    """A hunt file or a hunt's parameters that cannot be used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class HuntParam:
    name: str
    type: str  # a ClickHouse type: the placeholder is {name:type}
    description: str
    default: str | None  # None: required


@dataclass(frozen=True, slots=True)
class Hunt:
    name: str
    title: str
    description: str
    sql: str
    params: tuple[HuntParam, ...]

    def bind(self, values: dict[str, str], since: datetime) -> dict[str, Any]:
        """The server-side parameters for a run: given values (or defaults) converted to their types.

        Unknown and missing parameters are refused by name, so a typo never silently widens a hunt.
        """
        known = {p.name for p in self.params}
        unknown = sorted(set(values) - known)
        if unknown:
            raise HuntError(f"hunt {self.name} has no parameter {', '.join(unknown)} "
                            f"(it takes: {', '.join(sorted(known)) or 'none'})")
        bound: dict[str, Any] = {"since": since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")}
        for param in self.params:
            value = values.get(param.name, param.default)
            if value is None:
                raise HuntError(f"hunt {self.name} needs --param {param.name}=… ({param.description})")
            bound[param.name] = _typed(param, value)
        return bound


def load_hunts(directory: Path = HUNTS_DIR) -> dict[str, Hunt]:
    """Every hunt in ``directory``, by name."""
    return {hunt.name: hunt for hunt in map(load_hunt, sorted(directory.glob("*.toml")))}


def load_hunt(path: Path) -> Hunt:
    try:
        data = tomllib.loads(path.read_text())
        params = tuple(
            HuntParam(name, spec["type"], spec.get("description", ""), spec.get("default"))
            for name, spec in data.get("params", {}).items()
        )
        hunt = Hunt(path.stem, data["title"], data["description"].strip(), data["sql"].strip(), params)
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise HuntError(f"hunt file {path}: {type(exc).__name__}: {exc}") from exc
    for param in params:
        if f"{{{param.name}:" not in hunt.sql:
            raise HuntError(f"hunt file {path}: parameter {param.name} is not used in the SQL")
    return hunt


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``24h``, ``30d``, ``2w``."""
    found = _DURATION.match(text.strip())
    if not found:
        raise HuntError(f"expected a duration like 30m, 24h or 30d, got {text!r}")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def _typed(param: HuntParam, value: str) -> Any:
    """Integers and arrays become Python values the driver binds as such; other types go as text, which
    the server parses into the placeholder's type (and refuses with its own message if it cannot)."""
    try:
        if _INTEGER_TYPE.match(param.type):
            return int(value)
        if param.type.startswith("Array("):
            parsed = ast.literal_eval(value) if isinstance(value, str) else value
            if not isinstance(parsed, list | tuple):
                raise ValueError("not a list")
            return list(parsed)
    except (ValueError, TypeError, SyntaxError) as exc:
        raise HuntError(f"parameter {param.name} must be {param.type}, got {value!r}") from exc
    return value
