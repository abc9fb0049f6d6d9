"""Sequence detections: :class:`SequenceDetection` matches ordered steps within a maximum span, each step with
its own kinds, sources, predicate and join key, optionally ending in an absence ("B did not follow A within N")
that is decided when the engine's watermark passes (EQL's ``sequence by … with maxspan``, across sources)."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from vigil.detections.sdk.errors import DetectionError
from vigil.detections.sdk.keys import pod_key
from vigil.detections.sdk.prefilters import Declared, Prefilter
from vigil.detections.sdk.stateful import UNCHANGED, Finding, Observation, StatefulDetection
from vigil.detections.sdk.templates import event_context
from vigil.event import Event

#: The event time of a mark: what a step's occurrences are kept sorted by.
_mark_time = itemgetter("t")


@dataclass(frozen=True, kw_only=True)
class Step:
    """One step of a sequence: which events are it, and the keys that tie it to the other steps.

    ``key`` returns the join key, which is also the state key ("" when the event cannot be joined): steps
    from different sources use different key functions that agree on a value, e.g. an audit ``pods/exec``
    and a runtime ``file.open`` both yield ``cluster/namespace/pod`` (:func:`pod_key`, the events' Kafka
    key, so the sequence's state lives on the partition the pod's events use). ``on`` optionally refines the
    join with a value all steps must share within that key (the path written, then executed). ``sources``
    limits the step to some sources (empty: any) and is what an absence depends on for coverage.
    ``absent`` (last step only) means the sequence fires when no such event follows within the span.

    ``out_of_order`` says whether the step's events may arrive before those of the step it follows (another
    source, delivered with another delay, such as a runtime event caused by a batched audit request): they are
    then kept until the earlier steps arrive. ``False`` is for a step from the same sensor stream as the step
    before it, whose events arrive in order: they only extend sequences already started and otherwise cost no
    state, which matters for frequent events such as every exec."""

    name: str
    kinds: frozenset[str]
    match: Callable[[Event], bool]
    key: Callable[[Event], str] = pod_key
    on: Callable[[Event], str] | None = None
    sources: frozenset[str] = frozenset()
    context: Callable[[Event], dict[str, Any]] | None = None
    absent: bool = False
    out_of_order: bool = True
    #: The step's prefilter (see :class:`Prefilter`): the only values of these event fields ``match`` can accept.
    actions: Declared = ()
    resources: Declared = ()
    subresources: Declared = ()
    exe_names: Declared = ()
    protocols: Declared = ()
    remote_classes: Declared = ()
    remote_ports: Declared = ()
    codes: Declared = ()
    paths: Declared = ()
    #: The prefilter of each of ``kinds``, from the prefilter fields above.
    prefilter_by_kind: dict[str, Prefilter] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("kinds", "sources"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise DetectionError(f"step {self.name}: {name} must be a list, not the string {value!r}")
            object.__setattr__(self, name, frozenset(value))
        object.__setattr__(self, "prefilter_by_kind", Prefilter.declared_by(self, f"step {self.name}"))
        if not self.kinds:
            raise DetectionError(f"step {self.name}: kinds must name at least one event kind")

    def matches(self, event: Event) -> bool:
        return event.kind in self.kinds and (not self.sources or event.source in self.sources) and self.match(event)


#: Occurrences kept per step and join key (the latest ones): a process opening a file in a loop must not
#: grow a sequence's state.
MAX_OCCURRENCES = 8

#: Occurrences of a sequence's first step this close (event time) after the latest one kept add nothing.
FIRST_STEP_COALESCE_NS = 1_000_000_000


@dataclass(frozen=True, kw_only=True)
class SequenceDetection(StatefulDetection):
    """Ordered ``steps`` whose events share a join key and fall within ``max_span_s`` of the first.

    Events may arrive out of event-time order (an audit record batched by the API server arrives after the
    runtime events it caused): each step's recent occurrences are kept per join key and a sequence completes
    as soon as an ordered chain exists, whichever event arrived last. The state key is the steps' join key
    (see :class:`Step`). ``kinds`` is derived from the steps."""

    steps: tuple[Step, ...]
    max_span_s: float
    kinds: frozenset[str] = frozenset()
    #: Steps (with their index) by event kind, so an event is matched only against the steps of its kind.
    _steps_by_kind: dict[str, tuple[tuple[int, Step], ...]] = field(init=False, repr=False, compare=False)
    #: How many steps must be seen: all but a trailing absence.
    _present: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "kinds", frozenset().union(*(step.kinds for step in self.steps)))
        by_kind = {kind: tuple((i, s) for i, s in enumerate(self.steps) if kind in s.kinds) for kind in self.kinds}
        object.__setattr__(self, "_steps_by_kind", by_kind)
        object.__setattr__(self, "_present", len(self.steps) - self.steps[-1].absent)
        super().__post_init__()
        if len(self.steps) < 2:
            raise DetectionError(f"{self.id}: a sequence needs at least two steps")
        if any(step.absent for step in self.steps[:-1]) or self.steps[0].absent:
            raise DetectionError(f"{self.id}: only the last step (and not the first) may be an absence")
        if self.max_span_s <= 0:
            raise DetectionError(f"{self.id}: max_span_s must be positive")
        if self.params:
            raise DetectionError(f"{self.id}: sequences take no params (their steps' predicates take one event)")
        if any(prefilter.fields for prefilter in self.prefilter_by_kind.values()):
            raise DetectionError(f"{self.id}: a sequence declares its prefilter on its steps, each for its own events")

    @property
    def horizon_ns(self) -> int:
        return int(self.max_span_s * 1e9)

    def prefilters(self, kind: str) -> tuple[Prefilter, ...]:
        """An event reaches a sequence when the prefilter of any of its steps of the event's kind admits it."""
        return tuple(step.prefilter_by_kind[kind] for _, step in self._steps_by_kind.get(kind, ()))

    def catalogue_entry(self) -> dict[str, Any]:
        steps = [f"not {step.name}" if step.absent else step.name for step in self.steps]
        return {**super().catalogue_entry(), "max_span_s": self.max_span_s, "steps": steps}

    def observe(self, event: Event) -> Observation | None:
        """The steps this event is (with their ``on`` values). An event that is several steps counts for those
        that share the first one's key."""
        key = ""
        matched = []
        for index, step in self._steps_by_kind.get(event.kind, ()):
            if not step.matches(event):
                continue
            step_key = step.key(event)
            on = step.on(event) if step.on is not None else ""
            if not step_key or (key and step_key != key) or (step.on is not None and not on):
                continue
            key = step_key
            matched.append((index, on))
        if not matched:
            return None
        return Observation(key, event, lambda: self._context(event, matched), matched)

    def _context(self, event: Event, matched: list[tuple[int, str]]) -> dict[str, Any]:
        """What the mark of an event keeps for the alert: the context of each step it is."""
        context: dict[str, Any] = {}
        for index, _ in matched:
            step = self.steps[index]
            context.update(step.context(event) if step.context is not None else event_context(event))
        return context

    def update(self, slot: Any, observation: Observation) -> tuple[Any, list[Finding]]:
        time_ns = observation.event.time_ns
        detail = [(i, join) for i, join in observation.detail if self._may_keep(slot, i, join, time_ns)]
        if not detail:
            return UNCHANGED, []
        slot = slot or {}
        findings = []
        for index, join in detail:
            partial = slot.setdefault(join, [[] for _ in self.steps])
            occurrences = partial[index]
            bisect.insort(occurrences, observation.mark, key=_mark_time)
            del occurrences[:-MAX_OCCURRENCES]
            # Each step's occurrences are in time order: the newest are last, the expired first.
            oldest = max(step[-1]["t"] for step in partial if step) - self.horizon_ns
            for step in partial:
                expired = next((i for i, m in enumerate(step) if m["t"] >= oldest), len(step))
                del step[:expired]
            if self.steps[-1].absent:
                continue
            chain = self._chain(partial)
            if chain is not None:
                findings.append(self._finding(observation.key, join, chain))
                del slot[join]
        return (slot or None), findings

    def _may_keep(self, slot: Any, index: int, join: str, time_ns: int) -> bool:
        """Whether an occurrence of step ``index`` is worth keeping: for in-order steps only when the step
        before has an occurrence to extend; for the first step unless it repeats one kept less than
        :data:`FIRST_STEP_COALESCE_NS` before (a file written in a loop, a token read on every request), which
        would cost a state write per event and change no chain but one ending within that much of the span."""
        partial = slot.get(join) if slot else None
        if index == 0:
            return not partial or not partial[0] or not 0 <= time_ns - partial[0][-1]["t"] < FIRST_STEP_COALESCE_NS
        if self.steps[index].out_of_order:
            return True
        return bool(partial and partial[index - 1])

    def _chain(self, partial: list[list[dict[str, Any]]]) -> list[dict[str, Any]] | None:
        """The earliest ordered chain of the present steps within the span, if there is one."""
        if not all(partial[1 : self._present]):  # a step nothing happened for yet: no chain (the usual case)
            return None
        for first in partial[0]:
            chain = [first]
            for occurrences in partial[1 : self._present]:
                previous = chain[-1]
                following = next(
                    (m for m in occurrences if m["t"] >= previous["t"] and m["id"] != previous["id"]), None
                )
                if following is None or following["t"] - first["t"] > self.horizon_ns:
                    break
                chain.append(following)
            if len(chain) == self._present:
                return chain
        return None

    def _finding(self, key: str, on: str, chain: list[dict[str, Any]], deadline_ns: int = 0) -> Finding:
        steps = [
            {"step": step.name, "time_ns": m["t"], "source": m["src"], **m["x"]}
            for step, m in zip(self.steps, chain, strict=False)
        ]
        context: dict[str, Any] = {"join_key": key, "max_span_s": self.max_span_s, "steps": steps}
        if on:
            context["joined_on"] = on
        sources = frozenset(m["src"] for m in chain)
        if deadline_ns:
            absent = self.steps[-1]
            context["absent"] = {"step": absent.name, "until_ns": deadline_ns}
            # Silence depends on the sources that would have reported the absent step; undeclared: on any.
            sources = sources | absent.sources if absent.sources else frozenset()
        return self.finding(chain, context, {"join_key": key, "joined_on": on}, sources, deadline_ns)

    def on_watermark(self, key: str, slot: Any, watermark_ns: int) -> tuple[Any, list[Finding]]:
        findings = []
        for join in list(slot):
            partial = slot[join]
            if self.steps[-1].absent:
                findings.extend(self._decide_absence(key, slot, join, watermark_ns))
                if join not in slot:
                    continue
            for step in partial:
                step[:] = [m for m in step if m["t"] > watermark_ns - self.horizon_ns]
            if not any(partial[: self._present]):
                del slot[join]
        return (slot or None), findings

    def _decide_absence(self, key: str, slot: dict[str, Any], join: str, watermark_ns: int) -> list[Finding]:
        """Once the watermark passed the span of a complete chain: fire unless the absent step happened in it."""
        partial = slot[join]
        chain = self._chain(partial)
        if chain is None:
            return []
        deadline = chain[0]["t"] + self.horizon_ns
        if watermark_ns < deadline:
            return []
        del slot[join]
        if any(chain[-1]["t"] <= m["t"] <= deadline for m in partial[-1]):
            return []
        return [self._finding(key, join, chain, deadline)]

    def deadline_ns(self, slot: Any) -> int:
        """Occurrences are kept in time order: the first of each step is the oldest."""
        return min(step[0]["t"] for partial in slot.values() for step in partial if step) + self.horizon_ns
