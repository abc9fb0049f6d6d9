"""``vigil bench``: the benchmarks' subcommands and options.

Only the options are defined here. Each benchmark's module, with what it imports (the engine, the stream
processor, the storage writer, the eBPF sensor, the dev stack), is loaded when that benchmark runs, so ``vigil``'s
other commands and its ``--help`` do not pay for them.
"""

from __future__ import annotations

import argparse

from vigil.config import Settings

#: Records of one key packed into one Kafka message by default: the collectors pack the records of a flush that
#: share a key, and a node of ~30 pods flushing every 20 ms at 50k events/s packs ~30 per pod.
RECORDS_PER_MESSAGE = 30


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="measure throughput and latency next to a raw baseline of the same run")
    benches = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    _add_e2e(benches)
    _add_soak(benches)
    _add_sensor(benches)
    _add_store(benches)
    _add_detect(benches)


def _add_e2e(sub: argparse._SubParsersAction) -> None:
    e2e = sub.add_parser("e2e", help="webhook POST → alert on the SIEM topic latency at a fixed event rate")
    e2e.add_argument("--rate", type=int, default=10_000, help="audit events per second (default 10000)")
    e2e.add_argument("--seconds", type=float, default=20.0, help="how long to send (default 20)")
    e2e.add_argument("--attack-share", type=float, default=0.01, help="share of events that raise an alert")
    e2e.set_defaults(func=_run_e2e)


def _add_soak(sub: argparse._SubParsersAction) -> None:
    soak = sub.add_parser("soak", help="steady load through the whole pipeline: RSS growth, lag and alert latency")
    soak.add_argument("--minutes", type=float, default=20.0, help="measured minutes after the warm-up (default 20)")
    soak.add_argument("--rate", type=int, default=1_000, help="audit events per second (default 1000)")
    soak.add_argument("--attack-share", type=float, default=0.01, help="share of events that raise an alert")
    soak.add_argument("--warmup", type=float, default=60.0, help="seconds of load before measuring (default 60)")
    soak.add_argument("--sample-seconds", type=float, default=5.0, help="seconds between samples (default 5)")
    soak.add_argument("--interval-seconds", type=float, default=60.0,
                      help="length of each latency interval (default 60)")
    soak.add_argument("--json", metavar="PATH", help="also write the report and every sample to this file")
    soak.set_defaults(func=_run_soak)


def _add_sensor(sub: argparse._SubParsersAction) -> None:
    sensor = sub.add_parser("sensor", help="eBPF sensor: syscall overhead ratios and consumer records/s (root)")
    sensor.add_argument("--execs", type=int, default=1000, help="iterations of the exec loop (open loops: x300)")
    sensor.add_argument("--rounds", type=int, default=5, help="rounds without and with the sensor (default 5)")
    sensor.add_argument("--seconds", type=float, default=3.0, help="length of the consumer run (default 3)")
    sensor.add_argument("--drain", type=int, default=400_000, help="records for the drain run (default 400000)")
    sensor.add_argument("--no-profiles", action="store_true",
                        help="run the sensor without its per-container syscall profiles (to see what they cost)")
    sensor.set_defaults(func=_run_sensor)


def _add_store(sub: argparse._SubParsersAction) -> None:
    store = sub.add_parser(
        "store", help="writer vs raw insert throughput; hunt latency over generated events",
        description="Writer vs raw insert throughput, then hunt latency over generated events, on the ClickHouse "
                    "that VIGIL_CLICKHOUSE_URL names: the embedded engine by default, or a server "
                    "(http://127.0.0.1:8123 is vigil dev up's). --rows 1000 --runs 1 keeps the hunt part short.",
    )
    store.add_argument("--events", type=int, default=100_000, help="events through the writer (default: %(default)s)")
    store.add_argument("--rows", type=int, default=10_000_000, help="generated rows for hunts (default: %(default)s)")
    store.add_argument("--runs", type=int, default=5, help="runs per hunt (default: %(default)s)")
    store.set_defaults(func=_run_store)


def _add_detect(sub: argparse._SubParsersAction) -> None:
    detect = sub.add_parser(
        "detect", help="events/s through the detection engine (in-process and a Faust worker) vs a raw parse",
    )
    detect.add_argument("--events", type=int, default=200_000, help="events in the in-process runs (200000)")
    detect.add_argument("--faust-events", type=int, default=100_000,
                        help="events through the Faust worker, 0 to skip it (default 100000)")
    detect.add_argument("--records-per-message", type=int, default=RECORDS_PER_MESSAGE,
                        help=f"records of one pod packed into a Kafka message (default {RECORDS_PER_MESSAGE})")
    detect.add_argument("--workers", type=int, default=1,
                        help="stream worker processes sharing the topics in the Faust run (default 1)")
    detect.set_defaults(func=_run_detect)


# Each runner imports its benchmark when the command runs (see the module docstring).


def _run_e2e(args: argparse.Namespace, settings: Settings) -> int:
    from vigil.benchmarks import e2e

    return e2e.run(args, settings)


def _run_soak(args: argparse.Namespace, settings: Settings) -> int:
    from vigil.benchmarks import soak

    return soak.run(args, settings)


def _run_sensor(args: argparse.Namespace, settings: Settings) -> int:
    from vigil.benchmarks import sensor

    return sensor.run(args, settings)


def _run_store(args: argparse.Namespace, settings: Settings) -> int:
    from vigil.benchmarks import store

    return store.run(args, settings)


def _run_detect(args: argparse.Namespace, settings: Settings) -> int:
    from vigil.benchmarks import detect

    return detect.run(args, settings)
