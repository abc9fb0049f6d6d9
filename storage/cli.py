"""``vigil store`` (the storage writer), ``vigil storage migrate|status`` and ``vigil query``."""

from __future__ import annotations

import argparse
import ast
import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import UTC
from typing import Any

import orjson
from aiokafka.errors import KafkaError

from storage.clickhouse import ClickHouseStore, StoreError, connect
from storage.schema import migrate, status
from storage.writer import run_writer
from vigil import metrics
from vigil.config import Settings

log = logging.getLogger(__name__)

#: ``vigil query --format`` → the ClickHouse output format it is printed from.
QUERY_FORMATS = {"table": "JSONCompactEachRowWithNames", "json": "JSONEachRow", "csv": "CSVWithNames"}

#: Widest cell shown in table output; longer values end in "…" (use --format json for whole values).
MAX_CELL_WIDTH = 60


def register(sub: argparse._SubParsersAction) -> None:
    store = sub.add_parser("store", help="run the storage writer: Kafka events and alerts into ClickHouse")
    store.set_defaults(func=run_store)

    storage = sub.add_parser("storage", help="manage the ClickHouse schema")
    storage_sub = storage.add_subparsers(dest="storage_command", required=True, metavar="ACTION")
    storage_sub.add_parser("migrate", help="create the database and apply pending migrations").set_defaults(
        func=run_migrate
    )
    storage_sub.add_parser("status", help="list migrations and when they were applied").set_defaults(
        func=run_status
    )

    query = sub.add_parser("query", help="run SQL against vigil's ClickHouse database")
    query.add_argument("sql", help="the query; {name:Type} placeholders are bound server-side from --param")
    query.add_argument("--format", choices=list(QUERY_FORMATS), default="table",
                       help="table: aligned columns (default); json: one object per line; csv: with a header")
    query.add_argument("--param", action="append", type=parse_param, default=[], metavar="NAME=VALUE",
                       help="a query parameter; arrays, tuples and maps may be written as literals: ['a','b']")
    query.set_defaults(func=run_query)


def run_store(args: argparse.Namespace, settings: Settings) -> int:
    metrics.serve(settings)
    try:
        asyncio.run(run_writer(settings))
    except (StoreError, KafkaError) as exc:
        log.error("storage writer cannot run", extra={"error": str(exc)})
        return 1
    return 0


def run_migrate(args: argparse.Namespace, settings: Settings) -> int:
    def apply(store: ClickHouseStore) -> int:
        applied = migrate(store)
        print(f"applied migrations: {', '.join(map(str, applied))}" if applied else "schema is up to date")
        return 0

    return _with_store(settings, "vigil storage migrate", apply)


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    def show(store: ClickHouseStore) -> int:
        rows = [[m.version, m.description,
                 m.applied_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if m.applied_at else "pending"]
                for m in status(store)]
        print(format_table(["version", "description", "applied_at"], rows), end="")
        return 0

    return _with_store(settings, "vigil storage status", show)


def run_query(args: argparse.Namespace, settings: Settings) -> int:
    sql = args.sql.strip().rstrip(";")  # clickhouse-connect appends a FORMAT clause after the text
    parameters = dict(args.param)

    def execute(store: ClickHouseStore) -> int:
        output = store.query_raw(sql, parameters, QUERY_FORMATS[args.format])
        if args.format == "table":
            lines = [orjson.loads(line) for line in output.splitlines()]
            output = format_table(lines[0], lines[1:]).encode() if lines else b""
        sys.stdout.buffer.write(output)
        return 0

    return _with_store(settings, "vigil query", execute)


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


def _with_store(settings: Settings, command: str, action: Callable[[ClickHouseStore], int]) -> int:
    """Run ``action(store)``; a ClickHouse error is printed as ClickHouse worded it, and exits 1."""
    try:
        store = connect(settings.clickhouse)
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
