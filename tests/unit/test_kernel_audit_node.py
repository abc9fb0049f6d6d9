"""How the node collector finds the container of the process an audit record is about, and where the audit
reader can run."""

from __future__ import annotations

import os

from vigil.collectors.kernel_audit.netlink import in_host_network_namespace
from vigil.collectors.node.enrichment import PidContainers, container_of_pid

CONTAINER = "4f" * 32


def _proc(tmp_path, pid: int, cgroup: str):
    (tmp_path / str(pid)).mkdir()
    (tmp_path / str(pid) / "cgroup").write_text(cgroup)
    return tmp_path


def test_a_container_process_is_found_by_its_cgroup_v2_path(tmp_path):
    proc = _proc(tmp_path, 42, f"4:memory:/k8s.io/{CONTAINER}\n0::/k8s.io/{CONTAINER}\n")
    assert container_of_pid(42, proc) == CONTAINER


def test_on_hybrid_hosts_a_v1_controller_path_names_the_container_too(tmp_path):
    proc = _proc(tmp_path, 42, f"4:memory:/kubepods/burstable/pod1/cri-containerd-{CONTAINER}.scope\n0::/\n")
    assert container_of_pid(42, proc) == CONTAINER


def test_a_host_process_has_no_container_and_a_gone_one_is_unknown(tmp_path):
    proc = _proc(tmp_path, 7, "0::/system.slice/ssh.service\n1:name=systemd:/\n")
    assert container_of_pid(7, proc) == ""
    assert container_of_pid(8, proc) is None
    assert container_of_pid(os.getpid()) is not None  # the real /proc


def test_pids_remember_their_container_within_a_bound():
    pids = PidContainers(max_entries=2)
    pids.remember(1, "a")
    pids.remember(2, "b")
    pids.remember(1, "c")  # the pid was reused: the newest process wins and is the freshest entry
    pids.remember(3, "d")
    assert (pids.lookup(1), pids.lookup(2), pids.lookup(3), pids.lookup(4)) == ("c", "", "d", "")


def test_the_audit_reader_refuses_a_network_namespace_the_kernel_does_not_multicast_to(tmp_path):
    own, host = tmp_path / "own", tmp_path / "host"
    own.write_text("")
    host.write_text("")
    assert not in_host_network_namespace(str(own), str(host))
    assert in_host_network_namespace(str(own), str(own))
    assert in_host_network_namespace(str(own), str(tmp_path / "unreadable"))  # pid 1 hidden: assumed
