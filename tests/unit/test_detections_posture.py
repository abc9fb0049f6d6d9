"""Posture detections on the audit stream with their configuration per namespace: parameters and severity set
in detections.toml, exact namespace names before patterns, clear errors for bad settings; image references
normalized the way the runtime resolves them; one alert per fact where detections could overlap."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from vigil.alert import Alert
from vigil.detections.engine import LIBRARY, Engine, load_detections
from vigil.detections.k8s import image_reference, registry_allowed
from vigil.detections.sdk import DetectionError, EventDetection
from vigil.detections.tuning import Tuning, TuningError
from vigil.sources.audit.fixtures import audit_record, workload_object
from vigil.sources.source import get_source

LOADED, _ = load_detections([LIBRARY])
BY_ID = {d.id: d for d in LOADED.values()}


def pod_write(namespace: str, *containers: dict[str, Any], verb: str = "create", **pod_fields: Any) -> dict:
    spec = {"containers": list(containers), **pod_fields}
    return audit_record(verb, "pods", name="app", namespace=namespace,
                        request_object=workload_object("Pod", "app", spec))


def run(detection_ids: list[str], tuning: dict[str, Any], *records: dict) -> list[Alert]:
    engine = Engine([BY_ID[i] for i in detection_ids], tuning=Tuning.parse({"detections": tuning}))
    assert not engine.errors, engine.errors
    source = get_source("k8s-audit")
    events = [source.normalize(r, "c", "n") for record in records for r in source.split(orjson.dumps(record), 1 << 20)]
    return engine.process_many(events)


def container(image: str = "nginx:1.27", name: str = "app", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **fields}


REGISTRY_TUNING = {"k8s.image_registry_not_allowed": {
    "params": {"allowed_registries": ["registry.example.com", "ghcr.io/acme"]},
    "namespaces": {
        "prod-*": {"severity": "high"},
        "prod-legacy": {"params": {"allowed_registries": ["docker.io/library"]}},
    },
}}


def test_the_registry_allow_list_and_severity_come_from_the_namespace() -> None:
    alerts = run(["k8s.image_registry_not_allowed"], REGISTRY_TUNING,
                 pod_write("dev", container("registry.example.com/api:1")),
                 pod_write("dev", container("ghcr.io/acme/api:1", name="a"), container("ghcr.io/evil/api:1", name="b")),
                 pod_write("prod-eu", container("nginx:1.27")),
                 pod_write("prod-legacy", container("nginx:1.27")),
                 pod_write("prod-legacy", container("quay.io/prometheus/node-exporter:v1.8.2")))

    found = [(a.namespace, a.severity, a.context["images"]) for a in alerts]
    assert found == [
        ("dev", "informational", ["ghcr.io/evil/api:1"]),
        ("prod-eu", "high", ["nginx:1.27"]),
        ("prod-legacy", "informational", ["quay.io/prometheus/node-exporter:v1.8.2"]),
    ], "prod-legacy's exact entry wins over prod-*: its own list, and the detection's severity"


def test_a_namespace_requires_what_the_default_leaves_informational() -> None:
    tuning = {
        "k8s.seccomp_profile_missing": {"namespaces": {"payments": {"severity": "high"}}},
        "k8s.resource_limits_missing": {"namespaces": {"payments": {
            "severity": "medium", "params": {"required_limits": ["cpu", "memory"]}}}},
    }
    limited = container(resources={"limits": {"memory": "1Gi"}})

    alerts = run(["k8s.seccomp_profile_missing", "k8s.resource_limits_missing"], tuning,
                 pod_write("web", limited), pod_write("payments", limited))

    found = sorted((a.detection, a.namespace, a.severity, a.context["settings"][0]) for a in alerts)
    assert found == [
        ("k8s.resource_limits_missing", "payments", "medium", "no limits.cpu"),
        ("k8s.seccomp_profile_missing", "payments", "high", "no seccompProfile"),
        ("k8s.seccomp_profile_missing", "web", "informational", "no seccompProfile"),
    ]


def test_capabilities_allowed_in_a_namespace_are_not_reported_there() -> None:
    tuning = {"k8s.added_capabilities": {"namespaces": {"kube-system": {
        "params": {"allowed_capabilities": ["NET_ADMIN", "NET_RAW"]}}}}}
    cni = container("ghcr.io/acme/cni:1", securityContext={"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}})
    greedy = container("ghcr.io/acme/cni:1", securityContext={"capabilities": {"add": ["NET_ADMIN", "SYS_ADMIN"]}})

    alerts = run(["k8s.added_capabilities"], tuning, pod_write("kube-system", cni), pod_write("default", cni),
                 pod_write("kube-system", greedy))

    assert [(a.namespace, a.context["capabilities"]) for a in alerts] == [
        ("default", ["NET_ADMIN", "NET_RAW"]), ("kube-system", ["SYS_ADMIN"])]


def test_a_privileged_container_is_one_alert_not_one_per_weakened_setting() -> None:
    privileged = container(securityContext={
        "privileged": True, "allowPrivilegeEscalation": True, "runAsUser": 0,
        "capabilities": {"add": ["SYS_ADMIN"]}, "seLinuxOptions": {"type": "spc_t"},
        "appArmorProfile": {"type": "Unconfined"}, "seccompProfile": {"type": "RuntimeDefault"},
    }, resources={"limits": {"memory": "1Gi"}}, image=f"nginx@sha256:{'ab' * 32}")
    # k8s.user_not_allowed is about who sent the request (no allow-list of people by default), not about the pod.
    posture = [i for i in BY_ID if i.startswith("k8s.") and i != "k8s.user_not_allowed"]

    alerts = run(posture, {}, pod_write("default", privileged))

    assert [a.detection for a in alerts] == ["k8s.privileged_container"]


def test_an_image_verifying_admission_policy_is_one_alert() -> None:
    policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
              "metadata": {"name": "pinned"}, "spec": {"validations": [
                  {"expression": "object.spec.containers.all(c, c.image.contains('@sha256:'))"}]}}
    labels = {**policy, "metadata": {"name": "team-label"},
              "spec": {"validations": [{"expression": "has(object.metadata.labels.team)"}]}}
    detections = ["k8s.admission_webhook_changed", "k8s.image_verification_policy_changed",
                  "k8s.image_verification_policy_deleted"]
    group = "admissionregistration.k8s.io"

    alerts = run(detections, {},
                 audit_record("create", "validatingadmissionpolicies", name="pinned", namespace="", api_group=group,
                              request_object=policy),
                 audit_record("create", "validatingadmissionpolicies", name="team-label", namespace="",
                              api_group=group, request_object=labels),
                 audit_record("delete", "validatingadmissionpolicybindings", name="pinned-images-binding",
                              namespace="", api_group=group))

    assert [(a.detection, a.context["object"]) for a in alerts] == [
        ("k8s.image_verification_policy_changed", "pinned"),
        ("k8s.admission_webhook_changed", "team-label"),
        ("k8s.image_verification_policy_deleted", "pinned-images-binding"),
    ]


@pytest.mark.parametrize(("image", "registry", "repository", "tag", "digest"), [
    ("nginx", "docker.io", "library/nginx", "latest", ""),
    ("nginx:1.27", "docker.io", "library/nginx", "1.27", ""),
    ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", ""),
    ("index.docker.io/nginx", "docker.io", "library/nginx", "latest", ""),
    ("localhost/app", "localhost", "app", "latest", ""),
    ("Registry.Example.com:5000/team/app:v2", "registry.example.com:5000", "team/app", "v2", ""),
    (f"ghcr.io/acme/api@sha256:{'0' * 64}", "ghcr.io", "acme/api", "", f"sha256:{'0' * 64}"),
    (f"ghcr.io/acme/api:2@sha256:{'0' * 64}", "ghcr.io", "acme/api", "2", f"sha256:{'0' * 64}"),
])
def test_image_references_resolve_like_the_runtime(image: str, registry: str, repository: str, tag: str,
                                                   digest: str) -> None:
    reference = image_reference(image)

    assert (reference.registry, reference.repository, reference.tag, reference.digest) == (
        registry, repository, tag, digest)


def test_registry_entries_match_hosts_paths_and_host_patterns() -> None:
    allowed = ["index.docker.io/library", "ghcr.io/acme", "*.dkr.ecr.*.amazonaws.com"]

    assert registry_allowed(image_reference("nginx"), allowed)
    assert not registry_allowed(image_reference("bitnami/redis"), allowed)
    assert registry_allowed(image_reference("ghcr.io/acme/api"), allowed)
    assert not registry_allowed(image_reference("ghcr.io/acme-evil/api"), allowed)
    assert registry_allowed(image_reference("1234.dkr.ecr.us-east-1.amazonaws.com/x"), allowed)


@pytest.mark.parametrize(("tuning", "message"), [
    ({"k8s.image_registry_not_allowed": {"params": {"allowed_registry": ["a"]}}},
     "k8s.image_registry_not_allowed: unknown parameter 'allowed_registry'; it declares allowed_registries"),
    ({"k8s.image_registry_not_allowed": {"params": {"allowed_registries": "registry.example.com"}}},
     "parameter 'allowed_registries' must be a list of strings"),
    ({"k8s.image_registry_not_allowed": {"namespaces": {"prod": {"params": {"allowed_registries": [1]}}}}},
     "k8s.image_registry_not_allowed: namespace 'prod': parameter 'allowed_registries' must be a list of strings"),
    ({"k8s.image_registry_not_allowed": {"namespaces": {"prod": {"severity": "urgent"}}}},
     "namespace 'prod': severity 'urgent' is not one of"),
    ({"k8s.image_registry_not_allowed": {"namespaces": {"prod": {"threshold": 3}}}},
     "namespace 'prod': threshold applies to threshold detections only"),
    ({"k8s.exec_into_pod": {"params": {"x": 1}}}, "unknown parameter 'x'; it declares none"),
])
def test_a_bad_parameter_disables_the_detection_with_what_is_wrong(tuning: dict, message: str) -> None:
    (detection_id,) = tuning
    engine = Engine([BY_ID[detection_id]], tuning=Tuning.parse({"detections": tuning}))

    assert engine.detections == []
    (error,) = engine.errors
    assert message in error.error


@pytest.mark.parametrize(("table", "message"), [
    ({"namespaces": {"prod": {"enabled": False}}},
     "[detections.'k8s.x']: namespaces.'prod': unknown settings ['enabled']"),
    ({"namespaces": {"prod": "high"}}, "[detections.'k8s.x']: namespaces.'prod' must be a table"),
    ({"params": ["a"]}, "[detections.'k8s.x']: params must be a table"),
])
def test_a_badly_shaped_namespace_table_is_refused_when_the_file_is_read(table: dict, message: str) -> None:
    with pytest.raises(TuningError, match=re.escape(message)):
        Tuning.parse({"detections": {"k8s.x": table}})


def test_a_detection_with_params_must_take_them() -> None:
    with pytest.raises(DetectionError, match=r"match must take \(event, params\)"):
        EventDetection(id="test.params", title="t", description="d", severity="low", kinds=["k8s.api"],
                       params={"limit": 3}, match=lambda event: True)
