"""``vigil replay`` and ``vigil detections list|test``: run, list and test detections from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from vigil.config import Settings
from vigil.detections.engine import LIBRARY, Engine, load_detections
from vigil.detections.harness import check_examples
from vigil.detections.health import health_detections
from vigil.detections.replay import Replay, print_report
from vigil.detections.tuning import Tuning, TuningError
from vigil.sources.source import get_source


def register(subparsers: argparse._SubParsersAction) -> None:
    replay = subparsers.add_parser(
        "replay", help="run recorded source files through the detections and print the alerts",
        description="Run recorded source files through the detections and print the alerts, one JSON object a line.",
    )
    replay.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="JSON-lines file, JSON event or EventList")
    replay.add_argument("--source", default="k8s-audit", help="source format of the files (default: k8s-audit)")
    replay.add_argument("--format", choices=("jsonl", "table"), default="jsonl", dest="output_format")
    replay.add_argument("--cluster", help="cluster name to stamp on events (default: the configured cluster)")
    replay.add_argument(
        "--detections", action="append", type=Path, metavar="PATH",
        help="detection file or directory to run instead of the bundled library (repeatable)",
    )
    replay.add_argument(
        "--detections-config", type=Path, metavar="FILE",
        help="detections.toml: enabled, severity, thresholds, exceptions (default: $VIGIL_DETECTIONS_CONFIG)",
    )
    replay.set_defaults(func=run_replay)

    detections = subparsers.add_parser("detections", help="list the detection catalogue or test detections")
    commands = detections.add_subparsers(dest="detections_command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="print every detection: id, severity, MITRE techniques, title")
    listing.add_argument("path", nargs="?", type=Path, default=LIBRARY, help="detection file or directory")
    listing.add_argument("--format", choices=("table", "json"), default="table", dest="output_format")
    listing.add_argument(
        "--detections-config", type=Path, metavar="FILE",
        help="detections.toml: also list its [[health]] thresholds (default: $VIGIL_DETECTIONS_CONFIG)",
    )
    listing.set_defaults(func=run_list)
    test = commands.add_parser(
        "test", help="run every detection's examples and scenarios; exit 1 if any fails",
        description="Run every detection's examples (single records) and scenarios (records from several sources "
        "with event times, for windows and sequences) through the real sources and report per detection.",
    )
    test.add_argument("path", nargs="?", type=Path, default=LIBRARY, help="detection file or directory")
    test.set_defaults(func=run_test)


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    try:
        source = get_source(args.source)
    except ValueError as exc:
        print(f"vigil replay: {exc}", file=sys.stderr)
        return 2
    try:
        tuning = Tuning.load(args.detections_config or settings.detections.config or None)
    except TuningError as exc:
        print(f"vigil replay: {exc}", file=sys.stderr)
        return 2
    engine = Engine.load(args.detections, tuning=tuning)
    for error in engine.errors:
        print(f"vigil replay: detection disabled: {error.path}: {error.error}", file=sys.stderr)
    replay = Replay(
        source, engine, cluster=args.cluster or settings.cluster, node=settings.node,
        max_record_bytes=settings.collector.max_event_bytes, progress=sys.stderr if sys.stderr.isatty() else None,
    )
    report = replay.run(args.paths)
    print_report(report, args.output_format)
    return 1 if report.unreadable else 0


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    try:
        tuning = Tuning.load(args.detections_config or settings.detections.config or None)
    except TuningError as exc:
        print(f"vigil detections: {exc}", file=sys.stderr)
        return 2
    loaded, errors = load_detections([args.path])
    detections = [*loaded.values(), *health_detections(tuning.health).values()]
    entries = sorted((d.catalogue_entry() for d in detections), key=lambda entry: entry["id"])
    if args.output_format == "json":
        print(orjson.dumps(entries, option=orjson.OPT_INDENT_2).decode())
    else:
        width = max((len(entry["id"]) for entry in entries), default=2)
        print(f"{'ID'.ljust(width)}  SEVERITY  {'MITRE'.ljust(11)}  TITLE")
        for entry in entries:
            mitre = ",".join(entry["mitre"])
            print(f"{entry['id'].ljust(width)}  {entry['severity'].ljust(8)}  {mitre.ljust(11)}  {entry['title']}")
    for error in errors:
        print(f"vigil detections: cannot load {error.path}: {error.error}", file=sys.stderr)
    return 1 if errors else 0


def run_test(args: argparse.Namespace, settings: Settings) -> int:
    loaded, errors = load_detections([args.path])
    failed = len(errors)
    for error in errors:
        print(f"FAIL {error.path}: cannot load: {error.error}")
    for detection in sorted(loaded.values(), key=lambda d: d.id):
        results = check_examples(detection)
        failures = [r for r in results if not r.passed]
        failed += bool(failures)
        if not failures:
            print(f"PASS {detection.id} ({len(results)} examples)")
            continue
        print(f"FAIL {detection.id}")
        for result in failures:
            print(f"  {result.example}: {result.reason}")
    if not loaded and not errors:
        print(f"no detections found in {args.path}")
        return 1
    return 1 if failed else 0
