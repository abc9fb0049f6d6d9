"""The prefilter ``vigil sigma import`` declares on the detections it generates: the verbs, resources and
subresources a rule's condition requires, never one that hides an event the rule matches."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.unit.test_sigma_import import CASES, SIGMA_RULES, detection_of, import_yaml
from vigil.detections.engine import Engine
from vigil.detections.sigma.importer import GeneratedDetection, import_rules
from vigil.sources.source import get_source


@pytest.fixture(scope="module")
def imported() -> dict[str, GeneratedDetection]:
    return {generated.rule: generated for generated in import_rules([SIGMA_RULES]).generated}


@pytest.mark.parametrize("rule_file", sorted(CASES))
def test_the_engine_with_the_declared_prefilter_still_catches_what_the_rule_is_meant_to(
    imported: dict[str, GeneratedDetection], rule_file: str
) -> None:
    detection = detection_of(imported[rule_file])
    positive, _ = CASES[rule_file]
    source = get_source("k8s-audit")
    events = [source.normalize(split, "c", "n") for split in source.split(orjson.dumps(positive), 1 << 24)]

    assert [a for event in events for a in Engine([detection]).process(event)]


def test_rules_declare_the_verbs_resources_and_subresources_they_require(
    imported: dict[str, GeneratedDetection],
) -> None:
    exec_rule = detection_of(imported["kubernetes_audit_exec_into_container.yml"]).prefilters("k8s.api")[0]
    secrets = detection_of(imported["kubernetes_audit_secrets_enumeration.yml"]).prefilters("k8s.api")[0]

    assert (exec_rule.resources, exec_rule.subresources) == ({"pods"}, {"exec"})
    assert (secrets.actions, secrets.resources) == ({"list"}, {"secrets"})


ALTERNATIVES = """
title: Pods deleted, or secrets written but not patched
id: 7e0c1f4a-0000-4000-8000-000000000001
status: test
logsource: {product: kubernetes, service: audit}
detection:
    pods: {verb: delete, objectRef.resource: pods}
    secrets: {verb: [create, Update], objectRef.resource: secrets}
    patched: {verb: patch}
    wildcard: {objectRef.subresource|startswith: ex}
    condition: (pods or secrets and not patched) and wildcard
level: low
"""


def test_an_or_declares_what_every_branch_requires_and_a_not_or_wildcard_nothing(tmp_path: Path) -> None:
    (generated,), errors = import_yaml(tmp_path, ALTERNATIVES)
    assert errors == []

    prefilter = detection_of(generated).prefilters("k8s.api")[0]

    assert prefilter.actions == {"delete", "create", "update"}
    assert prefilter.resources == {"pods", "secrets"}
    assert prefilter.subresources == frozenset()
