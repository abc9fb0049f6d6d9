"""The Kubernetes API as a source of k8s context: a watch of this node's pods (``spec.nodeName=<node>``).

It knows what CRI does not (the service account) and covers containers of pods whose sandboxes CRI has
already forgotten. It is optional: without in-cluster credentials or a kubeconfig, or while the
apiserver is unreachable, the collector enriches from CRI alone and says so in its log and in
``vigil_node_source_up{source="kubernetes-api"}``. The watch runs in a thread (the ``kubernetes`` client
is synchronous) and hands pods to a callback, which must be thread-safe.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from vigil.collectors.node import metrics
from vigil.collectors.runtime.cri import k8s_context

log = logging.getLogger(__name__)

_STATUS_LISTS = ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")
_WATCH_SECONDS = 300
_MAX_BACKOFF_S = 30.0

#: Called with the watch event type ("ADDED", "MODIFIED", "DELETED") and the pod in its JSON form.
PodCallback = Callable[[str, dict[str, Any]], None]


def pod_contexts(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The k8s context of every container of a pod (its JSON form), by container id.

    Includes each container's previous instance (``lastState``), so records of a container that just
    restarted still find their pod.
    """
    meta, spec, status = (pod.get(part) or {} for part in ("metadata", "spec", "status"))
    namespace = meta.get("namespace") or ""
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or ""
    contexts = {}
    for list_name in _STATUS_LISTS:
        for container in status.get(list_name) or []:
            last = ((container.get("lastState") or {}).get("terminated") or {}).get("containerID") or ""
            for runtime_id in (container.get("containerID") or "", last):
                container_id = runtime_id.rpartition("://")[2]
                if container_id:
                    contexts[container_id] = k8s_context(
                        namespace=namespace, pod=meta.get("name") or "", pod_uid=meta.get("uid") or "",
                        container_id=container_id, container_name=container.get("name") or "",
                        image=container.get("image") or "",
                        service_account=f"{namespace}/{account}" if account else "",
                        labels=meta.get("labels") or {})
    return contexts


def exited_container_ids(pod: dict[str, Any]) -> list[str]:
    """Ids of the pod's containers that have terminated (their cache entries start their grace period)."""
    status = pod.get("status") or {}
    return [
        container["containerID"].rpartition("://")[2]
        for list_name in _STATUS_LISTS
        for container in status.get(list_name) or []
        if container.get("containerID") and (container.get("state") or {}).get("terminated")
    ]


class PodWatch:
    """Watches this node's pods in a background thread; ``state`` says how that is going.

    It lists the pods first, then watches from the list's resourceVersion, as an informer does. A watch
    alone would miss what happens between two watch requests: after an outage or a ``410 Gone`` (a
    resourceVersion the apiserver no longer has), it lists again and reports the pods it knew that are gone
    as ``DELETED``, so their containers do not keep a context forever. A watch that merely timed out resumes
    from its last resourceVersion, without a new list.
    """

    def __init__(self, node: str, on_pod: PodCallback) -> None:
        self.node = node
        self._on_pod = on_pod
        self._stopping = threading.Event()
        self._watch = watch.Watch()
        self._thread: threading.Thread | None = None
        self._pods: dict[str, dict[str, Any]] = {}  # uid → the pod as last seen, to report those a list lacks
        self.state = "stopped"  # stopped | unconfigured | connecting | watching | unreachable
        self.error = ""

    def start(self) -> bool:
        """Start watching if API credentials are configured; ``False`` (and CRI only) when there are none."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException:
            try:
                # The client reads $KUBECONFIG when it is imported; read it now, so the current value counts.
                config.load_kube_config(os.environ.get("KUBECONFIG"), client_configuration=configuration,
                                        persist_config=False)
            except (ConfigException, OSError, TypeError) as exc:
                self.state, self.error = "unconfigured", str(exc) or type(exc).__name__
                metrics.SOURCE_UP.labels("kubernetes-api").set(0)
                log.info("no Kubernetes API credentials (in-cluster or kubeconfig): k8s context from CRI only",
                         extra={"reason": self.error})
                return False
        configuration.retries = 0  # the watch loop retries, with backoff and one log line per outage
        api = client.CoreV1Api(client.ApiClient(configuration))
        self.state = "connecting"
        self._thread = threading.Thread(target=self._run, args=(api,), name="kubernetes-pod-watch", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stopping.set()
        self._watch.stop()
        if self._thread:
            self._thread.join(timeout=5)
        metrics.SOURCE_UP.labels("kubernetes-api").set(0)

    def _run(self, api: client.CoreV1Api) -> None:
        backoff = 1.0
        resource_version = ""  # where the next watch starts; empty: list first
        while not self._stopping.is_set():
            try:
                if not resource_version:
                    resource_version = self._list(api)
                    self._set_state("watching")
                    backoff = 1.0
                resource_version = self._follow(api, resource_version)
            except ApiException as exc:
                resource_version = ""
                if exc.status == HTTPStatus.GONE:
                    log.info("the pod watch's resourceVersion expired: listing this node's pods again",
                             extra={"node": self.node})
                    continue
                self._wait_after_error(f"HTTP {exc.status}: {exc.reason}", backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
            except Exception as exc:  # whatever the client raises, the thread must live on and retry
                resource_version = ""
                self._wait_after_error(f"{type(exc).__name__}: {exc}", backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    def _list(self, api: client.CoreV1Api) -> str:
        """Report every pod of the node (and, as deleted, known pods that are gone); the list's resourceVersion."""
        pod_list = api.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.node}",
                                                   _request_timeout=(5, 60))
        pods = api.api_client.sanitize_for_serialization(pod_list.items)
        listed = {pod["metadata"]["uid"]: pod for pod in pods}
        for uid in self._pods.keys() - listed.keys():
            self._on_pod("DELETED", self._pods.pop(uid))
        for uid, pod in listed.items():
            self._on_pod("MODIFIED" if uid in self._pods else "ADDED", pod)
            self._pods[uid] = pod
        return pod_list.metadata.resource_version

    def _follow(self, api: client.CoreV1Api, resource_version: str) -> str:
        """Watch from ``resource_version`` until the server ends the watch; the last resourceVersion seen."""
        events = self._watch.stream(
            api.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={self.node}",
            resource_version=resource_version, allow_watch_bookmarks=True,
            timeout_seconds=_WATCH_SECONDS, _request_timeout=(5, _WATCH_SECONDS + 30))
        for event in events:
            kind = event["type"]
            if kind == "BOOKMARK":  # only moves the resourceVersion on (the client keeps it)
                continue
            pod = api.api_client.sanitize_for_serialization(event["object"])
            uid = pod["metadata"]["uid"]
            if kind == "DELETED":
                self._pods.pop(uid, None)
            else:
                self._pods[uid] = pod
            self._on_pod(kind, pod)
        return self._watch.resource_version or resource_version

    def _wait_after_error(self, error: str, backoff: float) -> None:
        self._set_state("unreachable", error)
        self._stopping.wait(backoff)

    def _set_state(self, state: str, error: str = "") -> None:
        if state == "unreachable" and self.state != "unreachable":
            log.warning("Kubernetes API unreachable: k8s context from CRI only until it is back",
                        extra={"node": self.node, "error": error[:500]})
        elif state == "watching" and self.state != "watching":
            log.info("watching this node's pods on the Kubernetes API", extra={"node": self.node})
        self.state, self.error = state, error
        metrics.SOURCE_UP.labels("kubernetes-api").set(1 if state == "watching" else 0)
