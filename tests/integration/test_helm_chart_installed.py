"""vigil's Helm chart installed for real on the dev cluster, and the kubectl attack seen through the chart's pods.

vigil's image (scripts/vigil-image.sh: mmdebstrap and buildah, no registry; cached in ~/.cache/vigil/images per
change of vigil's sources, built by scripts/test.sh before pytest) is imported into the cluster's containerd;
``helm install`` of ./helm with helm/examples/dev-cluster.yaml, this test's own cluster name, topics and database;
helm waits until the DaemonSet and the Deployments are Ready (their probes, as installed). No vigil process runs
on the host: the apiserver's audit webhook (127.0.0.1:<port> on the node, fixed at cluster start) is the chart's
webhook pod on the host network. Then examples/cluster-attack.sh runs in a pod through ``kubectl exec``, and the
alerts must carry the chart's cluster name on the chart's topics (the stream worker), in the chart's database
(the writer), as OCSF (the SIEM publisher), with the pod's container and image (the node collector) and the
exec's user (the webhook). The release is uninstalled at the end; the cluster stopped if the test started it.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.dev_cluster import RunningCluster, assert_stored, dev_cluster  # noqa: F401  (the fixture)
from tests.integration.harness import wait_for
from tests.integration.test_dev_cluster import EXPECTED, RUNTIME_EXPECTED, listener

# The test takes 2-4 min with the image cached; the limit also covers rebuilding the image when vigil's code changed
# after scripts/test.sh built it (a working tree edited while the suite runs).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

CHECKOUT = Path(__file__).resolve().parents[2]
VALUES = CHECKOUT / "helm" / "examples" / "dev-cluster.yaml"
COMPONENTS = ("node-collector", "audit-webhook", "stream-worker", "storage-writer", "siem-publisher")
IMAGE_BUILD_TIMEOUT = 1800  # mmdebstrap and pip on a loaded 2-core machine: 330-589 s measured


@pytest.fixture(scope="module")
def image_archive() -> Path:
    """vigil's image as an OCI archive, built by the checkout's script unless the sources' build is cached."""
    done = subprocess.run(["bash", str(CHECKOUT / "scripts" / "vigil-image.sh"), "--path"], capture_output=True,
                          text=True, timeout=IMAGE_BUILD_TIMEOUT, check=False)
    assert done.returncode == 0, f"scripts/vigil-image.sh: {done.stderr[-3000:]}"
    return Path(done.stdout.strip())


def _manifest_digest(archive: Path) -> str:
    """The digest of the image's manifest, from the OCI archive's index."""
    with tarfile.open(archive) as tar:
        index = json.load(io.TextIOWrapper(tar.extractfile("index.json")))
    return index["manifests"][0]["digest"]


def import_image(cluster: RunningCluster, archive: Path) -> None:
    """Import the archive into the cluster's containerd (k8s.io namespace), unless that very image is there."""
    ctr = ["ctr", "--address", str(cluster.cluster.layout.containerd_socket), "--namespace", "k8s.io"]
    listed = subprocess.run([*ctr, "images", "ls"], capture_output=True, text=True, check=True).stdout
    if _manifest_digest(archive) in listed:
        return
    done = subprocess.run([*ctr, "images", "import", str(archive)], capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, f"ctr images import: {done.stderr}"


def helm_binary() -> str:
    done = subprocess.run(["bash", str(CHECKOUT / "scripts" / "helm.sh"), "--path"], capture_output=True,
                          text=True, check=False)
    if done.returncode == 3:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class Release:
    """One ``helm install`` of the chart on the dev cluster, under a name, namespace and data of its own."""

    def __init__(self, cluster: RunningCluster, name: str, values: dict[str, str]) -> None:
        self.cluster, self.name, self.namespace, self.values = cluster, name, name, values
        self.helm = helm_binary()

    def run_helm(self, *args: str, timeout: float) -> str:
        done = subprocess.run([self.helm, f"--kubeconfig={self.cluster.cluster.layout.kubeconfig}",
                               "--namespace", self.namespace, *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode:
            pods = self.cluster.kubectl("get", "pods,events", "-n", self.namespace, "-o", "wide")
            raise AssertionError(f"helm {args[0]}: {done.stderr}\n{pods}")
        return done.stdout

    def install(self) -> float:
        """Install and wait (helm watches the workloads) until every pod is Ready; the seconds it took."""
        started = time.monotonic()
        sets = [arg for key, value in self.values.items() for arg in ("--set-string", f"{key}={value}")]
        self.run_helm("install", self.name, str(CHECKOUT / "helm"), "--create-namespace", "-f", str(VALUES), *sets,
                      "--wait", "--timeout", "8m", timeout=540)
        return time.monotonic() - started

    def pod(self, component: str) -> dict:
        pods = json.loads(self.cluster.kubectl("get", "pods", "-n", self.namespace, "-o", "json",
                                               "-l", f"app.kubernetes.io/component={component}"))["items"]
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        return pods[0]

    def uninstall(self) -> None:
        self.run_helm("uninstall", self.name, "--wait", "--timeout", "3m", timeout=200)
        self.cluster.kubectl("delete", "namespace", self.namespace, "--wait=false")


@pytest.fixture
def release(dev_cluster: RunningCluster, image_archive: Path, kafka_settings,  # noqa: F811
            clickhouse_client) -> Iterator[Release]:
    """The chart installed with this test's topics (kafka_settings' prefix), database and cluster name."""
    import_image(dev_cluster, image_archive)
    suffix = uuid.uuid4().hex[:8]
    layout = dev_cluster.cluster.layout
    kafka_settings.cluster = f"chart-{suffix}"
    kafka_settings.clickhouse.database = f"test_chart_{suffix}"
    release = Release(dev_cluster, f"vigil-{suffix}", {
        "cluster": kafka_settings.cluster,
        "kafka.topicPrefix": kafka_settings.kafka.topic_prefix,
        "clickhouse.database": kafka_settings.clickhouse.database,
        "auditWebhook.port": str(dev_cluster.audit_webhook_port),
        "nodeCollector.containerdSocket": str(layout.containerd_socket),
        "nodeCollector.hostStateDir": str(layout.root / "vigil-state"),
    })
    try:
        yield release
    finally:
        release.uninstall()
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {kafka_settings.clickhouse.database}")


async def test_the_installed_chart_reports_the_kubectl_attack(dev_cluster: RunningCluster,  # noqa: F811
                                                              release: Release, kafka_settings, read_documents,
                                                              clickhouse_client):
    settings = kafka_settings
    ready_seconds = await asyncio.to_thread(release.install)
    # One NetworkPolicy per component, accepted by the apiserver (the dev cluster's bridge CNI enforces none).
    policies = dev_cluster.kubectl("get", "networkpolicies", "-n", release.namespace, "-o", "name").split()
    assert len(policies) == len(COMPONENTS), policies
    for component in COMPONENTS:  # helm waited for them: each one's pod Ready, its probes passing as installed
        conditions = {c["type"]: c["status"] for c in release.pod(component)["status"]["conditions"]}
        assert conditions["Ready"] == "True", (component, conditions)
    webhook_pod = release.pod("audit-webhook")
    _assert_listener_is(dev_cluster.audit_webhook_port, webhook_pod)
    namespace, pod_name = f"chart-attack-{uuid.uuid4().hex[:6]}", "web"
    try:
        with listener(dev_cluster.cluster.node_ip) as port:
            pod = await asyncio.to_thread(dev_cluster.run_pod, namespace, pod_name)
            output = await asyncio.to_thread(dev_cluster.attack, namespace, pod_name, port)
        assert "attack done" in output, output
        alerts = await _alerts_about(settings, read_documents, namespace, pod_name)
        await _assert_ocsf(settings, read_documents, namespace)
    finally:
        await asyncio.to_thread(dev_cluster.kubectl, "delete", "namespace", namespace, "--wait=false")

    assert {alert["cluster"] for alert in alerts} == {settings.cluster}, "an alert not from the chart's worker"
    by_detection = {alert["detection"]: alert for alert in alerts}
    exec_alert = by_detection["k8s.exec_into_pod"]  # the apiserver's audit event: the chart's webhook
    assert (exec_alert["user"], exec_alert["namespace"], exec_alert["pod"]) == ("vigil-dev-admin", namespace,
                                                                              pod_name)
    assert _webhook_shipped(dev_cluster.audit_webhook_port, settings.kafka.topic_prefix) > 0
    container = pod["status"]["containerStatuses"][0]
    await assert_stored(clickhouse_client, settings.clickhouse.database, namespace, pod_name, container,
                         set(by_detection))
    print(f"helm install to Ready: {ready_seconds:.0f} s")


def _assert_listener_is(port: int, pod: dict) -> None:
    """The process on the node's 127.0.0.1:<port> (where the apiserver posts its audit events) runs in the chart's
    webhook container (its cgroup names the container): no host webhook stands in for it."""
    sockets = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True,
                             check=True).stdout
    assert "pid=" in sockets, f"nothing listens on :{port}: {sockets!r}"
    pid = sockets.split("pid=", 1)[1].split(",", 1)[0]
    container_id = pod["status"]["containerStatuses"][0]["containerID"].rpartition("://")[2]
    cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    assert container_id in cgroup, f"pid {pid} on :{port} is not the webhook container {container_id}: {cgroup}"


async def _alerts_about(settings, read_documents, namespace: str, pod: str) -> list[dict]:
    """The alerts about the attacked pod on the chart's alerts topic, once every expected one is there."""
    found: list[dict] = []

    async def complete() -> bool:
        documents = await read_documents(settings, "alerts", expected=1, timeout=30)
        found[:] = [a for a in documents if a.get("namespace") == namespace and a.get("pod") == pod]
        return {a["detection"] for a in found} >= EXPECTED | RUNTIME_EXPECTED

    try:
        await wait_for(complete, timeout=300, interval=2)
    except AssertionError:
        raise AssertionError(f"alerts about {namespace}/{pod}: {sorted({a['detection'] for a in found})}, "
                             f"expected {sorted(EXPECTED | RUNTIME_EXPECTED)}") from None
    return found


async def _assert_ocsf(settings, read_documents, namespace: str) -> None:
    """The SIEM publisher's OCSF findings about the attacked namespace."""

    async def published() -> bool:
        documents = await read_documents(settings, "alerts.ocsf", expected=1, timeout=30)
        return any(namespace in json.dumps(document) for document in documents)

    await wait_for(published, timeout=180, interval=2)


def _webhook_shipped(port: int, topic_prefix: str) -> float:
    """What the chart's webhook says it shipped to this release's topics (its /metrics, on its own port)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith("vigil_records_shipped_total{") and 'component="audit-collector"' in line
               and f'topic="{topic_prefix}' in line)
