"""Complete Falco alert records built from the fields that matter, for detection examples and tests (what
:func:`vigil.sources.audit.fixtures.audit_record` is for audit events): a record as Falco's JSON output writes it for a
rule whose output template names the given fields, plus the process and Kubernetes fields stock rules print."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def falco_record(
    rule: str,
    evt_type: str,
    fields: dict[str, Any],
    *,
    priority: str = "Warning",
    namespace: str = "default",
    pod: str = "web-7f9c",
    container_id: str = "3f1c2a9b7d10",
    image: tuple[str, str] = ("docker.io/library/nginx", "1.27"),
    host: bool = False,
    tags: tuple[str, ...] = ("container", "process"),
    hostname: str = "node-1",
    time: str = "2025-03-04T06:22:18.819232123Z",
) -> dict[str, Any]:
    """A Falco alert of ``rule`` on a syscall ``evt_type`` by a process in pod ``namespace/pod`` (or on the
    node with ``host=True``); ``fields`` are the rule's own output fields (``proc.cmdline``, ``fd.name``…)."""
    seconds = datetime.fromisoformat(time[:19] + "+00:00").timestamp()
    nanos = int(seconds) * 1_000_000_000 + int(time[20:-1].ljust(9, "0"))
    output_fields: dict[str, Any] = {"evt.time": nanos, "evt.type": evt_type, "user.name": "root", "user.uid": 0,
                                     "user.loginuid": -1}
    if host:
        output_fields.update({"container.id": "host", "container.name": "host", "k8s.ns.name": None,
                              "k8s.pod.name": None})
    else:
        output_fields.update({"container.id": container_id, "container.name": pod.rsplit("-", 1)[0],
                              "container.image.repository": image[0], "container.image.tag": image[1],
                              "k8s.ns.name": namespace, "k8s.pod.name": pod})
    output_fields.update(fields)
    shown = " ".join(f"{key}={value}" for key, value in fields.items())
    return {
        "hostname": hostname,
        "output": f"{time[11:29]}: {priority} {rule} ({shown})",
        "output_fields": output_fields,
        "priority": priority,
        "rule": rule,
        "source": "syscall",
        "tags": list(tags),
        "time": time,
    }
