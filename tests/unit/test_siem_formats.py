"""OCSF, ECS and CEF renderings of one hand-made alert: what each field says (lifecycle, times, MITRE, escaping).

Conformance to the standards themselves is checked by their own definitions in test_siem_standards.py (the
official OCSF schema, Elastic's ecs_flat.yml, a reader written from the CEF specification). The required-field
lists below were read from the OCSF 1.3.0 schema (Detection Finding class 2004 and the
objects it uses: base event, finding, finding_info, metadata, product, analytic, attack, technique, tactic,
resource_details, evidences, user) and from ECS 8.11 (``@timestamp`` and ``ecs.version`` are ECS's only
required fields; the allowed values of ``event.kind``, ``event.category`` and ``event.type`` and the
expected category/type pairs). CEF escaping follows the ArcSight CEF specification (rev. 25).
"""

from __future__ import annotations

import re
from dataclasses import replace

import orjson
import pytest

from vigil.alert import Alert
from vigil.siem import formats, mitre

# --- OCSF 1.3.0 ---------------------------------------------------------------------------------------
OCSF_DETECTION_FINDING_REQUIRED = {"activity_id", "category_uid", "class_uid", "finding_info", "metadata",
                                   "severity_id", "time", "type_uid"}
OCSF_METADATA_REQUIRED = {"product", "version"}
OCSF_FINDING_INFO_REQUIRED = {"uid", "title"}
OCSF_ANALYTIC_REQUIRED = {"type_id"}
#: "at least one of" constraints
OCSF_PRODUCT_ONE_OF = {"name", "uid"}
OCSF_ATTACK_ONE_OF = {"tactic", "technique", "sub_technique"}
OCSF_NAMED_ONE_OF = {"name", "uid"}  # technique, sub_technique, tactic, resource_details
OCSF_EVIDENCES_ONE_OF = {"actor", "api", "connection_info", "data", "database", "databucket", "device",
                         "dst_endpoint", "email", "file", "process", "query", "resources", "src_endpoint", "url",
                         "user", "job", "script"}
OCSF_USER_ONE_OF = {"account", "name", "uid"}
OCSF_SEVERITY_IDS = {0, 1, 2, 3, 4, 5, 6, 99}
OCSF_ANALYTIC_TYPE_IDS = {0, 1, 2, 3, 4, 99}

# --- ECS 8.11 -----------------------------------------------------------------------------------------
ECS_REQUIRED = {"@timestamp", "ecs.version"}
ECS_EVENT_KIND = {"alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"}
ECS_EXPECTED_TYPES = {"intrusion_detection": {"allowed", "denied", "info"}}
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def alert() -> Alert:
    return Alert(detection="k8s.exec_into_pod", title="Exec into pod payments/api-7d9f", severity="high",
                 time_ns=1_764_000_000_123_456_789, mitre=["T1609", "T1552.007"], description="kubectl exec",
                 tags=["k8s", "execution"], cluster="prod-eu", namespace="payments", pod="api-7d9f", user="alice",
                 dedup_key="payments/api-7d9f", evidence=["audit-1"], event_ids=["ev-1"],
                 context={"command": ["sh"]})


@pytest.fixture
def update(alert: Alert) -> Alert:
    """The same alert after two more hits were folded into it by the engine."""
    return replace(alert, count=3, last_seen_ns=alert.first_seen_ns + 90_000_000_000,
                   evidence=["audit-1", "audit-2", "audit-3"])


def _flat(doc: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in doc.items():
        if isinstance(value, dict) and key not in ("context",):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _assert_ocsf_valid(doc: dict) -> None:
    assert doc.keys() >= OCSF_DETECTION_FINDING_REQUIRED
    assert (doc["class_uid"], doc["category_uid"]) == (2004, 2)
    assert doc["type_uid"] == doc["class_uid"] * 100 + doc["activity_id"]
    assert doc["severity_id"] in OCSF_SEVERITY_IDS
    assert isinstance(doc["time"], int)
    assert doc["metadata"].keys() >= OCSF_METADATA_REQUIRED
    assert re.fullmatch(r"1\.\d+\.\d+", doc["metadata"]["version"])
    assert OCSF_PRODUCT_ONE_OF & doc["metadata"]["product"].keys()
    info = doc["finding_info"]
    assert info.keys() >= OCSF_FINDING_INFO_REQUIRED
    assert info["analytic"].keys() >= OCSF_ANALYTIC_REQUIRED
    assert info["analytic"]["type_id"] in OCSF_ANALYTIC_TYPE_IDS
    for attack in info.get("attacks", []):
        assert OCSF_ATTACK_ONE_OF & attack.keys()
        for part in ("technique", "sub_technique", "tactic"):
            if part in attack:
                assert OCSF_NAMED_ONE_OF & attack[part].keys()
        for tactic in attack.get("tactics", []):
            assert OCSF_NAMED_ONE_OF & tactic.keys()
    for resource in doc.get("resources", []):
        assert OCSF_NAMED_ONE_OF & resource.keys()
    for evidence in doc.get("evidences", []):
        assert OCSF_EVIDENCES_ONE_OF & evidence.keys()
        if "actor" in evidence:
            assert OCSF_USER_ONE_OF & evidence["actor"]["user"].keys()
    orjson.dumps(doc)  # serializable as it stands


def test_ocsf_detection_finding_has_what_the_schema_requires(alert):
    doc = formats.to_ocsf(alert)
    _assert_ocsf_valid(doc)
    assert (doc["activity_id"], doc["activity_name"], doc["type_uid"]) == (1, "Create", 200401)
    assert (doc["severity_id"], doc["severity"]) == (4, "High")
    assert doc["time"] == doc["start_time"] == doc["end_time"] == 1_764_000_000_123  # milliseconds
    info = doc["finding_info"]
    assert (info["uid"], info["title"], info["desc"]) == (alert.id, alert.title, "kubectl exec")
    assert info["analytic"] == {"uid": "k8s.exec_into_pod", "name": "k8s.exec_into_pod", "type_id": 1, "type": "Rule"}
    assert info["attacks"][0]["technique"] == {"uid": "T1609", "name": "Container Administration Command"}
    assert info["attacks"][0]["tactic"] == {"uid": "TA0002", "name": "Execution"}
    assert info["attacks"][1]["sub_technique"] == {"uid": "T1552.007", "name": "Container API"}
    assert info["attacks"][1]["technique"] == {"uid": "T1552", "name": "Unsecured Credentials"}
    assert {(r["type"], r["name"]) for r in doc["resources"]} == {
        ("kubernetes.pod", "api-7d9f"), ("kubernetes.namespace", "payments"), ("kubernetes.cluster", "prod-eu")}
    assert doc["evidences"] == [{"uid": "audit-1", "data": {"original_id": "audit-1"},
                                 "actor": {"user": {"name": "alice"}}}]
    assert doc["unmapped"]["vigil"]["context"] == {"command": ["sh"]}


def test_ocsf_update_is_an_update_of_the_same_finding(alert, update):
    created, updated = formats.to_ocsf(alert), formats.to_ocsf(update)
    _assert_ocsf_valid(updated)
    assert (updated["activity_id"], updated["activity_name"], updated["type_uid"]) == (2, "Update", 200402)
    assert updated["finding_info"]["uid"] == created["finding_info"]["uid"]
    assert updated["metadata"]["uid"] != created["metadata"]["uid"]
    assert updated["count"] == 3
    assert updated["finding_info"]["first_seen_time"] == created["finding_info"]["first_seen_time"]
    assert updated["finding_info"]["last_seen_time"] == created["finding_info"]["last_seen_time"] + 90_000
    assert updated["time"] == updated["end_time"] == updated["finding_info"]["last_seen_time"]


@pytest.mark.parametrize("severity,severity_id", [("informational", 1), ("low", 2), ("medium", 3), ("high", 4),
                                                  ("critical", 5)])
def test_every_vigil_severity_maps_to_an_ocsf_severity(alert, severity, severity_id):
    assert formats.to_ocsf(replace(alert, severity=severity))["severity_id"] == severity_id


def test_a_minimal_alert_is_still_a_valid_finding():
    bare = Alert(detection="x.y", title="t", severity="low", time_ns=1, mitre=["T9999"])
    doc = formats.to_ocsf(bare)
    _assert_ocsf_valid(doc)
    assert doc["finding_info"]["attacks"] == [{"version": mitre.ATTACK_VERSION, "technique": {"uid": "T9999"}}]
    assert "evidences" not in doc and doc["resources"] == []


def test_ecs_document_has_the_required_fields_and_allowed_values(alert):
    doc = formats.to_ecs(alert)
    assert _flat(doc).keys() >= ECS_REQUIRED
    assert RFC3339_MS.match(doc["@timestamp"]) and doc["@timestamp"] == "2025-11-24T16:00:00.123Z"
    event = doc["event"]
    assert event["kind"] in ECS_EVENT_KIND and event["kind"] == "alert"
    for category in event["category"]:
        assert set(event["type"]) <= ECS_EXPECTED_TYPES[category]
    assert (event["id"], event["action"], event["severity"]) == (alert.id, "alert-created", 73)
    assert doc["rule"] == {"id": "k8s.exec_into_pod", "name": alert.title, "description": "kubectl exec",
                           "ruleset": "vigil"}
    assert doc["threat"]["technique"]["id"] == ["T1609", "T1552"]
    assert doc["threat"]["technique"]["subtechnique"]["id"] == ["T1552.007"]
    assert doc["threat"]["tactic"]["name"] == ["Execution", "Credential Access"]
    assert doc["orchestrator"] == {"type": "kubernetes", "cluster": {"name": "prod-eu"}, "namespace": "payments",
                                   "resource": {"type": "pod", "name": "api-7d9f"}}
    assert orjson.loads(doc["event"]["original"]) == orjson.loads(alert.to_json())  # the context travels whole
    assert doc["user"]["name"] == "alice"
    assert all(isinstance(v, str) for v in doc["labels"].values())  # ECS labels are keywords


def test_ecs_update_keeps_the_id_and_says_updated(alert, update):
    created, updated = formats.to_ecs(alert), formats.to_ecs(update)
    assert updated["event"]["id"] == created["event"]["id"]
    assert (updated["event"]["action"], updated["labels"]["count"]) == ("alert-updated", "3")
    assert updated["event"]["start"] == created["event"]["start"] != updated["event"]["end"]


# --- CEF ----------------------------------------------------------------------------------------------

def _split_unescaped(text: str, separator: str, limit: int) -> list[str]:
    parts, current, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            current += text[i:i + 2]
            i += 2
            continue
        if text[i] == separator and len(parts) < limit:
            parts.append(current)
            current = ""
        else:
            current += text[i]
        i += 1
    return [*parts, current]


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """An independent CEF reader: 7 header fields, then key=value pairs; undoes the spec's escapes."""
    assert "\n" not in line and "\r" not in line
    fields = _split_unescaped(line, "|", 7)
    header = [re.sub(r"\\([\\|])", r"\1", f) for f in fields[:7]]
    keys = list(re.finditer(r"(?:^| )([A-Za-z0-9]+)=", fields[7]))
    extension = {}
    for match, following in zip(keys, [*keys[1:], None], strict=True):
        raw = fields[7][match.end(): following.start() if following else None]
        assert not re.search(r"(?<!\\)(?:\\\\)*=", raw), f"unescaped = in {raw!r}"
        extension[match.group(1)] = re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), raw)
    return header, extension


def test_cef_line_has_header_and_lifecycle_fields(alert, update):
    header, ext = parse_cef(formats.to_cef(alert))
    assert header == ["CEF:0", "vigil", "vigil", "0.1.0", "k8s.exec_into_pod", alert.title, "8"]
    assert ext["rt"] == ext["start"] == ext["end"] == "1764000000123"
    assert (ext["suser"], ext["externalId"], ext["cn1Label"], ext["cn1"]) == ("alice", alert.id, "count", "1")
    assert {ext[f"cs{i}Label"]: ext[f"cs{i}"] for i in (1, 2, 3, 5)} == {
        "namespace": "payments", "pod": "api-7d9f", "cluster": "prod-eu", "lifecycle": "create"}
    _, updated = parse_cef(formats.to_cef(update))
    assert (updated["cs5"], updated["cn1"], updated["externalId"]) == ("update", "3", alert.id)
    assert int(updated["end"]) - int(updated["start"]) == 90_000


HOSTILE = [
    "pipe | in the middle",
    "back\\slash and trailing\\",
    "equals=sign key=value",
    "new\nline and cr\r\nand \\n literal",
    "cs1=forged suser=root",
    "|\\=|\\|",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_cef_escaping_survives_hostile_strings(alert, hostile):
    evil = replace(alert, title=hostile, description=hostile, user=hostile, namespace=hostile, pod=hostile,
                   detection=hostile)
    header, ext = parse_cef(formats.to_cef(evil))
    one_line = hostile.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    assert header[4] == header[5] == one_line  # the header has no line breaks, and its pipes are escaped
    assert ext["msg"] == ext["suser"] == ext["cs1"] == ext["cs2"] == hostile.replace("\r\n", "\n")
    assert ext["cs1Label"] == "namespace" and ext["cn1"] == "1"  # nothing injected a field


def test_cef_escape_functions_follow_the_spec():
    assert formats.cef_header_escape("a|b\\c\nd") == "a\\|b\\\\c d"
    assert formats.cef_extension_escape("a=b\\c\nd|e") == "a\\=b\\\\c\\nd|e"


def test_renderers_produce_bytes_for_every_format(alert):
    assert orjson.loads(formats.RENDERERS["ocsf"](alert))["class_uid"] == 2004
    assert orjson.loads(formats.RENDERERS["ecs"](alert))["event"]["kind"] == "alert"
    assert formats.RENDERERS["cef"](alert).startswith(b"CEF:0|vigil|vigil|")


def test_unknown_techniques_resolve_to_their_id_alone():
    assert mitre.technique("T9999") == mitre.Technique("T9999", "", "", ())
    assert mitre.technique("T1609.999").tactics == (("TA0002", "Execution"),)  # the parent's tactics


def test_degraded_coverage_is_stated_in_every_format(alert):
    blind = replace(alert, context={"coverage_degraded": {"tetragon": 12, "ebpf": 3}})
    assert "coverage_degraded:tetragon:12,ebpf:3" in formats.to_ocsf(blind)["metadata"]["labels"]
    assert formats.to_ecs(blind)["labels"]["coverage_degraded"] == "tetragon:12,ebpf:3"
    _, ext = parse_cef(formats.to_cef(blind))
    assert (ext["flexString1Label"], ext["flexString1"]) == ("coverage_degraded", "tetragon:12,ebpf:3")
    assert "coverage_degraded" not in formats.to_ecs(alert)["labels"]
    assert "flexString1" not in parse_cef(formats.to_cef(alert))[1]


def test_ecs_leaves_out_what_the_alert_does_not_know():
    bare = Alert(detection="x.y", title="t", severity="low", time_ns=1, mitre=["T9999", "T1609"])
    doc = formats.to_ecs(bare)
    assert not {"user", "kubernetes", "related", "tags"} & doc.keys()
    assert doc["orchestrator"] == {"type": "kubernetes"}
    assert doc["labels"] == {"severity": "low", "lifecycle": "create", "count": "1"}
    assert doc["threat"]["technique"] == {"id": ["T9999", "T1609"],
                                          "name": ["T9999", "Container Administration Command"]}
    assert "threat" not in formats.to_ecs(replace(bare, mitre=[]))
