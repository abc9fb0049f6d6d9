"""The Kubernetes API detections of issue 13 as a deployment tunes them: trusted networks, the components allowed to
read secrets, extra system namespaces and admin-equivalent roles come from detections.toml, and each setting
changes what fires in both directions."""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

import orjson
import pytest

from vigil.alert import Alert
from vigil.detections import k8s
from vigil.detections.engine import LIBRARY, Engine, load_detections
from vigil.detections.k8s import PRIVATE_NETWORKS, addresses_outside, answers_for, from_addresses, identity_in
from vigil.detections.tuning import Tuning
from vigil.sources.audit.fixtures import audit_record
from vigil.sources.source import get_source

LOADED, _ = load_detections([LIBRARY])
BY_ID = {d.id: d for d in LOADED.values()}


def run(detection_id: str, tuning: dict[str, Any], *records: dict) -> list[Alert]:
    engine = Engine([BY_ID[detection_id]], tuning=Tuning.parse({"detections": {detection_id: tuning}}))
    assert not engine.errors, engine.errors
    source = get_source("k8s-audit")
    events = [source.normalize(r, "c", "n") for record in records for r in source.split(orjson.dumps(record), 1 << 20)]
    return engine.process_many(events)


@pytest.mark.parametrize(("addresses", "outside"), [
    (["10.1.2.3"], []),
    (["::ffff:192.168.1.9"], []),
    (["203.0.113.9", "10.0.0.1"], ["203.0.113.9"]),
    (["2001:db8::1"], ["2001:db8::1"]),
    (["not-an-address"], []),
])
def test_addresses_outside_the_private_ranges(addresses: list[str], outside: list[str]) -> None:
    assert addresses_outside(addresses, PRIVATE_NETWORKS) == outside


@pytest.mark.parametrize("user", ["system:node:w1", "system:nodes", "system:serviceaccount:a:kube-proxy",
                                  "kube-proxy", "a[b]", "", "system:serviceaccount:a:kube-proxy-x"])
@pytest.mark.parametrize("patterns", [(), ("system:node:*",), ("system:serviceaccount:*:kube-proxy", "a[b]", "a?b*")])
def test_identity_in_agrees_with_fnmatch_pattern_by_pattern(user: str, patterns: tuple[str, ...]) -> None:
    expected = any(fnmatchcase(user, pattern) for pattern in patterns)
    assert identity_in(user, patterns) is expected
    assert identity_in(user, list(patterns)) is expected  # a list is found by its items, not by identity


def test_a_list_changed_between_questions_is_answered_for_its_new_items() -> None:
    patterns = ["system:node:*"]
    assert identity_in("system:node:w1", patterns)
    patterns[0] = "alice"
    assert not identity_in("system:node:w1", patterns)
    assert identity_in("alice", patterns)


def test_answers_are_worked_out_once_per_input_and_start_over_beyond_the_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def prepare(value: tuple[str, ...]) -> Callable[[str], bool]:
        def answer(item: str) -> bool:
            asked.append(item)
            return item in value
        return answer

    monkeypatch.setattr(k8s, "MAX_ANSWERS", 2)
    value = ("a", "b")
    answers = answers_for(value, prepare)
    assert answers_for(value, prepare) is answers
    assert [answers(x) for x in ("a", "a", "c", "a")] == [True, True, False, True]
    assert asked == ["a", "c"]
    answers("d")  # a third input: the two remembered are forgotten
    answers("a")
    assert asked == ["a", "c", "d", "a"]


def test_a_parameter_value_is_not_mistaken_for_a_later_one_at_the_same_address() -> None:
    for n in range(50):  # each tuple is freed before the next: ids get reused
        patterns = tuple(f"user-{n}-{i}" for i in range(2))
        assert identity_in(f"user-{n}-1", patterns)
        assert not identity_in(f"user-{n - 1}-1", patterns)


KUBELET_FROM_PUBLIC_NODE = from_addresses(
    audit_record("get", "pods", name="web", namespace="shop", user="system:node:worker-1"), "198.51.100.23")


def test_a_cluster_with_public_node_addresses_lists_them_as_trusted() -> None:
    detection = "k8s.system_identity_unexpected_source"
    assert run(detection, {}, KUBELET_FROM_PUBLIC_NODE)
    tuned = {"params": {"trusted_networks": [*PRIVATE_NETWORKS, "198.51.100.0/24"]}}
    assert run(detection, tuned, KUBELET_FROM_PUBLIC_NODE) == []
    elsewhere = from_addresses(audit_record("get", "pods", user="system:node:worker-1"), "192.0.2.80")
    assert [a.context["outside"] for a in run(detection, tuned, elsewhere)] == [["192.0.2.80"]]


def test_node_agents_are_judged_once_the_deployment_empties_their_exemption() -> None:
    detection = "k8s.system_identity_unexpected_source"
    agent = from_addresses(audit_record("get", "leases", namespace="kube-system",
                                        user="system:serviceaccount:kube-system:elastic-agent"), "198.51.100.23")
    assert run(detection, {}, agent) == []
    assert run(detection, {"params": {"allowed_identities": []}}, agent)


def test_the_secret_readers_are_a_default_the_tuning_file_replaces() -> None:
    list_all = audit_record("list", "secrets", namespace="", user="system:serviceaccount:monitoring:kube-state-metrics")
    for detection in ("k8s.secret_access", "k8s.secrets_listed_cluster_wide"):
        assert run(detection, {}, list_all) == []
        assert run(detection, {"params": {"allowed_identities": ["system:kube-controller-manager"]}}, list_all)


def test_extra_system_namespaces() -> None:
    secret = audit_record("create", "secrets", name="x", namespace="gke-managed-system")
    assert run("k8s.system_namespace_object", {}, secret) == []
    alerts = run("k8s.system_namespace_object", {"params": {"extra_system_namespaces": ["gke-managed-system"]}}, secret)
    assert [a.namespace for a in alerts] == ["gke-managed-system"]


def _binding(kind: str, role: str, namespace: str = "") -> dict[str, Any]:
    body = {"kind": kind, "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": "b"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "User", "name": "mallory@example.com"}]}
    resource = "clusterrolebindings" if kind == "ClusterRoleBinding" else "rolebindings"
    return audit_record("create", resource, name="b", namespace=namespace, api_group="rbac.authorization.k8s.io",
                        request_object=body)


@pytest.mark.parametrize(("record", "fires"), [
    (_binding("ClusterRoleBinding", "cluster-admin"), True),
    (_binding("RoleBinding", "cluster-admin", "shop"), True),
    (_binding("ClusterRoleBinding", "admin"), True),
    (_binding("ClusterRoleBinding", "edit"), True),
    (_binding("RoleBinding", "admin", "shop"), False),
    (_binding("ClusterRoleBinding", "system:controller:namespace-controller"), True),
    (_binding("ClusterRoleBinding", "system:node"), True),
    (_binding("ClusterRoleBinding", "view"), False),
])
def test_admin_equivalent_bindings(record: dict, fires: bool) -> None:
    alerts = run("k8s.cluster_admin_binding", {}, record)
    assert bool(alerts) is fires
    if fires:
        assert alerts[0].context["subjects"] == ["User:mallory@example.com"]


def test_a_deployment_adds_its_own_admin_equivalent_roles() -> None:
    record = _binding("ClusterRoleBinding", "platform-admin")
    assert run("k8s.cluster_admin_binding", {}, record) == []
    assert run("k8s.cluster_admin_binding", {"params": {"admin_roles": ["cluster-admin", "platform-*"]}}, record)
