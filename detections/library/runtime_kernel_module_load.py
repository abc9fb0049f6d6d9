"""A kernel module loaded from a container: code into the node's kernel, beneath every container boundary."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

MODULE_LOADERS = frozenset({"insmod", "modprobe"})
#: Options under which modprobe loads nothing: removal and dry runs.
NOT_LOADING = frozenset({"-r", "--remove", "-n", "--dry-run"})


def loads_module(event: Event) -> bool:
    if not (event.k8s.container_id or event.container.id):
        return False
    if event.kind == "kernel.module_load":
        return True
    program = program_name(event)
    return program in MODULE_LOADERS and NOT_LOADING.isdisjoint(event.actor.args)


def module_context(event: Event) -> dict[str, Any]:
    module = event.target.name or next((a for a in event.actor.args[1:] if not a.startswith("-")), "")
    return {"exe": event.actor.exe, "module": module, "command": " ".join(event.actor.args),
            "container": event.k8s.container_name, "image": event.k8s.image}


DETECTION = EventDetection(
    id="runtime.kernel_module_load",
    title="Kernel module loaded from a container",
    alert_title="Kernel module {module} loaded by {program} from {namespace}/{pod}",
    description=(
        "A process in a container loaded a kernel module (init_module/finit_module, or insmod/modprobe). A "
        "module runs in the node's kernel: rootkits hide processes and files this way, and nothing in a "
        "container's isolation applies to it any more. It needs CAP_SYS_MODULE, which no workload should have. "
        "Loads by the node's own tooling outside containers are not reported."
    ),
    severity="critical",
    mitre=["T1547.006", "T1611"],
    tags=["runtime", "persistence", "container_escape", "rootkit"],
    references=["https://attack.mitre.org/techniques/T1547/006/"],
    false_positives=["Privileged driver installers (GPU, storage, eBPF agents) loading their modules by design."],
    kinds=["kernel.module_load", "process.exec"],
    exe_names={"process.exec": MODULE_LOADERS},
    match=loads_module,
    context=module_context,
    dedup="{cluster}/{namespace}/{pod}/{module}",
    examples=[
        Example(
            name="insmod in a container (Tetragon exec)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/sbin/insmod", arguments="/tmp/diamorphine.ko", parent="/bin/bash"),
        ),
        Example(
            name="finit_module from a container (Tetragon kprobe)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/sbin/insmod", arguments="rk.ko",
                body=kprobe("do_init_module", {"module_arg": {"name": "rk", "signature_ok": False}}),
            ),
        ),
        Example(
            name="Falco: linux kernel module injection",
            source="falco",
            fires=True,
            record=falco_record(
                "Linux Kernel Module Injection Detected", "finit_module",
                {"proc.exepath": "/usr/sbin/insmod", "proc.name": "insmod", "proc.cmdline": "insmod /root/rk.ko",
                 "evt.res": "SUCCESS"},
            ),
        ),
        Example(
            name="module loaded by the node's own tooling",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/lib/systemd/systemd-modules-load", host=True,
                body=kprobe("do_init_module", {"module_arg": {"name": "br_netfilter", "signature_ok": True}}),
            ),
        ),
        Example(
            name="listing modules in a container",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/sbin/lsmod", parent="/bin/sh"),
        ),
    ],
)
