"""The ``vigil`` command. Each part of vigil registers its own subcommands; this module only wires them."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from vigil import __version__, addresses, logs
from vigil.config import ConfigError, load_settings

#: Modules that expose ``register(subparsers)``; each adds its subcommands with ``set_defaults(func=...)``
#: where ``func(args, settings) -> int``.
COMMAND_MODULES = (
    "vigil.devstack.cli",
    "vigil.collectors.cli",
    "vigil.streams.cli",
    "vigil.storage.cli",
    "vigil.detections.cli",
    "vigil.detections.sigma.cli",
    "vigil.siem.cli",
    "vigil.collectors.ebpf.cli",
    "vigil.benchmarks.cli",  # ``vigil bench``: it loads a benchmark only when that benchmark runs
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description=__doc__)
    parser.add_argument("--version", action="version", version=f"vigil {__version__}")
    parser.add_argument("--config", help="TOML config file (default: $VIGIL_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        addresses.configure(settings.service_cidrs, settings.pod_cidrs)
    except ConfigError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    return int(args.func(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
