"""A package manager installing software inside a running container: the workload no longer is its image."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import IMAGE_BUILDERS, built_by_image_builder
from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod
from vigil.sources.tetragon.fixtures import tetragon_record

#: Package managers and the arguments that make them change what is installed (not list or query).
INSTALLING: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        ("apt", "apt-get", "aptitude", "yum", "dnf", "microdnf", "tdnf", "zypper"),
        frozenset({"install", "reinstall", "upgrade", "dist-upgrade", "full-upgrade", "update", "localinstall",
                   "in", "up", "dup"}),
    ),
    "apk": frozenset({"add", "upgrade", "update", "fix"}),
    "dpkg": frozenset({"-i", "--install", "--unpack"}),
    "rpm": frozenset({"-i", "-U", "-F", "-ivh", "-Uvh", "-Fvh", "--install", "--upgrade"}),
    "pacman": frozenset({"-S", "-Sy", "-Syu", "-U"}),
    **dict.fromkeys(("pip", "pip3", "gem"), frozenset({"install"})),
}


def installs_packages(event: Event, params: Mapping[str, Any]) -> bool:
    if not (event.k8s.container_id or event.container.id):
        return False
    verbs = INSTALLING.get(program_name(event))
    return (verbs is not None and any(arg in verbs for arg in event.actor.args)
            and not built_by_image_builder(event, params["builder_images"]))


def install_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "command": " ".join(event.actor.args), "container": event.k8s.container_name,
            "image": event.k8s.image, "parent_exe": event.actor.parent_exe}


DETECTION = EventDetection(
    id="runtime.package_manager_in_container",
    title="Package manager run in a container",
    alert_title="{program} installing software in {namespace}/{pod} (container {container})",
    description=(
        "A package manager installed or upgraded software inside a running container. Containers are meant to "
        "be immutable: what runs should be what the image review saw. Attackers install scanners, compilers, "
        "network tools and miners this way once they have code execution in a pod."
    ),
    severity="medium",
    mitre=["T1105"],
    tags=["runtime", "container", "drift"],
    references=["https://falco.org/docs/rules/default-rules/", "https://attack.mitre.org/techniques/T1105/"],
    false_positives=[
        "Image builds inside the cluster install packages by design: the builder images (kaniko, buildkit, "
        "buildah, podman) are not reported (builder_images); CI job pods install into their job image: "
        "except their namespace in the tuning file.",
        "Init containers and entrypoints that install dependencies at start (an anti-pattern, but common): "
        "except them by namespace and container name in the tuning file.",
    ],
    kinds=["process.exec"],
    params={"builder_images": IMAGE_BUILDERS},
    exe_names=frozenset(INSTALLING),
    match=installs_packages,
    context=install_context,
    dedup="{cluster}/{namespace}/{pod}/{container}/{exe}",
    examples=[
        Example(
            name="apt-get install in a running pod (Tetragon)",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/bin/apt-get", arguments="install -y nmap", parent="/bin/bash"),
        ),
        Example(
            name="Falco: launch package management process in container",
            source="falco",
            fires=True,
            record=falco_record(
                "Launch Package Management Process in Container", "execve",
                {"proc.exepath": "/sbin/apk", "proc.name": "apk", "proc.cmdline": "apk add --no-cache socat",
                 "proc.pname": "sh"},
                priority="Error",
            ),
        ),
        Example(
            name="pip install in a container",
            source="tetragon",
            fires=True,
            record=tetragon_record(binary="/usr/local/bin/pip", arguments="install requests", parent="/bin/sh"),
        ),
        Example(
            name="dpkg in a kaniko image build (eBPF sensor)",
            source="ebpf",
            fires=False,
            record=in_pod({"type": "exec", "time_ns": EXAMPLE_START_NS, "pid": 4410, "tid": 4410, "ppid": 4402,
                           "uid": 0, "gid": 0, "comm": "dpkg", "cgroup_id": 7301, "args": ["dpkg", "-i", "app.deb"],
                           "exe": "/usr/bin/dpkg", "cwd": "/workspace", "parent_exe": "/busybox/sh"},
                          image="gcr.io/kaniko-project/executor:v1.23.2-debug"),
        ),
        Example(
            name="listing installed packages",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/dpkg", arguments="-l", parent="/bin/sh"),
        ),
        Example(
            name="apt-get on the node itself",
            source="tetragon",
            fires=False,
            record=tetragon_record(binary="/usr/bin/apt-get", arguments="install -y htop", host=True),
        ),
    ],
)
