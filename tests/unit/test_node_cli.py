"""``vigil collect node`` on the command line."""

from __future__ import annotations

import argparse

import pytest

from vigil.collectors.ebpf import SensorConfig
from vigil.collectors.node.cli import node_options, register_collect
from vigil.collectors.node.collector import DEFAULT_CONTAINERD_ADDRESS, NodeOptions


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser()
    register_collect(root.add_subparsers(dest="collector"))
    return root


def test_defaults_run_everything():
    args = parser().parse_args(["node"])
    assert (args.ebpf, args.kernel_audit, args.runtime, args.kube_api) == (True, True, True, True)
    assert args.containerd_address == DEFAULT_CONTAINERD_ADDRESS


def test_parts_can_be_switched_off():
    args = parser().parse_args(["node", "--no-ebpf", "--no-kube-api", "--containerd-address", "/tmp/c.sock"])
    assert (args.ebpf, args.runtime, args.kube_api, args.containerd_address) == (False, True, False, "/tmp/c.sock")


def test_kernel_audit_can_be_switched_off():
    assert parser().parse_args(["node", "--no-kernel-audit"]).kernel_audit is False


def test_switching_off_every_source_is_refused(capsys):
    args = parser().parse_args(["node", "--no-ebpf", "--no-kernel-audit", "--no-runtime"])
    assert args.func(args, settings=None) == 2
    assert "nothing to collect" in capsys.readouterr().err


def test_syscall_profile_options_reach_the_collector():
    assert node_options(parser().parse_args(["node"])) == NodeOptions()
    options = node_options(parser().parse_args(["node", "--syscall-flush", "2.5", "--profile-host-cgroups"]))
    assert (options.syscall_flush_s, options.profile_host_cgroups) == (2.5, True)


def test_the_collectors_syscall_profile_defaults_are_the_sensors():
    options, config = NodeOptions(), SensorConfig()
    assert (options.syscall_flush_s, options.profile_host_cgroups) == (config.syscall_flush_s,
                                                                       config.profile_host_cgroups)


@pytest.mark.parametrize("seconds", ["0", "-1", "soon", "nan", "inf"])
def test_a_syscall_flush_that_is_not_a_positive_number_is_refused(seconds, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["node", "--syscall-flush", seconds])
    assert "--syscall-flush" in capsys.readouterr().err
