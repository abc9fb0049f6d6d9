"""A container crash-looping: it exited with a failure several times within minutes (what kubelet then shows
as CrashLoopBackOff), from the container runtime's exit events."""

from vigil.detections.sdk import Scenario, ScenarioEvent, ThresholdDetection
from vigil.event import Event
from vigil.sources.containerd.fixtures import containerd_record


def failed_exit(event: Event) -> bool:
    return event.outcome.code != 0 and bool(event.k8s.container_id or event.container.id)


def container_group(event: Event) -> str:
    """``cluster/namespace/pod/container``: a restarted container keeps its pod and name but gets a new id."""
    k8s = event.k8s
    if k8s.pod and k8s.container_name:
        return f"{event.cluster}/{k8s.namespace}/{k8s.pod}/{k8s.container_name}"
    return f"{event.cluster}/{k8s.container_id or event.container.id}"


def exits(count: int, status: int, every_s: float, **fields: str) -> list[ScenarioEvent]:
    return [ScenarioEvent(source="containerd", at_s=i * every_s,
                          record=containerd_record("container.exit", at_s=i * every_s, exit_status=status, **fields))
            for i in range(count)]


DETECTION = ThresholdDetection(
    id="runtime.container_crash_loop",
    title="Container crash loop",
    alert_title="{namespace}/{pod} {container} exited with a failure {count} times within {window_s:.0f} s",
    description=(
        "A container exited with a non-zero status at least 3 times within 10 minutes (one pod and container "
        "name: kubelet restarts it under the same name). Besides broken releases, crash loops follow tampering "
        "(a replaced binary or config), a seccomp or AppArmor profile killing what the workload does, and "
        "resource exhaustion. The threshold and window can be set per namespace."
    ),
    severity="low",
    mitre=["T1499", "T1489"],
    tags=["runtime", "health", "containerd", "threshold"],
    references=[
        "https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#container-restarts",
        "https://github.com/containerd/containerd/blob/main/api/events/task.proto",
    ],
    false_positives=["A release with a bug, or a dependency (database, DNS) down: the loop is real, not hostile."],
    kinds=["container.exit"],
    match=failed_exit,
    group=container_group,
    context=lambda event: {"container": event.k8s.container_name, "image": event.k8s.image,
                           "exit_status": event.outcome.code},
    threshold=3,
    window_s=600,
    window="sliding",
    dedup="{group}",
    examples=[
        Scenario(name="exit 1 three times in four minutes", fires=True, events=exits(3, 1, 120)),
        Scenario(name="killed by the OOM killer (137) over and over", fires=True, events=exits(5, 137, 60)),
        Scenario(name="clean exits of a job's container", fires=False, events=exits(5, 0, 30)),
        Scenario(name="three failures an hour apart", fires=False, events=exits(3, 1, 3600)),
        Scenario(name="three pods of a rollout each stopped once", fires=False, events=[
            event for i in range(3) for event in exits(1, 143, 0, pod=f"api-7d4b9c-{i}")]),
    ],
)
