"""A real single-node Kubernetes for development and tests: ``vigil dev cluster up | down | status``.

etcd (Debian's), kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet on a private containerd
(its own root, state and socket: other containerd instances on the machine are never touched), with runc and the
bridge CNI. Binaries are built from source once by the checkout's scripts (scripts/kube-apiserver.sh,
scripts/kube-node.sh) into ~/.cache/vigil/bin. The apiserver authorizes with Node and RBAC and sends its audit
events, under deploy/kube-apiserver/audit-policy.yaml, to ``vigil collect audit --webhook`` on this host.

Like ``vigil dev up``: every call is safe to repeat (components are found again from PID files and ``/proc``),
``up`` starts only what is not running and waits until everything answers and the node is Ready, and state a
crashed run left (containerd's state, shims, mounts) is cleaned before containerd starts again. All files, logs
included, live under ``<dev run dir>/cluster``; the administrator's kubeconfig is ``<that>/kubeconfig``.
``down`` stops everything and undoes the host changes (:mod:`vigil.devstack.kube_host`); certificates and etcd's
data stay for the next ``up``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from vigil.collectors.runtime.api import cri_pb2, cri_pb2_grpc
from vigil.config import Settings
from vigil.devstack import kube_config, kube_host
from vigil.devstack.clickhouse import dev_server_url
from vigil.devstack.errors import DevStackError
from vigil.devstack.kube_config import ClusterLayout
from vigil.devstack.kube_pki import Authority, Identity
from vigil.devstack.oci_image import write_busybox_image
from vigil.devstack.ports import loopback_port
from vigil.devstack.process import DetachedProcess
from vigil.devstack.stack import ServiceStatus, locked, require_free_ports, run_dir, service_status, wait_healthy

log = logging.getLogger(__name__)

CHECKOUT = Path(__file__).resolve().parents[2]
AUDIT_POLICY = CHECKOUT / "deploy" / "kube-apiserver" / "audit-policy.yaml"
_BUILD_SCRIPTS = (CHECKOUT / "scripts" / "kube-apiserver.sh", CHECKOUT / "scripts" / "kube-node.sh")
_UNBUILDABLE = 3  # the build scripts' exit code when Go is missing
_PROBE_SECONDS = 5.0
#: busybox wget, a pod's only HTTPS client here, sends no signature_algorithms, which in TLS 1.2 means SHA-1
#: signatures; Go refuses them since 1.25 ("handshake failure") unless this GODEBUG setting allows them again.
_APISERVER_GODEBUG = "GODEBUG=tlssha1=1"
_CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
_NODE = ("containerd", "kubelet", "pod-loopback")


def cluster_layout(settings: Settings) -> ClusterLayout:
    """Where the dev cluster lives: ``<dev run dir>/cluster`` (``$VIGIL_DEV_DIR/cluster``)."""
    return ClusterLayout(run_dir(settings) / "cluster")


@dataclass(slots=True)
class Component:
    """One process of the cluster, in the shape of the dev stack's services (start, probe, PID file, log)."""

    name: str
    address: str
    ports: tuple[int, ...]
    process: DetachedProcess
    argv: list[str]
    cwd: Path
    probe: Callable[[float], None]

    def start(self) -> None:
        self.process.start(self.argv, self.cwd)

    def check(self, timeout: float) -> None:
        self.probe(timeout)


@dataclass(frozen=True, slots=True)
class Binaries:
    """Paths of the programs the cluster runs (and kubectl, for its users)."""

    etcd: str
    kube_apiserver: str
    kubelet: str
    kube_controller_manager: str
    kube_scheduler: str
    kubectl: str

    @classmethod
    def find_or_build(cls) -> Binaries:
        """Debian's etcd, and the Kubernetes binaries from the checkout's build scripts (built on first use)."""
        etcd = shutil.which("etcd")
        if etcd is None:
            raise DevStackError("etcd is not installed (Debian package etcd-server; scripts/setup.sh installs it)")
        paths = [path for script in _BUILD_SCRIPTS for path in _built(script)]
        by_name = {Path(path).name.rsplit("-v", 1)[0].replace("-", "_"): path for path in paths}
        return cls(etcd=etcd, **by_name)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """The node as the API reports it: registered and Ready, or why not (the Ready condition's message)."""

    name: str
    ready: bool
    detail: str


class DevCluster:
    """The components of one dev cluster and how to start, probe and stop them."""

    def __init__(self, settings: Settings, binaries: Binaries | None = None) -> None:
        self.settings = settings
        self.layout = cluster_layout(settings)
        self.node = settings.node.lower()
        self.node_ip = node_address()
        self.binaries = binaries
        self.authority = Authority(self.layout.pki)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{kube_config.APISERVER_PORT}"

    def components(self) -> list[Component]:
        """Every component, in start order (their argv needs the binaries: only ``up`` has them)."""
        return [self._etcd(), self._apiserver(), self._controller_manager(), self._scheduler(), self._containerd(),
                self._kubelet(), self._pod_loopback()]

    def process(self, name: str) -> DetachedProcess:
        marker = {"etcd": f"--data-dir={self.layout.etcd_data}",
                  "kube-apiserver": f"--tls-cert-file={self.layout.pki / 'apiserver.crt'}",
                  "kube-controller-manager": f"--kubeconfig={self.layout.component_kubeconfig(name)}",
                  "kube-scheduler": f"--kubeconfig={self.layout.component_kubeconfig(name)}",
                  "containerd": f"--config={self.layout.containerd / 'config.toml'}",
                  "kubelet": f"--config={self.layout.root / 'kubelet.json'}",
                  "pod-loopback": f"--netns-dir={self.layout.pod_netns}"}[name]
        return DetachedProcess(self.layout.pids / f"{name}.pid", self.layout.logs / f"{name}.log", marker)

    # -- configuration, written at every up ---------------------------------------------------------------------

    def write_configuration(self) -> None:
        """Certificates (made once), kubeconfigs and the component configurations (written each time)."""
        layout = self.layout
        layout.make_directories()
        self.authority.ensure()
        self.authority.ensure_signing_key("service-account")
        for identity in self._identities():
            self.authority.ensure_certificate(identity)
        ca = self.authority.certificate
        for stem, path in (("admin", layout.kubeconfig),
                           ("kube-controller-manager", layout.component_kubeconfig("kube-controller-manager")),
                           ("kube-scheduler", layout.component_kubeconfig("kube-scheduler")),
                           ("kubelet", layout.component_kubeconfig("kubelet"))):
            path.write_text(kube_config.kubeconfig(self.server, ca, layout.pki / f"{stem}.crt",
                                                   layout.pki / f"{stem}.key"))
        webhook = f"http://127.0.0.1:{self.settings.collector.webhook_port}/audit"
        (layout.root / "audit-webhook.kubeconfig").write_text(kube_config.audit_webhook_kubeconfig(webhook))
        (layout.root / "kubelet.json").write_text(kube_config.kubelet_config(layout, self.node_ip))
        (layout.containerd / "config.toml").write_text(kube_config.containerd_config(layout))
        (layout.cni_conf / "10-vigil-dev.conflist").write_text(kube_config.cni_config(layout))

    def _identities(self) -> list[Identity]:
        serving_ips = ("127.0.0.1", self.node_ip, kube_config.SERVICE_IP)
        return [
            Identity("apiserver", "kube-apiserver", ip_names=serving_ips, server=True, client=False, rsa=True,
                     dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                                "kubernetes.default.svc.cluster.local")),
            Identity("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
            Identity("admin", kube_config.ADMIN_USER, "system:masters"),
            Identity("kube-controller-manager", "system:kube-controller-manager"),
            Identity("kube-scheduler", "system:kube-scheduler"),
            Identity("kubelet", f"system:node:{self.node}", "system:nodes"),
            Identity("kubelet-serving", f"system:node:{self.node}", "system:nodes", ip_names=(self.node_ip,),
                     dns_names=(self.node,), server=True, client=False),
        ]

    # -- components ---------------------------------------------------------------------------------------------

    def _component(self, name: str, port: int, argv: list[str], probe: Callable[[float], None],
                   host: str = "127.0.0.1") -> Component:
        return Component(name, f"{host}:{port}", (port,), self.process(name), argv, self.layout.root, probe)

    def _etcd(self) -> Component:
        client, peer = (f"http://127.0.0.1:{port}" for port in (kube_config.ETCD_PORT, kube_config.ETCD_PEER_PORT))
        argv = [self._binary("etcd"), "--name=vigil-dev", f"--data-dir={self.layout.etcd_data}",
                f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=vigil-dev={peer}"]
        return self._component("etcd", kube_config.ETCD_PORT, argv,
                               lambda timeout: _expect(f"{client}/health", '"health":"true"', None, timeout))

    def _apiserver(self) -> Component:
        pki = self.layout.pki
        argv = [
            "env", _APISERVER_GODEBUG, self._binary("kube-apiserver"),
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--etcd-servers=http://127.0.0.1:{kube_config.ETCD_PORT}",
            f"--secure-port={kube_config.APISERVER_PORT}", f"--advertise-address={self.node_ip}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--service-account-key-file={pki / 'service-account.pub'}",
            f"--service-account-signing-key-file={pki / 'service-account.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-cluster-ip-range={kube_config.SERVICE_SUBNET}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--audit-policy-file={AUDIT_POLICY}",
            f"--audit-webhook-config-file={self.layout.root / 'audit-webhook.kubeconfig'}",
            "--audit-webhook-batch-max-wait=1s", "--audit-webhook-initial-backoff=1s",
        ]
        return self._component("kube-apiserver", kube_config.APISERVER_PORT, argv, self._apiserver_ready,
                               host="0.0.0.0")

    def _controller_manager(self) -> Component:
        pki, config = self.layout.pki, self.layout.component_kubeconfig("kube-controller-manager")
        argv = [
            self._binary("kube-controller-manager"), f"--kubeconfig={config}",
            f"--authentication-kubeconfig={config}", f"--authorization-kubeconfig={config}",
            "--bind-address=127.0.0.1", f"--secure-port={kube_config.CONTROLLER_MANAGER_PORT}",
            "--leader-elect=false", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'service-account.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--flex-volume-plugin-dir={self.layout.volume_plugins}",
        ]
        return self._component("kube-controller-manager", kube_config.CONTROLLER_MANAGER_PORT, argv,
                               _https_healthz(kube_config.CONTROLLER_MANAGER_PORT))

    def _scheduler(self) -> Component:
        config = self.layout.component_kubeconfig("kube-scheduler")
        argv = [self._binary("kube-scheduler"), f"--kubeconfig={config}", f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}", "--bind-address=127.0.0.1",
                f"--secure-port={kube_config.SCHEDULER_PORT}", "--leader-elect=false"]
        return self._component("kube-scheduler", kube_config.SCHEDULER_PORT, argv,
                               _https_healthz(kube_config.SCHEDULER_PORT))

    def _containerd(self) -> Component:
        argv = ["containerd", f"--config={self.layout.containerd / 'config.toml'}"]
        socket_path = self.layout.containerd_socket
        return Component("containerd", str(socket_path), (), self.process("containerd"), argv, self.layout.root,
                         lambda timeout: _cri_version(socket_path, timeout))

    def _kubelet(self) -> Component:
        argv = [self._binary("kubelet"), f"--config={self.layout.root / 'kubelet.json'}",
                f"--kubeconfig={self.layout.component_kubeconfig('kubelet')}",
                f"--root-dir={self.layout.kubelet_root}", f"--cert-dir={self.layout.pki / 'kubelet-generated'}",
                f"--hostname-override={self.node}", f"--node-ip={self.node_ip}"]
        return self._component("kubelet", kube_config.KUBELET_PORT, argv, _kubelet_healthz, host=self.node_ip)

    def stack_ports(self) -> tuple[int, ...]:
        """The dev stack's Kafka and ClickHouse HTTP ports on the host's loopback: what pods get at theirs."""
        clickhouse = urllib.parse.urlsplit(dev_server_url(self.settings)).netloc
        return (loopback_port(self.settings.kafka.bootstrap, "VIGIL_KAFKA_BOOTSTRAP"),
                loopback_port(clickhouse, "VIGIL_CLICKHOUSE_URL"))

    def _pod_loopback(self) -> Component:
        ports = self.stack_ports()
        argv = [sys.executable, "-m", "vigil.cli", "dev", "cluster", "bridge", f"--netns-dir={self.layout.pod_netns}",
                f"--ports={','.join(map(str, ports))}"]
        process = self.process("pod-loopback")
        return Component("pod-loopback", f"pods' 127.0.0.1:{','.join(map(str, ports))}", (), process, argv,
                         self.layout.root, lambda timeout: _running(process))

    def _binary(self, name: str) -> str:
        if self.binaries is None:
            return name  # status and down only find and probe processes; they never start one
        return getattr(self.binaries, name.replace("-", "_"))

    # -- probes -------------------------------------------------------------------------------------------------

    def admin_context(self) -> ssl.SSLContext:
        """TLS to the apiserver as the administrator (client certificate), trusting the cluster's CA."""
        context = ssl.create_default_context(cafile=str(self.authority.certificate))
        context.load_cert_chain(str(self.layout.pki / "admin.crt"), str(self.layout.pki / "admin.key"))
        return context

    def _apiserver_ready(self, timeout: float) -> None:
        _expect(f"{self.server}/readyz", "ok", self.admin_context(), timeout)

    def node_status(self, timeout: float = _PROBE_SECONDS) -> NodeStatus:
        """Whether the node registered and its Ready condition is True (what pods need to be scheduled)."""
        try:
            body = _get(f"{self.server}/api/v1/nodes/{self.node}", self.admin_context(), timeout)
        except (DevStackError, OSError) as exc:
            return NodeStatus(self.node, False, str(exc))
        conditions = {c["type"]: c for c in json.loads(body).get("status", {}).get("conditions", [])}
        ready = conditions.get("Ready", {})
        return NodeStatus(self.node, ready.get("status") == "True", ready.get("message", "not reported yet"))


# -- up, down, status ---------------------------------------------------------------------------------------------


def up(settings: Settings, timeout: float = 180.0) -> DevCluster:
    """Start what is not running, wait until every component answers and the node is Ready. The first call also
    builds the Kubernetes binaries (minutes, once) and makes the certificates; ``timeout`` counts after the build."""
    binaries = Binaries.find_or_build()
    cluster = DevCluster(settings, binaries)
    cluster.layout.root.mkdir(parents=True, exist_ok=True)
    with locked(cluster.layout.root):
        if _nothing_runs(cluster):  # else the kubelet may have changed the host already: keep the first snapshot
            kube_host.HostSnapshot.load_or_take(cluster.layout.host_snapshot)
        cluster.write_configuration()
        components = {c.name: c for c in cluster.components()}
        deadline = time.monotonic() + timeout
        _start_group(cluster, [components[name] for name in _CONTROL_PLANE[:2]], deadline, timeout)
        _start_group(cluster, [components[name] for name in (*_CONTROL_PLANE[2:], "containerd")], deadline, timeout)
        _import_images(cluster)
        _start_group(cluster, [components["kubelet"], components["pod-loopback"]], deadline, timeout)
        _wait_node_ready(cluster, deadline, timeout)
    return cluster


def down(settings: Settings, grace: float = 30.0) -> list[str]:
    """Stop the cluster: the kubelet, then every pod through CRI (so CNI releases their network), containerd and
    its shims, the control plane; then undo the host changes. What was undone on the host, one line each."""
    cluster = DevCluster(settings)
    layout = cluster.layout
    if not layout.root.is_dir():
        return []
    with locked(layout.root):
        _stop(cluster.process("pod-loopback"), grace)
        _stop(cluster.process("kubelet"), grace)
        _remove_pods(layout.containerd_socket)
        _stop(cluster.process("containerd"), grace)
        _kill_shims(layout.containerd_socket)
        for name in reversed(_CONTROL_PLANE):
            _stop(cluster.process(name), grace)
        return kube_host.restore(layout.host_snapshot, layout.root, kube_config.BRIDGE)


def status(settings: Settings) -> tuple[list[ServiceStatus], NodeStatus]:
    """Each component (running, where, answering) and the node's readiness."""
    cluster = DevCluster(settings)
    statuses = [service_status(component) for component in cluster.components()]
    node = cluster.node_status() if cluster.layout.kubeconfig.exists() else NodeStatus(cluster.node, False,
                                                                                        "never started")
    return statuses, node


def node_address() -> str:
    """The address of the interface with the default route: where pods reach the host (the apiserver, listeners)
    and the kubelet serves. No packet is sent: connecting a UDP socket only picks the route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # TEST-NET-3: any non-local address
        except OSError as exc:
            raise DevStackError(f"no route to pick the node's address from ({exc}): the dev cluster needs a "
                                f"non-loopback IPv4 address") from exc
        return probe.getsockname()[0]


def _built(script: Path) -> list[str]:
    """The binaries a build script prints with ``--path``, built first if they are not cached."""
    done = subprocess.run(["bash", str(script), "--path"], capture_output=True, text=True, check=False)
    if done.returncode == _UNBUILDABLE:
        raise DevStackError(done.stderr.strip())
    if done.returncode:
        raise DevStackError(f"{script.name} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout.split()


def _nothing_runs(cluster: DevCluster) -> bool:
    return all(cluster.process(name).pid() is None for name in (*_CONTROL_PLANE, *_NODE))


def _start_group(cluster: DevCluster, group: list[Component], deadline: float, timeout: float) -> None:
    """Start the stopped components of ``group`` together and wait until each answers."""
    stopped = [c for c in group if c.process.pid() is None]
    require_free_ports([c for c in stopped if c.ports])
    for component in stopped:
        if component.name == "containerd":
            _clean_containerd_state(cluster.layout)
        log.info("starting", extra={"service": component.name, "address": component.address})
        component.start()
    for component in group:
        wait_healthy(component, deadline, timeout)


def _clean_containerd_state(layout: ClusterLayout) -> None:
    """What a containerd that died left: shims of its socket, mounts and its state directory (runtime state,
    never kept across restarts; images and metadata under its root are kept)."""
    _kill_shims(layout.containerd_socket)
    state = layout.containerd / "state"
    kube_host.unmount_under(state)
    shutil.rmtree(state, ignore_errors=True)
    layout.containerd_socket.unlink(missing_ok=True)


def _import_images(cluster: DevCluster) -> None:
    """The pause and busybox images, built locally and imported into the private containerd unless present."""
    ctr = ["ctr", "--address", str(cluster.layout.containerd_socket), "--namespace", "k8s.io"]
    present = subprocess.run([*ctr, "images", "list", "-q"], capture_output=True, text=True, check=True).stdout
    for name, entrypoint in ((kube_config.PAUSE_IMAGE, ["/bin/sleep", "2147483647"]),
                             (kube_config.BUSYBOX_IMAGE, ["/bin/sh"])):
        if name in present.split():
            continue
        tarball = cluster.layout.images / (name.rpartition("/")[2].replace(":", "-") + ".tar")
        write_busybox_image(tarball, name, entrypoint)
        done = subprocess.run([*ctr, "images", "import", str(tarball)], capture_output=True, text=True, check=False)
        if done.returncode:
            raise DevStackError(f"ctr images import {tarball}: {done.stderr.strip()}")
        log.info("image imported", extra={"image": name})


def _wait_node_ready(cluster: DevCluster, deadline: float, timeout: float) -> None:
    while True:
        node = cluster.node_status()
        if node.ready:
            return
        if time.monotonic() >= deadline:
            raise DevStackError(f"node {node.name} is not Ready after {timeout:.0f} s ({node.detail}); see "
                                f"{cluster.layout.logs / 'kubelet.log'}")
        time.sleep(0.5)


def _stop(process: DetachedProcess, grace: float) -> None:
    pid = process.terminate()
    if pid is not None:
        process.wait_gone(pid, grace)
        log.info("stopped", extra={"service": process.pid_file.stem, "pid": pid})


def _remove_pods(socket_path: Path) -> None:
    """Stop and remove every pod sandbox through CRI, as the kubelet would: CNI tears down each pod's network."""
    if not socket_path.exists():
        return
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        runtime = cri_pb2_grpc.RuntimeServiceStub(channel)
        try:
            sandboxes = runtime.ListPodSandbox(cri_pb2.ListPodSandboxRequest(), timeout=10).items
        except grpc.RpcError:
            return  # containerd is not running: its stale state is cleaned at the next start
        for sandbox in sandboxes:
            runtime.StopPodSandbox(cri_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox.id), timeout=60)
            runtime.RemovePodSandbox(cri_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id), timeout=60)


def _kill_shims(socket_path: Path) -> None:
    """SIGKILL the containerd shims started for this socket only (they outlive containerd by design)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"containerd-shim-runc-v2") and str(socket_path).encode() in argv:
                os.kill(int(proc.name), signal.SIGKILL)


def _cri_version(socket_path: Path, timeout: float) -> None:
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        try:
            cri_pb2_grpc.RuntimeServiceStub(channel).ListPodSandbox(cri_pb2.ListPodSandboxRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise DevStackError(f"CRI on {socket_path}: {exc.code().name}") from None


def _https_healthz(port: int) -> Callable[[float], None]:
    """A probe of a control-plane component's /healthz (its own self-signed certificate; the path needs no login)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return lambda timeout: _expect(f"https://127.0.0.1:{port}/healthz", "ok", context, timeout)


def _running(process: DetachedProcess) -> None:
    if process.pid() is None:
        raise DevStackError("not running")


def _kubelet_healthz(timeout: float) -> None:
    _expect(f"http://127.0.0.1:{kube_config.KUBELET_HEALTHZ_PORT}/healthz", "ok", None, timeout)


def _expect(url: str, wanted: str, context: ssl.SSLContext | None, timeout: float) -> None:
    body = _get(url, context, timeout)
    if wanted not in body.replace(" ", ""):
        raise DevStackError(f"{url} answered {body[:200]!r}")


def _get(url: str, context: ssl.SSLContext | None, timeout: float) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        raise DevStackError(f"{url}: HTTP {exc.code} {exc.read()[:200]!r}") from None
    except (OSError, ssl.SSLError) as exc:
        raise DevStackError(f"{url}: {exc}") from None
