"""Threshold detections: :class:`ThresholdDetection` counts matching events, or distinct values of a field, per
group over tumbling or sliding event-time windows (Panther's threshold, Sigma's ``event_count``/``value_count``)."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from vigil.detections.sdk.errors import DetectionError
from vigil.detections.sdk.events import matched_context
from vigil.detections.sdk.stateful import MAX_MARKS, UNCHANGED, Finding, Observation, StatefulDetection
from vigil.detections.sdk.templates import event_context, event_namespace
from vigil.event import Event

#: The event time of a sliding window's entry: what the window's list is kept sorted by.
_entry_time = itemgetter(0)

WINDOWS = ("tumbling", "sliding")


AGGREGATES = ("sum", "max")


@dataclass(frozen=True, kw_only=True)
class ThresholdDetection(StatefulDetection):
    """Fires when ``threshold`` matching events (or, with ``distinct``, distinct values of a field; or, with
    ``value``, the sum or maximum of a number the events carry) fall in one event-time window of ``window_s``
    seconds for one ``group``.

    ``tumbling`` windows are fixed, back to back (aligned on the epoch), and fire at most once each;
    ``sliding`` windows end at every event, so a burst straddling a tumbling boundary is still caught, and
    firing starts the count afresh. The group is also the state key: a group equal to the events'
    correlation key keeps the count on one partition (exact across workers); a group over another field (an
    identity) is counted per stream worker.

    ``value`` is for events that report a measure rather than one occurrence (a sensor's per-interval counts
    of forks or connections, a process count): ``aggregate="sum"`` adds them up over the window (a rate),
    ``"max"`` keeps the highest (a level). The threshold and window may differ per namespace
    (:class:`NamespaceSettings`); each window remembers the size it was opened with."""

    match: Callable[..., bool]
    group: Callable[[Event], str]
    threshold: float
    window_s: float
    window: str = "tumbling"
    distinct: Callable[[Event], str] | None = None
    value: Callable[[Event], float | None] | None = None
    aggregate: str = "sum"
    context: Callable[..., dict[str, Any]] | None = None
    dedup: str = "{group}"
    #: ``match`` as one call on an event (see :meth:`Detection.judge_of`).
    judge: Callable[[Event], bool] = field(init=False, repr=False, compare=False)
    #: The longest window of any namespace, computed once: the engine asks for it with every state write.
    _horizon_ns: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        windows = [s.window_s for s in self.namespace_settings if s.window_s is not None]
        object.__setattr__(self, "_horizon_ns", int(max([self.window_s, *windows]) * 1e9))
        if self.value is None and (isinstance(self.threshold, bool) or self.threshold < 1):
            raise DetectionError(f"{self.id}: threshold must be at least 1")
        if self.value is not None and self.threshold <= 0:
            raise DetectionError(f"{self.id}: threshold must be positive")
        if self.window_s <= 0:
            raise DetectionError(f"{self.id}: window_s must be positive")
        if self.window not in WINDOWS:
            raise DetectionError(f"{self.id}: window {self.window!r} is not one of {', '.join(WINDOWS)}")
        if self.aggregate not in AGGREGATES:
            raise DetectionError(f"{self.id}: aggregate {self.aggregate!r} is not one of {', '.join(AGGREGATES)}")
        if self.value is not None and self.distinct is not None:
            raise DetectionError(f"{self.id}: a threshold counts distinct values or adds up a value, not both")
        self._takes_params("match")
        self._takes_params("context")
        object.__setattr__(self, "judge", self.judge_of(self.match))

    @property
    def horizon_ns(self) -> int:
        """The longest window of any namespace: how long a slot can matter."""
        return self._horizon_ns

    def catalogue_entry(self) -> dict[str, Any]:
        entry = {**super().catalogue_entry(), "threshold": self.threshold, "window_s": self.window_s,
                 "window": self.window, "distinct": self.distinct is not None}
        if self.value is not None:
            entry["aggregate"] = self.aggregate
        return entry

    def observe(self, event: Event) -> Observation | None:
        own_context = matched_context(self, event)
        if own_context is None:
            return None
        group = self.group(event)
        if not group:
            return None
        if self.distinct is not None:
            detail: Any = self.distinct(event)
            if not detail:
                return None
        elif self.value is not None:
            detail = self.value(event)
            if detail is None:
                return None
        else:
            detail = None
        return Observation(group, event, lambda: {**event_context(event), **own_context}, detail)

    def _limits(self, namespace: str) -> tuple[float, int]:
        """The threshold and window size (ns) for events of ``namespace``."""
        if not self.namespace_settings:
            return self.threshold, int(self.window_s * 1e9)
        settings = self.settings_for(namespace)
        threshold = settings.threshold if settings.threshold is not None else self.threshold
        return threshold, int((settings.window_s if settings.window_s is not None else self.window_s) * 1e9)

    def update(self, slot: Any, observation: Observation) -> tuple[Any, list[Finding]]:
        threshold, size = self._limits(event_namespace(observation.event) if self.namespace_settings else "")
        if self.window == "sliding":
            return self._update_sliding(slot or {"o": [], "s": size}, observation, threshold)
        return self._update_tumbling(slot or {}, observation, threshold, size)

    def _reached(self, reached: float, detail: Any) -> float:
        """The window's measure after one more observation: a count, or the sum or maximum of values."""
        if self.value is None:
            return reached + 1
        return max(reached, detail) if self.aggregate == "max" else reached + detail

    def _update_tumbling(
        self, slot: dict[str, Any], observation: Observation, threshold: float, size: int
    ) -> tuple[Any, list[Finding]]:
        time_ns = observation.event.time_ns
        start = time_ns - time_ns % size
        window = slot.setdefault(str(start), {"n": 0, "v": [], "e": [], "f": False, "s": size})
        if window["f"]:
            return UNCHANGED, []
        window["n"] = self._reached(window["n"], observation.detail)
        if self.distinct is not None and observation.detail not in window["v"]:
            window["v"].append(observation.detail)
        if len(window["e"]) < MAX_MARKS:
            window["e"].append(observation.mark)
        reached = len(window["v"]) if self.distinct is not None else window["n"]
        if reached < threshold:
            return slot, []
        finding = self._finding(observation.key, window["e"], reached, window["v"], start, start + size, threshold)
        window.update(f=True, v=[], e=[])
        return slot, [finding]

    def _update_sliding(
        self, slot: dict[str, Any], observation: Observation, threshold: float
    ) -> tuple[Any, list[Finding]]:
        time_ns = observation.event.time_ns
        size = slot.get("s", self.horizon_ns)
        entries = [e for e in slot["o"] if e[0] > time_ns - size]
        if self.distinct is not None:
            entries = [e for e in entries if e[1] != observation.detail]
        bisect.insort(entries, [time_ns, observation.detail, observation.mark], key=_entry_time)
        reached: float = 0
        for entry in entries:
            reached = self._reached(reached, entry[1])
        if reached < threshold:
            slot["o"] = entries
            return slot, []
        marks = [e[2] for e in entries][:MAX_MARKS]
        values = [e[1] for e in entries] if self.distinct is not None else []
        finding = self._finding(observation.key, marks, reached, values, entries[0][0], entries[-1][0], threshold)
        return None, [finding]

    def _finding(
        self, group: str, marks: list[dict[str, Any]], reached: float, values: list[str], start_ns: int,
        end_ns: int, threshold: float,
    ) -> Finding:
        measure = {"value": reached, "aggregate": self.aggregate} if self.value is not None else {"count": reached}
        window_s = self._limits(marks[0]["ns"])[1] / 1e9
        counted = {"group": group, **measure, "threshold": threshold, "window_s": window_s}
        context = {**marks[0]["x"], **counted, "window": self.window}
        if values:
            context["distinct_values"] = values[:MAX_MARKS]
        found = self.finding(marks, context, counted, frozenset(m["src"] for m in marks), end_ns)
        found.start_ns = start_ns
        return found

    def on_watermark(self, key: str, slot: Any, watermark_ns: int) -> tuple[Any, list[Finding]]:
        """Windows expire by the size they were opened with (state from before windows recorded it, restored
        from a changelog, was opened with the detection's own window)."""
        if self.window == "sliding":
            size = slot.get("s", self.horizon_ns)
            slot["o"] = [e for e in slot["o"] if e[0] > watermark_ns - size]
            return (slot if slot["o"] else None), []
        kept = {
            start: window for start, window in slot.items()
            if int(start) + window.get("s", self.horizon_ns) > watermark_ns
        }
        return (kept or None), []

    def deadline_ns(self, slot: Any) -> int:
        if self.window == "sliding":
            return min(e[0] for e in slot["o"]) + slot.get("s", self.horizon_ns)
        return min(int(start) + window.get("s", self.horizon_ns) for start, window in slot.items())
