"""insmod or modprobe loading a module file from outside the kernel's module tree: a module built or downloaded
on the node, which is how rootkits arrive."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

LOADERS = frozenset({"insmod", "modprobe"})
#: Options under which modprobe loads nothing: removal and dry runs.
NOT_LOADING = frozenset({"-r", "--remove", "-n", "--dry-run", "--show-depends", "-D", "-c", "--showconfig"})
MODULE_SUFFIXES = (".ko", ".ko.gz", ".ko.xz", ".ko.zst")


def module_file(event: Event) -> str:
    """The module file a loader names on its command line, '' when it names a module (which loads from the tree)."""
    if not NOT_LOADING.isdisjoint(event.actor.args):
        return ""
    return next((arg for arg in event.actor.args[1:] if arg.endswith(MODULE_SUFFIXES)), "")


def unusual_location(event: Event, params: dict[str, Any]) -> bool:
    if event.container.id or event.k8s.container_id or program_name(event) not in LOADERS:
        return False  # a load from a container is runtime.kernel_module_load's (critical), wherever it comes from
    path = module_file(event)
    return bool(path) and not path.startswith(tuple(params["module_dirs"]))


def location_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "module_file": module_file(event), "command": " ".join(event.actor.args),
            "parent_exe": event.actor.parent_exe, "uid": event.actor.uid, "auid": event.actor.auid,
            "node": event.node}


DETECTION = EventDetection(
    id="runtime.kernel_module_unusual_location",
    title="Kernel module loaded from outside the module tree",
    alert_title="{program} loaded {module_file} on node {node}",
    description=(
        "insmod or modprobe on a node loaded a module file from outside /lib/modules and /usr/lib/modules "
        "(a relative path, /tmp, a home directory). Packaged drivers live in the module tree and load by name; "
        "a module file loaded from anywhere else was built or downloaded on the node, as rootkits "
        "(Diamorphine, Reptile) are."
    ),
    severity="high",
    mitre=["T1547.006", "T1014"],
    tags=["runtime", "persistence", "rootkit", "node"],
    references=["https://attack.mitre.org/techniques/T1547/006/", "https://attack.mitre.org/techniques/T1014/"],
    false_positives=["Out-of-tree drivers built and loaded by hand (DKMS installs into the module tree)."],
    kinds=["process.exec"],
    exe_names=LOADERS,
    params={"module_dirs": ["/lib/modules/", "/usr/lib/modules/"]},
    match=unusual_location,
    context=location_context,
    dedup="{cluster}/{node}/{module_file}",
    examples=[
        Example(name="insmod of a module in /tmp on the node (Tetragon)", source="tetragon", fires=True,
                record=tetragon_record(binary="/usr/sbin/insmod", arguments="/tmp/.x/diamorphine.ko", host=True)),
        Example(
            name="Falco: insmod of a module in the current directory on the host",
            source="falco",
            fires=True,
            record=falco_record("Custom insmod audit", "execve",
                                {"proc.exepath": "/usr/sbin/insmod", "proc.name": "insmod",
                                 "proc.cmdline": "insmod reptile.ko"}, host=True),
        ),
        Example(name="modprobe loading a module by name", source="tetragon", fires=False,
                record=tetragon_record(binary="/usr/sbin/modprobe", arguments="ip_vs", host=True)),
        Example(name="insmod from the module tree", source="tetragon", fires=False,
                record=tetragon_record(binary="/usr/sbin/insmod", host=True,
                                       arguments="/lib/modules/6.8.0-45-generic/kernel/net/netfilter/xt_nat.ko")),
    ],
)
