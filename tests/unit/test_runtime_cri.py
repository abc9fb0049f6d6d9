"""CRI messages → k8s context (messages built here as containerd's CRI plugin returns them)."""

from __future__ import annotations

from vigil.collectors.runtime.api import cri_pb2
from vigil.collectors.runtime.cri import container_context, contexts_from_event, k8s_context, sandbox_context

SANDBOX_ID, CID = "s" * 64, "c" * 64
META = cri_pb2.PodSandboxMetadata(name="web-1", namespace="shop", uid="u-1")
SANDBOX_LABELS = {"app": "web", "io.kubernetes.pod.name": "web-1", "io.kubernetes.pod.namespace": "shop",
                  "io.kubernetes.pod.uid": "u-1"}


def test_a_container_gets_its_sandboxs_pod_and_labels_without_the_kubelets_own():
    sandbox = cri_pb2.PodSandbox(id=SANDBOX_ID, metadata=META, labels=SANDBOX_LABELS)
    container = cri_pb2.Container(id=CID, pod_sandbox_id=SANDBOX_ID, metadata=cri_pb2.ContainerMetadata(name="main"),
                                  image=cri_pb2.ImageSpec(image="busybox:1"), image_ref="sha256:abc")
    assert container_context(container, sandbox) == k8s_context(
        namespace="shop", pod="web-1", pod_uid="u-1", container_id=CID, container_name="main", image="busybox:1",
        labels={"app": "web"})
    assert sandbox_context(sandbox) == k8s_context(namespace="shop", pod="web-1", pod_uid="u-1",
                                                   container_id=SANDBOX_ID, labels={"app": "web"})


def test_without_its_sandbox_a_container_falls_back_to_the_kubelets_labels():
    container = cri_pb2.Container(id=CID, metadata=cri_pb2.ContainerMetadata(name="main"), image_ref="sha256:abc",
                                  labels={"io.kubernetes.pod.name": "web-1", "io.kubernetes.pod.namespace": "shop",
                                          "io.kubernetes.pod.uid": "u-1", "io.kubernetes.container.name": "main"})
    context = container_context(container, None)
    assert (context["pod"], context["namespace"], context["pod_uid"]) == ("web-1", "shop", "u-1")
    assert (context["image"], context["labels"]) == ("sha256:abc", {})


def test_a_cri_container_event_describes_its_pods_containers_and_sandbox():
    status = cri_pb2.PodSandboxStatus(id=SANDBOX_ID, metadata=META, labels={"app": "web"})
    event = cri_pb2.ContainerEventResponse(
        container_id=CID, container_event_type=cri_pb2.CONTAINER_STARTED_EVENT, pod_sandbox_status=status,
        containers_statuses=[cri_pb2.ContainerStatus(id=CID, metadata=cri_pb2.ContainerMetadata(name="main"),
                                                     image=cri_pb2.ImageSpec(image="busybox:1"))])
    contexts = contexts_from_event(event)
    assert set(contexts) == {CID, SANDBOX_ID}
    assert contexts[CID]["pod"] == "web-1" and contexts[CID]["container_name"] == "main"
