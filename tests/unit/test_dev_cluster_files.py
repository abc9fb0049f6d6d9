"""The dev cluster's pieces, without starting it: certificates (real openssl), the kubelet, containerd and CNI
configurations, the busybox OCI image, the host snapshot that ``down`` restores from, and the pods' loopback."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.integration.harness import wait_for
from vigil.devstack import kube_config, kube_host
from vigil.devstack.kube_config import ClusterLayout
from vigil.devstack.kube_pki import Authority, Identity
from vigil.devstack.oci_image import BUSYBOX, write_busybox_image
from vigil.devstack.pod_loopback import PodLoopback, network_namespace

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


def _text(certificate: Path) -> str:
    return subprocess.run(["openssl", "x509", "-in", str(certificate), "-noout", "-text"], capture_output=True,
                          text=True, check=True).stdout


@needs_openssl
def test_certificates_are_made_once_and_issued_again_when_the_node_address_changes(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    authority.ensure()
    server = Identity("apiserver", "kube-apiserver", ip_names=("127.0.0.1", "192.0.2.2"), server=True, client=False)
    certificate, _ = authority.ensure_certificate(server)
    first = certificate.read_bytes()

    authority.ensure()
    authority.ensure_certificate(server)
    moved = Identity("apiserver", "kube-apiserver", ip_names=("127.0.0.1", "198.51.100.9"), server=True,
                     client=False)
    authority.ensure_certificate(moved)

    assert authority.issued == ["ca", "apiserver", "apiserver"], "the same names: kept; a new address: issued"
    assert certificate.read_bytes() != first and "IP Address:198.51.100.9" in _text(certificate)
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(authority.certificate), str(certificate)],
                              capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stderr


@needs_openssl
def test_a_node_certificate_names_the_node_as_kubernetes_reads_it(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    authority.ensure()
    certificate, _ = authority.ensure_certificate(Identity("kubelet", "system:node:vm", "system:nodes"))
    rsa, _ = authority.ensure_certificate(Identity("serving", "kube-apiserver", server=True, client=False, rsa=True))

    text = _text(certificate)
    assert "Subject: O = system:nodes, CN = system:node:vm" in text and "TLS Web Client Authentication" in text
    assert "id-ecPublicKey" in text and "rsaEncryption" in _text(rsa)


def test_the_kubelet_makes_no_iptables_chains_and_keeps_its_files_under_the_cluster_directory() -> None:
    layout = ClusterLayout(Path("/dev-run/cluster"))
    kubelet = json.loads(kube_config.kubelet_config(layout, "192.0.2.2"))
    cni = json.loads(kube_config.cni_config(layout))

    assert kubelet["makeIPTablesUtilChains"] is False
    assert kubelet["volumePluginDir"].startswith("/dev-run/cluster/")
    assert kubelet["podLogsDir"].startswith("/dev-run/cluster/")
    assert kubelet["containerRuntimeEndpoint"] == "unix:///dev-run/cluster/containerd/containerd.sock"
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    bridge = cni["plugins"][0]
    assert (bridge["ipMasq"], bridge["bridge"]) == (False, kube_config.BRIDGE)
    assert bridge["ipam"]["dataDir"].startswith("/dev-run/cluster/")
    containerd = kube_config.containerd_config(layout)
    assert 'root = "/dev-run/cluster/containerd/root"' in containerd
    assert "netns_mounts_under_state_dir = true" in containerd and "restrict_oom_score_adj = true" in containerd


@pytest.mark.skipif(not BUSYBOX.exists(), reason="busybox-static is not installed")
def test_the_busybox_image_links_every_applet_and_names_itself(tmp_path: Path) -> None:
    tarball = tmp_path / "image.tar"
    write_busybox_image(tarball, "docker.io/vigil/busybox:dev", ["/bin/sh"])

    with tarfile.open(tarball) as image:
        index = json.load(image.extractfile("index.json"))
        manifest_digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(image.extractfile(f"blobs/sha256/{manifest_digest}"))
        layer = image.extractfile(f"blobs/sha256/{manifest['layers'][0]['digest'].split(':')[1]}")
        with tarfile.open(fileobj=layer) as files:
            members = {member.name: member for member in files.getmembers()}
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/vigil/busybox:dev"
    assert members["bin/busybox"].isfile()
    assert all(members[f"bin/{applet}"].linkname == "busybox" for applet in ("sh", "wget", "nc", "cat"))


def test_the_host_snapshot_is_taken_once_until_down_removes_it(tmp_path: Path) -> None:
    file = tmp_path / "host-before.json"
    first = kube_host.HostSnapshot.load_or_take(file)
    file.write_text(json.dumps({"sysctls": {"kernel.panic": "7"}, "absent_paths": ["/var/lib/kubelet"]}))

    again = kube_host.HostSnapshot.load_or_take(file)

    assert set(first.sysctls) == set(kube_host.SYSCTLS)
    assert again == kube_host.HostSnapshot({"kernel.panic": "7"}, ["/var/lib/kubelet"]), "the first one counts"
    assert kube_host.unmount_under(tmp_path) == []
    assert kube_host.delete_link("vigil-absent0") is False


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
async def test_a_pod_namespace_reaches_the_hosts_loopback_port_at_its_own(tmp_path: Path) -> None:
    """What the Helm chart's pods need on the dev cluster: the dev stack at 127.0.0.1 in their own namespace."""
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"host says " + await reader.readline())
        await writer.drain()
        writer.close()

    host = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = host.sockets[0].getsockname()[1]
    pod = subprocess.Popen(["unshare", "--net", "sh", "-c", "ip link set lo up && exec sleep 60"])
    (tmp_path / "netns").mkdir()
    (tmp_path / "netns" / "cni-test").symlink_to(f"/proc/{pod.pid}/ns/net")
    stop = asyncio.Event()
    bridge = asyncio.create_task(PodLoopback(tmp_path / "netns", (port,)).run(stop))
    try:
        answer = await wait_for(lambda: asyncio.to_thread(_ask_in, tmp_path / "netns" / "cni-test", port), 15, 0.2)
    finally:
        stop.set()
        await bridge
        pod.kill()
        pod.wait()
        host.close()
    assert answer == b"host says hello\n"


def _ask_in(namespace: Path, port: int) -> bytes | None:
    """Connect to 127.0.0.1:``port`` from inside ``namespace``; None while nothing listens there yet."""
    with network_namespace(namespace):
        client = socket.socket()
    with client:
        try:
            client.connect(("127.0.0.1", port))
        except OSError as exc:  # the namespace's loopback is not up yet, or the bridge does not listen there yet
            if exc.errno in (errno.ENETUNREACH, errno.ECONNREFUSED):
                return None
            raise
        client.sendall(b"hello\n")
        return client.makefile("rb").readline()
