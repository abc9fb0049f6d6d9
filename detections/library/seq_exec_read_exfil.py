"""Exec into a pod, then a sensitive file read in that pod, then an outbound connection: hands-on-keyboard
credential theft, seen across the audit log and the runtime sensor."""

import ipaddress
from functools import lru_cache

from vigil.detections.sdk import Scenario, ScenarioEvent, SequenceDetection, Step
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

#: Files whose contents are credentials or host secrets (prefixes end in "/").
SENSITIVE_FILES = (
    "/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/root/.ssh/", "/home/", "/etc/kubernetes/",
    "/var/run/secrets/kubernetes.io/serviceaccount/", "/run/secrets/kubernetes.io/serviceaccount/",
    "/var/lib/kubelet/pki/", "/root/.aws/", "/root/.kube/", "/root/.docker/config.json",
)


def is_exec(event: Event) -> bool:
    target = event.target
    return target.resource == "pods" and target.subresource in ("exec", "attach") and event.action in ("create", "get")


def is_sensitive_read(event: Event) -> bool:
    path = event.target.path
    if path.startswith("/home/"):
        return "/.ssh/" in path or path.endswith((".bash_history", "/.kube/config"))
    return path.startswith(SENSITIVE_FILES)


def is_public_peer(event: Event) -> bool:
    """A connection leaving the cluster's private address space (to the internet)."""
    return is_global_address(event.target.address)


@lru_cache(maxsize=4096)
def is_global_address(address: str) -> bool:
    """Whether ``address`` is a public one. Remembered: pods talk to the same few peers over and over, and
    parsing an address costs more than the rest of the step."""
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


EXEC = audit_record("create", "pods", name="web-7f9c", subresource="exec", code=101,
                    query="command=sh&container=app&stdin=true&tty=true")
READ_SHADOW = tetragon_record("process_kprobe", binary="/bin/cat", arguments="/etc/shadow",
                              body=kprobe("fd_install", {"int_arg": 3}, {"file_arg": {"path": "/etc/shadow"}}))
READ_TOKEN_FALCO = falco_record(
    "Read sensitive file untrusted", "openat",
    {"fd.name": "/var/run/secrets/kubernetes.io/serviceaccount/token", "proc.exepath": "/bin/cat",
     "proc.cmdline": "cat /var/run/secrets/kubernetes.io/serviceaccount/token"},
)
READ_CONFIG = tetragon_record(
    "process_kprobe", binary="/bin/cat", arguments="/etc/nginx/nginx.conf",
    body=kprobe("fd_install", {"int_arg": 3}, {"file_arg": {"path": "/etc/nginx/nginx.conf"}}),
)


def connect(address: str) -> dict:
    sock = {"family": "AF_INET", "saddr": "10.244.1.7", "daddr": address, "sport": 40122, "dport": 443}
    return tetragon_record("process_kprobe", binary="/usr/bin/curl", body=kprobe("tcp_connect", {"sock_arg": sock}))


DETECTION = SequenceDetection(
    id="seq.exec_read_exfil",
    title="Exec into a pod, sensitive file read, then outbound connection",
    alert_title="{user} exec'd into {namespace}/{pod}, read {path} and connected to {address}",
    description=(
        "Within five minutes of someone opening a shell in a pod through the API, a process in that pod read a "
        "credential or host secret (shadow file, SSH keys, service-account token, kubelet PKI, cloud credentials) "
        "and the pod then connected to an address on the internet. Each step alone is common; the chain is how "
        "stolen credentials leave a cluster. The audit log names who exec'd; the runtime sensor what followed."
    ),
    severity="critical",
    mitre=["T1609", "T1552.001", "T1041"],
    tags=["sequence", "kubernetes", "runtime", "credential-access", "exfiltration"],
    references=[
        "https://attack.mitre.org/techniques/T1552/001/",
        "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/Exec%20into%20container/",
    ],
    false_positives=["An operator debugging TLS or authentication inside a pod that also calls an external API."],
    max_span_s=300,
    steps=[
        Step(name="exec", kinds=["k8s.api"], sources=["k8s-audit"], match=is_exec,
             resources=["pods"], subresources=["exec", "attach"], actions=["create", "get"]),
        Step(name="sensitive read", kinds=["file.open"], match=is_sensitive_read,
             paths=[f"{prefix}*" for prefix in SENSITIVE_FILES]),
        Step(name="outbound connection", kinds=["net.connect"], match=is_public_peer, out_of_order=False),
    ],
    dedup="{cluster}/{namespace}/{pod}/{user}",
    examples=[
        Scenario(name="exec, cat /etc/shadow, curl to the internet", fires=True, events=[
            ScenarioEvent(source="k8s-audit", record=EXEC, at_s=0),
            ScenarioEvent(source="tetragon", record=READ_SHADOW, at_s=20),
            ScenarioEvent(source="tetragon", record=connect("45.33.32.156"), at_s=45),
        ]),
        Scenario(name="audit record arrives after the runtime events, Falco reports the read", fires=True, events=[
            ScenarioEvent(source="falco", record=READ_TOKEN_FALCO, at_s=3),
            ScenarioEvent(source="tetragon", record=connect("91.215.85.17"), at_s=9),
            ScenarioEvent(source="k8s-audit", record=EXEC, at_s=1),
        ]),
        Scenario(name="connection stays inside the cluster", fires=False, events=[
            ScenarioEvent(source="k8s-audit", record=EXEC, at_s=0),
            ScenarioEvent(source="tetragon", record=READ_SHADOW, at_s=20),
            ScenarioEvent(source="tetragon", record=connect("10.96.0.1"), at_s=45),
        ]),
        Scenario(name="ordinary config file read", fires=False, events=[
            ScenarioEvent(source="k8s-audit", record=EXEC, at_s=0),
            ScenarioEvent(source="tetragon", record=READ_CONFIG, at_s=20),
            ScenarioEvent(source="tetragon", record=connect("45.33.32.156"), at_s=45),
        ]),
        Scenario(name="connection ten minutes later", fires=False, events=[
            ScenarioEvent(source="k8s-audit", record=EXEC, at_s=0),
            ScenarioEvent(source="tetragon", record=READ_SHADOW, at_s=20),
            ScenarioEvent(source="tetragon", record=connect("45.33.32.156"), at_s=600),
        ]),
    ],
)
