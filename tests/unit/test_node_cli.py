"""``vigil collect node`` on the command line."""

from __future__ import annotations

import argparse

from collectors.node.cli import register_collect
from collectors.node.collector import DEFAULT_CONTAINERD_ADDRESS


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser()
    register_collect(root.add_subparsers(dest="collector"))
    return root


def test_defaults_run_everything():
    args = parser().parse_args(["node"])
    assert (args.ebpf, args.runtime, args.kube_api) == (True, True, True)
    assert args.containerd_address == DEFAULT_CONTAINERD_ADDRESS


def test_parts_can_be_switched_off():
    args = parser().parse_args(["node", "--no-ebpf", "--no-kube-api", "--containerd-address", "/tmp/c.sock"])
    assert (args.ebpf, args.runtime, args.kube_api, args.containerd_address) == (False, True, False, "/tmp/c.sock")


def test_switching_off_both_sources_is_refused(capsys):
    args = parser().parse_args(["node", "--no-ebpf", "--no-runtime"])
    assert args.func(args, settings=None) == 2
    assert "nothing to collect" in capsys.readouterr().err
