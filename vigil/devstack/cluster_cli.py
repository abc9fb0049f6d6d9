"""``vigil dev cluster up | down | status``: the single-node dev Kubernetes from the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

from vigil.config import Settings
from vigil.devstack import kube_cluster
from vigil.devstack.errors import DevStackError
from vigil.devstack.kube_cluster import NodeStatus
from vigil.devstack.pod_loopback import PodLoopback
from vigil.devstack.stack import ServiceStatus


def register(actions: argparse._SubParsersAction) -> None:
    """Add ``cluster`` to the ``vigil dev`` actions."""
    cluster = actions.add_parser(
        "cluster", help="run a single-node Kubernetes (etcd, apiserver, controller-manager, scheduler, a kubelet on "
                        "a private containerd) whose audit webhook is `vigil collect audit --webhook`")
    commands = cluster.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    up = commands.add_parser("up", help="build the binaries once, start what is not running, wait for a Ready node")
    up.add_argument("--timeout", type=float, default=180.0,
                    help="seconds to wait for health after the binaries are built (default 180)")
    up.set_defaults(func=run_up)
    down = commands.add_parser("down", help="stop everything and undo the host changes (sysctls, mounts, cgroups, "
                                            "bridge); certificates and etcd's data are kept")
    down.add_argument("--grace", type=float, default=30.0, help="seconds before SIGKILL (default 30)")
    down.set_defaults(func=run_down)
    status = commands.add_parser("status", help="show each component and the node; exit 1 unless all are healthy")
    status.set_defaults(func=run_status)
    bridge = commands.add_parser("bridge", help="(run by `up`) serve the dev stack's ports at 127.0.0.1 inside "
                                                "every pod network namespace under --netns-dir")
    bridge.add_argument("--netns-dir", type=Path, required=True, help="where containerd mounts pod namespaces")
    bridge.add_argument("--ports", type=_ports, required=True, help="comma-separated ports, e.g. 9092,8123")
    bridge.set_defaults(func=run_bridge)


def _ports(text: str) -> tuple[int, ...]:
    try:
        ports = tuple(int(port) for port in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ports: {text!r}") from None
    if not all(0 < port < 65536 for port in ports):
        raise argparse.ArgumentTypeError(f"ports are 1 to 65535: {text!r}")
    return ports


def run_bridge(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(_bridge(PodLoopback(args.netns_dir, args.ports)))
    return 0


async def _bridge(loopback: PodLoopback) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await loopback.run(stop)


def run_up(args: argparse.Namespace, settings: Settings) -> int:
    started = time.monotonic()
    try:
        cluster = kube_cluster.up(settings, timeout=args.timeout)
    except DevStackError as exc:
        return _failed("up", exc)
    print(f"node {cluster.node} Ready in {time.monotonic() - started:.1f} s")
    print(f"kubectl --kubeconfig {cluster.layout.kubeconfig} get pods -A")
    return run_status(args, settings)


def run_down(args: argparse.Namespace, settings: Settings) -> int:
    try:
        undone = kube_cluster.down(settings, grace=args.grace)
    except DevStackError as exc:
        return _failed("down", exc)
    for line in undone:
        print(line)
    print(f"stopped (certificates and etcd data kept in {kube_cluster.cluster_layout(settings).root})")
    return 0


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    try:
        statuses, node = kube_cluster.status(settings)
    except DevStackError as exc:
        return _failed("status", exc)
    print(format_status(statuses, node))
    layout = kube_cluster.cluster_layout(settings)
    print(f"kubeconfig: {layout.kubeconfig}\nlogs: {layout.logs}")
    return 0 if node.ready and all(s.healthy for s in statuses) else 1


def format_status(statuses: list[ServiceStatus], node: NodeStatus) -> str:
    """One line per component (name, state, pid, address, health), then the node's readiness."""
    lines = []
    for s in statuses:
        pid = f"pid {s.pid}" if s.pid is not None else "-"
        health = "healthy" if s.healthy else f"unhealthy: {s.detail}"
        lines.append(f"{s.name:<24}{s.state:<10}{pid:<12}{s.address[-40:]:<42}{health}")
    lines.append(f"{'node ' + node.name:<24}{'Ready' if node.ready else 'NotReady: ' + node.detail}")
    return "\n".join(lines)


def _failed(action: str, error: DevStackError) -> int:
    print(f"vigil dev cluster {action}: {error}", file=sys.stderr)
    return 1
