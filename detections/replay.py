"""Replay recorded source files through the detection engine, as the stream workers would run them.

Used to backtest a detection against saved audit logs and to investigate an incident from files. Files are
read in the order given; event time drives windows and sequences as in the stream workers, and at the end the
watermark moves to the newest event so that pending absences are decided. A file may hold JSON lines, or one
JSON document (a single event or an ``EventList``, possibly pretty-printed): the first line decides, so a large
JSON-lines file is streamed rather than read whole. Bad records are counted by reason
and the first few are located by line, but never stop the replay.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from vigil import metrics
from vigil.alert import Alert
from vigil.detections.engine import Engine
from vigil.detections.runner import RecordRunner
from vigil.sources.source import Source

#: How many rejected records are shown with their location; the rest are only counted.
REJECTED_SAMPLES = 5
#: A file whose first line is not JSON is tried as one document only up to this size; a larger one is
#: JSON lines with a bad first line, and reading it whole would only waste memory.
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
_PROGRESS_EVERY_S = 1.0


@dataclass(slots=True)
class RejectedSample:
    location: str
    reason: str
    detail: str


@dataclass(slots=True)
class ReplayReport:
    """What a replay saw: alerts by id in the order they were first raised (each in its final state, so a
    suppressed repeat shows as a count, not a line), records read, and what was refused."""

    alerts: dict[str, Alert] = field(default_factory=dict)
    records: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    samples: list[RejectedSample] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


class Replay:
    """Feeds files through ``source`` and ``engine`` in file order, collecting a :class:`ReplayReport`."""

    def __init__(
        self, source: Source, engine: Engine, *, cluster: str, node: str, max_record_bytes: int,
        progress: IO[str] | None = None,
    ) -> None:
        self.source = source
        self.engine = engine
        self._runner = RecordRunner(engine, cluster=cluster, node=node, max_record_bytes=max_record_bytes)
        self.report = ReplayReport()
        self._progress = progress
        self._progress_at = time.monotonic()

    def run(self, paths: list[Path]) -> ReplayReport:
        for path in paths:
            try:
                with path.open("rb") as file:
                    for location, payload in self._payloads(file, path):
                        self._replay_payload(location, payload)
                        self._show_progress(path, file)
            except OSError as exc:
                self.report.unreadable.append(f"{path}: {exc.strerror or exc}")
        # The recording is over: windows and absences up to its newest event are decided now.
        for alert in self.engine.flush():
            self.report.alerts[alert.id] = alert
        if self._progress is not None:
            self._progress.write("\r\x1b[K")
        return self.report

    def _payloads(self, file: IO[bytes], path: Path) -> Iterator[tuple[str, bytes]]:
        """(location, payload) pairs: each line of a JSON-lines file, or the whole file when its first line
        is not a JSON document on its own (a pretty-printed event or EventList)."""
        lines = enumerate(file, start=1)
        first_number, first = next(((n, line) for n, line in lines if line.strip()), (0, b""))
        if not first:
            return
        if _parses(first):
            yield f"{path}:{first_number}", first
        elif os.fstat(file.fileno()).st_size <= MAX_DOCUMENT_BYTES:
            document = first + file.read()
            if _parses(document):
                yield str(path), document
                return
            file.seek(0)
            lines = enumerate(file, start=1)
        else:
            yield f"{path}:{first_number}", first
        for number, line in lines:
            if line.strip():
                yield f"{path}:{number}", line

    def _replay_payload(self, location: str, payload: bytes) -> None:
        result = self._runner.run_payload(self.source, payload)
        self.report.records += result.records
        metrics.RECEIVED.labels("replay", self.source.name).inc(result.records)
        for refused in result.refused:
            self._reject(location, refused.reason, refused.detail)
        for alert in result.alerts:
            self.report.alerts[alert.id] = alert
        self.engine.commit()

    def _reject(self, location: str, reason: str, detail: str) -> None:
        metrics.REJECTED.labels("replay", self.source.name, reason).inc()
        self.report.rejected[reason] += 1
        if len(self.report.samples) < REJECTED_SAMPLES:
            self.report.samples.append(RejectedSample(location, reason, detail))

    def _show_progress(self, path: Path, file: IO[bytes]) -> None:
        now = time.monotonic()
        if self._progress is None or now - self._progress_at < _PROGRESS_EVERY_S:
            return
        self._progress_at = now
        size = max(path.stat().st_size, 1)
        self._progress.write(
            f"\r\x1b[K{path.name}: {100 * file.tell() // size}%  {self.report.records:,} records"
            f"  {len(self.report.alerts):,} alerts"
        )
        self._progress.flush()


def _parses(payload: bytes) -> bool:
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return True


def format_table(alerts: list[Alert]) -> str:
    rows = [("TIME", "SEVERITY", "DETECTION", "NAMESPACE/POD", "USER", "COUNT", "TITLE")]
    for alert in alerts:
        where = "/".join(part for part in (alert.namespace, alert.pod) if part)
        rows.append((alert.time, alert.severity, alert.detection, where, alert.user, str(alert.count), alert.title))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] for row in rows
    )


def print_report(report: ReplayReport, output_format: str) -> None:
    """Alerts on stdout; unreadable files and rejected records on stderr, so the output stays parseable."""
    out, err = sys.stdout, sys.stderr
    alerts = list(report.alerts.values())
    if output_format == "table":
        if alerts:
            print(format_table(alerts), file=out)
    else:
        for alert in alerts:
            print(alert.to_json().decode(), file=out)
    for problem in report.unreadable:
        print(f"vigil replay: cannot read {problem}", file=err)
    rejected = sum(report.rejected.values())
    reasons = ", ".join(f"{reason}: {count}" for reason, count in report.rejected.most_common())
    print(
        f"vigil replay: {report.records} records, {len(alerts)} alerts, {rejected} rejected"
        + (f" ({reasons})" if reasons else ""),
        file=err,
    )
    for sample in report.samples:
        print(f"  {sample.location}: {sample.reason}: {sample.detail}", file=err)
