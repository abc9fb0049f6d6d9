"""A node process attaching to another process with ptrace: injecting code into, or reading the memory of, the
node's services (kubelet, containerd, sshd) or other containers' processes, which all share the node's kernel."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: ptrace requests that let one process control or read another (PTRACE_TRACEME asks to be traced by the parent).
NOT_ATTACHING = frozenset({"traceme"})


def attaches_on_node(event: Event, params: dict[str, Any]) -> bool:
    if event.container.id or event.k8s.container_id or event.action in NOT_ATTACHING:
        return False
    return program_name(event) not in params["allowed_programs"]


def ptrace_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "request": event.action, "traced_pid": event.target.name,
            "command": " ".join(event.actor.args), "uid": event.actor.uid, "auid": event.actor.auid,
            "node": event.node}


def sensor_ptrace(comm: str, request: str) -> dict[str, Any]:
    """The eBPF sensor's record of a ptrace ``request`` by ``comm`` on the node (no container)."""
    return {"type": "ptrace", "time_ns": EXAMPLE_START_NS, "pid": 3100, "tid": 3100, "ppid": 3000, "uid": 0,
            "gid": 0, "comm": comm, "cgroup_id": 1, "request": request, "target_pid": 812, "node": "worker-1"}


DETECTION = EventDetection(
    id="runtime.ptrace_on_node",
    title="ptrace attach on a node",
    alert_title="{program} used ptrace ({request}) on node {node}",
    description=(
        "A process on a node, outside any container, attached to another process with ptrace (ATTACH, SEIZE) or "
        "wrote into its memory or registers (POKETEXT, POKEDATA, POKEUSER, SETREGS). Code injected this way runs "
        "as the target: "
        "kubelet's credentials, containerd's control over every container, an SSH agent's keys. Medium because "
        "operators do debug node services with strace and gdb; check the login uid (auid)."
    ),
    severity="medium",
    mitre=["T1055.008"],
    tags=["runtime", "defense_evasion", "privilege_escalation", "node"],
    references=["https://attack.mitre.org/techniques/T1055/008/"],
    false_positives=["Operators debugging node services (strace, gdb, perf); checkpointing tools (criu)."],
    kinds=["process.ptrace"],
    params={"allowed_programs": ["criu"]},
    match=attaches_on_node,
    context=ptrace_context,
    dedup="{cluster}/{node}/{exe}/{request}",
    examples=[
        Example(name="a process injecting into another with POKETEXT on the node (eBPF sensor)", source="ebpf",
                fires=True, record=sensor_ptrace("inject", "poketext")),
        Example(name="a process pointing another at injected code with SETREGS on the node (eBPF sensor)",
                source="ebpf", fires=True, record=sensor_ptrace("inject", "setregs")),
        Example(
            name="PTRACE_ATTACH on the node (Tetragon kprobe)",
            source="tetragon",
            fires=True,
            record=tetragon_record("process_kprobe", binary="/usr/bin/gdb", arguments="-p 812", host=True,
                                   body=kprobe("__x64_sys_ptrace", {"long_arg": 16}, {"long_arg": 812})),
        ),
        Example(
            name="Falco: PTRACE_TRACEME on the node",
            source="falco",
            fires=False,
            record=falco_record("Custom ptrace audit", "ptrace",
                                {"proc.exepath": "/usr/bin/app", "proc.name": "app",
                                 "evt.arg.request": "PTRACE_TRACEME"},
                                host=True),
        ),
        Example(name="criu checkpointing a process (allowed)", source="ebpf", fires=False,
                record=sensor_ptrace("criu", "seize")),
        Example(
            name="ptrace in a container (runtime.ptrace_in_container's)",
            source="tetragon",
            fires=False,
            record=tetragon_record("process_kprobe", binary="/tmp/inject", arguments="1",
                                   body=kprobe("__x64_sys_ptrace", {"long_arg": 16}, {"long_arg": 1})),
        ),
    ],
)
