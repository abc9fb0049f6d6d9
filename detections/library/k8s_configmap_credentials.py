"""Credentials stored in a ConfigMap: keys or values that look like passwords, tokens, private keys or cloud keys."""

import re
from typing import Any

from vigil.detections.k8s import written_object
from vigil.detections.sdk import EventDetection, Example
from vigil.event import Event
from vigil.sources.audit.fixtures import audit_record

_WRITES = frozenset({"create", "update", "patch"})
#: A key *ending* in a credential word (``db_password``, ``auth-token``), not merely containing one
#: (``token-ttl``, ``password-policy``).
CREDENTIAL_KEY = re.compile(
    r"(^|[._-])(password|passwd|pwd|secret|secret[._-]?key|token|api[._-]?key|access[._-]?key|private[._-]?key"
    r"|client[._-]?secret|credentials?)$",
    re.IGNORECASE,
)
#: Values that are credentials whatever their key: private keys, AWS access key ids, GitHub, GitLab and
#: Slack tokens, JWTs (service-account tokens among them), and credentials embedded in URLs.
CREDENTIAL_VALUES = {
    "private key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(r"aws_secret_access_key\s*[=:]\s*\S{20,}", re.IGNORECASE),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "GitLab token": re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    "password in a URL": re.compile(r"[a-z][a-z0-9+.-]*://[^\s:/@]+:[^\s/@]{3,}@", re.IGNORECASE),
}
#: Values under a credential-named key that are not credentials: empty, booleans, numbers, references.
_PLACEHOLDER = re.compile(r"^(|true|false|yes|no|none|null|changeme|\d+|\$\{.*\}|\$\(.*\)|<.*>|/\S*)$", re.IGNORECASE)


def credential_findings(event: Event) -> list[dict[str, str]]:
    target = event.target
    if event.action not in _WRITES or target.resource != "configmaps" or target.api_group or target.subresource:
        return []
    data = (written_object(event) or {}).get("data")
    if not isinstance(data, dict):
        return []
    findings = []
    for key, value in data.items():
        text = value if isinstance(value, str) else ""
        kinds = [kind for kind, pattern in CREDENTIAL_VALUES.items() if pattern.search(text)]
        if not kinds and CREDENTIAL_KEY.search(str(key)) and not _PLACEHOLDER.match(text.strip()):
            kinds = ["credential-named key"]
        if kinds:
            findings.append({"key": str(key), "looks_like": ", ".join(kinds)})
    return findings


def credential_context(event: Event) -> dict[str, Any]:
    findings = credential_findings(event)
    return {"keys": [f["key"] for f in findings], "findings": findings}


def _configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": name}, "data": data}


_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1x\n-----END RSA PRIVATE KEY-----\n"

DETECTION = EventDetection(
    id="k8s.configmap_credentials",
    title="Credentials in a ConfigMap",
    alert_title="{user} stored {keys} in ConfigMap {namespace}/{name}",
    description=(
        "A ConfigMap was created or changed with data that looks like a credential: a key named like a "
        "password, token or API key with a real value, or a value that is a private key, an AWS access key, a "
        "GitHub/GitLab/Slack token, a JWT or a URL with a password. ConfigMaps are not secrets: they are "
        "readable by far more identities (the view role included), are not encrypted at rest, and end up in "
        "logs and Git. Only visible when the audit policy logs ConfigMap bodies (level Request). The alert "
        "names the keys, never the values."
    ),
    severity="low",  # hygiene: a credential stored where secrets should be
    mitre=["T1552.001", "T1552.007"],
    tags=["kubernetes", "credential-access", "misconfiguration"],
    references=[
        "https://kubernetes.io/docs/concepts/configuration/secret/",
        "https://kubernetes.io/docs/concepts/security/secrets-good-practices/",
    ],
    false_positives=["Test fixtures or documentation samples with dummy credentials."],
    kinds=["k8s.api"],
    resources=["configmaps"], actions=_WRITES, subresources=[""],
    match=lambda event: bool(credential_findings(event)),
    context=credential_context,
    dedup="{cluster}/{namespace}/{name}",
    examples=[
        Example(
            name="database password",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "create", "configmaps", name="shop-config", namespace="shop",
                request_object=_configmap("shop-config", {"DB_HOST": "db", "DB_PASSWORD": "s3cr3t-Pa55"}),
            ),
        ),
        Example(
            name="private key and AWS key under innocent names",
            source="k8s-audit",
            fires=True,
            record=audit_record(
                "update", "configmaps", name="tooling", namespace="ci",
                request_object=_configmap("tooling", {"deploy.pem": _KEY, "env": "AWS_ID=AKIAIOSFODNN7EXAMPLE"}),
            ),
        ),
        Example(
            name="ordinary configuration",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "configmaps", name="web", namespace="shop",
                request_object=_configmap(
                    "web",
                    {"LOG_LEVEL": "info", "token-ttl": "3600", "password_file": "/run/secrets/db", "api_key": ""},
                ),
            ),
        ),
        Example(
            name="the cluster CA certificate",
            source="k8s-audit",
            fires=False,
            record=audit_record(
                "create", "configmaps", name="kube-root-ca.crt", namespace="shop",
                user="system:serviceaccount:kube-system:root-ca-cert-publisher",
                request_object=_configmap(
                    "kube-root-ca.crt", {"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"}
                ),
            ),
        ),
    ],
)
