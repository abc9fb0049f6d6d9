"""A program that is not part of the container's image was executed: the container drifted from its image."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record


def exe_flags(event: Event) -> str:
    """How the executable got there, spelled as Falco's execve flags (``EXE_WRITABLE|EXE_UPPER_LAYER``), which is
    how analysts know them; '' when the sensor did not say."""
    return "|".join(f"EXE_{flag.upper()}" for flag in event.actor.exe_flags)


def from_upper_layer(event: Event) -> bool:
    """The executable lives in the container's writable overlay layer: written after the container started,
    not shipped in any image layer. Only Falco reports the layer; for sources that do not, the sequence
    "file written in a container, then executed" covers drift."""
    return bool(event.k8s.container_id or event.container.id) and "upper_layer" in event.actor.exe_flags


def drift_context(event: Event) -> dict[str, Any]:
    return {"exe": event.actor.exe, "command": " ".join(event.actor.args), "parent_exe": event.actor.parent_exe,
            "container": event.k8s.container_name, "image": event.k8s.image, "exe_flags": exe_flags(event)}


DETECTION = EventDetection(
    id="runtime.container_drift",
    title="Executable not from the image run in a container",
    alert_title="{exe} run in {namespace}/{pod} is not part of image {image}",
    description=(
        "A container executed a program from its writable layer: the file was created or modified after the "
        "container started, so no image scan or review ever saw it. Attackers drop and run tools this way. "
        "Detected from the overlay layer the sensor reports for the executable (Falco's EXE_UPPER_LAYER); for "
        "sensors that do not report it, the write-then-execute sequence detection covers the same ground."
    ),
    severity="high",
    mitre=["T1105"],
    tags=["runtime", "container", "drift"],
    references=["https://falco.org/blog/falco-0-34-0/", "https://attack.mitre.org/techniques/T1105/"],
    false_positives=["Applications that generate and run executables at run time (some JIT runtimes, plugins)."],
    kinds=["process.exec"],
    match=from_upper_layer,
    context=drift_context,
    dedup="{cluster}/{namespace}/{pod}/{container}/{exe}",
    examples=[
        Example(
            name="Falco: drop and execute new binary in container",
            source="falco",
            fires=True,
            record=falco_record(
                "Drop and execute new binary in container", "execve",
                {"proc.exepath": "/usr/local/bin/kubectl", "proc.name": "kubectl",
                 "proc.cmdline": "kubectl get secrets -A", "proc.pname": "bash",
                 "evt.arg.flags": "EXE_WRITABLE|EXE_UPPER_LAYER"},
                priority="Critical",
            ),
        ),
        Example(
            name="Falco: a custom rule printing proc.is_exe_upper_layer",
            source="falco",
            fires=True,
            record=falco_record(
                "Inventory: spawned process", "execve",
                {"proc.exepath": "/app/.cache/agent", "proc.name": "agent", "proc.cmdline": "agent --daemon",
                 "proc.is_exe_upper_layer": True},
                priority="Informational",
            ),
        ),
        Example(
            name="Falco: a program from the image",
            source="falco",
            fires=False,
            record=falco_record(
                "Spawned process in container", "execve",
                {"proc.exepath": "/usr/sbin/nginx", "proc.name": "nginx", "proc.cmdline": "nginx -g daemon off;",
                 "evt.arg.flags": "EXE_LOWER_LAYER"},
                priority="Informational",
            ),
        ),
        Example(
            name="Tetragon does not report the layer",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/local/bin/kubectl", arguments="get secrets -A", parent="/bin/bash"),
        ),
    ],
)
