"""Declared prefilters: the engine gives an event only to the detections whose declaration admits it, with the
same alerts in the same order as without them, and the harness fails a declaration that hides a match."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import orjson
import pytest

from vigil.benchmarks.detect import event_mix
from vigil.detections.engine import LIBRARY, MAX_FIELD_VALUES, Engine, load_detections
from vigil.detections.harness import check_examples
from vigil.detections.sdk import (
    PATHS,
    PREFILTER_FIELDS,
    Detection,
    DetectionError,
    EventDetection,
    Example,
    SequenceDetection,
    Step,
)
from vigil.event import Event, File, Network, Outcome, Target
from vigil.sources.audit.fixtures import audit_record
from vigil.sources.source import get_source
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

LOADED, _ = load_detections([LIBRARY])
BUNDLED = sorted(LOADED.values(), key=lambda d: d.id)
UNDECLARED: dict[str, Any] = dict.fromkeys((*PREFILTER_FIELDS, PATHS), ())



def events_of(source_name: str, record: dict[str, Any]) -> list[Event]:
    """The events the pipeline makes of one raw record (split, normalize)."""
    source = get_source(source_name)
    return [source.normalize(split, "example-cluster", "example-node")
            for split in source.split(orjson.dumps(record), 1 << 24)]


def without_prefilter(detection: Detection) -> Detection:
    if isinstance(detection, SequenceDetection):
        return replace(detection, steps=tuple(replace(step, **UNDECLARED) for step in detection.steps))
    return replace(detection, **UNDECLARED)


@pytest.mark.parametrize("detection", BUNDLED, ids=lambda d: d.id)
def test_every_positive_example_passes_its_detections_prefilter(detection: Detection) -> None:
    positives = [e for e in detection.examples if isinstance(e, Example) and e.fires]
    for example in positives:
        for event in events_of(example.source, example.record):
            assert any(p.admits(event) for p in detection.prefilters(event.kind)), (
                f"{detection.id}: {example.name}: the prefilter skips {event.kind} {event.action} "
                f"{event.target.resource}/{event.target.subresource} {event.actor.exe}"
            )


def test_the_library_declares_prefilters_for_its_api_detections() -> None:
    api = [d for d in BUNDLED if d.kinds == {"k8s.api"} and not isinstance(d, SequenceDetection)]
    declared = [d.id for d in api if d.prefilters("k8s.api")[0].fields]

    assert len(declared) >= 28
    assert "k8s.run_as_root" in declared and "k8s.secret_access" in declared


def test_the_library_raises_the_same_alerts_in_the_same_order_with_and_without_prefilters() -> None:
    events = [e for source, record in event_mix(6_000) for e in events_of(source, record)]
    unfiltered = Engine([without_prefilter(d) for d in BUNDLED])
    filtered = Engine(BUNDLED)

    def summary(engine: Engine) -> list[tuple[str, str, int, list[str]]]:
        alerts = engine.process_many(events) + engine.flush()
        return [(a.detection, a.dedup_key, a.count, a.event_ids) for a in alerts]

    expected = summary(unfiltered)
    assert expected  # the mix raises alerts: the comparison means something
    assert summary(filtered) == expected


def spy_detection(name: str, seen: list[str], **prefilter: Any) -> EventDetection:
    def match(event: Event) -> bool:
        seen.append(name)
        return True

    return EventDetection(id=f"test.{name}", title=name, description="test", severity="low", kinds=["k8s.api"],
                          match=match, **prefilter)


def api_event(action: str, resource: str, subresource: str = "", number: int = 0) -> Event:
    return Event(id=f"e{number}", time_ns=1_700_000_000 * 10**9 + number, source="k8s-audit", kind="k8s.api",
                 action=action, target=Target(resource=resource, subresource=subresource))


def test_the_engine_asks_only_the_detections_whose_prefilter_admits_the_event_in_load_order() -> None:
    seen: list[str] = []
    engine = Engine([
        spy_detection("any", seen),
        spy_detection("pod_writes", seen, resources=["pods"], actions=["create", "patch"], subresources=[""]),
        spy_detection("exec", seen, resources=["pods"], subresources=["exec"]),
    ])

    alerts = engine.process(api_event("create", "pods"))
    assert seen == ["any", "pod_writes"]
    assert [a.detection for a in alerts] == ["test.any", "test.pod_writes"]

    seen.clear()
    engine.process(api_event("get", "pods", "exec", 1))
    engine.process(api_event("get", "secrets", number=2))
    assert seen == ["any", "exec", "any"]


def test_values_no_declaration_names_share_one_signature() -> None:
    engine = Engine([spy_detection("pods", [], resources=["pods"])])

    for number in range(MAX_FIELD_VALUES + 10):
        engine.process(api_event("get", f"widgets{number}.example.com", number=number))
    engine.process(api_event("get", "pods", number=1))

    assert engine.prefilter_signatures == {"k8s.api": 2}


def test_path_patterns_admit_their_paths_only_and_the_engine_asks_by_them() -> None:
    seen: list[str] = []

    def file_spy(name: str, **prefilter: Any) -> EventDetection:
        return replace(spy_detection(name, seen, **prefilter), kinds=frozenset({"file.open"}))

    engine = Engine([file_spy("exact", paths=["/etc/shadow"]), file_spy("prefix", paths=["/etc/pam.d/*"]),
                     file_spy("suffix", paths=["*/.bash_history"]), file_spy("infix", paths=["*/.ssh/*"]),
                     file_spy("any")])
    opened = {"/etc/shadow": ["exact"], "/etc/pam.d/sshd": ["prefix"], "/root/.bash_history": ["suffix"],
              "/home/a/.ssh/id_rsa": ["infix"], "/etc/shadow-": [], "/etc/pam.d": [], "/srv/.ssh": []}
    for number, (path, expected) in enumerate(opened.items()):
        seen.clear()
        # target.path, else file.path: the path detections read
        where = {"target": Target(path=path)} if number % 2 else {"file": File(path=path)}
        engine.process(Event(id=f"e{number}", time_ns=number, source="ebpf", kind="file.open", **where))
        assert seen == [*expected, "any"], path


@pytest.mark.parametrize("patterns", [["*"], ["/etc/*/x"], ["**"], "/etc/*"])
def test_a_path_pattern_has_a_star_only_at_its_ends(patterns: Any) -> None:
    with pytest.raises(DetectionError):
        EventDetection(id="test.paths", title="t", description="t", severity="low", kinds=["file.open"],
                       match=lambda event: True, paths=patterns)


NARROW = dict(
    id="test.narrow", title="Exec into a pod", description="Declares attach only, matches exec.", severity="low",
    kinds=["k8s.api"], match=lambda event: event.target.subresource == "exec",
    examples=[
        Example(name="exec", source="k8s-audit", fires=True,
                record=audit_record("create", "pods", name="p", subresource="exec")),
        Example(name="read", source="k8s-audit", fires=False, record=audit_record("get", "pods", name="p")),
    ],
)


def test_the_harness_fails_a_prefilter_that_hides_a_match() -> None:
    detection = EventDetection(**NARROW, resources=["pods"], subresources=["attach"])

    results = {r.example: r for r in check_examples(detection)}

    assert not results["exec"].passed
    assert "prefilter (resources=['pods'], subresources=['attach']) skips an event its logic matches" in (
        results["exec"].reason
    )
    assert "subresources 'exec'" in results["exec"].reason
    assert results["read"].passed


def test_the_harness_passes_a_prefilter_that_admits_every_match() -> None:
    detection = EventDetection(**NARROW, resources=["pods"], subresources=["exec", "attach"])

    assert all(r.passed for r in check_examples(detection))


def test_a_declaration_is_a_list_of_strings_and_a_sequence_declares_on_its_steps() -> None:
    with pytest.raises(DetectionError, match="resources must be a list of strings"):
        EventDetection(**NARROW, resources="pods")
    with pytest.raises(DetectionError, match=r"exe_names declares kind 'process\.exec', which is not one of its kinds"):
        EventDetection(**NARROW, exe_names={"process.exec": ["sh"]})
    steps = [Step(name=name, kinds=["k8s.api"], match=bool) for name in ("a", "b")]
    with pytest.raises(DetectionError, match="declares its prefilter on its steps"):
        SequenceDetection(id="test.seq", title="t", description="d", severity="low", steps=steps, max_span_s=60,
                          actions=["create"])
    with pytest.raises(DetectionError, match="step a: exe_names must be a list of strings"):
        Step(name="a", kinds=["process.exec"], match=bool, exe_names="sh")


def test_the_engine_asks_by_the_port_a_connection_is_made_to_and_by_the_status_code() -> None:
    seen: list[str] = []

    def spy(name: str, kind: str, **prefilter: Any) -> EventDetection:
        return replace(spy_detection(name, seen, **prefilter), kinds=frozenset({kind}))

    engine = Engine([spy("ssh", "net.connect", remote_ports=[22]),
                     spy("pools", "net.connect", remote_ports=[3333, 4444]),
                     spy("refused", "k8s.api", codes=[403]), spy("any", "net.connect")])
    expected = {22: ["ssh", "any"], 4444: ["pools", "any"], 443: ["any"], 0: ["any"]}
    for number, (port, reached) in enumerate(expected.items()):
        seen.clear()
        engine.process(Event(id=f"c{number}", time_ns=number, source="ebpf", kind="net.connect",
                             network=Network(remote_address="10.0.0.9", remote_port=port)))
        assert seen == reached, port
    for number, (code, reached) in enumerate({403: ["refused"], 200: [], 0: []}.items()):
        seen.clear()
        engine.process(Event(id=f"a{number}", time_ns=number, source="k8s-audit", kind="k8s.api", action="get",
                             outcome=Outcome("denied", code)))
        assert seen == reached, code


@pytest.mark.parametrize(("field", "values", "allowed"), [
    ("remote_ports", ["22"], "port numbers (ints from 1 to 65535)"),
    ("remote_ports", 22, "port numbers (ints from 1 to 65535)"),
    ("remote_ports", [0], "port numbers (ints from 1 to 65535)"),
    ("remote_ports", [65_536], "port numbers (ints from 1 to 65535)"),
    ("remote_ports", [True], "port numbers (ints from 1 to 65535)"),
    ("remote_ports", {"net.connect": [22.0]}, "port numbers (ints from 1 to 65535)"),
    ("codes", ["403"], "status codes (non-negative ints, e.g. 403)"),
    ("remote_classes", [22], "strings"),
])
def test_a_number_field_is_declared_as_ints_and_the_error_says_what_is_allowed(
    field: str, values: Any, allowed: str
) -> None:
    with pytest.raises(DetectionError, match=rf"test.ports: {field} must be a list of {re.escape(allowed)}"):
        EventDetection(id="test.ports", title="t", description="t", severity="low", kinds=["net.connect"],
                       match=lambda event: True, **{field: values})


def connect_record(port: int) -> dict[str, Any]:
    sock = {"family": "AF_INET", "saddr": "10.244.1.7", "daddr": "203.0.113.9", "sport": 40_122, "dport": port}
    return tetragon_record("process_kprobe", binary="/usr/bin/ssh", body=kprobe("tcp_connect", {"sock_arg": sock}))


def test_the_harness_fails_a_port_declaration_that_hides_a_match() -> None:
    ssh = dict(
        id="test.ssh_ports", title="SSH", description="Matches 22 and 2222.", severity="low", kinds=["net.connect"],
        match=lambda event: event.network.remote_port in (22, 2222),
        examples=[Example(name="2222", source="tetragon", fires=True, record=connect_record(2222)),
                  Example(name="443", source="tetragon", fires=False, record=connect_record(443))],
    )

    results = {r.example: r for r in check_examples(EventDetection(**ssh, remote_ports=[22]))}

    assert not results["2222"].passed
    assert "prefilter (remote_ports=[22]) skips an event its logic matches" in results["2222"].reason
    assert "remote_ports 2222" in results["2222"].reason
    assert results["443"].passed
    assert all(r.passed for r in check_examples(EventDetection(**ssh, remote_ports=[22, 2222])))
