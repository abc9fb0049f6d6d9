"""A file under /etc modified inside a running container: accounts, loader, cron or sudo configuration."""

from collections.abc import Mapping
from typing import Any

from vigil.detections.k8s import IMAGE_BUILDERS, built_by_image_builder
from vigil.detections.sdk import EventDetection, Example
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Files under /etc that the runtime and kubelet manage for every container (bind mounts written from the node).
RUNTIME_MANAGED = frozenset({"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/mtab"})
#: runit keeps each supervised service's state (pid, status, control pipe) under /etc/service/<name>/supervise/,
#: rewritten all day by images that run several daemons under runsvdir (calico/node, for one).
RUNIT_SERVICE_DIRS = ("/etc/service/", "/etc/sv/")
#: Package managers write /etc as they install; runtime.package_manager_in_container reports the install.
PACKAGE_MANAGERS = frozenset({"apt", "apt-get", "dpkg", "yum", "dnf", "microdnf", "rpm", "apk", "zypper", "pacman"})


def writes_etc(event: Event, params: Mapping[str, Any]) -> bool:
    path = event.target.path
    return (
        bool(event.k8s.container_id or event.container.id)
        and path.startswith("/etc/")
        and path not in RUNTIME_MANAGED
        and not (path.startswith(RUNIT_SERVICE_DIRS) and "/supervise/" in path)
        and program_name(event) not in PACKAGE_MANAGERS
        and not built_by_image_builder(event, params["builder_images"])
    )


def etc_context(event: Event, params: Mapping[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "file": event.target.path, "command": " ".join(event.actor.args),
            "container": event.k8s.container_name, "image": event.k8s.image}


DETECTION = EventDetection(
    id="runtime.etc_write_in_container",
    title="File under /etc modified in a container",
    alert_title="{program} modified {file} in {namespace}/{pod}",
    description=(
        "A process in a running container wrote a file under /etc. Images ship their configuration; changing "
        "it at run time is how attackers add accounts (/etc/passwd), preload libraries (/etc/ld.so.preload), "
        "schedule jobs (/etc/cron*) or grant sudo. Files the runtime manages (hosts, resolv.conf), runit's "
        "service state (/etc/service/*/supervise/), package "
        "installs (reported on their own) and image builders building an image (builder_images: kaniko, "
        "buildkit, buildah, podman) are not reported."
    ),
    severity="medium",
    mitre=["T1136.001", "T1574.006", "T1053.003"],
    tags=["runtime", "persistence", "container"],
    references=["https://falco.org/docs/rules/default-rules/", "https://attack.mitre.org/techniques/T1574/006/"],
    false_positives=["Entrypoint scripts that template configuration files into /etc at start."],
    kinds=["file.write"],
    paths=["/etc/*"],
    params={"builder_images": IMAGE_BUILDERS},
    match=writes_etc,
    context=etc_context,
    dedup="{cluster}/{namespace}/{pod}/{container}/{file}",
    examples=[
        Example(
            name="/etc/passwd edited with vi (Tetragon kprobe on write)",
            source="tetragon",
            fires=True,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/vi", arguments="/etc/passwd", parent="/bin/bash",
                body=kprobe("__x64_sys_write", {"file_arg": {"path": "etc/passwd"}}, {"size_arg": "627"}),
            ),
        ),
        Example(
            name="Falco: write below etc (ld.so.preload)",
            source="falco",
            fires=True,
            record=falco_record(
                "Write below etc", "openat",
                {"proc.exepath": "/bin/busybox", "proc.name": "sh", "proc.cmdline": "sh -c echo /tmp/x.so >...",
                 "fd.name": "/etc/ld.so.preload", "evt.arg.flags": "O_WRONLY|O_CREAT|O_APPEND"},
                priority="Error",
            ),
        ),
        Example(
            name="resolv.conf written by the runtime",
            source="tetragon",
            fires=False,
            record=tetragon_record(
                "process_kprobe", binary="/usr/bin/runc", arguments="init",
                body=kprobe("security_file_permission", {"file_arg": {"path": "/etc/resolv.conf"}}, {"int_arg": 2}),
            ),
        ),
        Example(
            name="calico-node's runit updating a service's supervise state (Falco)",
            source="falco",
            fires=False,
            record=falco_record(
                "Write below etc", "openat",
                {"proc.exepath": "/usr/local/bin/runsv", "proc.name": "runsv", "proc.cmdline": "runsv felix",
                 "fd.name": "/etc/service/enabled/felix/supervise/status", "evt.arg.flags": "O_WRONLY|O_CREAT"},
                priority="Error",
            ),
        ),
        Example(
            name="reading /etc/nginx/nginx.conf",
            source="falco",
            fires=False,
            record=falco_record(
                "Custom file audit", "openat",
                {"proc.exepath": "/usr/sbin/nginx", "proc.name": "nginx", "fd.name": "/etc/nginx/nginx.conf",
                 "evt.arg.flags": "O_RDONLY"},
            ),
        ),
    ],
)
