"""What an alert says about its events: the fields its title and dedup key (``str.format`` templates) may read,
the context it starts from, and how a runtime alert names its container."""

from __future__ import annotations

from typing import Any

from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event

#: How a title names a process whose source named neither its executable nor its process name.
UNNAMED_PROGRAM = "an unnamed process"


def template_fields(event: Event) -> dict[str, Any]:
    """The fields every title and dedup template may use, whatever the event kind (empty when not known)."""
    return {
        "cluster": event.cluster,
        "namespace": event_namespace(event),
        "pod": event.k8s.pod,
        "user": event.actor.user,
        "verb": event.action,
        "resource": event.target.resource,
        "subresource": event.target.subresource,
        "name": event.target.name,
        "source": event.source,
        "program": program_label(event),
    }


def program_label(event: Event) -> str:
    """How a title names the acting program: the applet or the executable's basename (a sensor that saw no
    executable path gives the process name), never empty, so a title does not start with a blank."""
    return program_name(event) or UNNAMED_PROGRAM


def _template_value(value: Any) -> Any:
    """Lists read as ``a, b`` in titles and dedup keys, not as a Python repr."""
    return ", ".join(map(str, value)) if isinstance(value, list | tuple) else value


class TemplateFields:
    """The fields an alert's title and dedup templates read (the detection's own context keys win over
    :func:`template_fields`, which win over :func:`event_context`), each rendered for a template (lists as
    ``a, b``). Templates read two or three of the twenty-odd fields, and a repeat of an open alert renders only
    its dedup key, so the shared fields are gathered only when a template reads one of them."""

    __slots__ = ("_common", "_context", "_event", "_own")

    def __init__(self, event: Event, own_context: dict[str, Any]) -> None:
        self._event, self._own = event, own_context
        self._common: dict[str, Any] | None = None
        self._context: dict[str, Any] | None = None

    @property
    def context(self) -> dict[str, Any]:
        """The alert context: :func:`event_context` with the detection's own keys over it."""
        if self._context is None:
            self._context = {**event_context(self._event), **self._own}
        return self._context

    def __getitem__(self, key: str) -> Any:
        if key in self._own:
            return _template_value(self._own[key])
        if self._common is None:
            self._common = template_fields(self._event)
        if key in self._common:
            return _template_value(self._common[key])
        return _template_value(self.context[key])


class FindingFields(dict):
    """Template fields of a stateful alert, rendered as :class:`TemplateFields` renders them: a field no step
    provided reads as empty, not as a KeyError."""

    def __getitem__(self, key: str) -> Any:
        return _template_value(self.get(key, ""))


def event_context(event: Event) -> dict[str, Any]:
    """The fields every alert context starts from: what was done to what, by whom from where, and how it ended."""
    target, actor = event.target, event.actor
    resource = f"{target.resource}/{target.subresource}" if target.subresource else target.resource
    context = {
        "verb" if event.kind == "k8s.api" else "action": event.action,
        "resource": resource,
        "api_group": target.api_group,
        "object": target.name,
        "path": target.path,
        "address": f"{target.address}:{target.port}" if target.address else "",
        "exe": actor.exe,
        "args": actor.args,
        "source_ips": actor.source_ips,
        "user_agent": actor.user_agent,
        "outcome": event.outcome.result,
        "code": event.outcome.code,
    }
    return {key: value for key, value in context.items() if value}


def container_label(event: Event) -> str:
    """How a runtime alert names the container: ``namespace/pod container``, or its short id when no pod is known
    (a container started outside Kubernetes, or one the node collector could not tell the pod of)."""
    k8s = event.k8s
    if k8s.pod:
        return f"{k8s.namespace}/{k8s.pod} {k8s.container_name}".rstrip()
    container_id = k8s.container_id or event.container.id
    return f"container {container_id[:12]}" if container_id else "a container"


def event_namespace(event: Event) -> str:
    """The namespace an event happened in: its pod's, else the API object's."""
    return event.k8s.namespace or event.target.namespace
