"""Many seccomp denials in one pod within minutes: a process probing for system calls its profile refuses."""

from typing import Any

from vigil.detections.sdk import Scenario, ScenarioEvent, ThresholdDetection, container_key, pod_key
from vigil.event import Event
from vigil.sources.fixtures import in_pod
from vigil.sources.kernel_audit.fixtures import kernel_audit_record


def denied(event: Event) -> bool:
    return event.outcome.result == "denied" and bool(event.k8s.container_id or event.container.id or event.k8s.pod)


def seccomp_record(serial: int, code: str = "0x50001", syscall: int = 165, pod: str = "api-7d4b9c-x2x9z") -> dict:
    body = (f"audit(1741069338.{serial % 1000:03d}:{serial}): auid=4294967295 uid=1000 gid=1000 pid=4242 "
            f'comm="sh" exe="/bin/busybox" sig=0 arch=c000003e syscall={syscall} compat=0 ip=0x4b5a1c code={code}')
    return in_pod(kernel_audit_record(1326, body), pod=pod)


def burst(count: int, every_s: float, first: int = 100, **record: Any) -> list[ScenarioEvent]:
    return [ScenarioEvent(source="kernel-audit", record=seccomp_record(first + i, **record), at_s=i * every_s)
            for i in range(count)]


DETECTION = ThresholdDetection(
    id="runtime.seccomp_denials",
    title="Seccomp denials in a pod",
    alert_title="{count} seccomp denials in {namespace}/{pod} within {window_s:.0f} s (first: {verdict} on {syscall})",
    description=(
        "The seccomp filters of one pod refused at least 10 system calls (errno, trap, kill, notify or trace "
        "verdicts) within five minutes. A workload runs what its profile was written for; a burst of refusals "
        "is something else running in it (an exploit trying unshare, mount or keyctl; a shell and its tools), "
        "or a profile broken by a release. The threshold and window can be set per namespace."
    ),
    severity="medium",
    mitre=["T1611", "T1068"],
    tags=["runtime", "seccomp", "kernel", "threshold"],
    references=[
        "https://man7.org/linux/man-pages/man2/seccomp.2.html",
        "https://kubernetes.io/docs/tutorials/security/seccomp/",
    ],
    false_positives=["A workload whose libc probes for newer system calls (clone3, statx) under an old profile."],
    kinds=["kernel.seccomp"],
    match=denied,
    group=lambda event: pod_key(event) or container_key(event),
    context=lambda event: {"syscall": event.target.name, "verdict": event.action, "exe": event.actor.exe,
                           "container": event.k8s.container_name, "image": event.k8s.image},
    threshold=10,
    window_s=300,
    window="sliding",
    dedup="{group}",
    examples=[
        Scenario(name="ten errno denials in two minutes", fires=True, events=burst(10, 12)),
        Scenario(name="a mix of calls, killed and refused", fires=True, events=[
            *burst(6, 5, syscall=272), *burst(6, 5, first=200, syscall=250, code="0x80000000")]),
        Scenario(name="nine denials", fires=False, events=burst(9, 10)),
        Scenario(name="denials spread over an hour", fires=False, events=burst(12, 400)),
        Scenario(name="logged, not denied", fires=False, events=burst(20, 1, code="0x7ffc0000")),
    ],
)
