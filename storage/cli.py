"""The storage commands: ``vigil store`` (the writer), ``vigil storage migrate|status``, the analyst's
``vigil query``, ``vigil hunt`` and ``vigil alerts``, and ``vigil advise`` (least-privilege profiles).

Analysts' commands connect read-only (``readonly=2`` on every query), whatever the user's grants; only
``vigil alerts ack|close`` writes, one row into ``alert_status``.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import csv
import dataclasses
import getpass
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka.errors import KafkaError

from vigil import metrics
from vigil.config import Settings
from vigil.storage import alerts
from vigil.storage.clickhouse import ClickHouseStore, QueryProgress, StoreError, connect
from vigil.storage.hunts import Hunt, HuntError, load_hunts, parse_duration
from vigil.storage.profiles import apparmor, seccomp
from vigil.storage.profiles.observed import Activity, Workload, known_workloads, load_activity
from vigil.storage.schema import migrate, status
from vigil.storage.sigma_sql import SigmaConversionError, convert_rule
from vigil.storage.writer import GROUP_ID, run_writer

log = logging.getLogger(__name__)

#: ``--format`` → the ClickHouse output format it is printed from.
QUERY_FORMATS = {"table": "JSONCompactEachRowWithNames", "json": "JSONEachRow", "csv": "CSVWithNames"}

#: Widest cell shown in table output; longer values end in "…" (use --format json for whole values).
MAX_CELL_WIDTH = 60

#: Most rows a retro-hunt prints per rule, and most alerts ``vigil alerts list`` shows, unless told.
DEFAULT_LIMIT = 1000


def register(sub: argparse._SubParsersAction) -> None:
    store = sub.add_parser("store", help="run the storage writer: Kafka events and alerts into ClickHouse")
    store.add_argument("--group-id", default=GROUP_ID,
                       help="Kafka consumer group (default %(default)s); give each deployment on one Kafka its own")
    store.set_defaults(func=run_store)
    _register_storage(sub)
    query = sub.add_parser("query", help="run SQL against vigil's ClickHouse database (read-only)")
    query.add_argument("sql", help="the query; {name:Type} placeholders are bound server-side from --param")
    _add_format(query)
    _add_params(query)
    query.set_defaults(func=run_query)
    _register_hunt(sub)
    _register_alerts(sub)
    _register_advise(sub)


def _register_storage(sub: argparse._SubParsersAction) -> None:
    storage = sub.add_parser("storage", help="manage the ClickHouse schema")
    storage_sub = storage.add_subparsers(dest="storage_command", required=True, metavar="ACTION")
    storage_sub.add_parser(
        "migrate", help="create the database, apply pending migrations, set retention and roles"
    ).set_defaults(func=run_migrate)
    storage_sub.add_parser("status", help="list migrations and when they were applied").set_defaults(
        func=run_status
    )


def _register_hunt(sub: argparse._SubParsersAction) -> None:
    hunt = sub.add_parser("hunt", help="saved hunts over stored events, and Sigma retro-hunts",
                          description="vigil hunt list | show NAME | run NAME [--param k=v] [--since 24h]; "
                                      "vigil hunt --sigma RULE.yml|DIR... [--since 30d]")
    hunt.add_argument("--sigma", nargs="+", type=Path, metavar="RULE",
                      help="run Sigma rules (files, or directories of .yml) over stored audit events")
    _add_since(hunt, "30d")
    hunt.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="most rows per rule (default: %(default)s)")
    _add_format(hunt)
    hunt.set_defaults(func=run_sigma)
    hunt_sub = hunt.add_subparsers(dest="hunt_command", metavar="ACTION")
    hunt_sub.add_parser("list", help="the saved hunts and their parameters").set_defaults(func=run_hunt_list)
    show = hunt_sub.add_parser("show", help="a hunt's description, parameters and SQL")
    show.add_argument("name")
    show.set_defaults(func=run_hunt_show)
    run = hunt_sub.add_parser("run", help="run a saved hunt")
    run.add_argument("name")
    _add_params(run)
    _add_since(run, "24h")
    _add_format(run)
    run.set_defaults(func=run_hunt)


def _register_alerts(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("alerts", help="list, show and triage stored alerts")
    alerts_sub = parser.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    listing = alerts_sub.add_parser("list", help="alerts seen in the period, newest first, with their status")
    listing.add_argument("--status", choices=alerts.STATUSES)
    listing.add_argument("--severity")
    listing.add_argument("--limit", type=int, default=100)
    _add_since(listing, "7d")
    _add_format(listing)
    listing.set_defaults(func=run_alerts_list)
    show = alerts_sub.add_parser("show", help="one alert with its triage history and its evidence as a timeline")
    show.add_argument("id")
    _add_format(show)
    show.set_defaults(func=run_alerts_show)
    for action, target in (("ack", "acknowledged"), ("close", "closed")):
        change = alerts_sub.add_parser(action, help=f"mark an alert {target}")
        change.add_argument("id")
        change.add_argument("--note", default="", help="why (kept in the alert's history)")
        change.add_argument("--by", default=getpass.getuser(), help="who decided (default: %(default)s)")
        change.set_defaults(func=run_alerts_change, status=target)


def _register_advise(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("advise", help="least-privilege seccomp and AppArmor profiles from observed behaviour")
    advise_sub = parser.add_subparsers(dest="advise_command", required=True, metavar="ACTION")
    profile = advise_sub.add_parser("seccomp", help="write a seccomp profile allowing what the workload called")
    _add_workload(profile, "7d")
    _add_min_observed(profile)
    profile.add_argument("--output", type=Path, help="write the profile here (default: standard output)")
    profile.set_defaults(func=run_advise_seccomp)
    diff = advise_sub.add_parser("diff", help="what the workload did outside a seccomp profile; exit status 1 "
                                              "if anything, 2 if it cannot tell")
    _add_workload(diff, "1h")
    diff.add_argument("--profile", type=Path, required=True, help="the seccomp profile (OCI or Docker format)")
    diff.add_argument("--arch", default="x86_64", choices=sorted(seccomp.ARCHITECTURES),
                      help="the nodes' architecture (default: %(default)s)")
    diff.add_argument("--capability", action="append", default=[], metavar="CAP",
                      help="a capability the container has, for rules a profile grants only with it")
    _add_format(diff)
    diff.set_defaults(func=run_advise_diff, min_observed=timedelta(0))
    draft = advise_sub.add_parser("apparmor", help="write an AppArmor profile draft from the programs, files, "
                                                   "network and capabilities seen")
    _add_workload(draft, "7d")
    _add_min_observed(draft)
    draft.add_argument("--name", default="", help="the profile's name (default: vigil-NAMESPACE-WORKLOAD[-C])")
    draft.add_argument("--strict-files", action="store_true",
                       help="no broad file rule: only observed paths (the sensor watches some paths only)")
    draft.add_argument("--output", type=Path, help="write the draft here (default: standard output)")
    draft.set_defaults(func=run_advise_apparmor)


def _add_workload(parser: argparse.ArgumentParser, since: str) -> None:
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--workload", required=True,
                        help="the owning controller's name (Deployment, StatefulSet, DaemonSet, Job or CronJob), "
                             "not a pod's")
    parser.add_argument("--container", default="", help="one container of its pods (default: all)")
    parser.add_argument("--cluster", default="", help="one cluster (default: all)")
    _add_since(parser, since)


def _add_min_observed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-observed", type=_duration, default=timedelta(hours=1),
                        help="refuse to advise on less container time than this, summed over the workload's "
                             "containers (default: 1h)")


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=list(QUERY_FORMATS), default="table",
                        help="table: aligned columns (default); json: one object per line; csv: with a header")


def _add_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--param", action="append", type=parse_param, default=[], metavar="NAME=VALUE",
                        help="a query parameter; arrays, tuples and maps may be written as literals: ['a','b']")


def _add_since(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--since", type=_duration, default=default,
                        help="how far back to look: 30m, 24h, 30d … (default: %(default)s)")


def run_store(args: argparse.Namespace, settings: Settings) -> int:
    metrics.serve(settings)
    try:
        asyncio.run(run_writer(settings, group_id=args.group_id))
    except (StoreError, KafkaError) as exc:
        log.error("storage writer cannot run", extra={"error": str(exc)})
        return 1
    return 0


def run_migrate(args: argparse.Namespace, settings: Settings) -> int:
    def apply(store: ClickHouseStore) -> int:
        report = migrate(store, settings.clickhouse.retention_days)
        print(f"applied migrations: {', '.join(map(str, report.applied))}" if report.applied
              else "schema is up to date")
        retention = f"{report.retention_days} days" if report.retention_days else "forever"
        print(f"events retention: {retention}{' (changed)' if report.retention_changed else ''}")
        print(f"roles: {', '.join(report.roles)}" if report.roles
              else f"roles: not created, the server does not allow it ({report.roles_skipped})")
        return 0

    return _with_store(settings, "vigil storage migrate", apply, read_only=False)


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    def show(store: ClickHouseStore) -> int:
        rows = [[m.version, m.description,
                 m.applied_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if m.applied_at else "pending"]
                for m in status(store)]
        print(format_table(["version", "description", "applied_at"], rows), end="")
        for table in store.set_aside_tables():
            print(f"set aside (the embedded engine could not load it): {table}")
        return 0

    return _with_store(settings, "vigil storage status", show)


def run_query(args: argparse.Namespace, settings: Settings) -> int:
    sql = args.sql.strip().rstrip(";")  # clickhouse-connect appends a FORMAT clause after the text
    return _with_store(settings, "vigil query", lambda store: _print_query(store, sql, dict(args.param), args.format))


def run_hunt_list(args: argparse.Namespace, settings: Settings) -> int:
    try:
        hunts = load_hunts()
    except HuntError as exc:
        print(f"vigil hunt: {exc}", file=sys.stderr)
        return 1
    rows = [[h.name, h.title, " ".join(p.name if p.default is None else f"[{p.name}]" for p in h.params)]
            for h in hunts.values()]
    print(format_table(["name", "title", "parameters ([optional])"], rows, max_width=80), end="")
    return 0


def run_hunt_show(args: argparse.Namespace, settings: Settings) -> int:
    try:
        hunt = _find_hunt(args.name)
    except HuntError as exc:
        print(f"vigil hunt: {exc}", file=sys.stderr)
        return 1
    print(f"{hunt.name}: {hunt.title}\n\n{hunt.description}\n\nparameters:")
    for p in hunt.params:
        default = "required" if p.default is None else f"default {p.default}"
        print(f"  {p.name} ({p.type}, {default}): {p.description}")
    print("  since (from --since): start of the period")
    print(f"\n{hunt.sql}")
    return 0


def run_hunt(args: argparse.Namespace, settings: Settings) -> int:
    try:
        hunt = _find_hunt(args.name)
        parameters = hunt.bind(dict(args.param), datetime.now(UTC) - args.since)
    except HuntError as exc:
        print(f"vigil hunt: {exc}", file=sys.stderr)
        return 1
    return _with_store(settings, "vigil hunt", lambda store: _print_query(store, hunt.sql, parameters, args.format))


def run_sigma(args: argparse.Namespace, settings: Settings) -> int:
    """``vigil hunt --sigma``: each rule over the stored audit events; without ``--sigma``, usage."""
    if not args.sigma:
        print("vigil hunt: give an action (list, show, run) or --sigma RULE.yml", file=sys.stderr)
        return 2
    queries = []
    for path in _rule_files(args.sigma):
        try:
            queries.append(convert_rule(path.read_text()))
        except (OSError, SigmaConversionError) as exc:
            print(f"vigil hunt --sigma: {path}: {exc}", file=sys.stderr)
            return 1
    since = _since_text(datetime.now(UTC) - args.since)

    def run_all(store: ClickHouseStore) -> int:
        for query in queries:
            if args.format == "table":
                print(f"== {query.title} ({query.rule_id})")
            _print_query(store, query.sql, query.parameters | {"since": since, "limit": args.limit}, args.format)
        return 0

    return _with_store(settings, "vigil hunt --sigma", run_all)


def run_alerts_list(args: argparse.Namespace, settings: Settings) -> int:
    def show(store: ClickHouseStore) -> int:
        parameters = alerts.list_params(_since_text(datetime.now(UTC) - args.since), args.status or "",
                                        args.severity or "", args.limit)
        return _print_query(store, alerts.LIST_SQL, parameters, args.format)

    return _with_store(settings, "vigil alerts list", show)


def run_alerts_show(args: argparse.Namespace, settings: Settings) -> int:
    def show(store: ClickHouseStore) -> int:
        alert = alerts.get_alert(store, args.id)
        history = alerts.status_history(store, args.id)
        timeline = store.query_raw(alerts.EVIDENCE_SQL, alerts.evidence_params(alert), QUERY_FORMATS[args.format])
        if args.format == "json":
            doc = alert | {"status_history": [dict(zip(("changed_at", "status", "changed_by", "note"), row,
                                                       strict=True)) for row in history],
                           "timeline": [orjson.loads(line) for line in timeline.splitlines()]}
            sys.stdout.buffer.write(orjson.dumps(doc, default=str) + b"\n")
            return 0
        for name, value in alert.items():
            print(f"{name:>18}: {_cell(value, 200)}")
        for changed_at, state, by, note in history:
            print(f"{'':>18}  {changed_at} {state} by {by}{': ' + note if note else ''}")
        print("\nevidence timeline:")
        _write_output(timeline, args.format)
        return 0

    return _with_store(settings, "vigil alerts show", show)


def run_alerts_change(args: argparse.Namespace, settings: Settings) -> int:
    def change(store: ClickHouseStore) -> int:
        alerts.set_status(store, args.id, args.status, args.by, args.note)
        print(f"alert {args.id}: {args.status}")
        return 0

    return _with_store(settings, f"vigil alerts {args.alerts_command}", change, read_only=False)


def run_advise_seccomp(args: argparse.Namespace, settings: Settings) -> int:
    def write(activity: Activity) -> int:
        advice = seccomp.advise(activity)
        _emit(seccomp.render(advice.profile), args.output)
        print(f"vigil advise seccomp: {len(advice.observed)} observed syscalls allowed; added for the container "
              f"runtime: {', '.join(advice.runtime_added) or 'none'}", file=sys.stderr)
        if advice.unnamed:
            print(f"vigil advise seccomp: left out syscalls the sensor could not name: {', '.join(advice.unnamed)}",
                  file=sys.stderr)
        return 0

    return _advise(args, settings, "vigil advise seccomp", write, needs_syscalls=True)


def run_advise_apparmor(args: argparse.Namespace, settings: Settings) -> int:
    def write(activity: Activity) -> int:
        _emit(apparmor.draft(activity, args.name, args.strict_files).encode(), args.output)
        return 0

    return _advise(args, settings, "vigil advise apparmor", write)


def run_advise_diff(args: argparse.Namespace, settings: Settings) -> int:
    try:
        profile = seccomp.parse(args.profile.read_bytes(), args.arch, args.capability)
    except (OSError, seccomp.ProfileError) as exc:
        print(f"vigil advise diff: {args.profile}: {exc}", file=sys.stderr)
        return 2

    def compare(activity: Activity) -> int:
        found = seccomp.outside(profile, activity)
        names = ["syscall", "reason", "count", "first_seen", "last_seen"]
        rows = [[o.syscall, o.reason, o.count, o.first, o.last] for o in found]
        if args.format == "table":
            print(format_table(names, rows), end="")
        elif args.format == "json":
            for row in rows:
                print(orjson.dumps(dict(zip(names, row, strict=True))).decode())
        else:
            csv.writer(sys.stdout, lineterminator="\n").writerows([names, *rows])
        return 1 if found else 0

    return _advise(args, settings, "vigil advise diff", compare, failure=2, needs_syscalls=True)


def _advise(args: argparse.Namespace, settings: Settings, command: str, act: Callable[[Activity], int],
            failure: int = 1, needs_syscalls: bool = False) -> int:
    """Load the workload's activity, refuse when there is none or too little, then ``act`` on it.

    A seccomp profile from programs and files alone would allow nothing but the runtime's calls, so seccomp
    advice ``needs_syscalls``: the sensor's per-container aggregation must have reported the workload.
    """
    workload = Workload(args.namespace, args.workload, args.container, args.cluster)
    since = datetime.now(UTC) - args.since
    outcome = failure  # the action's exit status; _with_store's own 1 means ClickHouse failed

    def advise(store: ClickHouseStore) -> int:
        nonlocal outcome
        activity = load_activity(store, workload, since)
        if activity.is_empty() or (needs_syscalls and not activity.values("syscall")):
            others = known_workloads(store, workload.namespace, since)
            hint = f" (workloads with data there: {', '.join(others)})" if others else \
                " (none in that namespace: is the node collector's sensor running?)"
            what = "no syscalls" if needs_syscalls else "nothing"
            print(f"{command}: {what} recorded for {workload.describe()} in the last {_since_words(args.since)}"
                  f"{hint}", file=sys.stderr)
            return failure
        if activity.observed_seconds < args.min_observed.total_seconds():
            print(f"{command}: {workload.describe()} was observed for {activity.observed_seconds:.0f} s of container "
                  f"time ({activity.pods} pods), less than --min-observed {_since_words(args.min_observed)}: "
                  "what it does less often would be missing; observe longer or lower --min-observed",
                  file=sys.stderr)
            return failure
        try:
            outcome = act(activity)
        except (OSError, seccomp.ProfileError) as exc:
            print(f"{command}: {exc}", file=sys.stderr)
        return 0

    return outcome if _with_store(settings, command, advise) == 0 else failure


def _emit(text: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
    else:
        output.write_bytes(text)


def _since_words(period: timedelta) -> str:
    seconds = int(period.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _find_hunt(name: str) -> Hunt:
    hunts = load_hunts()
    if name not in hunts:
        raise HuntError(f"no hunt named {name!r} (vigil hunt list shows them)")
    return hunts[name]


def _rule_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.yml")) + sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return files


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except HuntError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _since_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _print_query(store: ClickHouseStore, sql: str, parameters: dict[str, Any], fmt: str) -> int:
    reporter = _progress_reporter()
    try:
        output = store.query_raw(sql, parameters, QUERY_FORMATS[fmt], on_progress=reporter)
    finally:
        if reporter is not None:
            sys.stderr.write("\r\033[K")  # the progress line, if one was shown, makes way for the result
    _write_output(output, fmt)
    return 0


def _write_output(output: bytes, fmt: str) -> None:
    if fmt == "table":
        lines = [orjson.loads(line) for line in output.splitlines()]
        output = format_table(lines[0], lines[1:]).encode() if lines else b""
    sys.stdout.buffer.write(output)
    sys.stdout.flush()


def _progress_reporter() -> Callable[[QueryProgress], None] | None:
    """On a terminal, a line on stderr that tells a long query's progress, rewritten in place."""
    if not sys.stderr.isatty():
        return None

    def report(progress: QueryProgress) -> None:
        share = f" ({100 * progress.read_rows / progress.total_rows:.0f}%)" if progress.total_rows else ""
        total = f" of {progress.total_rows:,}" if progress.total_rows else ""
        sys.stderr.write(f"\r\033[K{progress.elapsed_s:6.1f} s  {progress.read_rows:,}{total} rows{share}  "
                         f"{progress.read_bytes / 1e6:,.0f} MB")
        sys.stderr.flush()

    return report


def parse_param(text: str) -> tuple[str, Any]:
    """``name=value``: the value is text, except that a ``[…]``, ``(…)`` or ``{…}`` literal becomes a list,
    tuple or dict, so that it binds as an Array, Tuple or Map parameter."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    if value[:1] in ("[", "(", "{"):
        try:
            return name, ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
    return name, value


def format_table(names: list[str], rows: list[list[Any]], max_width: int = MAX_CELL_WIDTH) -> str:
    """Rows aligned under a header, numbers right-aligned, each cell on one line and at most ``max_width``."""
    cells = [[_cell(value, max_width) for value in row] for row in rows]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(names)]
    numeric = [bool(rows) and all(_is_number(row[i]) for row in rows) for i in range(len(names))]

    def line(values: list[str]) -> str:
        padded = (v.rjust(w) if right else v.ljust(w) for v, w, right in zip(values, widths, numeric, strict=True))
        return "  ".join(padded).rstrip()

    out = [line(list(names)), "  ".join("-" * w for w in widths), *(line(row) for row in cells)]
    out.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(out) + "\n"


def _cell(value: Any, max_width: int) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, str):
        text = value.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    else:
        text = orjson.dumps(value).decode()
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _with_store(settings: Settings, command: str, action: Callable[[ClickHouseStore], int],
                read_only: bool = True) -> int:
    """Run ``action(store)``; a ClickHouse error is printed as ClickHouse worded it, and exits 1."""
    clickhouse = settings.clickhouse
    if read_only and clickhouse.analyst_username:
        clickhouse = dataclasses.replace(clickhouse, username=clickhouse.analyst_username,
                                         password=clickhouse.analyst_password)
    try:
        store = connect(clickhouse, data_dir=settings.data_dir, read_only=read_only)
    except StoreError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    try:
        return action(store)
    except StoreError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
