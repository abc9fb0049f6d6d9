"""``vigil sigma import``: the 16 SigmaHQ Kubernetes audit rules import and catch what they are meant to catch
(hand-written audit events, not the synthesized ones), Sigma's matching semantics hold, correlations become
windowed detections, and what cannot be imported is refused with the rule named."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from vigil.config import load_settings
from vigil.detections.engine import load_detections
from vigil.detections.harness import check_examples
from vigil.detections.sdk import Detection, Example, Scenario, ScenarioEvent
from vigil.detections.sigma import cli
from vigil.detections.sigma.importer import GeneratedDetection, import_rules, load_source, write
from vigil.sources.audit.fixtures import audit_record, workload_object
from vigil.sources.source import get_source

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
SIGMA_RULES = SHARED_DATA / "sigma" / "kubernetes-audit"

_ADMISSION = "admissionregistration.k8s.io"
_RBAC = "rbac.authorization.k8s.io"


def _pod(name: str, spec: dict[str, Any], namespace: str = "default", verb: str = "create") -> dict[str, Any]:
    return audit_record(verb, "pods", name=name, namespace=namespace, request_object=workload_object("Pod", name, spec))


def _host_path_pod(volume: dict[str, Any]) -> dict[str, Any]:
    return _pod("h", {"containers": [{"name": "c", "image": "busybox"}], "volumes": [{"name": "v", **volume}]})


def _capabilities_pod(security_context: dict[str, Any]) -> dict[str, Any]:
    return _pod("cap", {"containers": [{"name": "c", "image": "busybox", "securityContext": security_context}]})


def _with(record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**record, **fields}


_SHELL_EXEC = "command=%2Fbin%2Fbash&container=app&stdin=true&tty=true"

#: Per rule file: an audit event the rule is meant to catch, and a close one it must not.
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "kubernetes_audit_change_admission_controller.yml": (
        audit_record("patch", "mutatingwebhookconfigurations", name="inject", namespace="", api_group=_ADMISSION),
        audit_record("list", "mutatingwebhookconfigurations", namespace="", api_group=_ADMISSION),
    ),
    "kubernetes_audit_cronjob_modification.yml": (
        audit_record("create", "cronjobs", name="miner", api_group="batch"),
        audit_record("list", "cronjobs", api_group="batch"),
    ),
    "kubernetes_audit_deployment_deleted.yml": (
        audit_record("delete", "deployments", name="web", api_group="apps"),
        audit_record("delete", "pods", name="web-7f9c"),
    ),
    "kubernetes_audit_events_deleted.yml": (
        audit_record("deletecollection", "events") | {"verb": "delete"},
        audit_record("create", "events", name="web.17a2b"),
    ),
    "kubernetes_audit_exec_into_container.yml": (
        audit_record("create", "pods", name="web", subresource="exec", code=101, query=_SHELL_EXEC),
        audit_record("get", "pods", name="web", subresource="log"),
    ),
    "kubernetes_audit_hostpath_mount.yml": (
        _host_path_pod({"hostPath": {"path": "/var/log"}}),
        _host_path_pod({"emptyDir": {}}),
    ),
    "kubernetes_audit_pod_in_system_namespace.yml": (
        _pod("kube-proxy-bv61v", {"containers": [{"name": "p"}]}, namespace="kube-system"),
        _pod("web", {"containers": [{"name": "p"}]}, namespace="shop"),
    ),
    "kubernetes_audit_potential_enumeration_activity.yml": (
        # Upper-case %2F in the URI: Sigma matching is case-insensitive.
        audit_record("get", "pods", name="web", subresource="exec", code=101, query=_SHELL_EXEC),
        audit_record("get", "pods", name="web", subresource="exec", code=403, query=_SHELL_EXEC),
    ),
    "kubernetes_audit_privileged_pod_creation.yml": (
        _capabilities_pod({"capabilities": {"add": ["SYS_ADMIN"]}}),
        _capabilities_pod({"capabilities": {"drop": ["ALL"]}}),
    ),
    "kubernetes_audit_rbac_permisions_listing.yml": (
        audit_record("create", "selfsubjectrulesreviews", namespace="", api_group="authorization.k8s.io"),
        audit_record("create", "selfsubjectaccessreviews", namespace="", api_group="authorization.k8s.io"),
    ),
    "kubernetes_audit_rolebinding_modification.yml": (
        audit_record("create", "clusterrolebindings", name="admin-for-ci", namespace="", api_group=_RBAC),
        audit_record("get", "clusterrolebindings", name="admin-for-ci", namespace="", api_group=_RBAC),
    ),
    "kubernetes_audit_secrets_enumeration.yml": (
        audit_record("list", "secrets", namespace="kube-system"),
        audit_record("list", "configmaps", namespace="kube-system"),
    ),
    "kubernetes_audit_secrets_modified_or_deleted.yml": (
        audit_record("delete", "secrets", name="db-password"),
        audit_record("get", "secrets", name="db-password"),
    ),
    "kubernetes_audit_serviceaccount_creation.yml": (
        audit_record("create", "serviceaccounts", name="backdoor", namespace="kube-system"),
        audit_record("get", "serviceaccounts", name="default"),
    ),
    "kubernetes_audit_sidecar_injection.yml": (
        audit_record("patch", "deployments", name="web", api_group="apps"),
        audit_record("patch", "daemonsets", name="agent", api_group="apps"),
    ),
    "kubernetes_audit_unauthorized_unauthenticated_actions.yml": (
        audit_record("list", "secrets", code=403),
        audit_record("list", "secrets", code=200),
    ),
}


@pytest.fixture(scope="module")
def imported() -> dict[str, GeneratedDetection]:
    result = import_rules([SIGMA_RULES])
    assert result.errors == []
    return {generated.rule: generated for generated in result.generated}


def detection_of(generated: GeneratedDetection) -> Detection:
    return load_source(generated.source, generated.rule)["DETECTION"]


def alerts_for(detection: Detection, record: dict[str, Any]) -> list:
    """The alerts ``detection`` raises on ``record`` after the real audit source split and normalized it."""
    source = get_source("k8s-audit")
    events = [source.normalize(split, "c", "n") for split in source.split(orjson.dumps(record), 1 << 24)]
    assert events, "the audit source refused the test record"
    return [alert for event in events for alert in detection.evaluate(event)]


def import_yaml(tmp_path: Path, text: str) -> tuple[list[GeneratedDetection], list[str]]:
    rule_file = tmp_path / "rules.yml"
    rule_file.write_text(text)
    result = import_rules([rule_file])
    return result.generated, result.errors


# --- The SigmaHQ rules ------------------------------------------------------------------------------------------


def test_all_sixteen_rules_import_with_passing_synthesized_examples(imported: dict[str, GeneratedDetection]) -> None:
    assert sorted(imported) == sorted(p.name for p in SIGMA_RULES.glob("*.yml"))
    assert len(imported) == 16
    for generated in imported.values():
        assert generated.warnings == [], (generated.rule, generated.warnings)
        results = check_examples(detection_of(generated))
        assert all(r.passed for r in results), (generated.rule, results)


@pytest.mark.parametrize("rule_file", sorted(CASES))
def test_each_rule_fires_on_what_it_is_meant_to_catch(imported: dict[str, GeneratedDetection], rule_file: str) -> None:
    detection = detection_of(imported[rule_file])
    positive, negative = CASES[rule_file]

    assert alerts_for(detection, positive), f"{rule_file} missed its positive event"
    assert alerts_for(detection, negative) == [], f"{rule_file} fired on its negative event"


def test_rule_metadata_keeps_author_references_and_attack_mapping(imported: dict[str, GeneratedDetection]) -> None:
    generated = imported["kubernetes_audit_exec_into_container.yml"]
    detection = detection_of(generated)

    assert detection.id == "sigma.potential_remote_command_execution_in_pod_container"
    assert detection.severity == "medium"
    assert detection.mitre == ("T1609",)
    assert "attack.execution" in detection.tags
    assert detection.references == (
        "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/Exec%20into%20container/",
    )
    assert "Leo Tsaousis (@laripping)" in detection.description
    assert "Leo Tsaousis (@laripping)" in generated.source and "Detection Rule License" in generated.source
    assert detection.false_positives[0].startswith("Legitimate debugging activity")


def test_generated_files_load_and_pass_in_the_detection_harness(
    imported: dict[str, GeneratedDetection], tmp_path: Path
) -> None:
    write(list(imported.values()), tmp_path)

    loaded, errors = load_detections([tmp_path])

    assert errors == [] and len(loaded) == 16
    assert all(all(r.passed for r in check_examples(d)) for d in loaded.values())


# --- Matching semantics -----------------------------------------------------------------------------------------

SEMANTICS = """
title: Semantics under test
logsource: {product: kubernetes, service: audit}
detection:
  verbs:
    verb: [CREATE, Patch]
  resource_prefix:
    objectRef.resource|startswith: 'POD'
  agent:
    userAgent|contains|all: [kubectl, linux]
  from_inside:
    sourceIPs|cidr: 10.0.0.0/8
  named:
    objectRef.name|re: '^web-[0-9a-f]{4}$'
  wildcard:
    objectRef.namespace: 'sh?p*'
  no_subresource:
    objectRef.subresource: null
  filter_system:
    user.username|startswith: 'system:'
  condition: (verbs and resource_prefix) and all of agent* and 1 of from_* and named and wildcard
    and no_subresource and not filter_system
level: high
"""


def test_sigma_matching_semantics(tmp_path: Path) -> None:
    generated, errors = import_yaml(tmp_path, SEMANTICS)
    assert errors == []
    detection = detection_of(generated[0])
    hit = audit_record("create", "pods", name="web-7f9c", namespace="shop")

    assert alerts_for(detection, hit), "case-insensitive equality, startswith, contains|all, cidr, re, ?/* wildcards"
    misses = {
        "another verb": _with(hit, verb="delete"),
        "user filtered by not": _with(hit, user={"username": "system:kube-scheduler", "groups": []}),
        "source outside the CIDR": _with(hit, sourceIPs=["192.168.1.9"]),
        "one of the all-values missing": _with(hit, userAgent="kubectl/v1.30.2 (darwin/arm64)"),
        "regex does not match": audit_record("create", "pods", name="web-7f9cX", namespace="shop"),
        "? needs one character": audit_record("create", "pods", name="web-7f9c", namespace="shp"),
        "null means absent": audit_record("create", "pods", name="web-7f9c", namespace="shop", subresource="exec"),
    }
    for reason, record in misses.items():
        assert alerts_for(detection, record) == [], reason


def test_cased_modifier_and_escaped_wildcards(tmp_path: Path) -> None:
    generated, errors = import_yaml(tmp_path, """
title: Cased and escaped
logsource: {product: kubernetes, service: audit}
detection:
  selection:
    objectRef.name|cased: 'Web'
    userAgent: 'curl\\*'
  condition: selection
level: low
""")
    assert errors == []
    detection = detection_of(generated[0])
    hit = _with(audit_record("get", "pods", name="Web"), userAgent="curl*")

    assert alerts_for(detection, hit)
    assert alerts_for(detection, _with(audit_record("get", "pods", name="web"), userAgent="curl*")) == []
    assert alerts_for(detection, _with(hit, userAgent="curl/8.5")) == [], "an escaped * is a literal star"


def test_keywords_search_every_string_of_the_record(tmp_path: Path) -> None:
    generated, errors = import_yaml(tmp_path, """
title: Keywords
logsource: {product: kubernetes, service: audit}
detection:
  keywords:
    - trufflehog
    - xmrig
  condition: keywords
level: low
""")
    assert errors == []
    detection = detection_of(generated[0])

    assert alerts_for(detection, _with(audit_record("list", "secrets"), userAgent="TruffleHog/3.63 (linux)"))
    assert alerts_for(detection, audit_record("get", "pods", name="xmrig-5d8f"))
    assert alerts_for(detection, audit_record("get", "pods", name="web")) == []


def test_abstract_fields_read_the_pod_spec_of_workloads(tmp_path: Path) -> None:
    generated, errors = import_yaml(tmp_path, """
title: Abstract fields
logsource: {product: kubernetes, service: audit}
detection:
  selection:
    apiGroup: apps
    capabilities|contains: admin
    hostPath|startswith: /etc
  condition: selection
level: high
""")
    assert errors == []
    detection = detection_of(generated[0])
    spec = {
        "containers": [{"name": "c", "securityContext": {"capabilities": {"add": ["NET_RAW", "SYS_ADMIN"]}}}],
        "volumes": [{"name": "v", "hostPath": {"path": "/etc/kubernetes"}}],
    }
    deployment = audit_record(
        "create", "deployments", name="d", api_group="apps", request_object=workload_object("Deployment", "d", spec)
    )

    assert alerts_for(detection, deployment)
    assert alerts_for(detection, _with(deployment, objectRef={**deployment["objectRef"], "apiGroup": "batch"})) == []


def test_response_code_allow_is_the_authorization_decision(imported: dict[str, GeneratedDetection]) -> None:
    """The SigmaHQ enumeration rule compares responseStatus.code with 'ALLOW': the authorizer's decision."""
    detection = detection_of(imported["kubernetes_audit_potential_enumeration_activity.yml"])
    scanner = _with(audit_record("list", "secrets"), userAgent="trufflehog/3.63")

    assert alerts_for(detection, scanner)
    assert alerts_for(detection, _with(scanner, annotations={"authorization.k8s.io/decision": "forbid"})) == []


# --- Correlations -----------------------------------------------------------------------------------------------

CORRELATIONS = """
title: Forbidden API request
name: forbidden_request
logsource: {product: kubernetes, service: audit}
detection:
  selection:
    responseStatus.code: [401, 403]
  condition: selection
level: low
---
title: Many forbidden requests from one identity
author: vigil tests
correlation:
  type: event_count
  rules: [forbidden_request]
  group-by: [user.username]
  timespan: 5m
  condition: {gte: 5}
level: medium
---
title: Secret read
name: secret_read
logsource: {product: kubernetes, service: audit}
detection:
  selection:
    verb: get
    objectRef.resource: secrets
  condition: selection
level: low
---
title: Many distinct secrets read by one identity
correlation:
  type: value_count
  rules: [secret_read]
  group-by: [user.username]
  timespan: 10m
  condition: {gt: 3, field: objectRef.name}
level: high
---
title: Exec into pod
name: exec_into_pod
logsource: {product: kubernetes, service: audit}
detection:
  selection:
    objectRef.subresource: exec
  condition: selection
level: low
---
title: Secret read and exec by one identity
correlation:
  type: temporal
  rules: [secret_read, exec_into_pod]
  group-by: [user.username]
  timespan: 5m
level: high
---
title: Secret read then exec in one namespace
correlation:
  type: temporal_ordered
  rules: [secret_read, exec_into_pod]
  group-by: [objectRef.namespace]
  timespan: 5m
level: high
"""


def _scenario(fires: bool, *timed: tuple[float, dict[str, Any]]) -> Scenario:
    events = [ScenarioEvent(source="k8s-audit", at_s=at, record=record) for at, record in timed]
    return Scenario(name="hand-written", fires=fires, events=events)


def _verdict(detection: Detection, scenario: Scenario) -> bool:
    results = check_examples(replace(detection, examples=[scenario]))
    return results[0].passed


@pytest.fixture(scope="module")
def correlations(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Detection]:
    generated, errors = import_yaml(tmp_path_factory.mktemp("correlations"), CORRELATIONS)
    assert errors == []
    return {g.name: detection_of(g) for g in generated}


def test_correlations_become_windowed_detections_and_base_rules_are_not_emitted(
    correlations: dict[str, Detection],
) -> None:
    assert sorted(correlations) == [
        "sigma_many_distinct_secrets_read_by_one_identity.py",
        "sigma_many_forbidden_requests_from_one_identity.py",
        "sigma_secret_read_and_exec_by_one_identity.py",
        "sigma_secret_read_then_exec_in_one_namespace.py",
    ]
    kinds = {name: type(d).__name__ for name, d in correlations.items()}
    assert kinds["sigma_many_forbidden_requests_from_one_identity.py"] == "ThresholdDetection"
    assert kinds["sigma_secret_read_then_exec_in_one_namespace.py"] == "SequenceDetection"
    for detection in correlations.values():
        assert all(r.passed for r in check_examples(detection)), detection.id


def test_event_count_counts_within_the_timespan_per_group(correlations: dict[str, Detection]) -> None:
    detection = correlations["sigma_many_forbidden_requests_from_one_identity.py"]
    denied = [audit_record("list", "secrets", name=f"s{i}", code=403, user="mallory") for i in range(5)]
    others = [audit_record("list", "secrets", name=f"s{i}", code=403, user=f"user{i}") for i in range(5)]

    assert _verdict(detection, _scenario(True, *((i * 10.0, r) for i, r in enumerate(denied))))
    assert _verdict(detection, _scenario(False, *((i * 100.0, r) for i, r in enumerate(denied)))), "spread over 7 min"
    assert _verdict(detection, _scenario(False, *((i * 10.0, r) for i, r in enumerate(others)))), "five identities"


def test_value_count_counts_distinct_values(correlations: dict[str, Detection]) -> None:
    detection = correlations["sigma_many_distinct_secrets_read_by_one_identity.py"]
    distinct = [audit_record("get", "secrets", name=f"secret-{i}") for i in range(4)]
    same = [audit_record("get", "secrets", name="secret-0", time=f"2025-03-04T06:22:1{i}Z") for i in range(4)]

    assert _verdict(detection, _scenario(True, *((float(i), r) for i, r in enumerate(distinct))))
    assert _verdict(detection, _scenario(False, *((float(i), r) for i, r in enumerate(same))))


def test_temporal_needs_every_rule_and_temporal_ordered_their_order(correlations: dict[str, Detection]) -> None:
    read = audit_record("get", "secrets", name="db", namespace="shop")
    exec_ = audit_record("create", "pods", name="web", namespace="shop", subresource="exec", code=101)
    any_order = correlations["sigma_secret_read_and_exec_by_one_identity.py"]
    ordered = correlations["sigma_secret_read_then_exec_in_one_namespace.py"]

    assert _verdict(any_order, _scenario(True, (0.0, exec_), (30.0, read)))
    assert _verdict(any_order, _scenario(False, (0.0, read), (30.0, read)))
    assert _verdict(ordered, _scenario(True, (0.0, read), (30.0, exec_)))
    assert _verdict(ordered, _scenario(False, (0.0, exec_), (30.0, read)))
    assert _verdict(ordered, _scenario(False, (0.0, read), (400.0, exec_))), "beyond the 5 min timespan"


# --- Refusals and the command ---------------------------------------------------------------------------------


def test_unsupported_rules_are_refused_with_the_rule_named(tmp_path: Path) -> None:
    generated, errors = import_yaml(tmp_path, """
title: Windows process
logsource: {product: windows, category: process_creation}
detection:
  selection:
    Image|endswith: '\\\\cmd.exe'
  condition: selection
level: low
---
title: Quiet base
name: quiet_base
logsource: {product: kubernetes, service: audit}
detection:
  selection:
    verb: get
  condition: selection
level: low
---
title: Too few requests
correlation:
  type: event_count
  rules: [quiet_base]
  timespan: 1h
  condition: {lt: 3}
level: low
""")

    assert generated == []
    assert any("Windows process" in e and "windows" in e for e in errors), errors
    assert any("Too few requests" in e and "'lt'" in e for e in errors), errors


def _run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sigma", "import", *argv])
    return args.func(args, load_settings())


def test_the_command_writes_one_file_per_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"

    assert _run_cli(str(SIGMA_RULES), "--out", str(out)) == 0

    written = sorted(p.name for p in out.glob("sigma_*.py"))
    assert len(written) == 16 and "sigma_kubernetes_events_deleted.py" in written
    assert capsys.readouterr().out.count("\n") == 16


def test_the_command_fails_on_a_refused_rule_and_a_missing_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("title: Broken\nlogsource: {product: kubernetes, service: audit}\ndetection: {}\n")

    assert _run_cli(str(bad), "--out", str(tmp_path / "out")) == 1
    assert _run_cli(str(tmp_path / "missing.yml"), "--out", str(tmp_path / "out")) == 2


def test_example_synthesis_reports_rules_it_cannot_exemplify(tmp_path: Path) -> None:
    generated, errors = import_yaml(tmp_path, """
title: Regex only
logsource: {product: kubernetes, service: audit}
detection:
  selection:
    userAgent|re: '^evil/[0-9]+$'
  condition: selection
level: low
""")

    assert errors == []
    assert "no positive example could be synthesized: add one by hand" in generated[0].warnings
    hit = _with(audit_record("get", "pods", name="p"), userAgent="evil/7")
    assert alerts_for(detection_of(generated[0]), hit)


def test_examples_in_generated_files_are_checked_against_the_rule(imported: dict[str, GeneratedDetection]) -> None:
    """A synthesized example is a claim about the rule: the harness must refute one that is wrong."""
    detection = detection_of(imported["kubernetes_audit_secrets_enumeration.yml"])
    wrong = Example(name="wrong claim", source="k8s-audit", fires=True, record=audit_record("get", "secrets"))

    assert not check_examples(replace(detection, examples=[wrong, *detection.examples]))[0].passed
