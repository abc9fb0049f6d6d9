"""An exec whose command copies files out of the pod (``kubectl cp``) or prints credentials the pod holds (its
service-account token, cloud workload-identity tokens, keys)."""

import posixpath
import re
from typing import Any
from urllib.parse import urlencode

from vigil.detections.k8s import request_query
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_VERBS = frozenset({"create", "get"})
#: Where pods keep credentials: the service-account token (and the cloud providers' workload-identity tokens
#: beside it), cloud credential files and SSH keys.
CREDENTIAL_PATHS = re.compile(
    r"/var/run/secrets/|/run/secrets/|serviceaccount/token|azure-identity-token|/\.aws/credentials|"
    r"/\.config/gcloud/|/\.kube/config|/\.ssh/id_|/\.docker/config\.json"
)
#: Programs that print a file to stdout, which exec streams back to the client.
READERS = frozenset({"cat", "head", "tail", "base64", "xxd", "od", "strings", "more", "less", "dd", "cp", "tar"})


def copied_out(command: list[str]) -> str:
    """How ``command`` takes data out of the pod ("" when it does not): ``tar`` writing an archive to stdout (what
    ``kubectl cp`` from a pod runs), or a reader, or a shell, naming a credential path."""
    if not command:
        return ""
    program = posixpath.basename(command[0])
    if program == "tar" and "-" in command[1:] and any(a.lstrip("-").startswith("c") for a in command[1:3]):
        return "archive to stdout (kubectl cp)"
    text = " ".join(command)
    if CREDENTIAL_PATHS.search(text) and (program in READERS or program in {"sh", "bash", "ash", "dash", "zsh"}):
        return "credential file printed"
    return ""


def exfil_method(event: Event) -> str:
    target = event.target
    if event.action not in _VERBS or target.resource != "pods" or target.subresource != "exec":
        return ""
    return copied_out(request_query(event).get("command", []))


def exfil_context(event: Event) -> dict[str, Any]:
    return {"method": exfil_method(event), "command": request_query(event).get("command", [])}


def _exec(*command: str, user: str = "alice@example.com") -> dict[str, Any]:
    query = urlencode([("command", c) for c in command] + [("container", "app"), ("stdout", "true")])
    return audit_record("create", "pods", name="web-7f9c-x7k2p", namespace="shop", subresource="exec",
                        query=query, user=user, code=101)


DETECTION = EventDetection(
    id="k8s.exec_copies_data",
    title="Files or credentials copied out of a pod through exec",
    alert_title="{user} took data out of {namespace}/{pod}: {method}",
    description=(
        "An exec into a pod ran tar writing an archive to stdout (what kubectl cp from a pod does) or printed a "
        "credential file the pod holds: its service-account token, a cloud workload-identity token, cloud or "
        "kubeconfig credentials, SSH keys. The output streams back to the caller, so this is data or a "
        "credential leaving the pod, with the token then usable from anywhere. k8s.exec_into_pod reports every "
        "exec; this names the ones that take something. Reported whether or not it was allowed."
    ),
    severity="high",
    mitre=["T1552.001", "T1528", "T1609", "T1005"],
    tags=["kubernetes", "credential-access", "collection", "exfiltration"],
    references=[
        "https://kubernetes.io/docs/reference/kubectl/generated/kubectl_cp/",
        "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/Access%20container%20service%20account/",
    ],
    false_positives=["A developer copying logs or a dump out of a pod in a development namespace."],
    kinds=["k8s.api"],
    resources=["pods"], actions=_VERBS, subresources=["exec"],
    match=lambda event: bool(exfil_method(event)),
    context=exfil_context,
    dedup="{cluster}/{namespace}/{pod}/{user}",
    examples=[
        Example(name="kubectl cp from a pod", source="k8s-audit", fires=True,
                record=_exec("tar", "cf", "-", "/app/data")),
        Example(name="the service-account token printed", source="k8s-audit", fires=True,
                record=_exec("cat", "/var/run/secrets/kubernetes.io/serviceaccount/token")),
        Example(name="a shell printing the workload-identity token", source="k8s-audit", fires=True,
                record=_exec("sh", "-c", "cat /var/run/secrets/azure/tokens/azure-identity-token")),
        Example(name="kubectl cp into a pod (tar extracting)", source="k8s-audit", fires=False,
                record=_exec("tar", "-xmf", "-", "-C", "/tmp")),
        Example(name="an interactive shell", source="k8s-audit", fires=False, record=_exec("sh")),
        Example(name="listing the token directory", source="k8s-audit", fires=False,
                record=_exec("ls", "/var/run/secrets/kubernetes.io/serviceaccount")),
    ],
)
