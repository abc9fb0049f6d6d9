"""``vigil sensor build | check | trace``: the eBPF sensor on its own, for setting up and checking a node."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from typing import Any, BinaryIO

import orjson

from vigil.collectors.ebpf import build
from vigil.collectors.ebpf.sensor import Sensor, SensorConfig, SensorUnavailable, diagnose
from vigil.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    sensor = sub.add_parser("sensor", help="vigil's eBPF syscall sensor: build it, check the host, trace records")
    commands = sensor.add_subparsers(dest="sensor_command", required=True, metavar="COMMAND")
    compile_ = commands.add_parser("build", help="compile the sensor for the running kernel into the cache")
    compile_.add_argument("--force", action="store_true", help="compile even when the cache has it")
    compile_.set_defaults(func=_build)
    check = commands.add_parser("check", help="say what the sensor needs and whether it loads (exit 1 if not)")
    check.set_defaults(func=_check)
    trace = commands.add_parser("trace", help="print the sensor's records as JSON lines")
    trace.add_argument("--seconds", type=float, default=0.0, help="stop after this long (default: until Ctrl-C)")
    trace.add_argument("--open-watch", action="append", metavar="PATTERN",
                       help="record opens of paths matching PATTERN (repeatable; replaces the defaults)")
    trace.add_argument("--write-watch", action="append", metavar="PATTERN",
                       help="record opens for writing of paths matching PATTERN (repeatable; replaces the defaults)")
    trace.add_argument("--syscall-flush", type=float, default=30.0, metavar="SECONDS",
                       help="report each container's syscall profile this often (default 30; and at the end)")
    trace.add_argument("--profile-host-cgroups", action="store_true",
                       help="report the syscall profiles of host cgroups too, not only containers'")
    trace.set_defaults(func=_trace)


def _build(args: argparse.Namespace, settings: Settings) -> int:
    config = SensorConfig()
    try:
        path = build.build(config.cache_dir, config.btf_path, force=args.force)
    except build.BuildError as exc:
        print(f"vigil sensor build: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    config = SensorConfig()
    checks = diagnose(config)
    for check in checks:
        print(f"{'ok' if check.ok else 'MISSING':8} {check.name:13} {check.detail}")
    if not all(check.ok for check in checks):
        print("the eBPF sensor cannot run on this host")
        return 1
    sensor = Sensor(config)
    try:
        sensor.start()
    except SensorUnavailable as exc:
        print(f"{'MISSING':8} {'load':13} {exc}")
        return 1
    try:
        for hook in sensor.missing_hooks:
            print(f"{'absent':8} {'hook':13} {hook} (this kernel has no such tracepoint; not recorded)")
        print(f"{'ok':8} {'load':13} loaded and attached; the eBPF sensor runs on this host")
    finally:
        sensor.close()
    return 0


def _trace(args: argparse.Namespace, settings: Settings) -> int:
    """Records on stdout, one JSON line each; logs on stderr. The sensor's "eBPF sensor attached" log line
    says when recording starts: a script waits for it before making the activity it wants to see traced."""
    try:
        config = SensorConfig(**_watch_overrides(args), syscall_flush_s=args.syscall_flush,
                              profile_host_cgroups=args.profile_host_cgroups)
    except ValueError as exc:
        print(f"vigil sensor trace: {exc}", file=sys.stderr)
        return 2
    sensor = Sensor(config)
    try:
        sensor.start()
    except SensorUnavailable as exc:
        print(f"vigil sensor trace: {exc}", file=sys.stderr)
        return 1
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    deadline = time.monotonic() + args.seconds if args.seconds else float("inf")
    out = sys.stdout.buffer
    try:
        with contextlib.suppress(KeyboardInterrupt):
            while not stopping and time.monotonic() < deadline:
                _write(out, sensor.poll(100))
        _write(out, sensor.drain())  # what the ring still holds, and the syscall profiles so far
    except BrokenPipeError:
        pass
    finally:
        print(f"vigil sensor trace: kernel losses {sensor.losses()}", file=sys.stderr)
        sensor.close()
    return 0


def _write(out: BinaryIO, records: list[dict[str, Any]]) -> None:
    for record in records:
        out.write(orjson.dumps(record) + b"\n")
    out.flush()


def _watch_overrides(args: argparse.Namespace) -> dict[str, tuple[str, ...]]:
    overrides = {}
    if args.open_watch:
        overrides["open_watch"] = tuple(args.open_watch)
    if args.write_watch:
        overrides["write_watch"] = tuple(args.write_watch)
    return overrides
