"""``vigil collect audit``: the audit webhook receiver and/or file tailer, shipping to Kafka."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from vigil import metrics
from vigil.collectors.audit.webhook import AuditWebhook
from vigil.collectors.health import HealthReporter
from vigil.collectors.ingest import SourceIngest
from vigil.collectors.node.cli import register_collect
from vigil.collectors.shipper import KafkaShipper
from vigil.collectors.spool import SpoolInUse
from vigil.collectors.tailer import CheckpointStore, FileTailer
from vigil.config import Settings
from vigil.sources.source import SOURCES, get_source

COMPONENT = "audit-collector"


def register(sub: argparse._SubParsersAction) -> None:
    collect = sub.add_parser("collect", help="run an edge collector").add_subparsers(dest="collector", required=True)
    audit = collect.add_parser("audit", help="Kubernetes audit logs: apiserver webhook and/or log files")
    audit.add_argument("--webhook", action="store_true", help="serve the audit webhook (collector.webhook_*)")
    audit.add_argument("--file", dest="files", action="append", default=[], type=Path, metavar="PATH",
                       help="follow an audit log file (JSON lines; repeatable)")
    audit.add_argument("--once", action="store_true", help="read the files to their end, ship, and exit")
    audit.set_defaults(func=_collect_audit)
    files = collect.add_parser("file", help="follow JSON-lines files of any source (e.g. a Tetragon or Falco export)")
    files.add_argument("--source", required=True, choices=sorted(SOURCES), help="the files' format")
    files.add_argument("--file", dest="files", action="append", required=True, type=Path, metavar="PATH",
                       help="a file to follow (repeatable)")
    files.add_argument("--once", action="store_true", help="read the files to their end, ship, and exit")
    files.set_defaults(func=_collect_files)
    register_collect(collect)


def _collect_audit(args: argparse.Namespace, settings: Settings) -> int:
    if not args.webhook and not args.files:
        print("vigil collect audit: give --webhook and/or --file PATH", file=sys.stderr)
        return 2
    if args.once and args.webhook:
        print("vigil collect audit: --once reads files only; it cannot be combined with --webhook", file=sys.stderr)
        return 2
    return _run(run_audit_collector(settings, webhook=args.webhook, files=args.files, follow=not args.once))


def _collect_files(args: argparse.Namespace, settings: Settings) -> int:
    return _run(run_collector(settings, args.source, files=args.files, follow=not args.once))


def _run(collector: Coroutine[Any, Any, None]) -> int:
    try:
        asyncio.run(collector)
    except SpoolInUse as exc:
        print(f"vigil collect: {exc}", file=sys.stderr)
        return 1
    return 0


async def run_audit_collector(settings: Settings, *, webhook: bool, files: list[Path], follow: bool = True,
                              stop: asyncio.Event | None = None) -> None:
    """The audit collector: the webhook and/or file tailers (see :func:`run_collector`)."""
    await run_collector(settings, "k8s-audit", files=files, webhook=webhook, follow=follow, stop=stop)


async def run_collector(settings: Settings, source_name: str, *, files: list[Path], webhook: bool = False,
                        follow: bool = True, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or SIGTERM/SIGINT (or, without ``follow``, until the files are shipped).

    Messages Kafka refuses for good are reported as the source's losses (``collector.health``); a full spool
    loses nothing here, since the input is refused and re-sent (webhook) or re-read (tailer).
    """
    stop = stop or _stop_on_signals()
    if not webhook:
        metrics.serve(settings)
    component = COMPONENT if source_name == "k8s-audit" else f"{source_name}-collector"
    shipper = KafkaShipper(settings, component)
    await shipper.start()
    health = HealthReporter(settings, shipper, component)
    shipper.on_loss(health.count_lost_message)
    reporting_done = asyncio.Event()
    reporting = asyncio.create_task(health.run(reporting_done))
    ingest = SourceIngest(get_source(source_name), settings, shipper, component)
    receiver = AuditWebhook(settings, ingest) if webhook else None
    checkpoints = CheckpointStore(settings.checkpoint_dir / component)
    tailers = [FileTailer(p, ingest, checkpoints, settings.collector.max_event_bytes) for p in files]
    try:
        if receiver:
            await receiver.start()
        runs = [asyncio.create_task(t.run(follow=follow)) for t in tailers]
        if not follow and not receiver:
            await asyncio.gather(*runs)
            return
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*runs, waiter], return_when=asyncio.FIRST_COMPLETED)
        for task in (*runs, waiter):
            task.cancel()
        for task in done - {waiter}:
            task.result()  # a tailer that failed surfaces here
    finally:
        for tailer in tailers:
            tailer.close()
        if receiver:
            await receiver.stop()
        reporting_done.set()
        await reporting
        await health.report()
        await shipper.close()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop
