"""The dev cluster's configuration files: where everything lives (:class:`ClusterLayout`), its fixed ports, and
the kubeconfigs, kubelet, containerd and CNI configurations written into the cluster's directory at each ``up``.

Everything the cluster writes stays under one directory (``<dev run dir>/cluster``), except what FACTS.md lists as
fixed host paths (see :mod:`vigil.devstack.kube_host`). Ports sit below the kernel's ephemeral range, so a test's
``free_port()`` (an ephemeral port) never takes one of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ETCD_PORT = 12379
ETCD_PEER_PORT = 12380
APISERVER_PORT = 16443
CONTROLLER_MANAGER_PORT = 11257
SCHEDULER_PORT = 11259
KUBELET_PORT = 11250
KUBELET_HEALTHZ_PORT = 11248

BRIDGE = "vigil0"
POD_SUBNET = "10.88.77.0/24"
SERVICE_SUBNET = "10.96.0.0/24"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service: the first address of SERVICE_SUBNET
PAUSE_IMAGE = "docker.io/vigil/pause:dev"
BUSYBOX_IMAGE = "docker.io/vigil/busybox:dev"
ADMIN_USER = "vigil-dev-admin"


@dataclass(frozen=True, slots=True)
class ClusterLayout:
    """The paths of one dev cluster, all under ``root``."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubeconfig(self) -> Path:
        """The administrator's kubeconfig (user ``vigil-dev-admin`` in ``system:masters``): what kubectl uses."""
        return self.root / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def containerd(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd / "containerd.sock"

    @property
    def pod_netns(self) -> Path:
        """Where containerd mounts the pods' network namespaces (``netns_mounts_under_state_dir``)."""
        return self.containerd / "state" / "io.containerd.grpc.v1.cri" / "netns"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def volume_plugins(self) -> Path:
        return self.root / "volume-plugins"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def host_snapshot(self) -> Path:
        return self.root / "host-before.json"

    def component_kubeconfig(self, component: str) -> Path:
        return self.root / f"{component}.kubeconfig"

    def make_directories(self) -> None:
        for directory in (self.pki, self.logs, self.pids, self.etcd_data, self.containerd, self.kubelet_root,
                          self.cni_conf, self.cni_ipam, self.volume_plugins, self.pod_logs, self.images):
            directory.mkdir(parents=True, exist_ok=True)


def kubeconfig(server: str, ca: Path, certificate: Path, key: Path) -> str:
    """A kubeconfig that reaches ``server`` with a client certificate (JSON is YAML)."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "vigil-dev",
        "clusters": [{"name": "vigil-dev", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "vigil-dev", "user": {"client-certificate": str(certificate), "client-key": str(key)}}],
        "contexts": [{"name": "vigil-dev", "context": {"cluster": "vigil-dev", "user": "vigil-dev"}}],
    }, indent=1) + "\n"


def audit_webhook_kubeconfig(webhook_url: str) -> str:
    """The apiserver's audit webhook configuration: ``vigil collect audit --webhook`` on the host, plain HTTP on
    127.0.0.1 (the collector's default listener)."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "vigil",
        "clusters": [{"name": "vigil", "cluster": {"server": webhook_url}}],
        "users": [{"name": "kube-apiserver", "user": {}}],
        "contexts": [{"name": "vigil", "context": {"cluster": "vigil", "user": "kube-apiserver"}}],
    }, indent=1) + "\n"


def kubelet_config(layout: ClusterLayout, node_ip: str) -> str:
    """The KubeletConfiguration: CRI on the private containerd, cgroupfs, no iptables chains, volume plugins and
    pod logs under the cluster's directory, x509 client authentication (the apiserver's exec and logs requests)."""
    pki = layout.pki
    return json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": node_ip, "port": KUBELET_PORT, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": KUBELET_HEALTHZ_PORT,
        "tlsCertFile": str(pki / "kubelet-serving.crt"), "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {"x509": {"clientCAFile": str(pki / "ca.crt")}, "webhook": {"enabled": True},
                           "anonymous": {"enabled": False}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "makeIPTablesUtilChains": False,
        "volumePluginDir": str(layout.volume_plugins),
        "podLogsDir": str(layout.pod_logs),
        "resolvConf": "/etc/resolv.conf",
        # A shared development machine: evict only when it is really out of memory or disk.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
        "imageGCHighThresholdPercent": 99, "imageGCLowThresholdPercent": 98,
    }, indent=1) + "\n"


def containerd_config(layout: ClusterLayout) -> str:
    """containerd's config: its own root, state, socket and runc root; the CRI plugin with the bridge CNI from
    Debian's containernetworking-plugins and FACTS.md's two settings for this machine."""
    directory = layout.containerd
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{directory / 'root'}"
state = "{directory / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{directory / 'opt'}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{layout.cni_conf}"
    max_conf_num = 1
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        Root = "{directory / 'state' / 'runc'}"
"""


def cni_config(layout: ClusterLayout) -> str:
    """The pod network: a bridge with the gateway on the host, no masquerading (no iptables rules: pods reach the
    host's addresses, which is all the dev cluster needs), addresses leased under the cluster's directory."""
    return json.dumps({
        "cniVersion": "0.4.0", "name": "vigil-dev",
        "plugins": [{
            "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
            "ipam": {"type": "host-local", "dataDir": str(layout.cni_ipam), "ranges": [[{"subnet": POD_SUBNET}]],
                     "routes": [{"dst": "0.0.0.0/0"}]},
        }],
    }, indent=1) + "\n"
