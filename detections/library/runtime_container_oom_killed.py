"""A container's process was killed by the kernel's OOM killer for exceeding the container's memory limit."""

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.event import Event
from vigil.sources.containerd.fixtures import containerd_record


def oom_killed(event: Event) -> bool:
    return bool(event.k8s.container_id or event.container.id)


DETECTION = EventDetection(
    id="runtime.container_oom_killed",
    title="Container OOM-killed",
    alert_title="{workload_container} was OOM-killed",
    description=(
        "The container runtime reported an out-of-memory kill in a container (containerd's /tasks/oom): the "
        "cgroup reached its memory limit and the kernel killed a process in it. One OOM kill is an operational "
        "signal; several, or a memory-hungry process that was not there before (a miner, an exfiltration "
        "buffer, a fork bomb), is worth a look. Repeated kills of one container fold into one alert."
    ),
    severity="low",
    mitre=["T1499"],
    tags=["runtime", "health", "containerd"],
    references=[
        "https://kubernetes.io/docs/tasks/configure-pod-container/assign-memory-resource/#exceed-a-containers-memory-limit",
        "https://github.com/containerd/containerd/blob/main/api/events/task.proto",
    ],
    false_positives=["A memory limit set too low for the workload's normal peak."],
    kinds=["container.oom"],
    match=oom_killed,
    context=lambda event: {"workload_container": container_label(event), "container": event.k8s.container_name,
                           "image": event.k8s.image},
    dedup="{cluster}/{namespace}/{pod}/{container}",
    examples=[
        Example(name="OOM in an enriched container", source="containerd", fires=True,
                record=containerd_record("container.oom")),
        Example(name="OOM in a container the node collector could not enrich", source="containerd", fires=True,
                record={**containerd_record("container.oom"), "k8s": {}}),
        Example(name="an ordinary exit", source="containerd", fires=False,
                record=containerd_record("container.exit", exit_status=0)),
        Example(name="a failed exit is not an OOM kill", source="containerd", fires=False,
                record=containerd_record("container.exit", exit_status=1)),
    ],
)
