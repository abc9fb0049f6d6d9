"""What the Kubernetes API detections of the library share beyond :mod:`detections.sdk`.

Identity allow-lists: several detections fire on ordinary API calls (reading a secret, requesting a token,
approving a certificate) and are only suspicious when the caller is not one of the control-plane components
that do so all day. Each such detection declares its own allow-list as ``fnmatch`` patterns over the user
name, so what is trusted is visible in the detection file and one pattern covers a family of controllers.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from detections.sdk import written_object
from vigil.event import Event

#: The API server itself, the scheduler and the controller manager (with its per-controller service accounts
#: when ``--use-service-account-credentials`` is on: most are named ``*-controller``, the rest are listed), and
#: kubelets (``system:node:<name>``). A service account an attacker names ``kube-system:x-controller`` also
#: matches: creating one there is caught by ``k8s.system_namespace_object``.
CONTROL_PLANE = (
    "system:apiserver",
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:node:*",
    "system:serviceaccount:kube-system:*-controller",
    "system:serviceaccount:kube-system:bootstrap-signer",
    "system:serviceaccount:kube-system:generic-garbage-collector",
    "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
    "system:serviceaccount:kube-system:legacy-service-account-token-cleaner",
    "system:serviceaccount:kube-system:persistent-volume-binder",
    "system:serviceaccount:kube-system:root-ca-cert-publisher",
    "system:serviceaccount:kube-system:token-cleaner",
)

_WRITES = frozenset({"create", "update", "patch"})
_MUTATIONS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def identity_in(user: str, patterns: Iterable[str]) -> bool:
    """Whether ``user`` matches one of the ``fnmatch`` patterns (case-sensitive, as Kubernetes names are)."""
    return any(fnmatchcase(user, pattern) for pattern in patterns)


def is_write(event: Event, resource: str, api_group: str = "") -> bool:
    """A create, update or patch of the object itself (not of a subresource such as ``status``)."""
    target = event.target
    return (
        event.action in _WRITES
        and target.resource == resource
        and target.api_group == api_group
        and not target.subresource
    )


def is_mutation(event: Event, resources: Iterable[str], api_group: str) -> bool:
    """A create, update, patch, delete or deletecollection of one of ``resources`` in ``api_group``."""
    target = event.target
    return (
        event.action in _MUTATIONS
        and target.resource in resources
        and target.api_group == api_group
        and not target.subresource
    )


def service_spec(event: Event) -> dict[str, Any]:
    """The spec a create, update or patch of a Service sets ({} for any other event, or when the audit
    policy did not log the body)."""
    if not is_write(event, "services"):
        return {}
    spec = (written_object(event) or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


def service_ports(spec: dict[str, Any]) -> list[dict[str, Any]]:
    ports = spec.get("ports")
    return [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []


def service_object(name: str, service_type: str, **port: Any) -> dict[str, Any]:
    """A Service of ``service_type`` as a client sends it, with one port (``port`` overrides), for examples."""
    spec = {"type": service_type, "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080, **port}]}
    return {"kind": "Service", "apiVersion": "v1", "metadata": {"name": name}, "spec": spec}
