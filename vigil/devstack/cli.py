"""``vigil dev up | down | status``: the local development stack from the command line."""

from __future__ import annotations

import argparse
import sys

from vigil import devstack
from vigil.config import Settings
from vigil.devstack import cluster_cli
from vigil.devstack.clickhouse import clickhouse_servers, cluster_environment


def register(subparsers: argparse._SubParsersAction) -> None:
    dev = subparsers.add_parser("dev", help="run Kafka and ClickHouse (and Prometheus) on 127.0.0.1 for development "
                                            "and tests")
    actions = dev.add_subparsers(dest="dev_command", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="start what is not running and wait until everything is healthy")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for health (default 180)")
    up.add_argument("--monitoring", action="store_true",
                    help="also run Prometheus (127.0.0.1:9090), scraping the vigil components running now")
    up.add_argument("--kafka-brokers", type=int, metavar="N",
                    help="run Kafka as a cluster of N brokers (3: replication factor 3, min ISR 2) on consecutive "
                         "port pairs from the bootstrap port; kept for later starts of this run dir (default: as "
                         "before, 1 at first)")
    up.add_argument("--clickhouse-shards", type=int, metavar="N",
                    help="run ClickHouse as N servers wired as one cluster (Distributed tables over N shards), on "
                         "consecutive ports from the configured ones; kept for later starts of this run dir")
    up.set_defaults(func=run_up)
    down = actions.add_parser("down", help="stop the stack (data is kept in the run dir)")
    down.add_argument("--grace", type=float, default=30.0, help="seconds before SIGKILL (default 30)")
    down.set_defaults(func=run_down)
    status = actions.add_parser("status", help="show each service; exit 1 unless all are healthy")
    status.set_defaults(func=run_status)
    cluster_cli.register(actions)


def run_up(args: argparse.Namespace, settings: Settings) -> int:
    try:
        devstack.up(settings, timeout=args.timeout, monitoring=args.monitoring, kafka_brokers=args.kafka_brokers,
                    clickhouse_shards=args.clickhouse_shards)
    except devstack.DevStackError as exc:
        return _failed("up", exc)
    code = run_status(args, settings)
    cluster = cluster_environment(clickhouse_servers(settings, devstack.run_dir(settings)))
    if cluster:
        print("ClickHouse cluster; point vigil at it with:")
        print("\n".join(f"  export {name}={value}" for name, value in cluster.items()))
    return code


def run_down(args: argparse.Namespace, settings: Settings) -> int:
    try:
        devstack.down(settings, grace=args.grace)
    except devstack.DevStackError as exc:
        return _failed("down", exc)
    print(f"stopped (data kept in {devstack.run_dir(settings)})")
    return 0


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    try:
        statuses = devstack.status(settings)
    except devstack.DevStackError as exc:
        return _failed("status", exc)
    print(format_status(statuses))
    print(f"run dir: {devstack.run_dir(settings)}")
    return 0 if all(s.healthy for s in statuses) else 1


def format_status(statuses: list[devstack.ServiceStatus]) -> str:
    """One line per service: name, state, pid, address, health."""
    lines = []
    for s in statuses:
        pid = f"pid {s.pid}" if s.pid is not None else "-"
        health = "healthy" if s.healthy else f"unhealthy: {s.detail}"
        lines.append(f"{s.name:<13}{s.state:<10}{pid:<12}{s.address:<24}{health}")
    return "\n".join(lines)


def _failed(action: str, error: devstack.DevStackError) -> int:
    print(f"vigil dev {action}: {error}", file=sys.stderr)
    return 1
