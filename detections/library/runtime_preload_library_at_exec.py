"""A process started with LD_PRELOAD or LD_AUDIT naming a library outside the known allocators and wrappers: the
dynamic loader runs that library's code inside the program before its own (Tracee's ld_preload)."""

from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod

#: The loader's variables that make it load a library into every program started with them.
LOADER_VARIABLES = ("LD_PRELOAD", "LD_AUDIT")
#: Libraries preloaded on purpose, by basename before ``.so``: allocators, user-id wrappers (OpenShift images run
#: as random uids through nss_wrapper), coreutils' stdbuf, test-time fakes and sanitizers.
KNOWN_LIBRARIES = ["libjemalloc", "libtcmalloc", "libtcmalloc_minimal", "libmimalloc", "libnss_wrapper",
                   "libstdbuf", "libfaketime", "libeatmydata", "libasan", "libgtk3-nocsd"]


def library_stem(path: str) -> str:
    """``/usr/lib/x86_64-linux-gnu/libjemalloc.so.2`` is ``libjemalloc``."""
    return path.rpartition("/")[2].partition(".so")[0]


def injected_libraries(event: Event, params: dict[str, Any]) -> list[str]:
    """The libraries the loader's variables name that are not known ones (the loader splits on spaces and
    colons); LD_AUDIT's always count."""
    env = event.actor.env
    found = [lib for lib in env.get("LD_PRELOAD", "").replace(":", " ").split() if
             library_stem(lib) not in params["allowed_libraries"]]
    return found + env.get("LD_AUDIT", "").replace(":", " ").split()


def preload_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    container = event.container.id or event.k8s.container_id
    return {"exe": event.actor.exe, "program": program_name(event) or event.actor.exe,
            "libraries": " ".join(injected_libraries(event, params)),
            "variables": ", ".join(name for name in LOADER_VARIABLES if name in event.actor.env),
            "command": " ".join(event.actor.args), "parent_exe": event.actor.parent_exe,
            "where": container_label(event) if container else f"node {event.node}",
            "image": event.k8s.image or event.container.image, "node": event.node}


def _exec(comm: str, env: dict[str, str], exe: str = "/usr/bin/python3.11") -> dict[str, Any]:
    return {"type": "exec", "time_ns": EXAMPLE_START_NS, "pid": 4410, "tid": 4410, "ppid": 4400, "uid": 0, "gid": 0,
            "comm": comm, "cgroup_id": 7301, "args": [comm, "app.py"], "exe": exe, "cwd": "/app",
            "parent_exe": "/bin/sh", "euid": 0, "egid": 0, "env": env}


DETECTION = EventDetection(
    id="runtime.preload_library_at_exec",
    title="Program started with a preloaded library",
    alert_title="{program} started in {where} with {variables}={libraries}",
    description=(
        "A process was started with LD_PRELOAD or LD_AUDIT naming a library that is none of the allocators and "
        "wrappers images preload on purpose. The dynamic loader runs that library inside the program before the "
        "program's own code: userland rootkits hide files and processes this way, credential stealers hook "
        "PAM and SSL functions, and an attacker who can set a service's environment runs code as that service. "
        "LD_AUDIT, rarely used at all, always counts. In a container or on a node; the sensors carry the "
        "variables at exec (vigil's eBPF sensor, Falco when its rule prints proc.env)."
    ),
    severity="high",
    mitre=["T1574.006"],
    tags=["runtime", "persistence", "defense_evasion", "privilege_escalation"],
    references=["https://attack.mitre.org/techniques/T1574/006/", "https://man7.org/linux/man-pages/man8/ld.so.8.html"],
    false_positives=["An image preloading an allocator or wrapper not in allowed_libraries (add its name)."],
    kinds=["process.exec"],
    params={"allowed_libraries": KNOWN_LIBRARIES},
    match=lambda event, params: bool(injected_libraries(event, params)),
    context=preload_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{libraries}",
    examples=[
        Example(name="a hooking library preloaded into a program in a pod (eBPF sensor)", source="ebpf", fires=True,
                record=in_pod(_exec("python3", {"LD_PRELOAD": "/tmp/.x/libhook.so"}))),
        Example(name="LD_AUDIT on the node (eBPF sensor)", source="ebpf", fires=True,
                record={**_exec("sshd", {"LD_AUDIT": "/dev/shm/a.so"}, exe="/usr/sbin/sshd"), "cgroup_id": 1,
                        "container_id": "", "node": "worker-1"}),
        Example(
            name="Falco: a rule printing the environment of a process started with LD_PRELOAD",
            source="falco",
            fires=True,
            record=falco_record("Custom exec with environment", "execve",
                                {"proc.exepath": "/usr/bin/id", "proc.cmdline": "id",
                                 "proc.env": "HOME=/root LD_PRELOAD=/var/tmp/libprocesshider.so TERM=xterm"}),
        ),
        Example(name="jemalloc preloaded by a Ruby image", source="ebpf", fires=False,
                record=in_pod(_exec("ruby", {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
                                    exe="/usr/local/bin/ruby"))),
        Example(name="nss_wrapper and stdbuf together", source="ebpf", fires=False,
                record=in_pod(_exec("psql", {"LD_PRELOAD": "libnss_wrapper.so:/usr/libexec/coreutils/libstdbuf.so"},
                                    exe="/usr/bin/psql"))),
        Example(name="only a library path set (LD_LIBRARY_PATH is not preloading)", source="ebpf", fires=False,
                record=in_pod(_exec("python3", {"LD_LIBRARY_PATH": "/opt/lib"}))),
    ],
)
