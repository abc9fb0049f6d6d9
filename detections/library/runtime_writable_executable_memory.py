"""Memory made writable and executable at once, in a container or on a node, by a program that is no JIT: code
written at run time and then run, as shellcode loaders and in-memory implants do (Tracee's dynamic code loading)."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod

#: Runtimes that compile code as they run (JITs write machine code into memory they then execute).
JIT_RUNTIMES = ["java", "node", "nodejs", "deno", "bun", "dotnet", "pwsh", "mono", "luajit", "pypy", "pypy3",
                "ruby", "php", "php-fpm", "beam.smp", "julia", "chrome", "chromium", "headless_shell", "firefox",
                "qemu-system-x86_64", "qemu-system-aarch64", "envoy", "wasmtime", "wasmer"]
#: How the sensors name the calls that map memory writable and executable.
WX_CALLS = ("mprotect", "pkey_mprotect", "mmap")


def maps_wx(event: Event, params: dict[str, Any]) -> bool:
    if event.target.name != "write,exec":
        return False
    return event.action in WX_CALLS and program_name(event) not in params["allowed_programs"]


def wx_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "call": event.action,
            "command": " ".join(event.actor.args), "where": where(event),
            "image": event.k8s.image or event.container.image, "node": event.node}


def where(event: Event) -> str:
    """The container, or the node for a process outside any container (a node's implant is as worth reading)."""
    if event.container.id or event.k8s.container_id:
        return container_label(event)
    return f"node {event.node}"


def _wx(comm: str, call: str = "mprotect") -> dict[str, Any]:
    return in_pod({"type": "wx_memory", "time_ns": EXAMPLE_START_NS, "pid": 7701, "tid": 7701, "ppid": 7700,
                   "uid": 0, "gid": 0, "comm": comm, "cgroup_id": 7301, "prot": 7, "length": 4096, "flags": 0,
                   "call": call})


def _node_wx(comm: str) -> dict[str, Any]:
    return {"type": "wx_memory", "time_ns": EXAMPLE_START_NS, "pid": 912, "tid": 912, "ppid": 1, "uid": 0, "gid": 0,
            "comm": comm, "cgroup_id": 1, "container_id": "", "node": "worker-1", "prot": 7, "length": 4096,
            "flags": 0, "call": "mprotect"}


DETECTION = EventDetection(
    id="runtime.writable_executable_memory",
    title="Writable and executable memory",
    alert_title="{program} in {where} made memory writable and executable ({call})",
    description=(
        "A process in a container or on a node mapped or re-protected memory as writable and executable at once: "
        "it is about to run code it wrote itself. Shellcode loaders, injected payloads and in-memory implants do "
        "this; so does every just-in-time compiler, which is why JIT runtimes (Java, Node.js, .NET, browsers, …) "
        "are in `allowed_programs` and the severity is low: alone it is a lead to read with what else the process did. "
        "The eBPF sensor records it once per process, so a JIT's many mappings make one event."
    ),
    severity="low",
    mitre=["T1620", "T1055"],
    tags=["runtime", "defense_evasion", "execution"],
    references=["https://attack.mitre.org/techniques/T1620/", "https://man7.org/linux/man-pages/man2/mprotect.2.html"],
    false_positives=["JIT runtimes and emulators not in the allow-list; programs using libffi closures on old libc."],
    kinds=["process.syscall"],
    actions={"process.syscall": list(WX_CALLS)},
    params={"allowed_programs": JIT_RUNTIMES},
    match=maps_wx,
    context=wx_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{program}",
    examples=[
        Example(name="a loader making its payload executable in a pod (eBPF sensor)", source="ebpf", fires=True,
                record=_wx("loader")),
        Example(name="a read+write+exec mapping by a shell's child", source="ebpf", fires=True,
                record=_wx("sh", "mmap")),
        Example(name="the JVM's code cache", source="ebpf", fires=False, record=_wx("java")),
        Example(name="a loader on the node", source="ebpf", fires=True, record=_node_wx("loader")),
        Example(name="a JIT on the node", source="ebpf", fires=False, record=_node_wx("node")),
    ],
)
