"""vigil's SIEM renderings checked by the standards' own definitions: OCSF against the official schema sources,
ECS against Elastic's generated field list, CEF by a reader written from the CEF specification and proven on
the specification's examples.

Every alert that a positive example of the detection library raises is rendered (as first raised, and as a
later update of an alert whose sources lost records), so a detection whose context or MITRE mapping the
renderings do not handle fails here, not in a SIEM's ingest pipeline. Each validator is also shown to catch
what it checks for, so a validator that accepts everything cannot make these tests pass.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.standards import SCHEMAS_DIR, cef
from tests.standards.ecs import EcsSchema
from tests.standards.examples import ExampleAlert, positive_example_alerts
from tests.standards.ocsf import OcsfSchema
from vigil.alert import Alert
from vigil.detections.engine import LIBRARY, load_detections
from vigil.siem import formats

pytestmark = pytest.mark.skipif(not SCHEMAS_DIR.is_dir(),
                                reason=f"the official schemas are not at {SCHEMAS_DIR} (set VIGIL_SCHEMAS_DIR)")

EXAMPLES = positive_example_alerts()


@pytest.fixture(scope="module")
def ocsf() -> OcsfSchema:
    return OcsfSchema(SCHEMAS_DIR / "ocsf")


@pytest.fixture(scope="module")
def ecs() -> EcsSchema:
    return EcsSchema(SCHEMAS_DIR / "ecs")


def _versions(alert: Alert) -> list[Alert]:
    """The alert as first raised, and a later version of it raised while a source was dropping records."""
    degraded = {**alert.context, "coverage_degraded": {"ebpf": 3, "k8s-audit": 1}}
    return [alert, replace(alert, count=4, last_seen_ns=alert.first_seen_ns + 5_000_000_000, context=degraded)]


def test_every_detection_has_a_positive_example_alert():
    """The checks below cover the whole library: each of its detections contributed alerts."""
    detections, _ = load_detections([LIBRARY])
    assert {e.detection for e in EXAMPLES} == {d.id for d in detections.values()}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.label)
def test_ocsf_rendering_is_a_valid_detection_finding(ocsf, example: ExampleAlert):
    for alert in _versions(example.alert):
        doc = formats.to_ocsf(alert)
        assert ocsf.validate(doc, "detection_finding") == []
        assert doc["class_uid"] == 2004


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.label)
def test_ecs_rendering_uses_only_ecs_fields_and_values(ecs, example: ExampleAlert):
    for alert in _versions(example.alert):
        assert ecs.validate(formats.to_ecs(alert)) == []


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.label)
def test_cef_rendering_reads_back_per_the_specification(example: ExampleAlert):
    for alert in _versions(example.alert):
        record = cef.parse(formats.to_cef(alert))
        assert cef.dictionary_problems(record) == []
        assert record.header[3:5] == [alert.detection, alert.title]
        assert record.severity == str(formats.CEF_SEVERITY[alert.severity])
        assert (record.extension["externalId"], record.extension["msg"]) == (alert.id, alert.description)
        assert record.extension["cn1"] == str(alert.count)


@pytest.mark.parametrize("severity", formats.CEF_SEVERITY)
def test_cef_severities_are_in_the_specifications_range(severity):
    assert 0 <= formats.CEF_SEVERITY[severity] <= 10


@pytest.mark.parametrize("hostile", ["pipe | and backslash \\ in one", "trailing backslash\\", "a=b c=d",
                                     "lines\nand\r\nbreaks \\n", "cs1=forged suser=root", "|\\=|\\|="])
def test_cef_hostile_strings_read_back_unchanged(hostile):
    alert = Alert(detection=hostile, title=hostile, severity="high", time_ns=1, description=hostile, user=hostile,
                  namespace=hostile, pod=hostile)
    record = cef.parse(formats.to_cef(alert))
    one_line = hostile.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    assert record.header[3] == record.header[4] == one_line  # a header spans one line
    assert record.extension["msg"] == record.extension["suser"] == record.extension["cs2"] == hostile.replace(
        "\r\n", "\n")
    assert record.extension["cs1Label"] == "namespace"  # nothing was injected


# --- the validators catch what they check for ------------------------------------------------------------

@pytest.mark.parametrize("line,name,extension", cef.SPEC_EXAMPLES)
def test_cef_reader_reads_the_specifications_examples(line, name, extension):
    record = cef.parse(line)
    assert (record.version, record.header[4], record.extension) == (0, name, extension)


@pytest.mark.parametrize("line", [
    "CEF:0|v|p|1|id|name|11|msg=x",  # severity out of range
    "CEF:0|v|p|1|id|na|me|5|msg=x",  # an unescaped pipe shifts the header
    "CEF:0|v|p|1|id|name|5|msg=a=b",  # unescaped = in a value
    "CEF:0|v|p|1|id|a \\= b|5|msg=x",  # \= is not a header escape
    "CEF:0|v|p|1|id|name|5|msg=x\nrt=1",  # two lines
])
def test_cef_reader_refuses_what_the_specification_forbids(line):
    with pytest.raises(cef.CefError):
        cef.parse(line)


def test_cef_dictionary_check_catches_unknown_keys_and_bad_values():
    record = cef.parse("CEF:0|v|p|1|id|name|5|vigilDetection=x rt=yesterday cs1=a externalId=" + "x" * 41)
    assert len(cef.dictionary_problems(record)) == 4


def test_ocsf_validator_catches_each_kind_of_departure(ocsf):
    good = formats.to_ocsf(EXAMPLES[0].alert)
    bad = {**good, "class_uid": 2005, "activity_id": 7, "severity": "Low", "time": "now", "bogus": 1,
           "metadata": {**good["metadata"], "product": {}}, "resources": [{"name": "x", "labels": "a"}],
           "finding_info": {**good["finding_info"], "attacks": [{"version": "x", "tactics": [{"uid": "TA1"}]}]}}
    del bad["type_uid"]
    problems = "\n".join(ocsf.validate(bad, "detection_finding"))
    for expected in ("class_uid: 2005", "activity_id: 7 is not one of", "severity: 'Low' is not the caption",
                     "time: 'now' is not a long_t", "bogus: not an attribute", "type_uid: required",
                     "metadata.product: product needs at least one of", "resources[0].labels: string_t array",
                     "attacks[0].tactics: deprecated"):
        assert expected in problems


def test_ocsf_validator_applies_profiles_only_when_declared(ocsf):
    doc = {**formats.to_ocsf(EXAMPLES[0].alert), "disposition_id": 1}  # a Security Control attribute
    assert ocsf.validate(doc, "detection_finding") == [
        "disposition_id: belongs to profile 'security_control', not in metadata.profiles"]
    doc["metadata"] = {**doc["metadata"], "profiles": ["security_control"]}
    assert ocsf.validate(doc, "detection_finding") == []


def test_ecs_validator_catches_each_kind_of_departure(ecs):
    doc = {**formats.to_ecs(EXAMPLES[0].alert), "vigil": {"count": 1}, "labels": {"count": 1},
           "event": {"kind": "finding", "category": ["process"], "type": ["info", "allowed"], "outcome": ["success"],
                     "severity": "high", "created": "yesterday"}}
    del doc["@timestamp"]
    problems = ecs.validate(doc)
    for expected in ("@timestamp: required by ECS, missing", "vigil.count: not an ECS field",
                     "labels.count: 1 does not fit ECS type keyword", "event.kind: 'finding' is not one of",
                     "event.outcome: a list", "event.severity: 'high' does not fit ECS type long",
                     "event.created: 'yesterday' does not fit ECS type date",
                     "event.type: 'allowed' is not expected with event.category ['process']"):
        assert any(p.startswith(expected) for p in problems), expected
