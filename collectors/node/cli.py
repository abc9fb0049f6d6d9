"""``vigil collect node``: registered under ``vigil collect`` by :func:`register_collect`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys

from vigil import metrics
from vigil.collectors.node.collector import DEFAULT_CONTAINERD_ADDRESS, NodeCollector, NodeOptions
from vigil.collectors.spool import SpoolInUse
from vigil.config import Settings


def register_collect(collect: argparse._SubParsersAction) -> None:
    """Add ``node`` to the ``vigil collect`` subcommands."""
    node = collect.add_parser("node", help="this node's eBPF sensor, kernel audit records and container runtime, "
                                           "with k8s context")
    node.add_argument("--no-ebpf", dest="ebpf", action="store_false", help="do not run the eBPF sensor")
    node.add_argument("--no-kernel-audit", dest="kernel_audit", action="store_false",
                      help="do not read the kernel's audit records (seccomp, SELinux, AppArmor) from netlink")
    node.add_argument("--no-runtime", dest="runtime", action="store_false",
                      help="do not follow containerd (no container events, no CRI lookups)")
    node.add_argument("--no-kube-api", dest="kube_api", action="store_false",
                      help="do not watch this node's pods on the Kubernetes API (k8s context from CRI only)")
    node.add_argument("--containerd-address", default=DEFAULT_CONTAINERD_ADDRESS, metavar="PATH",
                      help=f"containerd's socket, which also serves CRI (default {DEFAULT_CONTAINERD_ADDRESS})")
    defaults = NodeOptions()
    node.add_argument("--syscall-flush", dest="syscall_flush_s", type=_positive_seconds,
                      default=defaults.syscall_flush_s, metavar="SECONDS",
                      help="report every container's syscalls this often (and when it exits; default "
                           f"{defaults.syscall_flush_s:g})")
    node.add_argument("--profile-host-cgroups", action="store_true",
                      help="report the syscalls of the host's own cgroups too, not only containers'")
    node.set_defaults(func=_collect_node)


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds above 0, not {text}")
    return seconds


def node_options(args: argparse.Namespace) -> NodeOptions:
    """The collector's options from ``vigil collect node``'s arguments."""
    return NodeOptions(ebpf=args.ebpf, kernel_audit=args.kernel_audit, runtime=args.runtime,
                       kube_api=args.kube_api, containerd_address=args.containerd_address,
                       syscall_flush_s=args.syscall_flush_s, profile_host_cgroups=args.profile_host_cgroups)


def _collect_node(args: argparse.Namespace, settings: Settings) -> int:
    if not args.ebpf and not args.kernel_audit and not args.runtime:
        print("vigil collect node: --no-ebpf, --no-kernel-audit and --no-runtime leave nothing to collect",
              file=sys.stderr)
        return 2
    try:
        asyncio.run(run_node_collector(settings, node_options(args)))
    except SpoolInUse as exc:
        print(f"vigil collect node: {exc}", file=sys.stderr)
        return 1
    return 0


async def run_node_collector(settings: Settings, options: NodeOptions, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set, or SIGTERM/SIGINT."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    metrics.serve(settings)
    await NodeCollector(settings, options).run(stop)
