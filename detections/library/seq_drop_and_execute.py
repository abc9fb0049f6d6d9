"""A file written in a container and then executed from the same path: a binary that no image shipped."""

import posixpath

from vigil.detections.sdk import Scenario, ScenarioEvent, SequenceDetection, Step, container_key, pod_key
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Package managers write executables for a living; what they install is their own detection's business.
PACKAGE_MANAGERS = frozenset({"dpkg", "apt", "apt-get", "apk", "rpm", "yum", "dnf", "microdnf", "pip", "pip3", "npm"})


def workload_key(event: Event) -> str:
    """The pod, or the container when the sensor could not name the pod."""
    return pod_key(event) or container_key(event)


def is_write_in_container(event: Event) -> bool:
    return bool(event.k8s.container_id and event.target.path) and (
        posixpath.basename(event.actor.exe) not in PACKAGE_MANAGERS
    )


def written_path(event: Event) -> str:
    return event.target.path


def executed_path(event: Event) -> str:
    return event.actor.exe or event.target.path


def write(binary: str, path: str) -> dict:
    return tetragon_record("process_kprobe", binary=binary,
                           body=kprobe("security_file_permission", {"file_arg": {"path": path}}, {"int_arg": 2}))


DETECTION = SequenceDetection(
    id="seq.drop_and_execute",
    title="New binary written then executed in a container",
    alert_title="{joined_on} was written by {writer} and executed in {namespace}/{pod}",
    description=(
        "A process in a container wrote a file and, within ten minutes, a program was executed from that very "
        "path. Images ship their programs; a binary that appears at run time and is then started is how "
        "droppers, miners and implants arrive (container drift). Joined on the pod (or the container when the "
        "sensor has no pod) and on the path."
    ),
    severity="high",
    mitre=["T1105", "T1204.002"],
    tags=["sequence", "runtime", "execution", "drift"],
    references=["https://attack.mitre.org/techniques/T1105/", "https://falco.org/docs/rules/default-rules/"],
    false_positives=["Images that compile or unpack helpers at start-up (JIT caches, self-extracting tools)."],
    max_span_s=600,
    steps=[
        Step(name="write", kinds=["file.write"], match=is_write_in_container, key=workload_key, on=written_path,
             context=lambda e: {"writer": e.actor.exe, "path": e.target.path}),
        Step(name="execute", kinds=["process.exec"], match=lambda e: bool(e.k8s.container_id), key=workload_key,
             on=executed_path, context=lambda e: {"exe": e.actor.exe, "args": e.actor.args}, out_of_order=False),
    ],
    dedup="{cluster}/{namespace}/{pod}/{joined_on}",
    examples=[
        Scenario(name="curl drops /tmp/kinsing, which is then run", fires=True, events=[
            ScenarioEvent(source="tetragon", record=write("/usr/bin/curl", "/tmp/kinsing"), at_s=0),
            ScenarioEvent(source="tetragon", record=tetragon_record(binary="/tmp/kinsing", parent="/bin/sh"), at_s=3),
        ]),
        Scenario(name="Falco: wget writes a miner below /usr/local/bin, then it runs", fires=True, events=[
            ScenarioEvent(source="falco", at_s=0, record=falco_record(
                "Write below binary dir", "openat",
                {"fd.name": "/usr/local/bin/xmrig", "evt.arg.flags": "O_WRONLY|O_CREAT|O_TRUNC",
                 "proc.exepath": "/usr/bin/wget", "proc.cmdline": "wget -O /usr/local/bin/xmrig"})),
            ScenarioEvent(source="falco", at_s=8, record=falco_record(
                "Drop and execute new binary in container", "execve",
                {"proc.exepath": "/usr/local/bin/xmrig", "proc.cmdline": "xmrig -o pool:3333"})),
        ]),
        Scenario(name="a file is written, another program runs", fires=False, events=[
            ScenarioEvent(source="tetragon", record=write("/usr/bin/curl", "/tmp/data.json"), at_s=0),
            ScenarioEvent(source="tetragon", record=tetragon_record(binary="/usr/bin/python3"), at_s=3),
        ]),
        Scenario(name="the package manager installs a program", fires=False, events=[
            ScenarioEvent(source="tetragon", record=write("/usr/bin/dpkg", "/usr/bin/jq"), at_s=0),
            ScenarioEvent(source="tetragon", record=tetragon_record(binary="/usr/bin/jq"), at_s=30),
        ]),
        Scenario(name="the same path executed in another pod", fires=False, events=[
            ScenarioEvent(source="tetragon", record=write("/usr/bin/curl", "/tmp/kinsing"), at_s=0),
            ScenarioEvent(source="tetragon", record=tetragon_record(binary="/tmp/kinsing", pod="db-0"), at_s=3),
        ]),
    ],
)
