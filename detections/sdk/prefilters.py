"""A detection (or a sequence step) may declare the only values of a few event fields its logic can
match, e.g. ``resources=["pods"], subresources=["exec", "attach"], actions=["create", "get"]``, ``exe_names=SHELLS``
or, for one of its kinds only, ``exe_names={"process.exec": SSH_CLIENTS}``, and the paths a file detection is about
(``paths=["/etc/shadow", "/etc/pam.d/*", "*/.bash_history", "*/.ssh/*"]``, see :class:`Prefilter`), the ports
a connection is made to (``remote_ports={"net.connect": [22]}``) or the status codes it can have (``codes=[403]``);
the engine then never asks it about other events. Most events match nothing, so asking only the detections that
can match is most of what keeps the engine fast."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from vigil.detections.sdk.errors import DetectionError
from vigil.event import Event

#: The event fields a prefilter can declare, by the event attribute each is read from.
PREFILTER_FIELDS: dict[str, str] = {
    "actions": "action",
    "resources": "target.resource",
    "subresources": "target.subresource",
    "exe_names": "actor.exe",
    "protocols": "network.protocol",
    "remote_classes": "network.remote_class",
    "remote_ports": "network.remote_port",
    "codes": "outcome.code",
}
#: The fields whose values are numbers, with the numbers a declaration may name and how an error says so; the
#: other fields' values are strings. A port or a code is declared as the int the event carries, not as text.
NUMBER_FIELDS: dict[str, tuple[range, str]] = {
    "remote_ports": (range(1, 65_536), "port numbers (ints from 1 to 65535)"),
    "codes": (range(0, 1 << 32), "status codes (non-negative ints, e.g. 403)"),
}
_READ_FIELD = {name: attrgetter(path) for name, path in PREFILTER_FIELDS.items()}
#: The prefilter field of the path a file event is about (:func:`event_path`): declared as path patterns
#: (:class:`PathPatterns`), not exact values.
PATHS = "paths"

#: Multi-call binaries: one executable that is many programs, each chosen by the name it runs as (argv[0]). In a
#: busybox image ``sh``, ``wget`` and ``nc`` all execute ``/bin/busybox``, so a prefilter that names programs also
#: admits these, and the logic asks :func:`program_name` which applet ran.
MULTI_CALL = frozenset({"busybox", "toybox"})


def program_name(event: Event) -> str:
    """The program a process runs: its executable's basename or, for a multi-call binary, the applet argv names
    (``/bin/busybox`` run as ``nc`` is ``nc``; ``busybox wget …`` is ``wget``)."""
    program = event.actor.exe.rpartition("/")[2]
    if program not in MULTI_CALL:
        return program
    args = event.actor.args
    applet = args[0].rpartition("/")[2] if args else ""
    if applet in MULTI_CALL:
        applet = args[1].rpartition("/")[2] if len(args) > 1 and not args[1].startswith("-") else ""
    return applet or program


def event_path(event: Event) -> str:
    """The path a file event is about, as path detections read it: ``target.path``, else ``file.path``."""
    return event.target.path or event.file.path


class PathPatterns:
    """Path patterns as a ``paths`` prefilter declares them: ``/etc/shadow`` (that path), ``/etc/pam.d/*`` (a
    prefix), ``*/.bash_history`` (a suffix), ``*/.ssh/*`` (anywhere in the path). :meth:`matching` tells which of
    them a path matches; most paths match none, and a path's answer is cached by its caller."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._patterns = frozenset(patterns)
        self._exact = frozenset(p for p in self._patterns if "*" not in p)
        self._prefixes = tuple(p[:-1] for p in self._patterns if p.endswith("*") and not p.startswith("*"))
        self._suffixes = tuple(p[1:] for p in self._patterns if p.startswith("*") and not p.endswith("*"))
        self._infixes = tuple(p[1:-1] for p in self._patterns if len(p) > 2 and p.startswith("*") and p.endswith("*"))

    @staticmethod
    def check(pattern: str) -> bool:
        """Whether ``pattern`` is one: a ``*`` only at its start or end, and something besides."""
        return pattern.strip("*") != "" and "*" not in pattern.strip("*") and pattern.count("*") <= 2

    def matching(self, path: str) -> frozenset[str]:
        """The patterns ``path`` matches (empty for most paths: one set lookup and three scans)."""
        if not (path in self._exact or path.startswith(self._prefixes) or path.endswith(self._suffixes)
                or any(infix in path for infix in self._infixes)):
            return frozenset()
        return frozenset(p for p in self._patterns if _path_matches(p, path))


def _path_matches(pattern: str, path: str) -> bool:
    if pattern.startswith("*") and pattern.endswith("*"):
        return pattern[1:-1] in path
    if pattern.startswith("*"):
        return path.endswith(pattern[1:])
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return path == pattern


def declared_value(name: str, value: str | int) -> str | int:
    """The value a declaration of field ``name`` names for the event attribute's ``value``: the same, except
    that ``exe_names`` names basenames (``/usr/bin/curl`` is ``curl``)."""
    return value.rpartition("/")[2] if name == "exe_names" and isinstance(value, str) else value


#: How a detection or step declares a prefilter field: the values for all of its kinds, or a mapping from some of
#: its kinds to their values (a detection of execs and connections names the programs it runs on for execs only).
#: The values are strings, or ints for the :data:`NUMBER_FIELDS`.
Declared = Collection[str] | Collection[int] | Mapping[str, Collection[str]] | Mapping[str, Collection[int]]


@dataclass(frozen=True, slots=True)
class Prefilter:
    """The values of event fields a detection (or a sequence step) can match at all, for one event kind, so the
    engine gives it only events that have them (Falco rules declare ``evt.type``, Panther rules their log
    types). Each field is a set of exact values, empty for any: ``actions`` (the verb of an API request, the
    action of a runtime event), ``resources`` and ``subresources`` (of the API object; ``""`` is the object
    itself, no subresource), ``exe_names`` (basename of the executable), ``protocols``, ``remote_classes`` and
    ``remote_ports`` (of a network event: ``udp``, ``public``, ``22``; see :class:`~vigil.event.Network`; the
    remote port of an accepted connection is the client's ephemeral one, so declare ports for connections made),
    ``codes`` (``outcome.code``: an API request's HTTP status, an exit status); and ``paths``, patterns of the path a
    file event is about (:func:`event_path`; see :class:`PathPatterns`). A declaration is a promise the logic
    never matches outside it (declare from the same constants the logic tests); ``vigil detections test`` fails
    a detection whose examples break it."""

    actions: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    subresources: frozenset[str] = frozenset()
    exe_names: frozenset[str] = frozenset()
    protocols: frozenset[str] = frozenset()
    remote_classes: frozenset[str] = frozenset()
    remote_ports: frozenset[int] = frozenset()
    codes: frozenset[int] = frozenset()
    paths: frozenset[str] = frozenset()

    @classmethod
    def declared_by(cls, owner: Any, label: str) -> dict[str, Prefilter]:
        """The prefilter of each kind of a detection or step (``owner.kinds``) from its declaration fields."""
        by_kind: dict[str, dict[str, frozenset[str | int]]] = {kind: {} for kind in owner.kinds}
        for name in (*PREFILTER_FIELDS, PATHS):
            declared = getattr(owner, name)
            per_kind = declared if isinstance(declared, Mapping) else dict.fromkeys(owner.kinds, declared)
            for kind, values in per_kind.items():
                if kind not in by_kind:
                    raise DetectionError(f"{label}: {name} declares kind {kind!r}, which is not one of its kinds")
                _check_values(label, name, values)
                # A multi-call binary may run any named program (see MULTI_CALL).
                by_kind[kind][name] = frozenset(values) | (MULTI_CALL if name == "exe_names" and values else set())
        return {kind: cls(**fields) for kind, fields in by_kind.items()}

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields this prefilter restricts (the others may have any value)."""
        return tuple(name for name in (*PREFILTER_FIELDS, PATHS) if getattr(self, name))

    def admits(self, event: Event) -> bool:
        values: dict[str, Any] = {name: declared_value(name, read(event)) for name, read in _READ_FIELD.items()}
        values[PATHS] = PathPatterns(self.paths).matching(event_path(event))
        return self.admits_values(values)

    def admits_values(self, values: Mapping[str, Any]) -> bool:
        """Whether an event with these field values can match (a field missing from ``values`` is unknown and
        admitted; ``None`` is a value no declaration names). ``paths`` is given as the patterns the event's path
        matches (:meth:`PathPatterns.matching`; ``None`` or empty: none)."""
        for name in self.fields:
            if name not in values:
                continue
            value = values[name]
            if name == PATHS:
                if not value or self.paths.isdisjoint(value):
                    return False
            elif value not in getattr(self, name):
                return False
        return True

    def describe(self) -> str:
        """The declaration as a failure message names it (``codes=[403], resources=['pods']``)."""
        return ", ".join(f"{name}={sorted(getattr(self, name))}" for name in self.fields) or "any event"


def _check_values(label: str, name: str, values: Any) -> None:
    """Raise unless ``values`` is a collection of what field ``name`` holds: strings, the ints of a number field
    (``True`` is no port: a bool is refused although Python counts it an int), path patterns for ``paths``."""
    allowed, what = NUMBER_FIELDS.get(name, (None, "strings"))
    listed = isinstance(values, Collection) and not isinstance(values, str)
    if not listed or not all(
        isinstance(item, str) if allowed is None else type(item) is int and item in allowed for item in values
    ):
        raise DetectionError(f"{label}: {name} must be a list of {what} (or of them by kind), got {values!r}")
    if name == PATHS and not all(PathPatterns.check(item) for item in values):
        raise DetectionError(f"{label}: paths are paths or patterns with a * at their start or end "
                             f"(/etc/*, */.ssh/*), got {sorted(values)!r}")
