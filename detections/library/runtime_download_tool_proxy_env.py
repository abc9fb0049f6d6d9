"""curl or wget started with a proxy variable naming a proxy outside the configured ones: its traffic goes where
someone chose, around the network's egress controls or through an interception point (Falco's "Program run with
disallowed http proxy env")."""

from typing import Any
from urllib.parse import urlsplit

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.fixtures import EXAMPLE_START_NS, in_pod

#: Download tools that obey the proxy variables (Falco's http_proxy_binaries).
DOWNLOAD_TOOLS = frozenset({"curl", "wget"})
#: Proxies that are the cluster's own: a sidecar on the pod's loopback and egress proxies run as services. An entry
#: starting with "." names a domain and its hosts.
CLUSTER_PROXIES = ["localhost", "127.0.0.1", "::1", ".svc", ".svc.cluster.local"]
#: The variables they read for a proxy (curl reads http_proxy only in lower case; the others in either).
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def proxy_host(value: str) -> str:
    """The host a proxy variable names (``http://user:***@proxy.corp:3128`` and ``proxy.corp:3128`` are
    ``proxy.corp``), lower case; '' when it names none."""
    try:
        return urlsplit(value if "://" in value else f"http://{value}").hostname or ""
    except ValueError:  # an unparseable port or address: a host the allow-list cannot name either
        return value.lower()


def unexpected_proxies(event: Event, params: dict[str, Any]) -> list[str]:
    """The proxy variables of a download tool's start that name a proxy outside ``allowed_proxies``."""
    if program_name(event) not in DOWNLOAD_TOOLS:
        return []
    env = event.actor.env
    return [name for name in PROXY_VARIABLES if env.get(name) and not allowed(proxy_host(env[name]),
                                                                              params["allowed_proxies"])]


def allowed(host: str, proxies: list[str]) -> bool:
    """Whether ``host`` is one of ``proxies`` or in one of their domains (an entry starting with ".")."""
    return any(host == proxy or (proxy.startswith(".") and host.endswith(proxy)) for proxy in proxies)


def proxy_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    names = unexpected_proxies(event, params)
    container = event.container.id or event.k8s.container_id
    return {"exe": event.actor.exe, "tool": program_name(event), "variables": ", ".join(names),
            "proxies": " ".join(sorted({event.actor.env[name] for name in names})),
            "command": " ".join(event.actor.args), "parent_exe": event.actor.parent_exe,
            "where": container_label(event) if container else f"node {event.node}", "node": event.node,
            "image": event.k8s.image or event.container.image}


def _curl(env: dict[str, str], comm: str = "curl", exe: str = "/usr/bin/curl") -> dict[str, Any]:
    return in_pod({"type": "exec", "time_ns": EXAMPLE_START_NS, "pid": 5120, "tid": 5120, "ppid": 5100, "uid": 0,
                   "gid": 0, "comm": comm, "cgroup_id": 7301, "args": [comm, "-sO", "http://203.0.113.9/x"],
                   "exe": exe, "cwd": "/", "parent_exe": "/bin/sh", "euid": 0, "egid": 0, "env": env})


DETECTION = EventDetection(
    id="runtime.download_tool_proxy_env",
    title="Download tool started with an unexpected proxy",
    alert_title="{tool} started in {where} with {variables}={proxies}",
    description=(
        "curl or wget started with HTTP_PROXY, HTTPS_PROXY or ALL_PROXY (either case) naming a proxy that is not "
        "one of the cluster's (`allowed_proxies`: host names, or domains as `.corp.example`; by default the "
        "pod's loopback and cluster services). Attackers route downloads and exfiltration "
        "through their own proxy to get around egress rules, or set a proxy for someone else's process to "
        "intercept its traffic. Low: a developer's proxy set by hand looks the same; add the organisation's "
        "proxies to the allow-list and read it with what the tool fetched."
    ),
    severity="low",
    mitre=["T1090", "T1105"],
    tags=["runtime", "command_and_control", "exfiltration"],
    references=["https://attack.mitre.org/techniques/T1090/", "https://everything.curl.dev/usingcurl/proxies/env"],
    false_positives=["A proxy the organisation uses that is not in allowed_proxies."],
    kinds=["process.exec"],
    exe_names=DOWNLOAD_TOOLS,
    params={"allowed_proxies": CLUSTER_PROXIES},
    match=lambda event, params: bool(unexpected_proxies(event, params)),
    context=proxy_context,
    dedup="{cluster}/{node}/{namespace}/{pod}/{tool}/{proxies}",
    examples=[
        Example(name="curl through an outside proxy in a pod (eBPF sensor)", source="ebpf", fires=True,
                record=_curl({"https_proxy": "http://bob:***@198.51.100.7:8080"})),
        Example(name="busybox wget with ALL_PROXY", source="ebpf", fires=True,
                record=_curl({"ALL_PROXY": "socks5://198.51.100.7:1080"}, comm="wget", exe="/bin/busybox")),
        Example(
            name="Falco: Program run with disallowed http proxy env",
            source="falco",
            fires=True,
            record=falco_record("Program run with disallowed http proxy env", "execve",
                                {"proc.exepath": "/usr/bin/wget", "proc.cmdline": "wget http://203.0.113.9/x",
                                 "proc.env": "HOME=/root HTTP_PROXY=203.0.113.50:3128"},
                                priority="Notice"),
        ),
        Example(name="curl through the cluster's egress proxy service and a loopback sidecar", source="ebpf",
                fires=False, record=_curl({"HTTPS_PROXY": "http://egress.proxy.svc.cluster.local:3128",
                                           "http_proxy": "127.0.0.1:15001"})),
        Example(name="curl without a proxy", source="ebpf", fires=False, record=_curl({})),
        Example(name="a proxy set for a program that is no download tool", source="ebpf", fires=False,
                record=_curl({"https_proxy": "http://198.51.100.7:8080"}, comm="python3",
                             exe="/usr/bin/python3.11")),
    ],
)
