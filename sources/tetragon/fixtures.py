"""Complete Tetragon export records built from the few fields that matter, for detection examples and tests
(what :func:`vigil.sources.audit.fixtures.audit_record` is for audit events): everything else is filled in the way a
Tetragon agent on a Kubernetes node writes it, so the record goes through the real source unchanged."""

from __future__ import annotations

import base64
from typing import Any

import orjson

SHIM = "/usr/bin/containerd-shim-runc-v2"


def tetragon_record(
    event_type: str = "process_exec",
    *,
    binary: str,
    arguments: str = "",
    body: dict[str, Any] | None = None,
    parent: str = SHIM,
    parent_arguments: str = "",
    namespace: str = "default",
    pod: str = "web-7f9c",
    container: str = "app",
    image: str = "docker.io/library/nginx:1.27",
    container_pid: int = 7,
    labels: dict[str, str] | None = None,
    host: bool = False,
    pid: int = 48213,
    uid: int = 0,
    cwd: str = "/",
    node: str = "node-1",
    time: str = "2025-03-04T06:22:18.819232Z",
) -> dict[str, Any]:
    """One export record of ``event_type`` by a process running ``binary`` (``arguments`` as Tetragon joins
    them) in a container of pod ``namespace/pod``, or on the node itself with ``host=True``. ``body`` adds the
    event's own fields (``function_name``, ``args``, ``destination_ip``, …). Exec ids derive from the content."""
    process = _process(binary, arguments, pid, uid, cwd, node, time)
    parent_process = _process(parent, parent_arguments, pid - 1, uid, cwd, node, time)
    if not host:
        process["pod"] = _pod(namespace, pod, container, image, container_pid, labels)
        if parent != SHIM:
            parent_process["pod"] = _pod(namespace, pod, container, image, container_pid - 1, labels)
    process["parent_exec_id"] = parent_process["exec_id"]
    return {event_type: {"process": process, "parent": parent_process, **(body or {})}, "node_name": node,
            "time": time}


def _process(binary: str, arguments: str, pid: int, uid: int, cwd: str, node: str, time: str) -> dict[str, Any]:
    identity = orjson.dumps([node, binary, arguments, pid, time])
    exec_id = base64.b64encode(f"{node}:{sum(identity) * 7919}:{pid}".encode()).decode()
    process: dict[str, Any] = {"exec_id": exec_id, "pid": pid, "uid": uid, "cwd": cwd, "binary": binary}
    if arguments:
        process["arguments"] = arguments
    process.update({"flags": "execve clone", "start_time": time, "auid": 4294967295})
    return process


def _pod(namespace: str, pod: str, container: str, image: str, container_pid: int,
         labels: dict[str, str] | None) -> dict[str, Any]:
    container_id = orjson.dumps([namespace, pod, container]).hex()[:64].ljust(64, "0")
    return {
        "namespace": namespace,
        "name": pod,
        "container": {
            "id": f"containerd://{container_id}",
            "name": container,
            "image": {"id": f"{image.rpartition(':')[0]}@sha256:{'ab' * 32}", "name": image},
            "start_time": "2025-03-04T06:00:00Z",
            "pid": container_pid,
        },
        "pod_labels": labels if labels is not None else {"app": pod.rsplit("-", 1)[0]},
    }


def kprobe(function_name: str, *args: dict[str, Any], returned: int | None = None) -> dict[str, Any]:
    """The body of a ``process_kprobe`` event: the hooked function and its typed arguments."""
    body: dict[str, Any] = {"function_name": function_name, "args": list(args), "action": "KPROBE_ACTION_POST"}
    if returned is not None:
        body["return"] = {"int_arg": returned}
    return body
