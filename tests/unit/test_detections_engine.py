"""The engine: loading with broken files, dispatch by kind, error isolation, suppression, hot reload."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from vigil import metrics
from vigil.detections.engine import DETECTION_ERRORS, Engine
from vigil.detections.sdk import EventDetection
from vigil.event import Actor, Event, K8sContext, Target

MINUTE_NS = 60 * 10**9

GOOD_DETECTION = """
from vigil.detections.sdk import EventDetection

DETECTION = EventDetection(
    id="test.{name}",
    title="Test {name}",
    description="Fires on every pods/exec.",
    severity="{severity}",
    kinds=["k8s.api"],
    match=lambda event: event.target.subresource == "exec",
)
"""


def exec_event(audit_id: str = "audit-1", *, pod: str = "web", user: str = "alice", time_ns: int = 0) -> Event:
    return Event(
        id=f"event-{audit_id}",
        time_ns=1_700_000_000 * 10**9 + time_ns,
        source="k8s-audit",
        kind="k8s.api",
        action="create",
        original_id=audit_id,
        cluster="test",
        k8s=K8sContext(namespace="default", pod=pod),
        actor=Actor(user=user),
        target=Target(resource="pods", subresource="exec", namespace="default", name=pod),
    )


def detection(name: str = "exec", kinds: tuple[str, ...] = ("k8s.api",), **fields) -> EventDetection:
    defaults = {"match": lambda event: event.target.subresource == "exec", "severity": "high"}
    return EventDetection(
        id=f"test.{name}", title=f"Test {name}", description="test", kinds=kinds, **{**defaults, **fields}
    )


def write_detection(directory: Path, name: str, severity: str = "high", source: str | None = None) -> Path:
    path = directory / f"{name}.py"
    path.write_text(source if source is not None else GOOD_DETECTION.format(name=name, severity=severity))
    return path


def test_dispatch_evaluates_only_detections_for_the_event_kind() -> None:
    seen: list[str] = []

    def spy(name: str):
        def match(event: Event) -> bool:
            seen.append(name)
            return True

        return match

    engine = Engine([detection("api", match=spy("api")), detection("proc", kinds=("process.exec",), match=spy("proc"))])

    alerts = engine.process(exec_event())

    assert seen == ["api"]
    assert [a.detection for a in alerts] == ["test.api"]


def test_alert_carries_the_event_context_and_evidence() -> None:
    (alert,) = Engine([detection(alert_title="{user} in {namespace}/{pod}")]).process(exec_event("abc", time_ns=5))

    assert alert.title == "alice in default/web"
    assert (alert.cluster, alert.namespace, alert.pod, alert.user) == ("test", "default", "web", "alice")
    assert alert.evidence == ["abc"]
    assert alert.event_ids == ["event-abc"]
    assert alert.time_ns == 1_700_000_000 * 10**9 + 5
    assert alert.context["resource"] == "pods/exec"
    assert alert.severity == "high"


def test_broken_files_are_disabled_and_reported_while_the_others_run(tmp_path: Path) -> None:
    write_detection(tmp_path, "good")
    write_detection(tmp_path, "syntax", source="DETECTION = EventDetection(\n")
    write_detection(tmp_path, "metadata", severity="urgent")
    write_detection(tmp_path, "missing", source="x = 1\n")
    write_detection(tmp_path, "crash_on_import", source="import no_such_module_anywhere\n")

    engine = Engine.load([tmp_path])

    assert [d.id for d in engine.detections] == ["test.good"]
    errors = {Path(e.path).stem: e.error for e in engine.errors}
    assert set(errors) == {"syntax", "metadata", "missing", "crash_on_import"}
    assert errors["syntax"].startswith("SyntaxError")
    assert "severity 'urgent'" in errors["metadata"]
    assert "must define DETECTION" in errors["missing"]
    assert "no_such_module_anywhere" in errors["crash_on_import"]
    assert [a.detection for a in engine.process(exec_event())] == ["test.good"]


def test_duplicate_ids_keep_the_first_file(tmp_path: Path) -> None:
    write_detection(tmp_path, "a_first", source=GOOD_DETECTION.format(name="same", severity="low"))
    write_detection(tmp_path, "b_second", source=GOOD_DETECTION.format(name="same", severity="high"))

    engine = Engine.load([tmp_path])

    assert [(d.id, d.severity) for d in engine.detections] == [("test.same", "low")]
    assert "duplicate detection id" in engine.errors[0].error


def test_a_detection_that_raises_is_isolated_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    def explode(event: Event) -> bool:
        raise KeyError("spec")

    engine = Engine([detection("broken", match=explode), detection("works")])
    errors_before = DETECTION_ERRORS.labels("test.broken")._value.get()

    with caplog.at_level(logging.ERROR, logger="vigil.detections"):
        first = engine.process(exec_event("one"))
        second = engine.process(exec_event("two", pod="db"))

    assert [a.detection for a in first + second] == ["test.works", "test.works"]
    assert DETECTION_ERRORS.labels("test.broken")._value.get() == errors_before + 2
    logged = [r for r in caplog.records if r.msg == "detection failed on an event"]
    assert len(logged) == 1
    assert logged[0].detection == "test.broken"


def test_repeats_within_the_dedup_period_update_one_alert() -> None:
    engine = Engine([detection(dedup_period_s=600)])
    raised_before = metrics.ALERTS.labels("test.exec", "high")._value.get()

    (first,) = engine.process(exec_event("a1"))
    assert engine.process(exec_event("a2", time_ns=5 * MINUTE_NS)) == []
    assert engine.process(exec_event("a3", time_ns=6 * MINUTE_NS)) == []
    (update,) = engine.advance()

    assert update.id == first.id
    assert (update.count, update.evidence) == (3, ["a1", "a2", "a3"])
    assert (first.count, first.evidence) == (1, ["a1"]), "what was emitted stays as it was"
    assert update.last_seen_ns == first.time_ns + 6 * MINUTE_NS
    assert update.first_seen_ns == first.time_ns
    assert metrics.ALERTS.labels("test.exec", "high")._value.get() == raised_before + 1
    assert engine.advance() == [], "an update is reported once"


def test_a_repeat_after_the_period_or_with_another_key_is_a_new_alert() -> None:
    engine = Engine([detection(dedup_period_s=600)])

    (first,) = engine.process(exec_event("a1"))
    (other_pod,) = engine.process(exec_event("a2", pod="db", time_ns=MINUTE_NS))
    (later,) = engine.process(exec_event("a3", time_ns=11 * MINUTE_NS))

    assert len({first.id, other_pod.id, later.id}) == 3
    assert later.count == 1 and other_pod.count == 1


def test_the_same_audit_request_at_several_stages_is_one_alert() -> None:
    engine = Engine([detection(dedup_period_s=0)])

    request_received = engine.process(exec_event("same-audit-id"))
    response_complete = engine.process(exec_event("same-audit-id", time_ns=10**6))

    assert len(request_received) == 1
    assert response_complete == []


def test_suppression_memory_is_bounded() -> None:
    engine = Engine([detection(dedup_period_s=600)], suppression_capacity=2)

    (first,) = engine.process_many([exec_event("a1", pod="p1")])
    engine.process_many([exec_event("a2", pod="p2")])
    engine.process_many([exec_event("a3", pod="p3")])
    (again,) = engine.process_many([exec_event("a4", pod="p1", time_ns=MINUTE_NS)])

    assert again.id != first.id and again.count == 1


def test_reload_picks_up_changed_added_and_removed_files(tmp_path: Path) -> None:
    first = write_detection(tmp_path, "one", severity="low")
    engine = Engine.load([tmp_path])
    assert not engine.reload_if_changed()

    write_detection(tmp_path, "one", severity="critical")
    bump_mtime(first)
    write_detection(tmp_path, "two")
    assert engine.reload_if_changed()
    assert sorted((d.id, d.severity) for d in engine.detections) == [("test.one", "critical"), ("test.two", "high")]

    first.unlink()
    assert engine.reload_if_changed()
    assert [d.id for d in engine.detections] == ["test.two"]


def test_a_bad_edit_keeps_the_last_good_version_running(tmp_path: Path) -> None:
    path = write_detection(tmp_path, "one")
    engine = Engine.load([tmp_path])

    path.write_text(path.read_text() + "\ndef broken(:\n")
    bump_mtime(path)

    assert engine.reload_if_changed()
    assert [d.id for d in engine.detections] == ["test.one"]
    assert engine.errors[0].path == str(path) and engine.errors[0].error.startswith("SyntaxError")
    assert [a.detection for a in engine.process(exec_event())] == ["test.one"]


def test_open_alerts_survive_a_reload(tmp_path: Path) -> None:
    path = write_detection(tmp_path, "one")
    engine = Engine.load([tmp_path])
    (first,) = engine.process(exec_event("a1"))

    path.write_text(path.read_text() + "\n# reviewed\n")
    bump_mtime(path)
    assert engine.reload_if_changed()

    engine.process(exec_event("a2", time_ns=MINUTE_NS))
    (update,) = engine.advance()
    assert (update.id, update.count) == (first.id, 2)


def bump_mtime(path: Path) -> None:
    """Make the change visible even on filesystems with coarse timestamps."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
