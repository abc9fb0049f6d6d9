"""The detection engine: loads detection files, runs them on events, and suppresses repeats.

Each detection file is loaded on its own, so one that fails to import is disabled and reported while the
others run; a detection that raises on an event is counted and logged (rate-limited) and the event still
goes to every other detection. Events are dispatched by kind, so the cost per event does not grow with the
number of detections that look at other kinds.

Suppression: a hit with the same detection and dedup key as an alert raised less than the detection's
``dedup_period_s`` earlier (event time, so replays behave like live runs) updates that alert's count,
last-seen time and evidence instead of raising a new one. :meth:`Engine.process` returns new alerts and
updated ones; an update keeps its alert id, so consumers upsert by id and notify only when ``count == 1``.
The same evidence seen again (an audit request logged at several stages shares one auditID, a Kafka batch
is reprocessed) yields the same alert id and is ignored.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
from prometheus_client import Counter, Gauge

from collectors.source import RecordRejected, Rejected, get_source
from detections.sdk import Detection, Example
from vigil import metrics
from vigil.alert import Alert
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
DETECTIONS = Gauge("vigil_detections", "Detections loaded and running, or disabled by a load error", ["state"])

#: An alert keeps at most this many evidence ids; its count keeps counting beyond.
MAX_EVIDENCE = 50
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
            errors.append(LoadError(str(file), _describe(exc)))
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
    if not isinstance(detection, Detection):
        raise TypeError("the file must define DETECTION, a detections.sdk.Detection (e.g. an EventDetection)")
    return detection


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    return f"{type(exc).__name__}: {exc}"


class AlertSuppression:
    """The open alert per (detection, dedup key), and the ids of recently raised alerts. Both are bounded
    LRUs: memory stays flat however many distinct keys the event stream carries."""

    def __init__(self, capacity: int = 50_000) -> None:
        self._capacity = capacity
        self._open: OrderedDict[tuple[str, str], Alert] = OrderedDict()
        self._recent_ids: OrderedDict[str, None] = OrderedDict()

    def admit(self, alert: Alert, period_s: float) -> Alert | None:
        """The alert to emit for this hit: itself if new, the updated open alert if suppressed, ``None``
        if this evidence already raised it."""
        if alert.id in self._recent_ids:
            self._recent_ids.move_to_end(alert.id)
            return None
        self._remember(self._recent_ids, alert.id, None)
        key = (alert.detection, alert.dedup_key)
        held = self._open.get(key)
        if held is None or abs(alert.time_ns - held.first_seen_ns) >= period_s * 1e9:
            self._remember(self._open, key, alert)
            return _snapshot(alert)
        held.count += alert.count
        held.first_seen_ns = min(held.first_seen_ns, alert.first_seen_ns)
        held.last_seen_ns = max(held.last_seen_ns, alert.last_seen_ns)
        room = MAX_EVIDENCE - len(held.evidence)
        held.evidence.extend(alert.evidence[:room])
        held.event_ids.extend(alert.event_ids[:room])
        self._open.move_to_end(key)
        return _snapshot(held)

    def _remember(self, lru: OrderedDict, key: object, value: object) -> None:
        lru[key] = value
        lru.move_to_end(key)
        if len(lru) > self._capacity:
            lru.popitem(last=False)


def _snapshot(alert: Alert) -> Alert:
    """A copy for the caller: the held alert keeps changing with later hits, what was emitted must not."""
    return replace(alert, evidence=list(alert.evidence), event_ids=list(alert.event_ids), context=dict(alert.context))


class Engine:
    """Runs a set of detections over events; build it with :meth:`load` to read detection files."""

    def __init__(self, detections: Iterable[Detection] = (), *, suppression_capacity: int = 50_000) -> None:
        self.errors: list[LoadError] = []
        self._suppression = AlertSuppression(suppression_capacity)
        self._paths: list[Path] = []
        self._fingerprint: tuple[tuple[str, int, int], ...] = ()
        self._files: dict[str, Detection] = {}
        self._failures: dict[str, tuple[float, int]] = {}
        self._install({f"<memory:{d.id}>": d for d in detections}, [])

    @classmethod
    def load(cls, paths: Iterable[str | Path] | None = None, *, suppression_capacity: int = 50_000) -> Engine:
        """An engine running every detection file under ``paths`` (default: the bundled library)."""
        engine = cls(suppression_capacity=suppression_capacity)
        engine._paths = [Path(p) for p in (paths if paths is not None else [LIBRARY])]
        engine._fingerprint = engine._current_fingerprint()
        engine._install(*load_detections(engine._paths))
        return engine

    @property
    def detections(self) -> list[Detection]:
        return list(self._files.values())

    def process(self, event: Event) -> list[Alert]:
        metrics.EVENTS_PROCESSED.labels(event.kind).inc()
        emitted: list[Alert] = []
        for detection in self._by_kind.get(event.kind, ()):
            try:
                hits = detection.evaluate(event)
            except Exception:  # one broken detection must not blind the others
                self._record_failure(detection, event)
                continue
            for hit in hits:
                alert = self._suppression.admit(hit, detection.dedup_period_s)
                if alert is None:
                    continue
                if alert.count == 1:
                    metrics.ALERTS.labels(alert.detection, alert.severity).inc()
                else:
                    SUPPRESSED.labels(alert.detection).inc()
                emitted.append(alert)
        return emitted

    def process_many(self, events: Iterable[Event]) -> list[Alert]:
        return [alert for event in events for alert in self.process(event)]

    def reload_if_changed(self) -> bool:
        """Reload the detection files if any was added, removed or modified (a stat per file, cheap enough to
        call every few seconds). A file that now fails to load keeps its last good version running, so a bad
        edit is reported without silently switching a detection off. Open alerts survive the reload."""
        fingerprint = self._current_fingerprint()
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        loaded, errors = load_detections(self._paths)
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
        self._files = files
        self.errors = errors
        by_kind: dict[str, list[Detection]] = {}
        for detection in files.values():
            for kind in detection.kinds:
                by_kind.setdefault(kind, []).append(detection)
        self._by_kind = by_kind
        for error in errors:
            log.error("detection disabled: cannot load", extra={"path": error.path, "error": error.error})
        DETECTIONS.labels("enabled").set(len(files))
        DETECTIONS.labels("disabled").set(len(errors))

    def _current_fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        stamps = []
        for file in detection_files(self._paths):
            try:
                stat = file.stat()
            except OSError:
                continue
            stamps.append((str(file), stat.st_mtime_ns, stat.st_size))
        return tuple(stamps)

    def _record_failure(self, detection: Detection, event: Event) -> None:
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
            extra={
                "detection": detection.id, "event_id": event.id, "kind": event.kind, "failures_not_logged": unlogged
            },
        )


# --- Examples ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExampleResult:
    example: str
    passed: bool
    reason: str = ""


def check_examples(detection: Detection) -> list[ExampleResult]:
    """Run each of the detection's examples through its real source (split, normalize) and the detection,
    the way the pipeline would; a positive must raise an alert that serializes, a negative none."""
    results = [_check_example(detection, index, example) for index, example in enumerate(detection.examples)]
    if not any(e.fires for e in detection.examples):
        results.append(ExampleResult("(examples)", False, "no positive example: add one the detection must fire on"))
    if all(e.fires for e in detection.examples):
        results.append(ExampleResult("(examples)", False, "no negative example: add one it must stay quiet on"))
    return results


def _check_example(detection: Detection, index: int, example: Example) -> ExampleResult:
    name = example.name or f"#{index}"
    try:
        source = get_source(example.source)
        events = []
        for record in source.split(orjson.dumps(example.record), 1 << 24):
            if isinstance(record, Rejected):
                return ExampleResult(name, False, f"the source rejected the record: {record.reason}: {record.detail}")
            events.append(source.normalize(record, "example-cluster", "example-node"))
        alerts = [alert for event in events for alert in detection.evaluate(event)]
        for alert in alerts:
            alert.to_json()
    except RecordRejected as exc:
        return ExampleResult(name, False, f"the source rejected the record: {exc}")
    except Exception as exc:  # the harness reports any failure of the detection as a failed example
        return ExampleResult(name, False, f"raised {_describe(exc)}")
    if not events:
        return ExampleResult(name, False, "the record normalized into no event")
    if example.fires and not alerts:
        return ExampleResult(name, False, "expected an alert, got none")
    if not example.fires and alerts:
        return ExampleResult(name, False, f"expected no alert, got: {alerts[0].title}")
    return ExampleResult(name, True)
