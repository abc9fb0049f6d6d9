"""A file made executable in a running container, by chmod or by creating it with execute bits: the drop half of
drift, reported before the program runs (runtime.container_drift reports the run)."""

from typing import Any

from vigil.detections.k8s import IMAGE_BUILDERS, built_by_image_builder
from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod

#: chmod as sources name it: the syscalls (Falco) and the LSM hook (Tetragon).
CHMODS = frozenset({"chmod", "fchmod", "fchmodat", "fchmodat2", "path_chmod"})
#: Programs that make executables as their job: package managers, language installers, compilers and linkers.
BUILDERS = [
    "dpkg", "apt", "apt-get", "yum", "dnf", "microdnf", "rpm", "apk", "zypper", "pacman", "pip", "pip3", "pipx",
    "uv", "poetry", "npm", "yarn", "pnpm", "gem", "bundle", "cargo", "rustc", "go", "gcc", "cc", "ld", "ld.bfd",
    "ld.gold", "ld.lld", "collect2", "make", "install", "bazel", "javac", "mvn", "gradle", "buildkitd", "kaniko",
    "executor", "containerd",
]
#: The container runtime's init writes its own fifo and state as it starts the container (``runc:[2:INIT]``).
RUNTIME_INITS = ("runc", "crun", "youki", "runsc")


def made_executable(event: Event) -> str:
    """``chmod`` or ``created`` when the event gives a file execute bits, '' otherwise."""
    mode = event.file.mode
    if mode < 0 or not mode & 0o111:
        return ""
    if event.action in CHMODS:
        return "chmod"
    return "created" if "create" in event.file.access else ""


def writes_executable(event: Event, params: dict[str, Any]) -> bool:
    if not (event.container.id or event.k8s.container_id) or not made_executable(event):
        return False
    program = program_name(event)
    return (not program.startswith(RUNTIME_INITS) and program not in params["allowed_programs"]
            and not built_by_image_builder(event, params["builder_images"]))


def executable_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "file": event.target.path or event.file.path, "how": made_executable(event),
            "mode": oct(event.file.mode), "command": " ".join(event.actor.args), "where": container_label(event),
            "image": event.k8s.image or event.container.image}


def sensor_create(comm: str, path: str, mode: int) -> dict[str, Any]:
    return in_pod({"type": "file_write", "time_ns": EXAMPLE_START_NS, "pid": 5300, "tid": 5300, "ppid": 5290,
                   "uid": 0, "gid": 0, "comm": comm, "cgroup_id": 7310, "path": path, "flags": 0o1101, "mode": mode})


DETECTION = EventDetection(
    id="runtime.executable_written_in_container",
    title="File made executable in a container",
    alert_title="{program} {how} executable {file} in {where}",
    description=(
        "A process in a running container created a file with execute permission, or chmod'ed one to be "
        "executable. Images ship their programs; a new executable at run time is a dropped tool or payload "
        "about to run, and this reports it before it does (runtime.container_drift reports the run, at high). "
        "Package managers, language installers and compilers, which make executables by design, are not "
        "reported. vigil's sensor sees creations under its write-watched directories, Falco and Tetragon chmods "
        "and creations anywhere they are configured to."
    ),
    severity="low",
    mitre=["T1105", "T1222.002"],
    tags=["runtime", "container", "drift"],
    references=["https://attack.mitre.org/techniques/T1222/002/"],
    false_positives=["Build and CI containers compiling programs with tools not in allowed_programs; image builders "
                     "(builder_images: kaniko, buildkit, buildah, podman) are not reported."],
    kinds=["file.write"],
    params={"allowed_programs": BUILDERS, "builder_images": IMAGE_BUILDERS},
    match=writes_executable,
    context=executable_context,
    dedup="{cluster}/{namespace}/{pod}/{where}/{file}",
    examples=[
        Example(
            name="Falco: chmod +x on a downloaded file in a container",
            source="falco",
            fires=True,
            record=falco_record("Container Drift Detected (chmod)", "fchmodat",
                                {"proc.exepath": "/bin/chmod", "proc.name": "chmod", "proc.cmdline": "chmod +x /tmp/x",
                                 "fs.path.name": "/tmp/x", "evt.arg.mode": "0755"}, priority="Error"),
        ),
        Example(name="curl creating an executable in /usr/bin (eBPF sensor)", source="ebpf", fires=True,
                record=sensor_create("curl", "/usr/bin/kubectl", 0o755)),
        Example(name="a configuration file created without execute bits", source="ebpf", fires=False,
                record=sensor_create("python3", "/etc/app.conf", 0o644)),
        Example(name="runc's init creating its exec fifo as it starts the container (eBPF sensor)", source="ebpf",
                fires=False, record=sensor_create("runc:[2:INIT]", "/run/containerd/runc/k8s.io/x/exec.fifo", 0o755)),
        Example(name="a kaniko build copying a program into the image it builds (eBPF sensor)", source="ebpf",
                fires=False, record={**sensor_create("cp", "/usr/local/bin/healthcheck", 0o755), "k8s": {
                    **sensor_create("cp", "/", 0)["k8s"], "image": "gcr.io/kaniko-project/executor:v1.23.2-debug"}}),
        Example(name="pip installing a console script", source="ebpf", fires=False,
                record=sensor_create("pip", "/usr/bin/flask", 0o755)),
        Example(
            name="chmod on the node (not a container)",
            source="falco",
            fires=False,
            record=falco_record("Custom chmod audit", "fchmodat",
                                {"proc.exepath": "/bin/chmod", "proc.name": "chmod", "fs.path.name": "/opt/x",
                                 "evt.arg.mode": "0755"}, host=True),
        ),
    ],
)
