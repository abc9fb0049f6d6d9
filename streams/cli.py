"""``vigil stream worker``: run a Faust stream worker (scale out by running more; Kafka balances partitions)."""

from __future__ import annotations

import argparse
import logging

import faust

from streams.app import create_app
from vigil import metrics
from vigil.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    stream = sub.add_parser("stream", help="stream processing").add_subparsers(dest="stream", required=True)
    worker = stream.add_parser("worker", help="normalize raw telemetry, run detections, emit events and alerts")
    worker.set_defaults(func=_worker)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    metrics.serve(settings.metrics_port)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True,
                          loghandlers=logging.getLogger().handlers)
    worker.execute_from_commandline()
    return 0
