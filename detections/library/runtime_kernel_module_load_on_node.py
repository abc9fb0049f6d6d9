"""A kernel module loaded on a node by something other than the boot-time and hotplug loaders: rare on a running
node, and the way rootkits get beneath every sensor."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record


def loads_on_node(event: Event, params: dict[str, Any]) -> bool:
    if event.container.id or event.k8s.container_id:
        return False  # runtime.kernel_module_load's (critical)
    return program_name(event) not in params["allowed_programs"]


def module_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "module": event.target.name or "(unnamed)", "call": event.action,
            "command": " ".join(event.actor.args), "uid": event.actor.uid, "auid": event.actor.auid,
            "node": event.node}


def sensor_module(comm: str, name: str) -> dict[str, Any]:
    """The eBPF sensor's record of a finit_module by ``comm`` on the node (``name``: the module file's name)."""
    return {"type": "module_load", "time_ns": EXAMPLE_START_NS, "pid": 3300, "tid": 3300, "ppid": 3200, "uid": 0,
            "gid": 0, "comm": comm, "cgroup_id": 1, "call": "finit_module", "flags": 0, "fd": 3, "name": name,
            "args": "", "node": "worker-1"}


DETECTION = EventDetection(
    id="runtime.kernel_module_load_on_node",
    title="Kernel module loaded on a node",
    alert_title="Kernel module {module} loaded by {program} on node {node}",
    description=(
        "A process on a node loaded a kernel module (init_module/finit_module), other than the loaders that run "
        "at boot and on hotplug (systemd-modules-load, udev). Modules still load on running nodes (kube-proxy's "
        "and CNI plugins' modprobe of ip_vs or br_netfilter), so this is low and names the module; a module "
        "nobody expects is a rootkit below every container boundary and every sensor. Loads from containers are "
        "runtime.kernel_module_load's."
    ),
    severity="low",
    mitre=["T1547.006", "T1014"],
    tags=["runtime", "persistence", "rootkit", "node"],
    references=["https://attack.mitre.org/techniques/T1547/006/"],
    false_positives=["Drivers installed on purpose (GPU, storage, network); modules kube-proxy and CNI plugins load."],
    kinds=["kernel.module_load"],
    params={"allowed_programs": ["systemd-modules-load", "systemd-udevd", "udevd", "udevadm"]},
    match=loads_on_node,
    context=module_context,
    dedup="{cluster}/{node}/{module}",
    examples=[
        Example(name="a module loaded on the node by an unknown program (eBPF sensor)", source="ebpf", fires=True,
                record=sensor_module("loader", "diamorphine.ko")),
        Example(
            name="Falco: insmod on the host",
            source="falco",
            fires=True,
            record=falco_record("Linux Kernel Module Injection Detected", "finit_module",
                                {"proc.exepath": "/usr/sbin/insmod", "proc.name": "insmod",
                                 "proc.cmdline": "insmod /tmp/rk.ko", "evt.res": "SUCCESS"}, host=True),
        ),
        Example(
            name="systemd-modules-load at boot (Tetragon kprobe)",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_kprobe", binary="/usr/lib/systemd/systemd-modules-load", host=True,
                                   body=kprobe("do_init_module", {"module_arg": {"name": "br_netfilter"}})),
        ),
        Example(
            name="a module loaded from a container (runtime.kernel_module_load's)",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_kprobe", binary="/sbin/insmod", arguments="rk.ko",
                                   body=kprobe("do_init_module", {"module_arg": {"name": "rk"}})),
        ),
    ],
)
