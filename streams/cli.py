"""``vigil stream worker``: run a Faust stream worker (scale out by running more; Kafka balances partitions)."""

from __future__ import annotations

import argparse
import asyncio
import sys

import faust

from vigil import heap, kafka, logs, metrics
from vigil.config import Settings
from vigil.streams import tail as streams_tail
from vigil.streams.app import create_app


def register(sub: argparse._SubParsersAction) -> None:
    stream = sub.add_parser("stream", help="stream processing").add_subparsers(dest="stream", required=True)
    worker = stream.add_parser("worker", help="normalize raw telemetry, run detections, emit events and alerts")
    worker.set_defaults(func=_worker)
    tail = stream.add_parser("tail", help="print the messages of a vigil topic as JSON lines")
    tail.add_argument("topic", help="topic without the prefix: alerts, events, deadletter, raw.k8s-audit")
    tail.add_argument("--since", help="start at messages from this long ago (10m, 2h) or epoch ms; default: new only")
    tail.add_argument("--timeout", type=float, default=10.0, help="stop after this many seconds (default 10)")
    tail.add_argument("--max", type=int, default=1_000_000, dest="limit", help="stop after this many documents")
    tail.set_defaults(func=_tail)


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    try:
        streams_tail.run(settings, args.topic, args.since, args.timeout, args.limit)
    except ValueError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 2
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    metrics.serve(settings)
    app = create_app(settings, asyncio.run(kafka.ensure_topics(settings)))
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False,
                          logging_config=logs.dict_config(settings.log_level))
    worker.spinner = None  # a terminal spinner has no place in a service's output
    heap.settle()  # the detection library and the app are loaded: keep them out of every collection
    worker.execute_from_commandline()
    return 0
