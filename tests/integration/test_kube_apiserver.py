"""vigil against a real kube-apiserver (tests/integration/kube_apiserver.py): the node collector's pod watch
follows a pod's life and survives an apiserver restart; the apiserver's own audit webhook backend feeds
``vigil collect audit --webhook``, and the stream worker turns those events into k8s.api events and alerts."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from tests.integration.harness import RunningCollector, read_raw_records, stream_worker_process, wait_for
from tests.integration.kube_apiserver import ADMIN_USER, KubeAPIServer, kube_apiserver  # noqa: F401  (fixture)
from vigil.collectors.node.kubeapi import PodWatch, pod_contexts
from vigil.collectors.runtime.cri import k8s_context
from vigil.config import Settings

pytestmark = pytest.mark.integration

NODE = "worker-7"
CONTAINER_ID = "c" * 64
#: What reading a secret and creating a privileged pod as the admin must raise.
DETECTIONS_FIRED = {"k8s.secret_access", "k8s.privileged_container"}


class PodEvents:
    """What a PodWatch handed its callback, in order (the callback runs on the watch thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, pod: dict[str, Any]) -> None:
        with self._lock:
            self._events.append((kind, pod))

    def of(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return [(kind, pod) for kind, pod in self._events if pod["metadata"]["name"] == name]

    def last(self, name: str, kind: str, accept=lambda pod: True) -> dict[str, Any] | None:
        return next((pod for event, pod in reversed(self.of(name)) if event == kind and accept(pod)), None)


@pytest.fixture
def core(kube_apiserver: KubeAPIServer) -> Iterator[client.CoreV1Api]:  # noqa: F811
    api_client = config.new_client_from_config(config_file=str(kube_apiserver.kubeconfig))
    yield client.CoreV1Api(api_client)
    api_client.close()


@pytest.fixture
def namespace(core: client.CoreV1Api) -> str:
    """A fresh namespace with the service account its pods run as (no controller creates one here)."""
    name = f"shop-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_service_account(name, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="web")))
    return name


@pytest.fixture
def pod_watch(kube_apiserver: KubeAPIServer, monkeypatch) -> Iterator[tuple[PodWatch, PodEvents]]:  # noqa: F811
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kube_apiserver.kubeconfig))
    events = PodEvents()
    watch = PodWatch(NODE, events)
    assert watch.start()
    yield watch, events
    watch.stop()


def _pod(name: str, node: str, *, privileged: bool = False) -> client.V1Pod:
    owner = client.V1OwnerReference(api_version="apps/v1", kind="ReplicaSet", name="web-5d9",
                                    uid=str(uuid.uuid4()), controller=True)
    container = client.V1Container(name="main", image="nginx:1.27",
                                   security_context=client.V1SecurityContext(privileged=True) if privileged else None)
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": "web"}, owner_references=[owner]),
        spec=client.V1PodSpec(node_name=node, service_account_name="web", containers=[container]))


async def test_the_pod_watch_follows_a_pods_life_on_this_node(core, namespace, pod_watch):
    watch, events = pod_watch
    await wait_for(lambda: watch.state == "watching", timeout=30)
    core.create_namespaced_pod(namespace, _pod("elsewhere", "another-node"))
    core.create_namespaced_pod(namespace, _pod("web-1", NODE))

    added = await wait_for(lambda: events.last("web-1", "ADDED"), timeout=30)
    assert added["metadata"]["labels"] == {"app": "web"}
    assert added["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert added["spec"]["serviceAccountName"] == "web"

    # What a kubelet would report once the container runs: the container id the collector enriches by.
    status = {"status": {"containerStatuses": [{
        "name": "main", "image": "docker.io/library/nginx:1.27", "imageID": "", "ready": True, "restartCount": 0,
        "containerID": f"containerd://{CONTAINER_ID}", "state": {"running": {}}}]}}
    core.patch_namespaced_pod_status("web-1", namespace, status)
    running = await wait_for(lambda: events.last("web-1", "MODIFIED", pod_contexts), timeout=30)
    assert pod_contexts(running) == {CONTAINER_ID: k8s_context(
        namespace=namespace, pod="web-1", pod_uid=added["metadata"]["uid"], container_id=CONTAINER_ID,
        container_name="main", image="docker.io/library/nginx:1.27", service_account=f"{namespace}/web",
        labels={"app": "web"})}

    core.patch_namespaced_pod("web-1", namespace, {"metadata": {"labels": {"app": "web", "tier": "front"}}})
    relabelled = await wait_for(
        lambda: events.last("web-1", "MODIFIED", lambda pod: "tier" in pod["metadata"]["labels"]), timeout=30)
    assert pod_contexts(relabelled)[CONTAINER_ID]["labels"] == {"app": "web", "tier": "front"}

    core.delete_namespaced_pod("web-1", namespace, grace_period_seconds=0)
    deleted = await wait_for(lambda: events.last("web-1", "DELETED"), timeout=30)
    assert deleted["metadata"]["uid"] == added["metadata"]["uid"]
    assert events.of("elsewhere") == []  # another node's pod is not this collector's business
    assert events.of("web-1")[0][0] == "ADDED"


async def test_the_pod_watch_recovers_from_an_apiserver_restart_and_learns_what_it_missed(
        core, namespace, pod_watch, kube_apiserver):  # noqa: F811
    watch, events = pod_watch
    core.create_namespaced_pod(namespace, _pod("stays", NODE))
    core.create_namespaced_pod(namespace, _pod("vanishes", NODE))
    await wait_for(lambda: events.last("stays", "ADDED") and events.last("vanishes", "ADDED"), timeout=30)

    kube_apiserver.kill_apiserver()
    try:
        await wait_for(lambda: watch.state == "unreachable", timeout=30)
        # Deleted while no apiserver (and so no watch) was there to see it.
        kube_apiserver.delete_from_etcd(f"/registry/pods/{namespace}/vanishes")
    finally:
        kube_apiserver.start()

    await wait_for(lambda: watch.state == "watching", timeout=60)
    assert await wait_for(lambda: events.last("vanishes", "DELETED"), timeout=30)
    assert events.last("stays", "DELETED") is None
    core.create_namespaced_pod(namespace, _pod("after", NODE))
    assert await wait_for(lambda: events.last("after", "ADDED"), timeout=30)


def _audit(records: list[dict[str, Any]], verb: str, resource: str, name: str) -> dict[str, Any] | None:
    return next((record for record in records
                 if record.get("verb") == verb and record.get("stage") == "ResponseComplete"
                 and (record.get("objectRef") or {}).get("resource") == resource
                 and (record.get("objectRef") or {}).get("name") == name), None)


@pytest.fixture
def stream_worker(kafka_settings, tmp_path) -> Iterator[Settings]:
    """``vigil stream worker`` as its own process, on this test's topics."""
    with stream_worker_process(kafka_settings, tmp_path):
        yield kafka_settings


async def test_the_apiservers_audit_webhook_feeds_vigil_through_to_alerts(
        core, namespace, kube_apiserver, stream_worker, read_documents):  # noqa: F811
    settings = stream_worker
    settings.collector.webhook_port = kube_apiserver.audit_webhook_port
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="db-password"), string_data={"password": "hunter2"})
    async with RunningCollector(settings, webhook=True, files=[]):
        core.create_namespaced_secret(namespace, secret)
        core.read_namespaced_secret("db-password", namespace)
        core.create_namespaced_pod(namespace, _pod("root-shell", NODE, privileged=True))

        async def audited():
            records = [r for r in await read_raw_records(settings, "raw.k8s-audit")
                       if (r.get("objectRef") or {}).get("namespace") == namespace]
            found = _audit(records, "get", "secrets", "db-password"), _audit(records, "create", "pods", "root-shell")
            return found if all(found) else None

        secret_read, pod_create = await wait_for(audited, timeout=60)
    assert secret_read["user"]["username"] == ADMIN_USER
    assert secret_read["level"] == "Metadata" and "responseObject" not in secret_read  # no secret in the trail
    assert pod_create["requestObject"]["spec"]["containers"][0]["securityContext"]["privileged"] is True

    async def fired_in_namespace():
        alerts = await read_documents(settings, "alerts", expected=len(DETECTIONS_FIRED) + 10, timeout=1.0)
        fired = {alert["detection"]: alert for alert in alerts if alert["namespace"] == namespace}
        return fired if fired.keys() >= DETECTIONS_FIRED else None

    fired = await wait_for(fired_in_namespace, timeout=120)
    assert fired["k8s.secret_access"]["user"] == ADMIN_USER
    assert fired["k8s.privileged_container"]["pod"] == "root-shell"

    async def normalized_read():
        events = await read_raw_records(settings, "events")
        return next((event for event in events if event["original_id"] == secret_read["auditID"]), None)

    read_event = await wait_for(normalized_read, timeout=60)
    assert read_event["kind"] == "k8s.api" and read_event["action"] == "get"
    assert read_event["actor"]["user"] == ADMIN_USER
    assert (read_event["target"]["resource"], read_event["target"]["name"]) == ("secrets", "db-password")
    assert read_event["k8s"]["namespace"] == namespace
