"""Seccomp verdicts from the real kernel, through the node collector and Kafka, with their pod.

A real containerd runs a pod through CRI; the kernel's SECCOMP audit records are read from the audit netlink
multicast group by ``vigil collect node``, resolved to the container through ``/proc/<pid>/cgroup`` (or, for
a process the filter killed, the pid containerd announced), enriched with the pod through CRI, shipped to
``raw.kernel-audit`` and normalized as the stream worker does.

Two verdicts, two ways a filter gets there:
- ``errno`` with SECCOMP_FILTER_FLAG_LOG: runc 1.1 refuses seccomp flags ("seccomp flags are not yet supported
  by runc"), so a container's own profile cannot ask for it. A process joins the running container's cgroup
  (as ``kubectl exec`` processes do) and installs a raw BPF filter itself (prctl + seccomp(2)).
- ``kill_process`` from the container's Localhost profile, applied by runc: logged by the kernel whatever
  the flags; the process is gone before its record is read.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.integration.containerd_runtime import IMAGE, Pod, containerd, gated, open_gate  # noqa: F401  (the fixture)
from tests.integration.harness import (
    LOGGED_GETPPID,
    container_lifecycles,
    read_raw_records,
    running_node_collector,
    wait_for,
)
from vigil.collectors.kernel_audit.netlink import AuditNetlinkReader
from vigil.collectors.node.collector import NodeCollector, NodeOptions
from vigil.collectors.runtime.api import cri_pb2
from vigil.detections.engine import Engine
from vigil.event import Event
from vigil.sources.containerd import CONTAINERD_SOURCE
from vigil.sources.kernel_audit import KERNEL_AUDIT_SOURCE
from vigil.streams.processor import StreamProcessor

pytestmark = pytest.mark.integration

#: A process that joins a cgroup, denies itself mkdir/mkdirat (EPERM, logged), tries, and waits for stdin.
_DENIED_MKDIR = r"""
import ctypes, os, struct, sys
with open(sys.argv[1], "w") as procs:
    procs.write(str(os.getpid()))
AUDIT_ARCH_X86_64, MKDIR, MKDIRAT = 0xC000003E, 83, 258
LD_ABS, JEQ, RET = 0x20, 0x15, 0x06
program = [(LD_ABS, 0, 0, 4), (JEQ, 0, 3, AUDIT_ARCH_X86_64), (LD_ABS, 0, 0, 0), (JEQ, 2, 0, MKDIR),
           (JEQ, 1, 0, MKDIRAT), (RET, 0, 0, 0x7FFF0000), (RET, 0, 0, 0x00050000 | 1)]  # ALLOW, ERRNO|EPERM
filters = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *op) for op in program))
fprog = ctypes.create_string_buffer(struct.pack("=HxxxxxxQ", len(program), ctypes.addressof(filters)))
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_LOG = 38, 317, 1, 2
assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
assert libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_LOG, fprog) == 0, ctypes.get_errno()
try:
    os.mkdir(sys.argv[2])
    print("allowed", flush=True)
except PermissionError:
    print("denied", flush=True)
sys.stdin.read()
"""


def _audit_unavailable() -> str:
    """Why the kernel's audit multicast group cannot be read here ("" when it can)."""
    if platform.machine() != "x86_64":
        return f"the test's BPF filter is written for x86_64 syscall numbers, this is {platform.machine()}"
    reader = AuditNetlinkReader()
    try:
        reader.open()
    except OSError as exc:
        return f"joining the audit netlink multicast group failed: {exc} (needs CAP_AUDIT_READ, a kernel with audit)"
    reader.close()
    return ""


@pytest.fixture
def audit_readable() -> None:
    reason = _audit_unavailable()
    if reason:
        pytest.skip(reason)


async def _seccomp_record_of(settings, pid: int) -> dict | None:
    for record in await read_raw_records(settings, "raw.kernel-audit"):
        if record.get("type") == "SECCOMP" and record["fields"].get("pid") == str(pid):
            return record
    return None


async def _running_collector(settings, containerd_address: str) -> tuple[asyncio.Event, asyncio.Task]:
    """A node collector without the eBPF sensor (the audit path must not depend on it) and without the
    Kubernetes API (the pod comes from CRI)."""
    settings.node = "node-under-test"
    options = NodeOptions(ebpf=False, kube_api=False, containerd_address=containerd_address)
    return await running_node_collector(NodeCollector(settings, options), ("containerd", "kernel-audit"))


def _cgroup_procs(pid: int) -> Path:
    """The ``cgroup.procs`` of a process's cgroup v2 directory (``/sys/fs/cgroup/unified`` on hybrid hosts)."""
    path = next(line[3:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if line.startswith("0::"))
    mount = next(line.split(" ")[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                 if line.partition(" - ")[2].startswith("cgroup2 "))
    return Path(mount + path) / "cgroup.procs"


def _context(pod: Pod, container_id: str, name: str) -> dict:
    return {"namespace": pod.namespace, "pod": pod.name, "pod_uid": pod.uid, "container_id": container_id,
            "container_name": name, "image": IMAGE, "service_account": "", "labels": pod.labels}


async def test_a_logged_seccomp_errno_in_a_pod_arrives_with_its_pod(kafka_settings, containerd,  # noqa: F811
                                                                     audit_readable, tmp_path):
    stop, run = await _running_collector(kafka_settings, containerd.address)
    pod = await asyncio.to_thread(containerd.run_pod, "checkout-5d8f", "shop", {"app": "checkout"})
    container_id = await asyncio.to_thread(containerd.run_container, pod, "server", ["sleep", "300"])
    container_pid = _pids_in(container_id)[0]
    denied = subprocess.Popen([sys.executable, "-c", _DENIED_MKDIR, str(_cgroup_procs(container_pid)),
                               str(tmp_path / "never")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert denied.stdout.readline().strip() == "denied"
        record = await wait_for(lambda: _seccomp_record_of(kafka_settings, denied.pid), timeout=60, interval=1)
    finally:
        denied.communicate("")
        stop.set()
        await asyncio.wait_for(run, 60)
        await asyncio.to_thread(containerd.remove_pod, pod)

    assert record["k8s"] == _context(pod, container_id, "server")
    assert record["container_id"] == container_id and record["line"].startswith("audit(")
    kafka_settings.cluster = "prod"
    processed = StreamProcessor(kafka_settings, Engine.load([])).process(  # what the stream worker does with it
        "kernel-audit", orjson.dumps([record]), time.time_ns())
    assert not processed.deadletters
    [array] = processed.events
    [event] = [Event.from_dict(document) for document in orjson.loads(array)]
    assert (event.kind, event.action, event.target.name) == ("kernel.seccomp", "errno", "mkdir")
    assert (event.outcome.result, event.outcome.code) == ("denied", 83)
    assert event.outcome.reason == "seccomp errno on mkdir"  # the kernel logs the action, not the errno value
    assert (event.actor.pid, event.actor.uid, event.actor.exe) == (denied.pid, os.getuid(), os.path.realpath(
        sys.executable))
    assert (event.k8s.namespace, event.k8s.pod, event.k8s.container_name, event.k8s.labels) == (
        "shop", "checkout-5d8f", "server", {"app": "checkout"})
    assert event.node == "node-under-test"
    assert KERNEL_AUDIT_SOURCE.key(record, "prod") == event.correlation_key == "prod/shop/checkout-5d8f"


async def test_a_seccomp_kill_from_a_localhost_profile_arrives_with_its_pod(kafka_settings, containerd,  # noqa: F811
                                                                            audit_readable, tmp_path):
    profile = tmp_path / "deny-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]}))
    seccomp = cri_pb2.SecurityProfile(profile_type=cri_pb2.SecurityProfile.Localhost, localhost_ref=str(profile))
    linux = cri_pb2.LinuxContainerConfig(security_context=cri_pb2.LinuxContainerSecurityContext(seccomp=seccomp))
    stop, run = await _running_collector(kafka_settings, containerd.address)
    pod = await asyncio.to_thread(containerd.run_pod, "importer-1", "batch", {"app": "importer"})
    try:
        # The container's first process (whose pid containerd announces) becomes the denied mkdir once
        # containerd's start event is on the topic: the collector knows that pid then, as it does for any
        # process not killed at once.
        container_id = await asyncio.to_thread(containerd.run_container, pod, "job",
                                               gated("busybox mkdir /tmp/denied"), linux=linux)
        started = frozenset({"container.start"})
        start = await wait_for(lambda: container_lifecycles(kafka_settings, [container_id], started), timeout=60,
                               interval=0.2)
        init_pid = start[container_id]["container.start"]["pid"]
        open_gate(init_pid)
        runtime = (await wait_for(lambda: container_lifecycles(kafka_settings, [container_id]), timeout=60,
                                  interval=1))[container_id]
        record = await wait_for(lambda: _seccomp_record_of(kafka_settings, init_pid), timeout=60, interval=1)
    finally:
        stop.set()
        await asyncio.wait_for(run, 60)
        await asyncio.to_thread(containerd.remove_pod, pod)

    context = _context(pod, container_id, "job")
    assert record["k8s"] == context, record
    event = KERNEL_AUDIT_SOURCE.normalize(record, "prod", "ignored")
    assert (event.kind, event.action, event.target.name) == ("kernel.seccomp", "kill_process", "mkdir")
    assert (event.outcome.result, event.outcome.reason) == ("denied", "seccomp kill_process (SIGSYS) on mkdir")
    assert (event.k8s.pod, event.k8s.container_name, event.actor.exe) == ("importer-1", "job", "/bin/busybox")
    exit_event = CONTAINERD_SOURCE.normalize(runtime["container.exit"], "prod", "ignored")
    assert (exit_event.outcome.result, exit_event.outcome.code) == ("failure", 128 + 31)  # killed by SIGSYS
    assert exit_event.k8s.container_name == "job" and exit_event.correlation_key == event.correlation_key


def _pids_in(container_id: str) -> list[int]:
    """Processes whose cgroup names the container."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if container_id in (proc / "cgroup").read_text():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_a_socket_overflow_is_counted_from_the_serials_it_skipped(audit_readable):
    """A receive buffer of a few records and a burst of 3000 logged syscalls: what was not read is counted."""
    burst = 3000
    reader = AuditNetlinkReader(receive_buffer_bytes=4096)
    reader.open()
    try:
        child = subprocess.Popen([sys.executable, "-c", LOGGED_GETPPID, str(burst)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "done"  # nothing read meanwhile: the buffer overflowed
        read = _drain(reader)  # what the buffer held
        child.communicate("again\n")  # one more record after the burst shows the gap in the serials
        read += _drain(reader)
        lost = reader.take_losses(final=True).get("socket_overflow", 0)
    finally:
        reader.close()
    ours = sum(f"pid={child.pid} ".encode() in body for _, body in read)
    assert 0 < ours < burst + 1 and lost > 0
    assert ours + lost >= burst + 1  # every record of the burst was either read or counted as lost


def _drain(reader: AuditNetlinkReader, budget_s: float = 3.0) -> list[tuple[int, bytes]]:
    """Read until the socket is quiet for a moment (other work on the machine may log too: bounded)."""
    read: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + budget_s
    while (batch := reader.read(0.3)) and time.monotonic() < deadline:
        read += batch
    return read
