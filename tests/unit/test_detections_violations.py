"""Runtime violation detections with their configuration per namespace (threshold, window, allow-lists), and
the threshold machinery they rest on: per-namespace limits, windows that remember their size, sums and maxima."""

from __future__ import annotations

from typing import Any

import orjson

from vigil.alert import Alert
from vigil.detections.engine import LIBRARY, Engine, load_detections
from vigil.detections.sdk import ThresholdDetection
from vigil.detections.state import DictStore
from vigil.detections.tuning import Tuning
from vigil.event import Event
from vigil.sources.containerd.fixtures import containerd_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.kernel_audit.fixtures import kernel_audit_record
from vigil.sources.source import get_source

LOADED, _ = load_detections([LIBRARY])
BY_ID = {d.id: d for d in LOADED.values()}


def seccomp_denial(at_s: float, serial: int, namespace: str = "prod") -> tuple[str, dict[str, Any], float]:
    body = (f"audit(1741069338.000:{serial}): auid=4294967295 uid=1000 gid=1000 pid=77 comm=\"sh\" "
            "exe=\"/bin/busybox\" sig=0 arch=c000003e syscall=272 compat=0 ip=0x4b5a1c code=0x50001")
    return "kernel-audit", in_pod(kernel_audit_record(1326, body), namespace=namespace, pod="api-1"), at_s


def normalized(source_name: str, record: dict[str, Any], at_s: float) -> Event:
    source = get_source(source_name)
    (split,) = list(source.split(orjson.dumps(record), 1 << 20))
    event = source.normalize(split, "c", "worker-1")
    event.time_ns = EXAMPLE_START_NS + int(at_s * 1e9)
    return event


def run(detection_id: str, tuning: dict[str, Any], records: list[tuple[str, dict[str, Any], float]]) -> list[Alert]:
    engine = Engine([BY_ID[detection_id]], tuning=Tuning.parse({"detections": tuning}))
    assert not engine.errors, engine.errors
    alerts = engine.process_many(normalized(*record) for record in records)
    return alerts + engine.flush()


def test_seccomp_denials_take_their_threshold_and_window_from_the_namespace() -> None:
    tuning = {"runtime.seccomp_denials": {"namespaces": {"prod": {"threshold": 3, "window_s": 30,
                                                                  "severity": "high"}}}}
    prod_burst = [seccomp_denial(i * 5, 10 + i) for i in range(3)]
    prod_slow = [seccomp_denial(100 + i * 20, 20 + i) for i in range(3)]  # 3 within 40 s: outside a 30 s window
    dev_burst = [seccomp_denial(i * 5, 30 + i, namespace="dev") for i in range(9)]

    alerts = run("runtime.seccomp_denials", tuning, [*prod_burst, *prod_slow, *dev_burst])

    assert [(a.namespace, a.severity, a.context["count"], a.context["window_s"]) for a in alerts] == [
        ("prod", "high", 3, 30)], "dev keeps the detection's 10 denials in 300 s"


def test_setuid_binaries_expected_in_a_namespace_are_allowed_there_only() -> None:
    tuning = {"runtime.setuid_exec_in_container": {"namespaces": {"ci-*": {
        "params": {"allowed_binaries": ["/usr/bin/sudo", "/usr/lib/dbus-1.0/*"]}}}}}

    def setuid_exec(namespace: str, exe: str, at_s: float) -> tuple[str, dict[str, Any], float]:
        record = {"type": "exec", "time_ns": EXAMPLE_START_NS + int(at_s * 1e9), "pid": 9, "uid": 1000, "gid": 1000,
                  "euid": 0, "egid": 1000, "exe": exe, "args": [exe]}
        return "ebpf", in_pod(record, namespace=namespace), at_s

    alerts = run("runtime.setuid_exec_in_container", tuning, [
        setuid_exec("ci-runners", "/usr/bin/sudo", 0), setuid_exec("ci-runners", "/usr/bin/pkexec", 1),
        setuid_exec("shop", "/usr/bin/sudo", 2)])

    assert [(a.namespace, a.context["exe"]) for a in alerts] == [
        ("ci-runners", "/usr/bin/pkexec"), ("shop", "/usr/bin/sudo")]


def test_a_crash_loop_threshold_per_namespace() -> None:
    tuning = {"runtime.container_crash_loop": {"namespaces": {"batch": {"threshold": 6}}}}
    exits = [("containerd", containerd_record("container.exit", at_s=i * 30, namespace=namespace, exit_status=1),
              i * 30) for i in range(4) for namespace in ("batch", "shop")]

    alerts = run("runtime.container_crash_loop", tuning, exits)

    assert [(a.namespace, a.context["count"], a.context["threshold"]) for a in alerts] == [("shop", 3, 3)]


def measured(value: str) -> ThresholdDetection:
    return ThresholdDetection(
        id="test.measure", title="t", description="d", severity="low", kinds=["container.syscalls"],
        match=lambda event: True, group=lambda event: f"{event.k8s.namespace}/{event.k8s.pod}",
        value=lambda event: event.raw["counts"]["fork"], aggregate=value, threshold=100, window_s=60,
    )


def profile(at_s: float, fork: int, namespace: str = "shop") -> Event:
    record = {"type": "syscalls", "time_ns": EXAMPLE_START_NS + int(at_s * 1e9), "cgroup_id": 1, "arch": "x86_64",
              "interval_s": 10.0, "syscalls": [], "counts": {"fork": fork}, "pids": 3}
    return normalized("ebpf", in_pod(record, namespace=namespace), at_s)


def test_values_are_summed_or_their_maximum_kept() -> None:
    start = 60 - EXAMPLE_START_NS // 10**9 % 60  # the next minute boundary: tumbling windows align on the epoch
    forks = [profile(start + i * 10, 40) for i in range(3)]

    summed = Engine([measured("sum")]).process_many(forks)
    peaked = Engine([measured("max")]).process_many([*forks, profile(start + 40, 100)])

    assert [a.context["value"] for a in summed] == [120]
    assert [(a.context["value"], a.context["aggregate"]) for a in peaked] == [(100, "max")]


def test_a_window_opened_for_a_namespace_expires_with_its_own_size() -> None:
    detection = measured("sum")
    tuning = Tuning.parse({"detections": {"test.measure": {"namespaces": {"slow": {"window_s": 3600}}}}})
    store = DictStore()
    engine = Engine([detection], store=store, tuning=tuning)
    engine.process_many([profile(0, 10, namespace="slow"), profile(1, 10, namespace="shop")])

    engine.advance(EXAMPLE_START_NS + 600 * 10**9)

    assert engine.detections[0].horizon_ns == 3600 * 10**9
    assert list(store.keys()) == ["slow/api-7d4b9c-x2x9z"], "shop's 60 s window ended, slow's hour has not"
