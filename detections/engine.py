"""The detection engine: loads detection files, runs them on events, keeps their state, suppresses repeats.

Each detection file is loaded on its own, so one that fails to import is disabled and reported while the
others run; a detection that raises on an event is counted and logged (rate-limited) and the event still
goes to every other detection. Events are dispatched by kind and by the prefilters detections declare (verbs,
resources, subresources, executables: :class:`~vigil.detections.sdk.prefilters.Prefilter`), so an event costs only
the detections that can match it, in their load order (see :class:`KindDispatch`). Deployment tuning
(``detections.toml``: enabled, severity, dedup, thresholds, exceptions) is applied as detections load, see
:mod:`vigil.detections.tuning`.

Event time: windows and sequences run on event time, with a watermark: the newest event time seen minus
the allowed lateness. An event older than the watermark is *late*: single-event detections still judge it,
but it no longer enters windows or sequences (counted in ``vigil_detection_late_events_total``), because
the windows it belonged to may already have been decided. :meth:`Engine.advance` moves state along the
watermark: expired windows and partial sequences are dropped and absences ("B did not follow A") fire.

State lives in a :class:`~vigil.detections.state.StateStore` (a dict in replay, a Faust table in the workers),
changed only by events some windowed or sequence detection observes, and written once per key per
:meth:`Engine.commit` (the stream processor commits once per batch of Kafka messages). It is bounded: every key
expires one window or span after its latest event, and beyond ``max_state_keys`` the least recently written keys
are evicted (``vigil_detection_state_evicted_total``).

Coverage: collectors report their own losses as ``collector.health`` events (``raw.dropped`` records lost
between ``raw.since_ns`` and the event time, per source and node). An alert whose time span overlaps losses
of a source it depends on carries ``context["coverage_degraded"] = {source: dropped}``: silence, or a count
below a threshold, may be blindness.

Suppression: a hit with the same detection and dedup key as an alert raised less than the detection's
``dedup_period_s`` earlier (event time, so replays behave like live runs) updates that alert's count,
last-seen time and evidence instead of raising a new one. :meth:`Engine.process` returns new alerts at once;
the open alerts hits were folded into are returned by the next :meth:`Engine.advance` (the stream worker's
one-second timer), each once with its count so far, however many hits came: a noisy workload costs its SIEM one
update a second, not one per event. An update keeps its alert id, so consumers upsert by id and notify only
when ``count == 1``. The same evidence seen again (an audit request logged at several stages shares one
auditID, a Kafka batch is reprocessed) yields the same alert id and is ignored. Open alerts and recent hits live
in a store too (``alert_store``; a Faust table in the workers), so they survive a worker: see
:mod:`vigil.detections.suppression`.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from vigil import metrics
from vigil.alert import Alert
from vigil.detections.health import health_detections
from vigil.detections.sdk import (
    PATHS,
    PREFILTER_FIELDS,
    UNCHANGED,
    Detection,
    EventDetection,
    Finding,
    PathPatterns,
    StatefulDetection,
    declared_value,
)
from vigil.detections.state import DictStore, StateStore
from vigil.detections.suppression import AlertSuppression
from vigil.detections.tuning import DetectionTuning, Tuning
from vigil.event import Event

log = logging.getLogger("vigil.detections")

LIBRARY = Path(__file__).resolve().parent / "library"

DETECTION_ERRORS = Counter(
    "vigil_detection_errors_total", "Events a detection raised an exception on (the event still reached the others)",
    ["detection"],
)
SUPPRESSED = Counter(
    "vigil_alerts_suppressed_total", "Hits folded into an existing alert by dedup (its count went up)", ["detection"]
)
DETECTIONS = Gauge(
    "vigil_detections", "Detections running, disabled by a load error, or disabled by configuration", ["state"]
)
EXCEPTED = Counter(
    "vigil_detection_exceptions_total", "Events not given to a detection because a configured exception matched",
    ["detection"],
)
LATE = Counter(
    "vigil_detection_late_events_total",
    "Events older than the watermark: judged by single-event detections, kept out of windows and sequences",
    ["source"],
)
STATE_KEYS = Gauge("vigil_detection_state_keys", "Keys held for windowed and sequence detections")
EVICTED = Counter("vigil_detection_state_evicted_total", "State keys evicted because max_state_keys was reached")
WATERMARK = Gauge("vigil_detection_watermark_seconds", "Event-time watermark of windows and sequences (Unix s)")
DEGRADED = Counter(
    "vigil_alerts_coverage_degraded_total", "Alerts raised over a span in which a source they depend on lost records",
    ["detection"],
)

#: The event kind collectors report their own losses with (see the module doc).
HEALTH_KIND = "collector.health"

#: Log a failing detection at most once per this many seconds (with the number of failures not logged).
ERROR_LOG_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class LoadError:
    """A detection file that could not be loaded: it is disabled, the rest run."""

    path: str
    error: str


def load_detections(paths: Iterable[str | Path]) -> tuple[dict[str, Detection], list[LoadError]]:
    """Every detection under ``paths`` (files or directories of ``*.py``), by file, and the files that failed."""
    loaded: dict[str, Detection] = {}
    errors: list[LoadError] = []
    seen_ids: dict[str, str] = {}
    for file in detection_files(paths):
        try:
            detection = _load_file(file)
        except Exception as exc:  # a detection file may fail in any way; it must not stop the others
            errors.append(LoadError(str(file), describe_exception(exc)))
            continue
        if detection.id in seen_ids:
            duplicate = f"duplicate detection id {detection.id!r} (also in {seen_ids[detection.id]})"
            errors.append(LoadError(str(file), duplicate))
            continue
        seen_ids[detection.id] = str(file)
        loaded[str(file)] = detection
    return loaded, errors


def detection_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.glob("*.py") if not p.name.startswith("_")))
        else:
            files.append(path)
    return files


def _load_file(file: Path) -> Detection:
    module_name = f"vigil_detection_{file.stem}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"not a Python module: {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(module_name, None)
    detection = getattr(module, "DETECTION", None)
    if not isinstance(detection, EventDetection | StatefulDetection):
        raise TypeError(
            "the file must define DETECTION: a vigil.detections.sdk EventDetection, ThresholdDetection or "
            "SequenceDetection"
        )
    return detection


def describe_exception(exc: BaseException) -> str:
    """A failure as a person reads it in a report (a syntax error with its line)."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    return f"{type(exc).__name__}: {exc}"


class SourceLosses:
    """Losses collectors reported, per source and node, kept for as long as an alert can still span them."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._spans: deque[tuple[str, str, int, int, int]] = deque(maxlen=capacity)

    def record(self, event: Event) -> None:
        raw = event.raw if isinstance(event.raw, dict) else {}
        dropped, since = raw.get("dropped"), raw.get("since_ns", event.time_ns)
        if type(dropped) is int and dropped > 0 and type(since) is int:
            span = (event.source, event.node, since, event.time_ns, dropped)
            if span not in self._spans:  # a report reaches a worker once per partition it owns
                self._spans.append(span)

    def overlapping(self, sources: frozenset[str], nodes: frozenset[str], start_ns: int, end_ns: int) -> dict[str, int]:
        """Records lost per source between ``start_ns`` and ``end_ns``, by ``sources`` (empty: any), on ``nodes``
        (a loss without a node, or no nodes, counts everywhere)."""
        lost: dict[str, int] = {}
        for source, node, since, until, dropped in self._spans:
            if since > end_ns or until < start_ns:
                continue
            if sources and source not in sources:
                continue
            if node and nodes and node not in nodes:
                continue
            lost[source] = lost.get(source, 0) + dropped
        return lost

    def forget_before(self, time_ns: int) -> None:
        while self._spans and self._spans[0][3] < time_ns:
            self._spans.popleft()


#: Combinations of event field values one event kind remembers the detections of (beyond it, it starts over).
#: Values no declaration names all reach the same detections, so however many there are, the detection lists
#: are worked out once per *signature*: at most the product over the declared fields of (values declared + 1),
#: for the bundled library 4,176 for ``k8s.api`` (8 verbs, 28 resources, 7 subresources, 1 status code declared)
#: in theory and 8 in the benchmark's mix, 627 for ``process.exec``, 7,568 for ``net.connect`` (85 executables,
#: 10 remote ports, ...). The combinations themselves (verbs x resources x subresources x codes of a cluster's API
#: traffic, or its binaries and the ports they connect to) number a few hundred; the bound keeps memory flat when
#: they are many more.
MAX_FIELD_VALUES = 4096


class KindDispatch:
    """The detections of one event kind, and which of them an event can reach by the prefilters they declare.

    An event's values of the fields the kind's prefilters declare are read in one go and looked up; the first
    time a combination is seen, its *signature* (each value, or ``None`` when no declaration names it; for
    ``paths``, the declared patterns its path matches) decides the detections it reaches, in load order."""

    def __init__(self, single: list[EventDetection], stateful: list[StatefulDetection], kind: str) -> None:
        self.single, self.stateful, self._kind = single, stateful, kind
        prefilters = [p for d in (*single, *stateful) for p in d.prefilters(kind)]
        self._names = [name for name in PREFILTER_FIELDS if any(name in p.fields for p in prefilters)]
        #: Per field of the signature, the values some declaration names.
        self._known = [frozenset().union(*(getattr(p, name) for p in prefilters)) for name in self._names]
        #: The path patterns some declaration names, ``None`` when none does.
        declared_paths = frozenset().union(*(p.paths for p in prefilters))
        self._paths = PathPatterns(declared_paths) if declared_paths else None
        read = [PREFILTER_FIELDS[n] for n in self._names] + (["target.path", "file.path"] if self._paths else [])
        # The kind leads so that the attrgetter returns a tuple even for a single field.
        self._read = attrgetter("kind", *read) if read else None
        self._by_values: dict[tuple[str, ...], tuple[list[EventDetection], list[StatefulDetection]]] = {}
        self._by_signature: dict[tuple[Any, ...], tuple[list[EventDetection], list[StatefulDetection]]] = {}

    @property
    def signatures(self) -> int:
        """Signatures seen so far."""
        return len(self._by_signature)

    def reached(self, event: Event) -> tuple[list[EventDetection], list[StatefulDetection]]:
        """The single-event and stateful detections ``event`` can match, in load order."""
        if self._read is None:
            return self.single, self.stateful
        values = self._read(event)
        reached = self._by_values.get(values)
        if reached is None:
            reached = self._by_signature_of(values[1:])
            if len(self._by_values) >= MAX_FIELD_VALUES:
                self._by_values.clear()
            self._by_values[values] = reached
        return reached

    def _by_signature_of(
        self, values: tuple[str, ...]
    ) -> tuple[list[EventDetection], list[StatefulDetection]]:
        signature: tuple[Any, ...] = tuple(
            value if (value := declared_value(name, raw)) in known else None
            for name, known, raw in zip(self._names, self._known, values[: len(self._names)], strict=True)
        )
        names = self._names
        if self._paths is not None:
            target_path, file_path = values[-2:]
            signature = (*signature, self._paths.matching(target_path or file_path) or None)
            names = [*names, PATHS]
        reached = self._by_signature.get(signature)
        if reached is None:
            named = dict(zip(names, signature, strict=True))
            kind = self._kind
            reached = self._by_signature[signature] = (
                [d for d in self.single if any(p.admits_values(named) for p in d.prefilters(kind))],
                [d for d in self.stateful if any(p.admits_values(named) for p in d.prefilters(kind))],
            )
        return reached


class Engine:
    """Runs a set of detections over events; build it with :meth:`load` to read detection files.

    ``store`` keeps the state of windowed and sequence detections (default: a dict); ``tuning`` applies a
    deployment's ``detections.toml``. ``raise_errors`` lets a detection's exception through instead of
    isolating it: the example harness reports it that way."""

    def __init__(
        self, detections: Iterable[Detection] = (), *, suppression_capacity: int = 50_000,
        store: StateStore | None = None, alert_store: StateStore | None = None, tuning: Tuning | None = None,
        raise_errors: bool = False,
    ) -> None:
        self.errors: list[LoadError] = []
        self.tuning = tuning or Tuning()
        self._suppression = AlertSuppression(alert_store, suppression_capacity)
        self._store: StateStore = store if store is not None else DictStore()
        self._lateness_ns = int(self.tuning.allowed_lateness_s * 1e9)
        self._max_keys = self.tuning.max_state_keys
        self._max_event_ns = 0
        #: State key -> when ``advance`` next has work for it, in least-recently-written order (for eviction).
        self._deadlines: OrderedDict[str, int] = OrderedDict()
        #: State changed since the last :meth:`commit`, by key (read from here before the store).
        self._pending: dict[str, dict[str, Any]] = {}
        self.losses = SourceLosses()
        self._raise_errors = raise_errors
        self._paths: list[Path] = []
        self._fingerprint: tuple[tuple[str, int, int], ...] = ()
        self._files: dict[str, Detection] = {}
        self._failures: dict[str, tuple[float, int]] = {}
        #: Events processed per kind since the last advance: Prometheus is told once per advance, not per event.
        self._processed: dict[str, int] = {}
        #: ``vigil_events_processed_total`` per kind: looking a labelled child up costs more than the increment.
        self._processed_counters: dict[str, Any] = {}
        self._alert_counters: dict[tuple[str, str, bool], Any] = {}
        self._install({f"<memory:{d.id}>": d for d in detections}, [])

    @classmethod
    def load(
        cls, paths: Iterable[str | Path] | None = None, *, suppression_capacity: int = 50_000,
        store: StateStore | None = None, alert_store: StateStore | None = None, tuning: Tuning | None = None,
    ) -> Engine:
        """An engine running every detection file under ``paths`` (default: the bundled library) and the health
        thresholds the tuning declares (``[[health]]``, see :mod:`vigil.detections.health`)."""
        engine = cls(suppression_capacity=suppression_capacity, store=store, alert_store=alert_store, tuning=tuning)
        engine._paths = [Path(p) for p in (paths if paths is not None else [LIBRARY])]
        engine._fingerprint = engine._current_fingerprint()
        files, errors = load_detections(engine._paths)
        engine._install({**files, **health_detections(engine.tuning.health)}, errors)
        return engine

    @property
    def detections(self) -> list[Detection]:
        return list(self._files.values())

    @property
    def prefilter_signatures(self) -> dict[str, int]:
        """Prefilter signatures seen per event kind since the detections were installed (see KindDispatch)."""
        return {kind: dispatch.signatures for kind, dispatch in sorted(self._dispatch.items()) if dispatch.signatures}

    @property
    def watermark_ns(self) -> int:
        """Event time up to which windows and sequences are complete: the newest event time minus lateness."""
        return self._max_event_ns - self._lateness_ns

    @property
    def max_event_ns(self) -> int:
        return self._max_event_ns

    def process(self, event: Event) -> list[Alert]:
        """New alerts this event raises (a hit of an open alert updates it: :meth:`advance` reports it)."""
        kind = event.kind
        processed = self._processed
        processed[kind] = processed.get(kind, 0) + 1
        if kind == HEALTH_KIND:
            self.losses.record(event)
        emitted: list[Alert] = []
        dispatch = self._dispatch.get(kind)
        if dispatch is None:
            return emitted
        single, stateful = dispatch.reached(event)
        exceptions, open_alert = self._exceptions, self._suppression.open_alert
        for detection in single:
            if exceptions and self._excepted(detection, event):
                continue
            try:
                if not detection.judge(event):
                    continue
                hit = detection.matched(event)
                held = open_alert(detection.id, hit.dedup_key, event.time_ns, detection.dedup_period_s)
                if held is not None:
                    self._repeat(held, event)
                    continue
                alert = detection.alert(hit)
            except Exception:  # one broken detection must not blind the others
                self._record_failure(detection, event.id, kind)
                continue
            self._emit(detection, Finding(alert, frozenset({event.source}), _nodes(event), alert.time_ns,
                                          alert.time_ns), event.correlation_key, emitted)
        if dispatch.stateful:  # every event of a kind windows or sequences use moves event time on
            self._observe(event, stateful, emitted)
        return emitted

    def process_many(self, events: Iterable[Event]) -> list[Alert]:
        """Alerts of ``events`` in order, with their state committed."""
        alerts = [alert for event in events for alert in self.process(event)]
        self.commit()
        return alerts

    def _observe(self, event: Event, detections: list[StatefulDetection], emitted: list[Alert]) -> None:
        """Give the event to the windows and sequences that can use it; read and write each state key once."""
        time_ns = event.time_ns
        if time_ns > self._max_event_ns:
            self._max_event_ns = time_ns
        late = time_ns < self._max_event_ns - self._lateness_ns
        pending = self._pending
        for detection in detections:
            if self._exceptions and self._excepted(detection, event):
                continue
            try:
                observation = detection.observe(event)
                if observation is None:
                    continue
                if late:
                    LATE.labels(event.source).inc()
                    return
                entry = pending.get(observation.key)
                if entry is None:
                    entry = self._store.get(observation.key) or {}
                slot, findings = detection.update(entry.get(detection.id), observation)
            except Exception:  # one broken detection must not blind the others
                self._record_failure(detection, event.id, event.kind)
                continue
            if slot is not UNCHANGED:
                _put(entry, detection.id, slot)
                pending[observation.key] = entry
            for finding in findings:
                self._emit(detection, finding, observation.key, emitted)

    def commit(self) -> None:
        """Write the state keys changed since the last commit to the store, once each. The stream processor
        commits once per batch of Kafka messages, so a key costs one table write per batch, not one per event.
        Eviction beyond ``max_state_keys`` happens here."""
        if self._pending:
            pending, self._pending = self._pending, {}
            for key, entry in pending.items():
                self._write(key, entry)
        self._suppression.commit()

    def _count_processed(self) -> None:
        """Tell Prometheus the events processed per kind since the last call (from :meth:`advance`: a labelled
        counter's increment takes a lock, which costs as much as a cheap event)."""
        if self._processed:
            counters = self._processed_counters
            for kind, count in self._processed.items():
                counter = counters.get(kind)
                if counter is None:
                    counter = counters[kind] = metrics.EVENTS_PROCESSED.labels(kind)
                counter.inc(count)
            self._processed = {}

    def advance(self, watermark_ns: int | None = None) -> list[Alert]:
        """Move windows and sequences to ``watermark_ns`` (default: the engine's watermark): drop what expired
        and raise the absences it decides; then the open alerts updated since the last call. Cheap when nothing
        is due; the stream worker calls it on a timer."""
        watermark = self.watermark_ns if watermark_ns is None else watermark_ns
        WATERMARK.set(max(watermark, 0) / 1e9)
        self.commit()
        if len(self._store) != len(self._deadlines):
            self._reindex()
        emitted: list[Alert] = []
        for key in [key for key, deadline in self._deadlines.items() if deadline <= watermark]:
            entry = self._store.get(key)
            if entry is None:
                self._deadlines.pop(key, None)
                continue
            for detection_id in list(entry):
                detection = self._stateful.get(detection_id)
                if detection is None:  # removed or disabled since: its state goes with it
                    del entry[detection_id]
                    continue
                try:
                    slot, findings = detection.on_watermark(key, entry[detection_id], watermark)
                except Exception:  # a broken detection loses its state for this key, the others keep theirs
                    self._record_failure(detection, key, "watermark")
                    slot, findings = None, []
                _put(entry, detection_id, slot)
                for finding in findings:
                    self._emit(detection, finding, key, emitted)
            self._write(key, entry, touched=False)
        self.losses.forget_before(watermark - self._horizon_ns)
        STATE_KEYS.set(len(self._deadlines))
        self._suppression.expire(watermark)
        emitted.extend(self._suppression.changed())
        self._count_processed()
        return emitted

    def flush(self) -> list[Alert]:
        """Decide everything up to the newest event seen, as at the end of a recording (``vigil replay``)."""
        return self.advance(self._max_event_ns)

    def _write(self, key: str, entry: dict[str, Any], *, touched: bool = True) -> None:
        if not entry:
            self._store.delete(key)
            self._deadlines.pop(key, None)
            return
        self._store.set(key, entry)
        self._deadlines[key] = self._entry_deadline(entry)
        if touched:
            self._deadlines.move_to_end(key)
        while len(self._deadlines) > self._max_keys:
            evicted, _ = self._deadlines.popitem(last=False)
            self._store.delete(evicted)
            EVICTED.inc()

    def _entry_deadline(self, entry: dict[str, Any]) -> int:
        deadline = None
        for detection_id, slot in entry.items():
            detection = self._stateful.get(detection_id)
            due = detection.deadline_ns(slot) if detection is not None else 0
            deadline = due if deadline is None else min(deadline, due)
        return deadline or 0

    def _reindex(self) -> None:
        """Index keys the store holds but the engine did not write (a Faust table restored from its changelog
        after a restart or rebalance), and forget keys the store no longer has (partitions revoked)."""
        keys = set(self._store.keys())
        for key in [key for key in self._deadlines if key not in keys]:
            del self._deadlines[key]
        for key in keys - self._deadlines.keys():
            entry = self._store.get(key)
            if entry:
                self._deadlines[key] = self._entry_deadline(entry)

    def _emit(self, detection: Detection, finding: Finding, route: str, emitted: list[Alert]) -> None:
        """Raise ``finding`` as a new alert or fold it into the open one; ``route`` is the Kafka key of the
        events it came from (the key its suppression entry is partitioned by)."""
        hit = finding.alert
        lost = self.losses.overlapping(finding.sources, finding.nodes, finding.start_ns, finding.end_ns)
        held = self._suppression.open_alert(hit.detection, hit.dedup_key, hit.time_ns, detection.dedup_period_s)
        if held is not None:
            if self._suppression.update(held, hit):
                self._degrade(held, lost)
                self._count(held, suppressed=True)
            return
        self._degrade(hit, lost)
        alert = self._suppression.open(hit, route, detection.dedup_period_s)
        if alert is not None:
            self._count(alert, suppressed=False)
            emitted.append(alert)

    def _repeat(self, held: Alert, event: Event) -> None:
        """One more single-event hit of an open alert: its lifecycle moves on, and losses during the hit
        degrade its coverage too."""
        if self._suppression.repeat(held, event):
            self._degrade(held, self.losses.overlapping(frozenset({event.source}), _nodes(event), event.time_ns,
                                                        event.time_ns))
            self._count(held, suppressed=True)

    @staticmethod
    def _degrade(alert: Alert, lost: dict[str, int]) -> None:
        """Say in the alert what its sources lost meanwhile (an update keeps the most any hit overlapped)."""
        if not lost:
            return
        degraded = alert.context.setdefault("coverage_degraded", {})
        for source, dropped in lost.items():
            degraded[source] = max(degraded.get(source, 0), dropped)
        DEGRADED.labels(alert.detection).inc()

    def _count(self, alert: Alert, *, suppressed: bool) -> None:
        """``vigil_alerts_total`` for a new alert, ``vigil_alerts_suppressed_total`` for a hit folded into an open
        one (the engine keeps them per detection and severity: looking a labelled child up costs more than the
        increment)."""
        key = (alert.detection, alert.severity, suppressed)
        counter = self._alert_counters.get(key)
        if counter is None:
            if suppressed:
                counter = SUPPRESSED.labels(alert.detection)
            else:
                counter = metrics.ALERTS.labels(alert.detection, alert.severity)
            self._alert_counters[key] = counter
        counter.inc()

    def _excepted(self, detection: Detection, event: Event) -> bool:
        tuning = self._exceptions.get(detection.id)
        if tuning is None or not tuning.excepts(event):
            return False
        EXCEPTED.labels(detection.id).inc()
        return True

    def reload_if_changed(self) -> bool:
        """Reload the detection files if any was added, removed or modified (a stat per file, cheap enough to
        call every few seconds). A file that now fails to load keeps its last good version running, so a bad
        edit is reported without silently switching a detection off. Open alerts and state survive the reload
        (a changed window or sequence continues from its stored slots)."""
        fingerprint = self._current_fingerprint()
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        loaded, errors = load_detections(self._paths)
        loaded.update(health_detections(self.tuning.health))
        ids = {d.id for d in loaded.values()}
        for error in errors:
            previous = self._files.get(error.path)
            if previous is not None and previous.id not in ids:
                loaded[error.path] = previous
                ids.add(previous.id)
        self._install(loaded, errors)
        log.info("detections reloaded", extra={"detections": len(loaded), "errors": len(errors)})
        return True

    def _install(self, files: dict[str, Detection], errors: list[LoadError]) -> None:
        configured: dict[str, Detection] = {}
        disabled = 0
        errors = list(errors)
        for path, detection in files.items():
            try:
                tuned = self.tuning.apply(detection)
            except (TypeError, ValueError) as exc:  # DetectionError is a ValueError
                errors.append(LoadError(path, f"detections config: {exc}"))
                continue
            if tuned is None:
                disabled += 1
            else:
                configured[path] = tuned
        self._files = configured
        self.errors = errors
        single: dict[str, list[EventDetection]] = {}
        stateful: dict[str, list[StatefulDetection]] = {}
        for detection in configured.values():
            table: dict[str, list[Any]] = single if isinstance(detection, EventDetection) else stateful
            for kind in detection.kinds:
                table.setdefault(kind, []).append(detection)
        self._dispatch = {
            kind: KindDispatch(single.get(kind, []), stateful.get(kind, []), kind) for kind in {*single, *stateful}
        }
        self._stateful = {d.id: d for d in configured.values() if isinstance(d, StatefulDetection)}
        self._horizon_ns = max((d.horizon_ns for d in self._stateful.values()), default=0)
        self._exceptions: dict[str, DetectionTuning] = {
            d.id: tuning for d in configured.values() if (tuning := self.tuning.exceptions_for(d.id)) is not None
        }
        for error in errors:
            log.error("detection disabled: cannot load", extra={"path": error.path, "error": error.error})
        unknown = set(self.tuning.detections) - {d.id for d in files.values()}
        if unknown and files:
            log.warning("detections config names detections that are not loaded", extra={"ids": sorted(unknown)})
        DETECTIONS.labels("enabled").set(len(configured))
        DETECTIONS.labels("disabled").set(len(errors))
        DETECTIONS.labels("disabled_by_config").set(disabled)

    def _current_fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        stamps = []
        for file in detection_files(self._paths):
            try:
                stat = file.stat()
            except OSError:
                continue
            stamps.append((str(file), stat.st_mtime_ns, stat.st_size))
        return tuple(stamps)

    def _record_failure(self, detection: Detection, event_id: str, kind: str) -> None:
        if self._raise_errors:
            raise  # called from the detection's except block: re-raises what the detection raised
        DETECTION_ERRORS.labels(detection.id).inc()
        now = time.monotonic()
        last_logged, unlogged = self._failures.get(detection.id, (float("-inf"), 0))
        if now - last_logged < ERROR_LOG_INTERVAL_S:
            self._failures[detection.id] = (last_logged, unlogged + 1)
            return
        self._failures[detection.id] = (now, 0)
        log.error(
            "detection failed on an event",
            exc_info=True,
            extra={"detection": detection.id, "event_id": event_id, "kind": kind, "failures_not_logged": unlogged},
        )


def _put(entry: dict[str, Any], detection_id: str, slot: Any) -> None:
    if slot is None:
        entry.pop(detection_id, None)
    else:
        entry[detection_id] = slot


def _nodes(event: Event) -> frozenset[str]:
    return frozenset((event.node,)) if event.node else frozenset()
