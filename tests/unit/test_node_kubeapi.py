"""The Kubernetes API path: pod objects (as the API serves them) → k8s context; no credentials → CRI only."""

from __future__ import annotations

from vigil.collectors.node.kubeapi import PodWatch, exited_container_ids, pod_contexts
from vigil.collectors.runtime.cri import k8s_context

A, B, OLD, INIT = "a" * 64, "b" * 64, "0" * 64, "1" * 64

POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"},
                 "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d9", "controller": True}]},
    "spec": {"nodeName": "node-1", "serviceAccountName": "web-sa",
             "containers": [{"name": "main", "image": "nginx:1"}, {"name": "proxy", "image": "envoy:1"}]},
    "status": {
        "initContainerStatuses": [{"name": "setup", "image": "busybox:1", "containerID": f"containerd://{INIT}",
                                   "state": {"terminated": {"exitCode": 0}}}],
        "containerStatuses": [
            {"name": "main", "image": "docker.io/library/nginx:1", "containerID": f"containerd://{A}",
             "state": {"running": {}}, "lastState": {"terminated": {"containerID": f"containerd://{OLD}"}}},
            {"name": "proxy", "image": "envoy:1", "containerID": f"containerd://{B}", "state": {"running": {}}},
            {"name": "pending", "image": "x:1", "state": {"waiting": {"reason": "ContainerCreating"}}},
        ],
    },
}


def test_every_container_of_a_pod_maps_to_its_context():
    contexts = pod_contexts(POD)
    assert set(contexts) == {A, B, OLD, INIT}
    assert contexts[A] == k8s_context(namespace="shop", pod="web-1", pod_uid="u-1", container_id=A,
                                      container_name="main", image="docker.io/library/nginx:1",
                                      service_account="shop/web-sa", labels={"app": "web"})
    assert contexts[OLD]["container_name"] == "main"  # the previous instance of a restarted container
    assert contexts[INIT]["container_name"] == "setup"


def test_terminated_containers_are_reported_as_exited():
    assert exited_container_ids(POD) == [INIT]


def test_pods_with_missing_parts_map_to_what_is_there():
    assert pod_contexts({"metadata": {"name": "p"}}) == {}
    bare = {"status": {"containerStatuses": [{"containerID": f"containerd://{A}"}]}}
    assert pod_contexts(bare)[A] == k8s_context(container_id=A)


def test_without_credentials_the_watch_does_not_start(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    watch = PodWatch("node-1", lambda kind, pod: None)
    assert watch.start() is False
    assert watch.state == "unconfigured" and watch.error
    watch.stop()
