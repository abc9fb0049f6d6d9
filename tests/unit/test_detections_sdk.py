"""The SDK's metadata validation and the Kubernetes object helpers detections share."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.detections.k8s import containers, host_path, pod_spec, workload
from vigil.detections.sdk import DetectionError, EventDetection
from vigil.event import Event, Request, Target
from vigil.sources.audit.fixtures import workload_object

SPEC = {"containers": [{"name": "app", "image": "nginx"}], "initContainers": [{"name": "init", "image": "busybox"}]}


def api_write(
    verb: str, resource: str, obj: Any, *, api_group: str = "", subresource: str = "", response: Any = None
) -> Event:
    return Event(
        id="e", time_ns=1, source="k8s-audit", kind="k8s.api", action=verb,
        request=Request(object=obj, response=response),
        target=Target(resource=resource, subresource=subresource, api_group=api_group, namespace="default", name="x"),
    )


@pytest.mark.parametrize(
    ("kind", "resource", "group"),
    [
        ("Pod", "pods", ""),
        ("Deployment", "deployments", "apps"),
        ("DaemonSet", "daemonsets", "apps"),
        ("StatefulSet", "statefulsets", "apps"),
        ("ReplicaSet", "replicasets", "apps"),
        ("Job", "jobs", "batch"),
        ("CronJob", "cronjobs", "batch"),
    ],
)
def test_pod_spec_is_found_in_every_workload_kind(kind: str, resource: str, group: str) -> None:
    event = api_write("create", resource, workload_object(kind, "x", SPEC), api_group=group)

    assert pod_spec(event) == SPEC


def test_pod_spec_ignores_reads_status_updates_and_foreign_api_groups() -> None:
    pod = workload_object("Pod", "x", SPEC)

    assert pod_spec(api_write("get", "pods", pod)) is None
    assert pod_spec(api_write("update", "pods", pod, subresource="status")) is None
    assert pod_spec(api_write("create", "deployments", pod, api_group="example.com")) is None
    assert pod_spec(api_write("create", "configmaps", pod)) is None
    assert pod_spec(api_write("create", "pods", "not an object")) is None


def test_a_patch_is_judged_by_the_full_object_when_the_response_was_logged() -> None:
    patch = {"metadata": {"labels": {"a": "b"}}}
    full = workload_object("Pod", "x", SPEC)

    assert pod_spec(api_write("patch", "pods", patch, response=full)) == SPEC
    assert pod_spec(api_write("patch", "pods", {"spec": SPEC})) == SPEC


def test_containers_walks_every_list() -> None:
    spec = {**SPEC, "ephemeralContainers": [{"name": "debugger"}], "volumes": [{"name": "v"}]}

    assert [(kind, c["name"]) for kind, c in containers(spec)] == [
        ("containers", "app"),
        ("initContainers", "init"),
        ("ephemeralContainers", "debugger"),
    ]


def test_workload_collapses_controller_owned_objects_into_their_workload() -> None:
    rs_pod = workload_object(
        "Pod", "web-5d8f-abcde", SPEC,
        labels={"pod-template-hash": "5d8f"},
        ownerReferences=[{"kind": "ReplicaSet", "name": "web-5d8f", "controller": True}],
    )
    ds_pod = workload_object(
        "Pod", "agent-xyz", SPEC, ownerReferences=[{"kind": "DaemonSet", "name": "agent", "controller": True}]
    )

    assert workload(api_write("create", "pods", rs_pod)) == "Deployment/web"
    assert workload(api_write("create", "pods", ds_pod)) == "DaemonSet/agent"
    assert workload(api_write("create", "deployments", workload_object("Deployment", "x", SPEC))) == "Deployment/x"


@pytest.mark.parametrize(
    ("written", "normalized"),
    [
        ("/", "/"),
        ("/etc/", "/etc"),
        ("//etc//kubernetes", "/etc/kubernetes"),
        ("/tmp/../root", "/root"),
        ("/var/run/docker.sock", "/run/docker.sock"),
        ("var/log", "/var/log"),
    ],
)
def test_host_path_is_normalized(written: str, normalized: str) -> None:
    assert host_path({"hostPath": {"path": written}}) == normalized


def test_host_path_is_empty_for_other_volumes() -> None:
    assert host_path({"emptyDir": {}}) == ""
    assert host_path({"hostPath": {"path": ""}}) == ""


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", "Exec Into Pod", "dotted lowercase"),
        ("severity", "urgent", "severity 'urgent'"),
        ("mitre", ["1609"], "MITRE technique '1609'"),
        ("kinds", [], "at least one event kind"),
        ("kinds", "k8s.api", "must be a list"),
        ("alert_title", "{unclosed", "not a valid template"),
        ("dedup_period_s", -1, "must not be negative"),
    ],
)
def test_metadata_errors_name_the_field(field: str, value: Any, message: str) -> None:
    fields = {
        "id": "test.valid", "title": "t", "description": "d", "severity": "low", "kinds": ["k8s.api"],
        "match": lambda event: True,
    }
    with pytest.raises(DetectionError, match=message):
        EventDetection(**{**fields, field: value})
