"""A real kube-apiserver on a private etcd, both on 127.0.0.1 under a temporary directory.

Import the ``kube_apiserver`` fixture into a test module (``from tests.integration.kube_apiserver import
kube_apiserver``) to get a :class:`KubeAPIServer`, started once per module. The binary is built from source by
scripts/kube-apiserver.sh (cached in ~/.cache/vigil/bin); etcd is Debian's ``etcd-server``.

No controller manager, scheduler or kubelet runs: what needs only the API works (objects, watches, audit), pods
stay Pending. The apiserver serves on a self-signed certificate it generates (``--cert-dir``), authenticates one
admin by a static token (in ``system:masters``, so RBAC allows it everything) and sends its audit events to
:data:`AUDIT_WEBHOOK_PATH` on ``audit_webhook_port``, where a test runs ``vigil collect audit --webhook``.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
APISERVER_SCRIPT = ROOT / "scripts" / "kube-apiserver.sh"
APISERVER_UNBUILDABLE = 3  # scripts/kube-apiserver.sh's exit code when Go is missing
ADMIN_USER = "vigil-admin"
AUDIT_WEBHOOK_PATH = "/audit"
_START_TIMEOUT_S = 120.0

#: What the apiserver audits: only the admin's requests (its own loopback traffic would drown them), secrets at
#: Metadata (as real policies do: their bodies are credentials), everything else with the request body, which
#: the pod-spec detections read.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "users": [ADMIN_USER], "resources": [{"group": "", "resources": ["secrets"]}]},
        {"level": "Request", "users": [ADMIN_USER]},
        {"level": "None"},
    ],
}


def build_apiserver() -> str:
    """The kube-apiserver binary's path (built on first use); skips the test when Go is missing."""
    result = subprocess.run(["bash", str(APISERVER_SCRIPT), "--path"], capture_output=True, text=True, check=False)
    if result.returncode == APISERVER_UNBUILDABLE:
        pytest.skip(result.stderr.strip())
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class KubeAPIServer:
    """etcd and kube-apiserver as processes; ``kubeconfig`` reaches the API as the admin."""

    def __init__(self, binary: str, etcd: str, directory: Path) -> None:
        self.binary = binary
        self.etcd = etcd
        self.directory = directory
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.etcd_url = f"http://127.0.0.1:{free_port()}"
        self.audit_webhook_port = free_port()
        self.token = uuid.uuid4().hex
        self.certificate = directory / "certs" / "apiserver.crt"  # self-signed, with its CA: what clients trust
        self.kubeconfig = directory / "kubeconfig"
        self.startup_seconds = 0.0
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._write_configuration()

    def _write_configuration(self) -> None:
        directory = self.directory
        subprocess.run(["openssl", "genrsa", "-out", str(directory / "service-account.key"), "2048"],
                       check=True, capture_output=True)
        (directory / "tokens.csv").write_text(f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        (directory / "audit-policy.json").write_text(json.dumps(AUDIT_POLICY))
        webhook = f"http://127.0.0.1:{self.audit_webhook_port}{AUDIT_WEBHOOK_PATH}"
        (directory / "audit-webhook.kubeconfig").write_text(json.dumps(_kubeconfig(webhook, {})))
        self.kubeconfig.write_text(json.dumps(_kubeconfig(
            self.url, {"token": self.token}, {"certificate-authority": str(self.certificate)})))

    def start(self) -> None:
        started = time.monotonic()
        if self._etcd is None:
            self._etcd = self._start_etcd()
        self._apiserver = self._spawn("kube-apiserver", [
            self.binary,
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--cert-dir={self.directory / 'certs'}",
            f"--token-auth-file={self.directory / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",  # as kubeadm sets it: privileged pods are what the detections must see
            f"--service-account-key-file={self.directory / 'service-account.key'}",
            f"--service-account-signing-key-file={self.directory / 'service-account.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/24",
            "--endpoint-reconciler-type=none",  # no kubelet or controller manager would serve the endpoints
            f"--audit-policy-file={self.directory / 'audit-policy.json'}",
            f"--audit-webhook-config-file={self.directory / 'audit-webhook.kubeconfig'}",
            "--audit-webhook-batch-max-wait=500ms",
            "--audit-webhook-initial-backoff=1s",
        ])
        self._wait_ready(self._apiserver, "kube-apiserver", self._apiserver_ready)
        self.startup_seconds = time.monotonic() - started

    def kill_apiserver(self) -> None:
        """Kill only the apiserver, as a crash would (etcd keeps the cluster's state for the next :meth:`start`).

        Not SIGTERM: a graceful stop waits for open watches to end, up to the kill 30 s later, as under a kubelet.
        """
        if self._apiserver is not None:
            self._apiserver.kill()
            self._apiserver.wait()
        self._apiserver = None

    def stop(self) -> None:
        _terminate(self._apiserver)
        self._apiserver = None
        _terminate(self._etcd)
        self._etcd = None

    def delete_from_etcd(self, key: str) -> None:
        """Delete a key behind the apiserver's back (through etcd's gRPC gateway), as if the change had been
        made while no watch was looking."""
        body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
        request = urllib.request.Request(f"{self.etcd_url}/v3/kv/deleterange", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response).get("deleted") == "1", f"{key} is not in etcd"

    def _start_etcd(self) -> subprocess.Popen[bytes]:
        peer_url = f"http://127.0.0.1:{free_port()}"
        process = self._spawn("etcd", [
            self.etcd, "--name=vigil", f"--data-dir={self.directory / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=vigil={peer_url}",
        ])
        self._wait_ready(process, "etcd", self._etcd_ready)
        return process

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        with open(self.directory / f"{name}.log", "ab") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_ready(self, process: subprocess.Popen[bytes], name: str, ready) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (self.directory / f"{name}.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"{name} did not become ready:\n{log}")
            time.sleep(0.2)

    def _etcd_ready(self) -> bool:
        return _get(f"{self.etcd_url}/health") is not None

    def _apiserver_ready(self) -> bool:
        if not self.certificate.exists():
            return False
        context = ssl.create_default_context(cafile=str(self.certificate))
        return _get(f"{self.url}/readyz", context, {"Authorization": f"Bearer {self.token}"}) == b"ok"


def _kubeconfig(server: str, user: dict[str, str], cluster: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "vigil",
        "clusters": [{"name": "vigil", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "vigil", "user": user}],
        "contexts": [{"name": "vigil", "context": {"cluster": "vigil", "user": "vigil"}}],
    }


def _get(url: str, context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None) -> bytes | None:
    """The body of a 200 answer; ``None`` while the server is not (yet) answering."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5,
                                    context=context) as response:
            return response.read()
    except (OSError, urllib.error.URLError, ssl.SSLError):
        return None


def _terminate(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def kube_apiserver(tmp_path_factory) -> Iterator[KubeAPIServer]:
    """A running etcd + kube-apiserver for the test module; skips when kube-apiserver cannot be built."""
    etcd = shutil.which("etcd")
    if etcd is None:
        pytest.skip("etcd is not installed (Debian package etcd-server)")
    server = KubeAPIServer(build_apiserver(), etcd, tmp_path_factory.mktemp("kube-apiserver"))
    server.start()
    yield server
    server.stop()
