"""A service-account token read in a pod by a shell or tool, then API calls made with that pod's token: a
stolen in-cluster credential being used, joined across the runtime sensor and the audit log."""

import posixpath
from typing import Any

from vigil.detections.sdk import Scenario, ScenarioEvent, SequenceDetection, Step
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import kprobe, tetragon_record

TOKEN_DIRS = ("/var/run/secrets/kubernetes.io/serviceaccount/", "/run/secrets/kubernetes.io/serviceaccount/",
              "/var/run/secrets/tokens/")
#: Programs a person (or a payload) reads files with; applications read their token with their own binary.
TOOLS = frozenset({
    "sh", "bash", "dash", "ash", "zsh", "busybox", "cat", "head", "tail", "less", "more", "base64", "xxd", "od",
    "strings", "cp", "tar", "curl", "wget", "python", "python3", "perl", "ruby", "nc", "ncat", "kubectl", "grep",
    "awk", "sed", "jq", "vi", "vim",
})
_POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"


def is_token_read_by_tool(event: Event) -> bool:
    path = event.target.path
    return path.startswith(TOKEN_DIRS) and path.endswith("token") and posixpath.basename(event.actor.exe) in TOOLS


def is_call_with_pod_token(event: Event) -> bool:
    """An API request authenticated by a service-account token bound to the pod the event is about (the audit
    normalizer puts that pod in ``k8s`` and in ``actor.token_pod`` from ``user.extra``)."""
    return bool(event.k8s.service_account and event.actor.token_pod and event.actor.token_pod == event.k8s.pod)


def call_context(event: Event) -> dict[str, Any]:
    target = event.target
    resource = f"{target.resource}/{target.subresource}" if target.subresource else target.resource
    return {"verb": event.action, "resource": resource, "service_account": event.k8s.service_account,
            "outcome": event.outcome.result, "code": event.outcome.code}


def token_read(binary: str, arguments: str = "") -> dict:
    file = {"file_arg": {"path": "/var/run/secrets/kubernetes.io/serviceaccount/token"}}
    return tetragon_record("process_kprobe", binary=binary, arguments=arguments,
                           body=kprobe("fd_install", {"int_arg": 5}, file))


def api_call(verb: str, resource: str, pod: str = "web-7f9c") -> dict:
    return audit_record(
        verb, resource, user="system:serviceaccount:default:web", code=200,
        groups=("system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"),
        extra={_POD_NAME_EXTRA: [pod], "authentication.kubernetes.io/pod-uid": ["5d1c1a0e-7f9c"]},
        time="2025-03-04T06:23:00.000000Z",
    )


DETECTION = SequenceDetection(
    id="seq.token_read_api_use",
    title="Service-account token read by a tool, then used against the API",
    alert_title="{exe} read the token in {namespace}/{pod}, then {service_account} did {verb} {resource}",
    description=(
        "A shell, cat, curl or another tool read the pod's service-account token, and within ten minutes the API "
        "server received requests authenticated by that pod's token. Applications read their token with their "
        "own binary; a tool reading it is someone handling the credential, and the requests that follow show "
        "what it was used for (listing secrets, creating pods, reviewing its own permissions)."
    ),
    severity="high",
    mitre=["T1528", "T1552.007", "T1078.004"],
    tags=["sequence", "kubernetes", "runtime", "credential-access"],
    references=[
        "https://microsoft.github.io/Threat-Matrix-for-Kubernetes/techniques/Container%20service%20account/",
        "https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#bound-service-account-tokens",
    ],
    false_positives=["Debugging in-cluster RBAC with curl and the mounted token from inside the pod."],
    max_span_s=600,
    steps=[
        Step(name="token read", kinds=["file.open"], match=is_token_read_by_tool, exe_names=TOOLS),
        Step(name="API call with the pod's token", kinds=["k8s.api"], sources=["k8s-audit"],
             match=is_call_with_pod_token, context=call_context),
    ],
    dedup="{cluster}/{namespace}/{pod}/{service_account}",
    examples=[
        Scenario(name="cat the token, then list secrets with it", fires=True, events=[
            ScenarioEvent(source="tetragon", record=token_read("/bin/cat", "token"), at_s=0),
            ScenarioEvent(source="k8s-audit", record=api_call("list", "secrets"), at_s=40),
        ]),
        Scenario(name="audit batch arrives first; Falco saw curl read the token", fires=True, events=[
            ScenarioEvent(source="k8s-audit", record=api_call("create", "selfsubjectrulesreviews"), at_s=90),
            ScenarioEvent(source="falco", at_s=60, record=falco_record(
                "Read sensitive file untrusted", "openat",
                {"fd.name": "/var/run/secrets/kubernetes.io/serviceaccount/token", "proc.exepath": "/usr/bin/curl",
                 "proc.cmdline": "curl -H @/var/run/secrets/kubernetes.io/serviceaccount/token"})),
        ]),
        Scenario(name="the application reads its own token and calls the API", fires=False, events=[
            ScenarioEvent(source="tetragon", record=token_read("/app/controller"), at_s=0),
            ScenarioEvent(source="k8s-audit", record=api_call("list", "configmaps"), at_s=5),
        ]),
        Scenario(name="another pod's token makes the call", fires=False, events=[
            ScenarioEvent(source="tetragon", record=token_read("/bin/cat", "token"), at_s=0),
            ScenarioEvent(source="k8s-audit", record=api_call("list", "secrets", pod="api-55d8"), at_s=40),
        ]),
        Scenario(name="the call comes an hour later", fires=False, events=[
            ScenarioEvent(source="tetragon", record=token_read("/bin/cat", "token"), at_s=0),
            ScenarioEvent(source="k8s-audit", record=api_call("list", "secrets"), at_s=3600),
        ]),
    ],
)
