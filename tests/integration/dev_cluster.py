"""The dev cluster (``vigil dev cluster``) for integration tests, and a pod to attack in it with kubectl.

Import the ``dev_cluster`` fixture into a test module (``from tests.integration.dev_cluster import dev_cluster``).
The cluster's ports are fixed, so tests share the one cluster of the machine's dev run dir, as they share the dev
stack: one already running (``vigil dev cluster up``) is used and left running; one the fixture had to start is
stopped (``down``, which undoes its host changes) when the module ends. The Kubernetes binaries are built by the
checkout's scripts on first use (minutes, once; cached in ~/.cache/vigil/bin).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.harness import wait_for
from vigil.config import Settings
from vigil.devstack import kube_cluster, kube_config
from vigil.devstack.errors import DevStackError
from vigil.devstack.kube_cluster import Binaries, DevCluster

ATTACK_SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "cluster-attack.sh"


def missing_requirements() -> str:
    """Why the dev cluster cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "the dev cluster's kubelet needs root"
    for tool in ("containerd", "runc", "containerd-shim-runc-v2", "ctr", "etcd", "openssl", "go"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh installs it; Go builds the Kubernetes binaries)"
    if not Path("/usr/lib/cni/bridge").exists():
        return "the CNI plugins are not installed (Debian package containernetworking-plugins)"
    return ""


@dataclass
class RunningCluster:
    """A healthy dev cluster: kubectl on it, and where its apiserver sends audit events."""

    cluster: DevCluster
    kubectl_binary: str
    started_here: bool
    up_seconds: float

    @property
    def audit_webhook_port(self) -> int:
        """The port of ``vigil collect audit --webhook`` the apiserver was started with (its audit config)."""
        config = json.loads((self.cluster.layout.root / "audit-webhook.kubeconfig").read_text())
        server = config["clusters"][0]["cluster"]["server"]
        return int(server.rsplit(":", 1)[1].split("/", 1)[0])

    def kubectl(self, *args: str, stdin: bytes | None = None, timeout: float = 120) -> str:
        done = subprocess.run([self.kubectl_binary, f"--kubeconfig={self.cluster.layout.kubeconfig}", *args],
                              input=stdin, capture_output=True, timeout=timeout, check=False)
        if done.returncode:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode(errors="replace")

    def run_pod(self, namespace: str, name: str) -> dict:
        """Create a busybox pod (the locally built image, never pulled) and return it once it runs."""
        self.kubectl("create", "namespace", namespace)
        pod = {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
                                                            "labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": kube_config.BUSYBOX_IMAGE,
                                     "imagePullPolicy": "Never", "command": ["sleep", "3600"]}],
                     "terminationGracePeriodSeconds": 1},
        }
        # The service-account controller makes the namespace's "default" account a moment after the namespace;
        # a pod created before it is refused.
        _until(lambda: self.kubectl("get", "serviceaccount", "default", "-n", namespace, "-o", "name"), 60)
        self.kubectl("apply", "-f", "-", stdin=json.dumps(pod).encode())
        self.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "-n", namespace, "--timeout=120s",
                     timeout=130)
        return json.loads(self.kubectl("get", "pod", name, "-n", namespace, "-o", "json"))

    def attack(self, namespace: str, pod: str, listener_port: int) -> str:
        """Run examples/cluster-attack.sh in the pod through ``kubectl exec``, as an intruder would."""
        return self.kubectl("exec", "-i", "-n", namespace, pod, "--", "sh", "-s", self.cluster.node_ip,
                            str(listener_port), str(kube_config.APISERVER_PORT), stdin=ATTACK_SCRIPT.read_bytes())


def _until(attempt, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            attempt()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


@pytest.fixture(scope="module")
def dev_cluster(dev_stack: Settings) -> Iterator[RunningCluster]:
    """The machine's dev cluster, healthy; started (and stopped afterwards) if it was not running."""
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    statuses, node = kube_cluster.status(dev_stack)
    already_up = node.ready and all(s.healthy for s in statuses)
    started = time.monotonic()
    try:
        cluster = DevCluster(dev_stack) if already_up else kube_cluster.up(dev_stack)
    except DevStackError as exc:
        if not already_up:
            kube_cluster.down(dev_stack)
        raise AssertionError(f"vigil dev cluster up failed: {exc}") from exc
    running = RunningCluster(cluster, Binaries.find_or_build().kubectl, not already_up, time.monotonic() - started)
    try:
        yield running
    finally:
        if running.started_here:
            kube_cluster.down(dev_stack)


async def assert_stored(client, database: str, namespace: str, pod: str, container: dict,
                        detections: set[str]) -> None:
    """The writer stored ``detections``' alerts about the pod, and the pod's process events with the container
    and image the node collector gave them (``container``: the pod status's entry)."""

    def stored_alerts() -> bool:
        try:
            rows = client.query(f"SELECT DISTINCT detection FROM {database}.alerts FINAL "
                                "WHERE namespace = {ns:String} AND pod = {pod:String}",
                                parameters={"ns": namespace, "pod": pod}).result_rows
        except Exception:  # the writer has not created the database yet
            return False
        return detections <= {row[0] for row in rows}

    await wait_for(stored_alerts, timeout=240, interval=1)  # a loaded machine: the writer may take minutes to start
    container_id = container["containerID"].rpartition("://")[2]
    rows = client.query(
        f"SELECT DISTINCT container_name, image FROM {database}.events WHERE source = 'ebpf' "
        "AND namespace = {ns:String} AND pod = {pod:String} AND container_id = {id:String} AND kind = 'process.exec'",
        parameters={"ns": namespace, "pod": pod, "id": container_id}).result_rows
    # The image by name, as the pod spec has it, whichever source knew the container first (the Kubernetes API, or
    # CRI, where containerd 1.6 lists the image id the kubelet created the container with).
    assert rows and all((name, image) == ("app", container["image"]) for name, image in rows), rows
