"""A real containerd (with runc and its CRI plugin) under a temporary directory, and pods run through CRI.

Import the ``containerd`` fixture into a test module (``from tests.integration.containerd_runtime import
containerd``) to get a :class:`Containerd`: its own root, state and socket, nothing shared with a system
containerd. No image can be pulled here, so the fixture builds an OCI image from Debian's static busybox
(:mod:`vigil.devstack.oci_image`, as the dev cluster does) and imports it (``ctr images import``) both as
the pod sandbox ("pause") image and as the workload image.

What this machine needs (FACTS.md): ``restrict_oom_score_adj`` (runc lacks CAP_SYS_RESOURCE) and host
network sandboxes without a hostname. Teardown removes every pod through CRI, stops containerd, ends the
shims started for this socket (by pid) and unmounts anything left under the directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import grpc
import pytest

from vigil.collectors.runtime.api import cri_pb2, cri_pb2_grpc
from vigil.devstack.oci_image import BUSYBOX, write_busybox_image

IMAGE = "docker.io/vigil/busybox:test"
PAUSE_IMAGE = "docker.io/vigil/pause:test"
_APPLETS = ("sh", "cat", "sleep", "echo", "true", "ls", "id")
#: The file a :func:`gated` container waits for, inside its own root.
_GATE = "/tmp/vigil-go"


def missing_requirements() -> str:
    """Why a real containerd cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "containerd tests need root"
    for tool in ("containerd", "ctr", "runc", "containerd-shim-runc-v2"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh installs it)"
    if not BUSYBOX.exists():
        return "/bin/busybox (busybox-static) is not installed"
    return ""


def gated(command: str) -> list[str]:
    """A container command that runs ``command`` only once the test calls :func:`open_gate`, exec'd by the
    container's first process (the pid containerd announces): for a workload that must start only after the
    test observed something, such as the container's start event on the topic, instead of after a guessed delay.
    """
    return ["sh", "-c", f"until [ -e {_GATE} ]; do sleep 0.05; done; exec {command}"]


def open_gate(pid: int) -> None:
    """Let the :func:`gated` container whose first process is ``pid`` run its command."""
    Path(f"/proc/{pid}/root{_GATE}").touch()


@dataclass
class Pod:
    sandbox_id: str
    name: str
    namespace: str
    uid: str
    labels: dict[str, str]
    config: cri_pb2.PodSandboxConfig


class Containerd:
    """One running containerd; ``runtime`` is a CRI RuntimeService client on its socket."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "containerd.sock"
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None
        self._plain: list[str] = []
        self.runtime: cri_pb2_grpc.RuntimeServiceStub

    def _terminate(self) -> None:
        if self._channel:
            self._channel.close()
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    @property
    def address(self) -> str:
        return str(self.socket)

    def restart(self) -> None:
        """Stop containerd (its shims and containers live on, as in production) and start it again."""
        self._terminate()
        self.start()

    def start(self) -> None:
        config = self.directory / "config.toml"
        config.write_text(_config(self.directory, self.socket))
        log = (self.directory / "containerd.log").open("wb")
        self._process = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log,
                                         start_new_session=True)
        self._channel = grpc.insecure_channel(f"unix://{self.socket}")
        self.runtime = cri_pb2_grpc.RuntimeServiceStub(self._channel)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.runtime.ListPodSandbox(cri_pb2.ListPodSandboxRequest(), timeout=2)
                break
            except grpc.RpcError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"containerd did not come up: {self.log_tail()}") from None
                time.sleep(0.1)
        self.import_image(IMAGE, ["/bin/sh"])
        self.import_image(PAUSE_IMAGE, ["/bin/sleep", "86400"])

    def import_image(self, name: str, command: list[str], applets: Iterable[str] = _APPLETS,
                     files: Mapping[str, Path] = MappingProxyType({})) -> None:
        """Build and import an image of busybox with ``applets`` linked in /bin and ``files`` (path in the image:
        file on this host) added, e.g. programs a test compiled."""
        image = self.directory / "image.tar"
        write_busybox_image(image, name, command, list(applets), files=files)
        self.ctr("images", "import", str(image))

    def ctr(self, *args: str) -> str:
        done = subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
                              capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"ctr {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def run_pod(self, name: str, namespace: str, labels: dict[str, str] | None = None) -> Pod:
        """A ready pod sandbox on the host network (its ``pause`` process is busybox sleep)."""
        uid = str(uuid.uuid4())
        labels = labels or {}
        config = cri_pb2.PodSandboxConfig(
            metadata=cri_pb2.PodSandboxMetadata(name=name, namespace=namespace, uid=uid),
            log_directory=str(self.directory / "pods" / uid),
            labels=labels,
            linux=cri_pb2.LinuxPodSandboxConfig(security_context=cri_pb2.LinuxSandboxSecurityContext(
                namespace_options=cri_pb2.NamespaceOption(network=cri_pb2.NODE))),
        )
        reply = self.runtime.RunPodSandbox(cri_pb2.RunPodSandboxRequest(config=config), timeout=60)
        return Pod(reply.pod_sandbox_id, name, namespace, uid, labels, config)

    def run_container(self, pod: Pod, name: str, command: list[str], *, attempt: int = 0,
                      linux: cri_pb2.LinuxContainerConfig | None = None, image: str = IMAGE,
                      mounts: Sequence[cri_pb2.Mount] = ()) -> str:
        """Create and start a container in ``pod`` as the kubelet does, ``attempt`` counting its restarts and
        ``mounts`` its host paths (hostPath volumes); returns its id."""
        config = cri_pb2.ContainerConfig(
            metadata=cri_pb2.ContainerMetadata(name=name, attempt=attempt),
            image=cri_pb2.ImageSpec(image=image),
            command=command,
            mounts=mounts,
            log_path=f"{name}-{attempt}.log",
            linux=linux,
        )
        created = self.runtime.CreateContainer(
            cri_pb2.CreateContainerRequest(pod_sandbox_id=pod.sandbox_id, config=config, sandbox_config=pod.config),
            timeout=60)
        self.runtime.StartContainer(cri_pb2.StartContainerRequest(container_id=created.container_id), timeout=60)
        return created.container_id

    def run_plain_container(self, container_id: str, command: list[str], image: str = IMAGE) -> None:
        """Start a container through containerd alone (``ctr run``, no CRI, so no pod: as a node's own tooling or
        an attacker with the runtime socket starts one) in a network namespace of its own with no interface up.
        ``container_id`` must be 64 hex digits, as runtimes name containers (``secrets.token_hex(32)``)."""
        self._plain.append(container_id)
        self.ctr("run", "--detach", "--snapshotter", "overlayfs", image, container_id, *command)

    def container_state(self, container_id: str) -> int:
        reply = self.runtime.ContainerStatus(cri_pb2.ContainerStatusRequest(container_id=container_id), timeout=10)
        return reply.status.state

    def remove_pod(self, pod: Pod, attempts: int = 3) -> None:
        """Stop and remove a pod as the kubelet does, which asks again on its next sync when StopPodSandbox
        fails: containerd 1.6 can lose a race with the shim of a container that is exiting ("ttrpc: closed")."""
        for attempt in range(1, attempts + 1):
            try:
                self.runtime.StopPodSandbox(cri_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.sandbox_id), timeout=60)
                break
            except grpc.RpcError as exc:
                if attempt == attempts or exc.code() is not grpc.StatusCode.UNKNOWN:
                    raise
                time.sleep(1)
        self.runtime.RemovePodSandbox(cri_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.sandbox_id), timeout=60)

    def log_tail(self, lines: int = 20) -> str:
        path = self.directory / "containerd.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        with contextlib.suppress(grpc.RpcError, AttributeError):
            for sandbox in self.runtime.ListPodSandbox(cri_pb2.ListPodSandboxRequest(), timeout=10).items:
                self.runtime.StopPodSandbox(cri_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox.id), timeout=60)
                self.runtime.RemovePodSandbox(cri_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id), timeout=60)
        for container_id in self._plain:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.ctr("tasks", "kill", "--signal", "SIGKILL", container_id)
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.ctr("containers", "delete", container_id)
        self._terminate()
        for pid in _shims_of(self.socket):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _unmount_under(self.directory)


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    # Short path: containerd's socket paths must stay under the kernel's 108-byte limit.
    directory = Path(tempfile.mkdtemp(prefix="vigil-ctrd-", dir="/tmp"))
    runtime = Containerd(directory)
    try:
        runtime.start()
        yield runtime
    finally:
        runtime.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _config(directory: Path, socket: Path) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{directory / 'root'}"
state = "{directory / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{directory / 'opt'}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.cni]
    bin_dir = "{directory / 'cni-bin'}"
    conf_dir = "{directory / 'cni-conf'}"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        Root = "{directory / 'state' / 'runc'}"
"""


def _shims_of(socket: Path) -> list[int]:
    """Pids of the containerd shims started for this socket (they outlive containerd by design)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(socket).encode() in argv:
                pids.append(int(proc.name))
    return pids


def _unmount_under(directory: Path) -> None:
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for target in sorted((m for m in mounts if m.startswith(str(directory))), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
