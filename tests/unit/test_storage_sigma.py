"""Retro-hunt: SigmaHQ's Kubernetes audit rules as ClickHouse SQL over stored events (embedded engine).

Each rule runs against audit events normalized by vigil's own audit source: one that the rule is written
to catch and a near miss that it must not catch.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from vigil.config import ClickHouseSettings, Settings
from vigil.sources.audit.normalize import normalize_record
from vigil.storage import cli
from vigil.storage.clickhouse import ClickHouseStore, connect
from vigil.storage.schema import migrate
from vigil.storage.sigma_sql import SigmaConversionError, convert_rule

SHARED_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
RULES = SHARED_DATA / "sigma" / "kubernetes-audit"
NOW = time.time()


def audit(audit_id: str, verb: str, resource: str, *, namespace: str = "default", name: str = "x",
          subresource: str = "", group: str = "", code: int = 200, uri: str = "", agent: str = "kubectl/v1.30",
          request_object: dict[str, Any] | None = None, age_s: float = 60) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(NOW - age_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ref = {"resource": resource, "namespace": namespace, "name": name, "apiGroup": group,
           "subresource": subresource}
    record = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": audit_id, "stage": "ResponseComplete",
              "verb": verb, "requestURI": uri or f"/apis/{group}/{resource}/{name}", "userAgent": agent,
              "user": {"username": "alice"}, "sourceIPs": ["10.0.0.1"],
              "objectRef": {k: v for k, v in ref.items() if v}, "responseStatus": {"code": code},
              "requestReceivedTimestamp": stamp, "stageTimestamp": stamp}
    if request_object is not None:
        record["requestObject"] = request_object
    return record


def pod(volumes: list | None = None, capabilities: list | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "busybox"}
    if capabilities:
        container["securityContext"] = {"capabilities": {"add": capabilities}}
    return {"kind": "Pod", "spec": {"containers": [container], "volumes": volumes or []}}


#: rule file → (an audit event it must find, a near miss it must not).
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "kubernetes_audit_change_admission_controller.yml": (
        audit("hit", "PATCH", "mutatingwebhookconfigurations", group="admissionregistration.k8s.io"),
        audit("miss", "get", "mutatingwebhookconfigurations", group="admissionregistration.k8s.io")),
    "kubernetes_audit_cronjob_modification.yml": (
        audit("hit", "create", "cronjobs", group="batch"), audit("miss", "create", "cronjobs", group="apps")),
    "kubernetes_audit_deployment_deleted.yml": (
        audit("hit", "delete", "deployments", group="apps"), audit("miss", "delete", "statefulsets", group="apps")),
    "kubernetes_audit_events_deleted.yml": (audit("hit", "delete", "events"), audit("miss", "list", "events")),
    "kubernetes_audit_exec_into_container.yml": (
        audit("hit", "create", "pods", subresource="exec"), audit("miss", "create", "pods", subresource="log")),
    "kubernetes_audit_hostpath_mount.yml": (
        audit("hit", "create", "pods", request_object=pod(volumes=[{"name": "root", "hostPath": {"path": "/"}}])),
        audit("miss", "create", "pods", request_object=pod(volumes=[{"name": "tmp", "emptyDir": {}}]))),
    "kubernetes_audit_pod_in_system_namespace.yml": (
        audit("hit", "create", "pods", namespace="kube-system"), audit("miss", "create", "pods", namespace="kube")),
    "kubernetes_audit_potential_enumeration_activity.yml": (
        # The rule wants responseStatus.code 'ALLOW'; real audit codes are numbers, so it matches nothing.
        audit("miss-ua", "list", "secrets", agent="trufflehog/3.0"),
        audit("miss", "get", "pods", uri="/api/v1/namespaces/default/pods/x/exec?command=%2Fbin%2Fbash")),
    "kubernetes_audit_privileged_pod_creation.yml": (
        audit("hit", "create", "pods", request_object=pod(capabilities=["SYS_ADMIN"])),
        audit("miss", "create", "pods", request_object=pod())),
    "kubernetes_audit_rbac_permisions_listing.yml": (
        audit("hit", "create", "selfsubjectrulesreviews", group="authorization.k8s.io"),
        audit("miss", "create", "selfsubjectaccessreviews", group="authorization.k8s.io")),
    "kubernetes_audit_rolebinding_modification.yml": (
        audit("hit", "update", "clusterrolebindings", group="rbac.authorization.k8s.io"),
        audit("miss", "update", "clusterroles", group="rbac.authorization.k8s.io")),
    "kubernetes_audit_secrets_enumeration.yml": (audit("hit", "list", "secrets"), audit("miss", "get", "secrets")),
    "kubernetes_audit_secrets_modified_or_deleted.yml": (
        audit("hit", "delete", "secrets"), audit("miss", "watch", "secrets")),
    "kubernetes_audit_serviceaccount_creation.yml": (
        audit("hit", "create", "serviceaccounts"), audit("miss", "create", "serviceaccounts", age_s=40 * 86400)),
    "kubernetes_audit_sidecar_injection.yml": (
        audit("hit", "patch", "deployments", group="apps"), audit("miss", "patch", "deployments", group="extensions")),
    "kubernetes_audit_unauthorized_unauthenticated_actions.yml": (
        audit("hit", "get", "secrets", code=403), audit("miss", "get", "secrets", code=404)),
}


@pytest.fixture(scope="module")
def settings() -> Iterator[Settings]:
    settings = Settings(clickhouse=ClickHouseSettings(url="chdb://memory", database=f"sigma_{uuid.uuid4().hex[:12]}"))
    store = connect(settings.clickhouse)
    migrate(store)
    yield settings
    store.command("DROP DATABASE {db:Identifier}", {"db": settings.clickhouse.database})
    store.close()


@pytest.fixture
def store(settings: Settings) -> Iterator[ClickHouseStore]:
    store = connect(settings.clickhouse)
    store.command("TRUNCATE TABLE events")
    yield store
    store.close()


def retro_hunt(store: ClickHouseStore, rule_text: str, since: timedelta = timedelta(days=30)) -> list[str]:
    query = convert_rule(rule_text)
    parameters = query.parameters | {"since": (datetime.now(UTC) - since).strftime("%Y-%m-%d %H:%M:%S"),
                                     "limit": 100}
    output = store.query_raw(query.sql, parameters, "JSONEachRow")
    return [orjson.loads(line)["audit_id"] for line in output.splitlines()]


def test_every_bundled_rule_has_a_case() -> None:
    assert sorted(p.name for p in RULES.glob("*.yml")) == sorted(CASES)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_finds_its_event_and_not_the_near_miss(store: ClickHouseStore, rule: str) -> None:
    hit, miss = CASES[rule]
    store.insert_events([normalize_record(hit, "prod", "n1"), normalize_record(miss, "prod", "n1")], rule)
    expected = [] if rule == "kubernetes_audit_potential_enumeration_activity.yml" else ["hit"]
    assert retro_hunt(store, (RULES / rule).read_text()) == expected


SIGMA_HEADER = """
title: test rule
id: 5f2a0c1e-0000-4000-8000-000000000001
logsource: {product: kubernetes, service: audit}
"""


def rule(detection: str) -> str:
    return SIGMA_HEADER + "detection:\n" + detection


def test_matching_is_case_insensitive_unless_cased(store: ClickHouseStore) -> None:
    store.insert_events([normalize_record(audit("a", "get", "Secrets", name="DB-Creds"), "c", "n")], "case")
    assert retro_hunt(store, rule("  sel: {objectRef.name: db-creds}\n  condition: sel")) == ["a"]
    assert retro_hunt(store, rule("  sel: {objectRef.name|cased: db-creds}\n  condition: sel")) == []
    assert retro_hunt(store, rule("  sel: {objectRef.name|startswith: 'db-'}\n  condition: sel")) == ["a"]
    assert retro_hunt(store, rule("  sel: {objectRef.name|re: '^DB-C.*s$'}\n  condition: sel")) == ["a"]
    assert retro_hunt(store, rule("  sel: {objectRef.name|re: '^db'}\n  condition: sel")) == []


def test_like_characters_in_values_are_literal(store: ClickHouseStore) -> None:
    store.insert_events([normalize_record(audit("a", "get", "secrets", name="db_creds"), "c", "n"),
                         normalize_record(audit("b", "get", "secrets", name="dbXcreds"), "c", "n")], "like")
    assert retro_hunt(store, rule("  sel: {objectRef.name: db_creds}\n  condition: sel")) == ["a"]
    assert retro_hunt(store, rule("  sel: {objectRef.name: 'db?creds'}\n  condition: sel")) == ["a", "b"]


def test_fields_without_a_column_are_read_from_the_raw_record(store: ClickHouseStore) -> None:
    store.insert_events([normalize_record(audit("a", "get", "pods", code=200), "c", "n"),
                         normalize_record(audit("b", "get", "pods", code=500), "c", "n")], "raw")
    assert retro_hunt(store, rule("  sel: {stage: responsecomplete}\n  condition: sel")) == ["a", "b"]
    assert retro_hunt(store, rule("  sel: {responseStatus.code|gte: 500}\n  condition: sel")) == ["b"]
    assert retro_hunt(store, rule("  sel: {sourceIPs|cidr: 10.0.0.0/8}\n  listing: {verb: list}\n"
                                  "  condition: sel and not listing")) == ["a", "b"]


def test_keywords_search_the_raw_record(store: ClickHouseStore) -> None:
    store.insert_events([normalize_record(audit("a", "get", "pods", agent="TruffleHog"), "c", "n")], "kw")
    assert retro_hunt(store, rule("  keywords: [trufflehog]\n  condition: keywords")) == ["a"]


def test_values_cannot_inject_sql(store: ClickHouseStore) -> None:
    store.insert_events([normalize_record(audit("a", "get", "pods"), "c", "n")], "inject")
    assert retro_hunt(store, rule("  sel: {verb: \"get' OR '1'='1\"}\n  condition: sel")) == []


@pytest.mark.parametrize(("text", "message"), [
    ("title: x\nlogsource: {product: linux, category: process_creation}\ndetection:\n  s: {Image: x}\n"
     "  condition: s\n", "retro-hunt covers Kubernetes audit rules"),
    ("title: c\nname: c\ncorrelation:\n  type: event_count\n  rules: [x]\n  group-by: [user]\n  timespan: 1h\n"
     "  condition: {gte: 5}\n", "correlation rules"),
    ("title: [broken\n", "not a valid Sigma rule"),
])
def test_unsupported_rules_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(SigmaConversionError, match=message):
        convert_rule(text)


def test_hunt_sigma_command_runs_a_directory(settings: Settings, store: ClickHouseStore,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    hit, _ = CASES["kubernetes_audit_exec_into_container.yml"]
    store.insert_events([normalize_record(hit, "prod", "n1")], "cli")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["hunt", "--sigma", str(RULES), "--since", "30d", "--format", "json"])
    assert args.func(args, settings) == 0
    rows = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["rule"], r["audit_id"]) for r in rows] == [("Potential Remote Command Execution In Pod Container",
                                                           "hit")]
