"""Windows, sequences and absences in the engine: event time, the watermark, late events, bounded state,
per-step join keys across sources, tuning from configuration and coverage of lossy sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from vigil.config import Settings
from vigil.detections.engine import EVICTED, LATE, Engine, load_detections
from vigil.detections.harness import check_examples
from vigil.detections.sdk import (
    DetectionError,
    EventDetection,
    SequenceDetection,
    Step,
    ThresholdDetection,
    container_key,
    pod_key,
)
from vigil.detections.state import CountingStore, DictStore
from vigil.detections.tuning import Tuning, TuningError
from vigil.event import Actor, Event, K8sContext, Outcome, Target
from vigil.sources.audit.fixtures import audit_record
from vigil.sources.tetragon.fixtures import tetragon_record
from vigil.streams.processor import StreamProcessor

VIGIL = Path(sys.executable).parent / "vigil"
T0 = 1_741_069_320 * 10**9  # on a minute boundary, where tumbling windows start
S = 10**9


def api(second: float, *, pod: str = "web", user: str = "alice", subresource: str = "exec", code: int = 101,
        namespace: str = "default", resource: str = "pods") -> Event:
    return Event(
        id=f"api-{second}-{pod}-{user}-{subresource}-{code}", time_ns=T0 + int(second * S), source="k8s-audit",
        kind="k8s.api", action="create", original_id=f"audit-{second}-{pod}-{user}", cluster="c", node="cp",
        k8s=K8sContext(namespace=namespace, pod=pod if resource == "pods" else ""),
        actor=Actor(user=user),
        target=Target(resource=resource, subresource=subresource, namespace=namespace, name=pod),
        outcome=Outcome("denied" if code == 403 else "success", code),
    )


def runtime(second: float, kind: str, *, pod: str = "web", path: str = "", exe: str = "/bin/sh",
            address: str = "", source: str = "tetragon", node: str = "node-1", container: str = "c0ffee") -> Event:
    return Event(
        id=f"rt-{second}-{kind}-{pod}-{path}-{address}", time_ns=T0 + int(second * S), source=source, kind=kind,
        cluster="c", node=node,
        k8s=K8sContext(namespace="default", pod=pod, container_id=container),
        actor=Actor(exe=exe), target=Target(path=path, address=address, port=443 if address else 0),
    )


def health(second: float, *, dropped: int, since: float, source: str = "tetragon", node: str = "node-1") -> Event:
    return Event(
        id=f"health-{second}", time_ns=T0 + int(second * S), source=source, kind="collector.health", node=node,
        raw={"dropped": dropped, "since_ns": T0 + int(since * S)},
    )


def exec_then_read_then_connect(**fields) -> SequenceDetection:
    return SequenceDetection(
        id="test.exec_read_connect", title="exec, read, connect", description="d", severity="high",
        alert_title="{user} in {pod}: {path} then {address}",
        steps=[
            Step(name="exec", kinds=["k8s.api"], sources=["k8s-audit"], match=lambda e: e.target.subresource == "exec"),
            Step(name="read", kinds=["file.open"], match=lambda e: e.target.path == "/etc/shadow"),
            Step(name="connect", kinds=["net.connect"], match=lambda e: bool(e.target.address)),
        ],
        max_span_s=300, **fields,
    )


def drop_then_exec() -> SequenceDetection:
    """A file written, then executed: the exec step is in order (same sensor stream), joined on the path."""
    return SequenceDetection(
        id="test.drop_exec", title="drop then exec", description="d", severity="high", max_span_s=600,
        steps=[
            Step(name="write", kinds=["file.write"], match=bool, on=lambda e: e.target.path),
            Step(name="exec", kinds=["process.exec"], match=bool, on=lambda e: e.actor.exe, out_of_order=False),
        ],
    )


def forbidden_burst(**fields) -> ThresholdDetection:
    defaults = dict(threshold=3, window_s=60)
    return ThresholdDetection(
        id="test.forbidden", title="forbidden burst", description="d", severity="medium", kinds=["k8s.api"],
        alert_title="{user}: {count} forbidden", match=lambda e: e.outcome.code == 403,
        group=lambda e: f"{e.cluster}/~{e.actor.user}", **{**defaults, **fields},
    )


def test_a_sequence_across_sources_fires_when_its_steps_arrive_in_order() -> None:
    engine = Engine([exec_then_read_then_connect()])

    assert engine.process(api(0)) == []
    assert engine.process(runtime(10, "file.open", path="/etc/shadow")) == []
    (alert,) = engine.process(runtime(20, "net.connect", address="203.0.113.9"))

    assert alert.title == "alice in web: /etc/shadow then 203.0.113.9:443"
    assert [step["step"] for step in alert.context["steps"]] == ["exec", "read", "connect"]
    assert [step["source"] for step in alert.context["steps"]] == ["k8s-audit", "tetragon", "tetragon"]
    assert alert.time_ns == T0 + 20 * S and alert.first_seen_ns == T0 + 20 * S
    assert (alert.namespace, alert.pod, alert.user) == ("default", "web", "alice")
    assert alert.evidence[0] == "audit-0-web-alice"


def test_a_sequence_completes_when_the_audit_step_arrives_after_the_runtime_events_it_caused() -> None:
    engine = Engine([exec_then_read_then_connect()])

    assert engine.process(runtime(10, "file.open", path="/etc/shadow")) == []
    assert engine.process(runtime(20, "net.connect", address="203.0.113.9")) == []
    (alert,) = engine.process(api(5))

    assert [step["time_ns"] for step in alert.context["steps"]] == [T0 + 5 * S, T0 + 10 * S, T0 + 20 * S]


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([runtime(10, "file.open", path="/etc/shadow"), api(20), runtime(30, "net.connect",
                                                                                  address="203.0.113.9")],
                     id="steps out of event-time order"),
        pytest.param([api(0), runtime(10, "file.open", path="/etc/shadow", pod="db"),
                      runtime(20, "net.connect", address="203.0.113.9")], id="a step in another pod"),
        pytest.param([api(0), runtime(10, "file.open", path="/etc/shadow"),
                      runtime(301, "net.connect", address="203.0.113.9")], id="beyond the maximum span"),
        pytest.param([api(0, subresource="log"), runtime(10, "file.open", path="/etc/shadow"),
                      runtime(20, "net.connect", address="203.0.113.9")], id="first step does not match"),
    ],
)
def test_a_sequence_does_not_fire_out_of_order_across_pods_or_beyond_its_span(events: list[Event]) -> None:
    engine = Engine([exec_then_read_then_connect()])

    assert engine.process_many(events) + engine.flush() == []


def test_steps_join_on_their_own_keys_and_refinement() -> None:
    """A file written then executed: both steps join on the container (no pod enrichment) and on the path."""
    detection = SequenceDetection(
        id="test.drop_exec", title="drop then exec", description="d", severity="high", max_span_s=600,
        steps=[
            Step(name="write", kinds=["file.write"], match=bool, key=container_key, on=lambda e: e.target.path),
            Step(name="exec", kinds=["process.exec"], match=bool, key=container_key, on=lambda e: e.actor.exe),
        ],
    )
    engine = Engine([detection])

    engine.process(runtime(0, "file.write", pod="", path="/tmp/x"))
    assert engine.process(runtime(5, "process.exec", pod="", exe="/tmp/y")) == []
    assert engine.process(runtime(6, "process.exec", pod="", exe="/tmp/x", container="other")) == []
    (alert,) = engine.process(runtime(7, "process.exec", pod="", exe="/tmp/x"))

    assert alert.context["joined_on"] == "/tmp/x"
    assert alert.context["join_key"] == "c/c0ffee"


def test_in_order_steps_cost_no_state_unless_they_extend_a_started_sequence() -> None:
    store = DictStore()
    engine = Engine([drop_then_exec()], store=store)

    engine.process_many([runtime(0, "process.exec", exe="/tmp/x"), runtime(1, "process.exec", exe="/bin/ls")])
    assert len(store) == 0
    engine.process_many([runtime(2, "file.write", path="/tmp/x")])
    assert engine.process_many([runtime(3, "process.exec", exe="/tmp/x")]) != []


def test_a_first_step_repeated_within_a_second_costs_no_state_write_and_still_starts_the_sequence() -> None:
    store = CountingStore()
    engine = Engine([drop_then_exec()], store=store)

    for tenth in range(10):  # a file written in a loop
        engine.process_many([runtime(tenth / 10, "file.write", path="/tmp/x")])
    assert store.writes == 1
    engine.process_many([runtime(1.5, "file.write", path="/tmp/x")])
    assert store.writes == 2, "a second later the write is kept again"
    (alert,) = engine.process_many([runtime(3, "process.exec", exe="/tmp/x")])
    assert [step["time_ns"] for step in alert.context["steps"]] == [T0, T0 + 3 * S]


def test_an_absence_fires_when_the_watermark_passes_the_span_and_not_when_the_step_came() -> None:
    detection = SequenceDetection(
        id="test.unseen_exec", title="exec the sensor did not see", description="d", severity="low",
        max_span_s=60,
        steps=[
            Step(name="exec", kinds=["k8s.api"], match=lambda e: e.target.subresource == "exec"),
            Step(name="process", kinds=["process.exec"], sources=["tetragon"], match=lambda e: True, absent=True),
        ],
    )
    engine = Engine([detection], tuning=Tuning(allowed_lateness_s=10))

    assert engine.process(api(0, pod="seen")) == []
    assert engine.process(runtime(2, "process.exec", pod="seen")) == []
    assert engine.process(api(1, pod="unseen")) == []
    assert engine.advance() == []
    engine.process(runtime(65, "process.exit", pod="elsewhere"))  # kinds the detection ignores move nothing
    engine.process(runtime(70, "process.exec", pod="elsewhere"))
    assert engine.advance() == [], "the watermark (70 s - 10 s lateness) has not passed 1 s + 60 s"
    engine.process(runtime(72, "process.exec", pod="elsewhere"))

    (alert,) = engine.advance()

    assert alert.pod == "unseen"
    assert alert.context["absent"] == {"step": "process", "until_ns": T0 + 61 * S}
    assert engine.advance() == []


def test_late_events_are_counted_and_kept_out_of_sequences_but_single_event_detections_still_see_them() -> None:
    engine = Engine([exec_then_read_then_connect()], tuning=Tuning(allowed_lateness_s=30))
    late_before = LATE.labels("k8s-audit")._value.get()

    engine.process(runtime(100, "file.open", path="/etc/shadow"))
    engine.process(runtime(110, "net.connect", address="203.0.113.9"))
    assert engine.process(api(50)) == [], "the exec is 60 s behind the newest event: later than 30 s allowed"

    assert LATE.labels("k8s-audit")._value.get() == late_before + 1
    assert engine.watermark_ns == T0 + 80 * S


def test_tumbling_windows_count_per_group_and_fire_once_per_window() -> None:
    engine = Engine([forbidden_burst()])

    alerts = engine.process_many([api(s, code=403, subresource="") for s in (0, 10, 20, 30)])
    other_user = engine.process_many([api(s, code=403, subresource="", user="bob") for s in (1, 2)])
    next_window = engine.process_many([api(s, code=403, subresource="") for s in (58, 61, 62, 63)])

    assert [a.title for a in alerts] == ["alice: 3 forbidden"]
    assert alerts[0].context["window"] == "tumbling" and alerts[0].context["group"] == "c/~alice"
    assert other_user == []
    assert next_window == [], "the next window's burst is a hit of the alert still open for alice"
    (update,) = engine.advance()
    assert (update.id, update.count) == (alerts[0].id, 2), "58 s is in the first window, 61-63 s in the next"


def test_sliding_windows_catch_a_burst_across_a_tumbling_boundary() -> None:
    burst = [api(s, code=403, subresource="") for s in (55, 58, 62)]

    assert Engine([forbidden_burst()]).process_many(burst) == []
    (alert,) = Engine([forbidden_burst(window="sliding")]).process_many(burst)
    assert alert.context["count"] == 3


def test_distinct_counts_count_values_not_events() -> None:
    engine = Engine([forbidden_burst(distinct=lambda e: e.target.resource, window="sliding")])

    repeated = engine.process_many([api(s, code=403, subresource="", resource="secrets") for s in (1, 2, 3, 4)])
    (alert,) = engine.process_many([api(5, code=403, resource="nodes"), api(6, code=403, resource="roles")])

    assert repeated == []
    assert sorted(alert.context["distinct_values"]) == ["nodes", "roles", "secrets"]


def test_state_expires_at_the_watermark_and_is_bounded_by_max_keys() -> None:
    store = DictStore()
    engine = Engine([exec_then_read_then_connect()], store=store, tuning=Tuning(allowed_lateness_s=0,
                                                                                  max_state_keys=2))
    evicted_before = EVICTED._value.get()

    engine.process_many([api(0, pod="a"), api(1, pod="b"), api(2, pod="c")])
    assert sorted(store.keys()) == ["c/default/b", "c/default/c"]
    assert EVICTED._value.get() == evicted_before + 1

    engine.process(api(400, pod="d"))
    engine.advance()
    assert list(store.keys()) == ["c/default/d"], "b and c ended their 300 s span before the 400 s watermark"


def test_a_detection_whose_state_handling_raises_loses_only_its_own_state() -> None:
    def explode(event: Event) -> bool:
        raise RuntimeError("bug")

    broken = SequenceDetection(
        id="test.broken", title="t", description="d", severity="low", max_span_s=60,
        steps=[Step(name="a", kinds=["k8s.api"], match=explode), Step(name="b", kinds=["k8s.api"], match=explode)],
    )
    engine = Engine([broken, exec_then_read_then_connect()])

    engine.process(api(0))
    engine.process(runtime(1, "file.open", path="/etc/shadow"))
    assert len(engine.process(runtime(2, "net.connect", address="203.0.113.9"))) == 1


def test_alerts_over_a_span_with_losses_of_a_source_they_depend_on_say_so() -> None:
    engine = Engine([exec_then_read_then_connect()])

    engine.process(health(5, dropped=12, since=1))
    engine.process(health(6, dropped=7, since=2, node="node-2"))  # another node's losses do not matter here
    engine.process(health(400, dropped=3, since=390))  # after the alert's span
    engine.process(api(0))
    engine.process(runtime(10, "file.open", path="/etc/shadow"))
    (alert,) = engine.process(runtime(20, "net.connect", address="203.0.113.9"))

    assert alert.context["coverage_degraded"] == {"tetragon": 12}


def test_a_repeat_of_an_open_alert_during_losses_marks_the_update_degraded() -> None:
    shell = EventDetection(id="test.shell", title="shell", description="d", severity="high",
                           kinds=["process.exec"], match=lambda e: e.actor.exe == "/bin/sh", dedup="{pod}")
    engine = Engine([shell])

    (first,) = engine.process(runtime(1, "process.exec"))
    engine.process(health(30, dropped=5, since=20))
    assert engine.process(runtime(25, "process.exec")) == []
    (update,) = engine.advance()

    assert "coverage_degraded" not in first.context
    assert (update.id, update.count, update.context["coverage_degraded"]) == (first.id, 2, {"tetragon": 5})


def test_tuning_disables_overrides_and_excepts_from_configuration() -> None:
    tuning = Tuning.parse({
        "engine": {"allowed_lateness_s": 5},
        "detections": {
            "test.forbidden": {"threshold": 2, "severity": "high", "exceptions": [{"user": ["ci-*", "robot"]}]},
            "test.exec_read_connect": {"enabled": False},
        },
    })
    engine = Engine([forbidden_burst(), exec_then_read_then_connect()], tuning=tuning)

    assert [d.id for d in engine.detections] == ["test.forbidden"]
    assert engine.process_many([api(s, code=403, subresource="", user="ci-runner") for s in (1, 2, 3)]) == []
    (alert,) = engine.process_many([api(s, code=403, subresource="") for s in (1, 2)])
    assert alert.severity == "high" and alert.context["threshold"] == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"detections": {"x.y": {"severity": 3, "colour": "red"}}}, "unknown settings ['colour']"),
        ({"detections": {"x.y": {"exceptions": [{"shoe_size": "9"}]}}}, "cannot match 'shoe_size'"),
        ({"engine": {"max_state_keys": "many"}}, "[engine]"),
        ({"detection": {}}, "unknown sections"),
    ],
)
def test_a_bad_tuning_file_is_refused_with_what_is_wrong(data: dict, message: str) -> None:
    with pytest.raises(TuningError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Tuning.parse(data)


def test_an_override_the_detection_refuses_disables_it_with_the_reason() -> None:
    engine = Engine([forbidden_burst()], tuning=Tuning.parse({"detections": {"test.forbidden": {"threshold": 0}}}))

    assert engine.detections == []
    assert "threshold must be at least 1" in engine.errors[0].error


def test_sequences_are_validated_when_they_load() -> None:
    step = Step(name="a", kinds=["k8s.api"], match=lambda e: True)
    with pytest.raises(DetectionError, match="at least two steps"):
        SequenceDetection(id="t.one", title="t", description="d", severity="low", max_span_s=1, steps=[step])
    with pytest.raises(DetectionError, match="only the last step"):
        SequenceDetection(id="t.abs", title="t", description="d", severity="low", max_span_s=1,
                          steps=[Step(name="a", kinds=["k8s.api"], match=lambda e: True, absent=True), step])


def test_pod_key_is_the_correlation_key_of_pod_events() -> None:
    event = runtime(0, "file.open")

    assert pod_key(event) == event.correlation_key == "c/default/web"
    assert pod_key(runtime(0, "file.open", pod="")) == ""


MISORDERED = '''
from vigil.sources.tetragon.fixtures import tetragon_record
from vigil.sources.audit.fixtures import audit_record
from vigil.detections.sdk import Scenario, ScenarioEvent, SequenceDetection, Step

EXEC = audit_record("create", "pods", name="web-7f9c", subresource="exec", code=101)
SHELL = tetragon_record(binary="/bin/sh")

DETECTION = SequenceDetection(
    id="test.misordered", title="Shell, then exec", description="Its steps are the wrong way round.",
    severity="low", max_span_s=60,
    steps=[
        Step(name="shell", kinds=["process.exec"], match=lambda e: e.actor.exe == "/bin/sh"),
        Step(name="exec", kinds=["k8s.api"], match=lambda e: e.target.subresource == "exec"),
    ],
    examples=[
        Scenario(name="exec then shell", fires=True, events=[
            ScenarioEvent(source="k8s-audit", record=EXEC, at_s=0),
            ScenarioEvent(source="tetragon", record=SHELL, at_s=5),
        ]),
        Scenario(name="shell then exec", fires=False, events=[
            ScenarioEvent(source="tetragon", record=SHELL, at_s=0),
            ScenarioEvent(source="k8s-audit", record=EXEC, at_s=5),
        ]),
    ],
)
'''


def test_the_harness_runs_scenarios_through_the_real_sources_and_reports_each_wrong_one(tmp_path: Path) -> None:
    (tmp_path / "misordered.py").write_text(MISORDERED)
    (detection,) = load_detections([tmp_path])[0].values()

    results = {r.example: r for r in check_examples(detection)}

    assert results["exec then shell"].reason == "expected an alert, got none"
    assert results["shell then exec"].reason.startswith("expected no alert, got: Shell, then exec")


def test_replay_applies_the_detections_config_file(tmp_path: Path) -> None:
    attack = Path(__file__).resolve().parents[1] / "data" / "k8s-audit-attack.jsonl"
    config = tmp_path / "detections.toml"
    config.write_text('[detections."k8s.exec_into_pod"]\nexceptions = [{ user = "*@corp.example" }]\n'
                      '[detections."k8s.privileged_container"]\nseverity = "low"\n')

    def replay(*options: str) -> dict[str, dict]:
        result = subprocess.run([str(VIGIL), "replay", str(attack), *options], capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return {alert["detection"]: alert for alert in map(orjson.loads, result.stdout.splitlines())}

    default, tuned = replay(), replay("--detections-config", str(config))

    assert default["k8s.exec_into_pod"]["user"].endswith("@corp.example")
    assert "k8s.exec_into_pod" not in tuned
    assert (default["k8s.privileged_container"]["severity"], tuned["k8s.privileged_container"]["severity"]) == (
        "critical", "low")


def test_the_stream_processor_writes_state_once_per_message_and_completes_sequences_across_messages() -> None:
    store = CountingStore()
    library = Path(__file__).resolve().parents[2] / "detections" / "library" / "seq_exec_then_tooling.py"
    processor = StreamProcessor(Settings(cluster="c"), Engine.load([library], store=store))
    exec_record = audit_record("create", "pods", name="web-7f9c", subresource="exec", code=101)
    tools = [tetragon_record(binary=binary, time="2025-03-04T06:22:30.000000Z") for binary in ("/bin/ls", "/bin/ps")]

    first = processor.process("k8s-audit", orjson.dumps([exec_record]), T0)
    quiet = processor.process("tetragon", orjson.dumps(tools), T0)
    wget = tetragon_record(binary="/usr/bin/wget", time="2025-03-04T06:22:31.000000Z")
    second = processor.process("tetragon", orjson.dumps([wget]), T0)

    assert first.alerts == [] and quiet.alerts == []
    assert [a.detection for a in second.alerts] == ["seq.exec_then_tooling"]
    assert store.writes == 1, "the exec wrote its key; ls and ps wrote nothing"
    assert len(store) == 0, "the completed sequence cleared its key"


def test_state_restored_into_the_store_behind_the_engines_back_is_indexed_and_expires() -> None:
    """What a Faust worker sees after a restart: its table restored from the changelog, the engine's index empty."""
    store = DictStore()
    first = Engine([exec_then_read_then_connect()], store=store)
    first.process_many([api(0, pod="a"), api(100, pod="b")])
    first.commit()

    restarted = Engine([exec_then_read_then_connect()], store=store, tuning=Tuning(allowed_lateness_s=0))
    restarted.process_many([runtime(350, "process.exit", pod="a")])  # a kind no stateful detection observes
    assert restarted.advance(T0 + 350 * S) == []
    assert list(store.keys()) == ["c/default/b"], "a's span ended at 300 s"
    restarted.process_many([runtime(360, "file.open", pod="b", path="/etc/shadow")])
    (alert,) = restarted.process_many([runtime(370, "net.connect", pod="b", address="45.33.32.156")])
    assert alert.pod == "b"


def test_state_of_a_detection_that_is_no_longer_loaded_is_dropped() -> None:
    store = DictStore()
    Engine([exec_then_read_then_connect()], store=store).process_many([api(0)])

    Engine([forbidden_burst()], store=store).advance(T0)

    assert len(store) == 0
