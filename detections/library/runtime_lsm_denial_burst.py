"""Many SELinux or AppArmor denials in one pod within minutes: a process working its way along what its
profile forbids."""

from typing import Any

from vigil.detections.sdk import Scenario, ScenarioEvent, ThresholdDetection, container_key, pod_key
from vigil.event import Event
from vigil.sources.fixtures import in_pod
from vigil.sources.kernel_audit.fixtures import kernel_audit_record

PATHS = ["/proc/sys/kernel/core_pattern", "/sys/kernel/uevent_helper", "/proc/sysrq-trigger", "/etc/shadow",
         "/var/run/secrets/kubernetes.io/serviceaccount/token", "/root/.ssh/id_rsa"]


def denied(event: Event) -> bool:
    return event.outcome.result == "denied" and bool(event.k8s.container_id or event.container.id or event.k8s.pod)


def denial(serial: int, decision: str = "DENIED") -> dict[str, Any]:
    body = (f'audit(1741069338.{serial % 1000:03d}:{serial}): apparmor="{decision}" operation="open" '
            f'profile="cri-containerd.apparmor.d" name="{PATHS[serial % len(PATHS)]}" pid=4242 comm="sh" '
            'requested_mask="w" denied_mask="w" fsuid=0 ouid=0')
    return in_pod(kernel_audit_record(1400, body))


def burst(count: int, every_s: float, decision: str = "DENIED") -> list[ScenarioEvent]:
    return [ScenarioEvent(source="kernel-audit", record=denial(300 + i, decision), at_s=i * every_s)
            for i in range(count)]


DETECTION = ThresholdDetection(
    id="runtime.lsm_denial_burst",
    title="Burst of SELinux or AppArmor denials in a pod",
    alert_title="{count} {lsm} denials in {namespace}/{pod} within {window_s:.0f} s",
    description=(
        "SELinux or AppArmor denied processes of one pod at least 20 accesses within five minutes. A single "
        "denial is often a profile gap; a burst is something trying one forbidden path after another (an "
        "escape toolkit probing /proc and /sys, a credential sweep) or a workload broken by a profile change. "
        "The threshold and window can be set per namespace."
    ),
    severity="medium",
    mitre=["T1611", "T1083"],
    tags=["runtime", "selinux", "apparmor", "kernel", "threshold"],
    references=[
        "https://selinuxproject.org/page/NB_AL",
        "https://gitlab.com/apparmor/apparmor/-/wikis/AppArmor_Failures",
    ],
    false_positives=["A workload started under a new profile that misses one of its regular paths."],
    kinds=["kernel.lsm"],
    match=denied,
    group=lambda event: pod_key(event) or container_key(event),
    context=lambda event: {"lsm": event.action, "exe": event.actor.exe, "container": event.k8s.container_name},
    threshold=20,
    window_s=300,
    window="sliding",
    dedup="{group}",
    examples=[
        Scenario(name="twenty denials in a minute and a half", fires=True, events=burst(20, 4)),
        Scenario(name="forty denials in ten seconds", fires=True, events=burst(40, 0.25)),
        Scenario(name="nineteen denials", fires=False, events=burst(19, 4)),
        Scenario(name="complain mode: allowed, audited", fires=False, events=burst(40, 1, "ALLOWED")),
    ],
)
