"""SELinux or AppArmor denied a container process an access: it tried to leave what its profile allows."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.fixtures import in_pod
from vigil.sources.kernel_audit.fixtures import kernel_audit_record


def denied_in_container(event: Event) -> bool:
    return event.outcome.result == "denied" and bool(event.k8s.container_id or event.container.id or event.k8s.pod)


def lsm_context(event: Event) -> dict[str, Any]:
    target = event.target
    return {"lsm": event.action, "permissions": target.name, "object": target.path, "class": target.resource,
            "decision": event.outcome.reason, "exe": event.actor.exe, "container": event.k8s.container_name,
            "image": event.k8s.image}


def selinux_avc(verdict: str = "denied", serial: int = 80) -> dict[str, Any]:
    body = (f'audit(1741069338.200:{serial}): avc:  {verdict}  {{ read }} for  pid=4242 comm="cat" name="shadow" '
            'dev="overlay" ino=1234 scontext=system_u:system_r:container_t:s0:c123,c456 '
            "tcontext=system_u:object_r:shadow_t:s0 tclass=file permissive=0")
    return kernel_audit_record(1400, body)


def apparmor_avc(decision: str = "DENIED", serial: int = 81) -> dict[str, Any]:
    body = (f'audit(1741069338.300:{serial}): apparmor="{decision}" operation="open" '
            'profile="cri-containerd.apparmor.d" name="/proc/sys/kernel/core_pattern" pid=4242 comm="sh" '
            'requested_mask="w" denied_mask="w" fsuid=0 ouid=0')
    return kernel_audit_record(1400, body)


DETECTION = EventDetection(
    id="runtime.lsm_denied",
    title="SELinux or AppArmor denial in a container",
    alert_title="{lsm} denied {program} {permissions} on {object} in {namespace}/{pod}",
    description=(
        "The kernel audited an SELinux AVC denial or an AppArmor DENIED decision for a process in a container: "
        "it tried to read, write, execute or use something its label or profile does not allow (another "
        "container's files, the host's /proc/sys knobs, a capability). Container profiles are written to fit "
        "what workloads do, so a denial is a process doing something else: an escape attempt, a tool an "
        "attacker brought, or a misconfiguration. Repeated identical denials fold into one alert."
    ),
    severity="low",
    mitre=["T1611", "T1068"],
    tags=["runtime", "selinux", "apparmor", "kernel"],
    references=[
        "https://selinuxproject.org/page/NB_AL",
        "https://gitlab.com/apparmor/apparmor/-/wikis/AppArmor_Failures",
    ],
    false_positives=["A workload needing an access its profile forgot (a new log path, a socket)."],
    kinds=["kernel.lsm"],
    match=denied_in_container,
    context=lsm_context,
    dedup="{cluster}/{namespace}/{pod}/{container}/{lsm}/{permissions}/{object}",
    examples=[
        Example(name="SELinux AVC denial reading another label's file", source="kernel-audit", fires=True,
                record=in_pod(selinux_avc())),
        Example(name="AppArmor denied a write to core_pattern", source="kernel-audit", fires=True,
                record=in_pod(apparmor_avc())),
        Example(name="AppArmor in complain mode allows (and audits)", source="kernel-audit", fires=False,
                record=in_pod(apparmor_avc("ALLOWED"))),
        Example(name="a denial of a host process", source="kernel-audit", fires=False, record=selinux_avc()),
    ],
)
