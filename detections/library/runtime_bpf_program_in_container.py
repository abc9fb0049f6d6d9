"""A container loading an eBPF program into the kernel: kernel-level code from inside a workload."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Node agents that load eBPF programs from their pods as their job (networking, observability, security).
BPF_AGENTS = ["cilium-agent", "cilium", "tetragon", "falco", "vigil", "pixie", "pem", "datadog-agent",
              "system-probe", "calico-node", "bpfman", "parca-agent", "kepler", "beyla", "retina", "hubble",
              "inspektor-gadget", "gadgettracerman", "tracee", "kubearmor"]
#: bpf() commands that put code in the kernel or attach it (map housekeeping is not reported).
LOADING = frozenset({"prog_load", "bpf_check", "bpf_prog_load", "prog_attach", "raw_tracepoint_open",
                     "link_create", "bpf"})


def loads_bpf(event: Event, params: dict[str, Any]) -> bool:
    if not (event.container.id or event.k8s.container_id) or event.action not in LOADING:
        return False
    return program_name(event) not in params["allowed_programs"]


def bpf_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe, "command": event.action,
            "bpf_program": event.target.name, "where": container_label(event),
            "image": event.k8s.image or event.container.image, "node": event.node}


DETECTION = EventDetection(
    id="runtime.bpf_program_in_container",
    title="eBPF program loaded from a container",
    alert_title="{program} in {where} loaded eBPF program {bpf_program} ({command})",
    description=(
        "A process in a container loaded or attached an eBPF program. That needs CAP_BPF or CAP_SYS_ADMIN, and "
        "the program runs in the node's kernel: eBPF rootkits hide processes and files, read every process's "
        "memory and network traffic, and tamper with security sensors. Known node agents (Cilium, Tetragon, "
        "Falco, Datadog, …) are allowed in `allowed_programs`."
    ),
    severity="high",
    mitre=["T1014", "T1611", "T1547.006"],
    tags=["runtime", "privilege_escalation", "defense_evasion", "container_escape"],
    references=["https://attack.mitre.org/techniques/T1014/", "https://man7.org/linux/man-pages/man2/bpf.2.html"],
    false_positives=["Observability or networking agents not in the allow-list."],
    kinds=["bpf.program"],
    params={"allowed_programs": BPF_AGENTS},
    match=loads_bpf,
    context=bpf_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{program}",
    examples=[
        Example(
            name="a program loaded from a pod (eBPF sensor)",
            source="ebpf",
            fires=True,
            record=in_pod({"type": "bpf", "time_ns": EXAMPLE_START_NS, "pid": 5301, "tid": 5301, "ppid": 5300,
                           "uid": 0, "gid": 0, "comm": "loader", "cgroup_id": 7301, "command": "prog_load",
                           "prog_type": 2, "prog_name": "hide_pid"}),
        ),
        Example(
            name="bpftool loading a program (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/usr/sbin/bpftool", arguments="prog load x.o /sys/fs/bpf/x",
                body=kprobe("bpf_check", {"bpf_attr_arg": {"ProgType": "BPF_PROG_TYPE_KPROBE", "InsnCnt": 9,
                                                            "ProgName": "evil"}})),
        ),
        Example(
            name="Falco: bpf() from a container",
            source="falco",
            fires=True,
            record=falco_record(
                "BPF Program Not Profiled", "bpf",
                {"proc.exepath": "/tmp/rk", "proc.name": "rk", "proc.cmdline": "rk", "evt.arg.cmd": "BPF_PROG_LOAD"},
            ),
        ),
        Example(
            name="Cilium's agent loading its datapath",
            source="ebpf",
            fires=False,
            record=in_pod({"type": "bpf", "time_ns": EXAMPLE_START_NS, "pid": 5302, "tid": 5302, "ppid": 1,
                           "uid": 0, "gid": 0, "comm": "cilium-agent", "cgroup_id": 7302, "command": "prog_load",
                           "prog_type": 3, "prog_name": "cil_from_netdev"}, namespace="kube-system",
                          pod="cilium-x7d2k", container="cilium-agent"),
        ),
        Example(
            name="a program loaded on the node by a host service",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/lib/systemd/systemd", host=True,
                body=kprobe("bpf_check", {"bpf_attr_arg": {"ProgType": "BPF_PROG_TYPE_CGROUP_SKB", "InsnCnt": 20,
                                                            "ProgName": "sd_fw_egress"}})),
        ),
    ],
)
