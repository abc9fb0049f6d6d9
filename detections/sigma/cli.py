"""``vigil sigma import``: turn Sigma rules into vigil detection files (see :mod:`vigil.detections.sigma.importer`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vigil.config import Settings
from vigil.detections.sigma.importer import import_rules, write


def register(subparsers: argparse._SubParsersAction) -> None:
    sigma = subparsers.add_parser("sigma", help="import Sigma rules as vigil detections")
    commands = sigma.add_subparsers(dest="sigma_command", required=True, metavar="COMMAND")
    importer = commands.add_parser(
        "import", help="write one detection file per Sigma rule (correlations included)",
        description=(
            "Turn Sigma rules (logsource product kubernetes, service audit; correlation rules event_count, "
            "value_count, temporal, temporal_ordered) into vigil detection files with synthesized examples. "
            "Run `vigil detections test DIR` on the result, and copy the files you keep into the library."
        ),
    )
    importer.add_argument("rules", nargs="+", type=Path, metavar="RULE", help="Sigma rule file or directory of *.yml")
    importer.add_argument("--out", type=Path, default=Path("."), help="directory to write the files to (default: .)")
    importer.set_defaults(func=run_import)


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    missing = [str(path) for path in args.rules if not path.exists()]
    if missing:
        print(f"vigil sigma import: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    result = import_rules(args.rules)
    for path, detection in zip(write(result.generated, args.out), result.generated, strict=True):
        print(path)
        for warning in detection.warnings:
            print(f"vigil sigma import: {detection.rule}: {warning}", file=sys.stderr)
    for error in result.errors:
        print(f"vigil sigma import: cannot import {error}", file=sys.stderr)
    print(
        f"vigil sigma import: {len(result.generated)} detections written, {len(result.errors)} rules refused",
        file=sys.stderr,
    )
    return 1 if result.errors else 0
