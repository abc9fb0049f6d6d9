"""What a container was started with: the OCI spec's summary the node collector adds to create records, and the
containerd normalizer's container part built from it."""

from __future__ import annotations

from typing import Any

from vigil.collectors.runtime.spec import pod_of_spec, security_of_spec
from vigil.detections.engine import Engine
from vigil.sources.containerd.fixtures import containerd_record
from vigil.sources.source import get_source

#: An unprivileged container's spec as containerd's CRI plugin writes it (the parts the summary reads).
SPEC: dict[str, Any] = {
    "ociVersion": "1.1.0",
    "process": {"user": {"uid": 1000, "gid": 1000},
                "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_KILL", "CAP_CHOWN"]}},
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/etc/hosts", "type": "bind", "source": "/var/lib/kubelet/pods/u/etc-hosts",
         "options": ["rbind", "rprivate", "rw"]},
        {"destination": "/host/etc", "source": "/etc", "options": ["rbind", "ro"]},
    ],
    "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
              "maskedPaths": ["/proc/kcore", "/proc/keys"]},
}


def test_an_unprivileged_container_with_its_binds_and_the_host_network() -> None:
    security = security_of_spec(SPEC)

    assert security == {
        "privileged": False,
        "capabilities": ["CAP_CHOWN", "CAP_KILL"],
        "uid": 1000,
        "host_namespaces": ["network"],
        "host_mounts": [{"source": "/var/lib/kubelet/pods/u/etc-hosts", "destination": "/etc/hosts",
                         "readonly": False},
                        {"source": "/etc", "destination": "/host/etc", "readonly": True}],
    }


def test_privileged_is_sys_admin_with_nothing_masked() -> None:
    privileged = {**SPEC, "process": {"capabilities": {"effective": ["CAP_SYS_ADMIN", "CAP_CHOWN"]}},
                  "linux": {"namespaces": [{"type": "pid"}]}}
    only_sys_admin = {**SPEC, "process": {"capabilities": {"effective": ["CAP_SYS_ADMIN"]}}}

    assert security_of_spec(privileged)["privileged"] is True
    assert security_of_spec(only_sys_admin)["privileged"] is False  # the kernel's interfaces stay masked


def test_a_spec_of_the_wrong_shape_grants_nothing() -> None:
    security = security_of_spec({"process": "x", "mounts": [1, {"type": "bind"}], "linux": []})

    assert security == {"privileged": False, "capabilities": [], "uid": -1, "host_namespaces": [],
                        "host_mounts": [{"source": "", "destination": "", "readonly": False}]}


def test_the_containerd_normalizer_fills_the_container_from_the_summary() -> None:
    record = containerd_record("container.create", security=security_of_spec(SPEC))

    container = get_source("containerd").normalize(record, "c", "n").container

    assert (container.privileged, container.capabilities, container.uid) == (False, ["CAP_CHOWN", "CAP_KILL"], 1000)
    assert container.host_namespaces == ["network"]
    assert container.host_mounts == ["/var/lib/kubelet/pods/u/etc-hosts", "/etc"]


def test_a_record_without_or_with_a_broken_summary_knows_nothing_of_it() -> None:
    source = get_source("containerd")
    without = source.normalize(containerd_record("container.start"), "c", "n").container
    broken = source.normalize(containerd_record("container.create", security={"uid": "0", "capabilities": "ALL",
                                                                              "host_mounts": [3, {"source": 1}],
                                                                              "privileged": "yes"}), "c", "n")

    assert (without.uid, without.capabilities, without.host_mounts, without.privileged) == (-1, [], [], False)
    assert (broken.container.uid, broken.container.capabilities, broken.container.host_mounts,
            broken.container.privileged) == (-1, [], [], False)


def test_a_pods_own_kubelet_directory_is_not_a_sensitive_mount_when_pods_are_judged_too() -> None:
    detection = next(d for d in Engine.load().detections if d.id == "runtime.sensitive_mount_container_started")
    mounts = [{"source": f"/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~projected/token", "destination": "/t",
               "readonly": True} for uid in ("u-1", "u-2")]
    record = containerd_record("container.create", security={"host_mounts": mounts})
    record["k8s"]["pod_uid"] = "u-1"
    event = get_source("containerd").normalize(record, "c", "n")
    params = {**detection.params, "pods_too": True}

    assert detection.match(event, params)  # another pod's volumes are
    assert detection.context(event, params)["mounts"] == [mounts[1]["source"]]
    assert not detection.match(event, detection.params)  # pods are k8s.sensitive_host_path's by default


def test_the_pod_of_a_container_and_of_a_sandbox_from_the_cri_annotations() -> None:
    cri = {"io.kubernetes.cri.sandbox-namespace": "shop", "io.kubernetes.cri.sandbox-name": "web-5d8f",
           "io.kubernetes.cri.sandbox-uid": "u-1", "io.kubernetes.cri.image-name": "docker.io/library/nginx:1.27",
           "io.kubernetes.cri.container-name": "server"}
    container = pod_of_spec({"annotations": {**cri, "io.kubernetes.cri.container-type": "container"}}, "c1")
    sandbox = pod_of_spec({"annotations": {**cri, "io.kubernetes.cri.container-type": "sandbox"}}, "s1")

    assert container is not None and sandbox is not None
    assert (container["namespace"], container["pod"], container["pod_uid"]) == ("shop", "web-5d8f", "u-1")
    assert (container["container_id"], container["container_name"]) == ("c1", "server")
    assert container["image"] == "docker.io/library/nginx:1.27"
    assert (sandbox["pod"], sandbox["container_id"], sandbox["container_name"], sandbox["image"]) == (
        "web-5d8f", "s1", "", "")


def test_no_pod_without_the_cri_annotations_or_with_broken_ones() -> None:
    assert pod_of_spec(SPEC, "c1") is None
    assert pod_of_spec({"annotations": {"io.kubernetes.cri.sandbox-name": "web"}}, "c1") is None
    assert pod_of_spec({"annotations": {"io.kubernetes.cri.sandbox-namespace": 3,
                                        "io.kubernetes.cri.sandbox-name": "web"}}, "c1") is None
    assert pod_of_spec({"annotations": ["not", "a", "mapping"]}, "c1") is None
