"""``vigil collect node``: registered under ``vigil collect`` by :func:`register_collect`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from collectors.node.collector import DEFAULT_CONTAINERD_ADDRESS, NodeCollector, NodeOptions
from collectors.spool import SpoolInUse
from vigil import metrics
from vigil.config import Settings


def register_collect(collect: argparse._SubParsersAction) -> None:
    """Add ``node`` to the ``vigil collect`` subcommands."""
    node = collect.add_parser("node", help="this node's eBPF sensor and container runtime, with k8s context")
    node.add_argument("--no-ebpf", dest="ebpf", action="store_false", help="do not run the eBPF sensor")
    node.add_argument("--no-runtime", dest="runtime", action="store_false",
                      help="do not follow containerd (no container events, no CRI lookups)")
    node.add_argument("--no-kube-api", dest="kube_api", action="store_false",
                      help="do not watch this node's pods on the Kubernetes API (k8s context from CRI only)")
    node.add_argument("--containerd-address", default=DEFAULT_CONTAINERD_ADDRESS, metavar="PATH",
                      help=f"containerd's socket, which also serves CRI (default {DEFAULT_CONTAINERD_ADDRESS})")
    node.set_defaults(func=_collect_node)


def _collect_node(args: argparse.Namespace, settings: Settings) -> int:
    if not args.ebpf and not args.runtime:
        print("vigil collect node: --no-ebpf and --no-runtime leave nothing to collect", file=sys.stderr)
        return 2
    options = NodeOptions(ebpf=args.ebpf, runtime=args.runtime, kube_api=args.kube_api,
                          containerd_address=args.containerd_address)
    try:
        asyncio.run(run_node_collector(settings, options))
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
