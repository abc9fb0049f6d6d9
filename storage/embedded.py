"""The ClickHouse engine embedded in vigil's process (``chdb``), kept from being bricked by one table.

The embedded engine opens a data directory by loading every table in it, and one table that fails to load fails
the whole open: ``vigil query``, ``vigil storage`` and the writer would all stop on that directory. A table can get
there in two ways, and each is handled where it can be:

- **Engines the embedded engine cannot run.** ``CREATE TABLE ... ENGINE = Kafka`` fails on chdb ("Shutdown was
  called", as its message-broker threads are never started), yet leaves the table's metadata behind, and the next
  open fails on it. Such statements are refused before they reach the engine, with a message that says why and
  what to do instead (:func:`refuse_unrunnable`).
- **Tables that fail to load at start** (one created by an older vigil or by hand, or damaged): before opening,
  tables whose engine cannot run are set aside; when the open still fails, the engine's own report names the
  table, which is set aside too, and the open is tried again. Setting aside moves the table's metadata file
  (``metadata/<db>/<table>.sql``) to ``<data dir>-set-aside/``, logs it, and lists it in ``vigil storage status``;
  its data stays where it was, so moving the file back restores the table on a server or engine that can load it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

log = logging.getLogger(__name__)

#: Table engines the embedded engine lists but cannot run, and why (measured on chdb 4.4 / ClickHouse 26.9: of
#: Kafka, RabbitMQ, NATS, S3Queue, ReplicatedMergeTree, Distributed, Buffer, URL, MySQL and PostgreSQL, only
#: Kafka's failed CREATE leaves metadata behind; the others are refused cleanly or work).
UNRUNNABLE_ENGINES = {
    "Kafka": "the embedded engine does not run Kafka's consumer threads: a Kafka table fails to create and then "
             "stops the data directory from opening. vigil's own writer (`vigil store`) reads Kafka into "
             "ClickHouse; for a Kafka table of your own, use a ClickHouse server (VIGIL_CLICKHOUSE_URL)",
}
#: How many failing tables one open sets aside before giving up (each costs one more open attempt).
MAX_SET_ASIDE_PER_OPEN = 16

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_TABLE_DDL = re.compile(r"^\s*(?:CREATE|ATTACH|REPLACE)\b", re.I)
_ENGINE = re.compile(r"\bENGINE\s*=\s*`?(\w+)", re.I)
#: The engine's words when a table stops the open: "Load job 'startup table vigil.k' failed" (the engine failed
#: to start it) or "Load job 'load table vigil.t' failed" (its metadata does not load).
_FAILED_LOAD = re.compile(r"Load job '\w+ table (?P<database>[^'.]+)\.(?P<table>[^']+)' failed")


class UnrunnableEngine(ValueError):
    """A statement asks the embedded engine for a table engine it cannot run."""


@dataclass(frozen=True, slots=True)
class SetAside:
    """A table moved out of the way of the embedded engine: which, why, and where its metadata went."""

    database: str
    table: str
    reason: str
    path: Path


def refuse_unrunnable(sql: str) -> None:
    """Raise :class:`UnrunnableEngine` if ``sql`` creates or attaches a table with an engine the embedded engine
    cannot run; anything else passes (the engine itself judges it)."""
    text = _COMMENTS.sub(" ", sql)
    if not _TABLE_DDL.match(text):
        return
    for engine in _ENGINE.findall(text):
        known = next((name for name in UNRUNNABLE_ENGINES if name.lower() == engine.lower()), None)
        if known is not None:
            raise UnrunnableEngine(f"ENGINE = {engine} is refused on the embedded ClickHouse: "
                                   f"{UNRUNNABLE_ENGINES[known]}")


def set_aside_dir(data_path: Path) -> Path:
    """Where the tables set aside from ``data_path`` go: beside it, never inside the engine's own directory."""
    return data_path.with_name(f"{data_path.name}-set-aside")


def set_aside_tables(data_path: Path) -> list[Path]:
    """The metadata files set aside so far, oldest first."""
    directory = set_aside_dir(data_path)
    return sorted(directory.glob("*.sql")) if directory.is_dir() else []


def open_client(data_path: Path, options: dict[str, Any]) -> tuple[Client, list[SetAside]]:
    """A client of the embedded engine on ``data_path``, after setting aside the tables that would stop it from
    opening; raises the engine's error when it fails for another reason (another process has it open…)."""
    set_aside = [_set_aside(data_path, *found) for found in _unrunnable_tables(data_path)]
    for _ in range(MAX_SET_ASIDE_PER_OPEN + 1):
        with _stderr_captured() as said:
            try:
                return clickhouse_connect.get_client(**options), set_aside
            except ClickHouseError as exc:
                error = exc
        failed = _FAILED_LOAD.search(said())
        table_file = failed and _metadata_file(data_path, failed["database"], failed["table"])
        if not table_file:
            raise error
        reason = f"failed to load at start: {said().strip()[-500:]}"
        set_aside.append(_set_aside(data_path, failed["database"], failed["table"], table_file, reason))
    raise error


def _unrunnable_tables(data_path: Path) -> Iterator[tuple[str, str, Path, str]]:
    """(database, table, metadata file, reason) of each table whose engine the embedded engine cannot run."""
    for table_file in sorted((data_path / "metadata").glob("*/*.sql")):
        engines = _ENGINE.findall(_COMMENTS.sub(" ", table_file.read_text(errors="replace")))
        unrunnable = [e for e in engines if e in UNRUNNABLE_ENGINES]
        if unrunnable:
            yield (unquote(table_file.parent.name), unquote(table_file.stem), table_file,
                   f"ENGINE = {unrunnable[0]}: {UNRUNNABLE_ENGINES[unrunnable[0]]}")


def _metadata_file(data_path: Path, database: str, table: str) -> Path | None:
    for candidate in (data_path / "metadata").glob("*/*.sql"):
        if unquote(candidate.parent.name) == database and unquote(candidate.stem) == table:
            return candidate
    return None


def _set_aside(data_path: Path, database: str, table: str, table_file: Path, reason: str) -> SetAside:
    directory = set_aside_dir(data_path)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = directory / f"{database}.{table}.{stamp}.sql"
    table_file.replace(target)
    log.warning("embedded ClickHouse: table set aside", extra={
        "database": database, "table": table, "reason": reason, "metadata": str(target),
        "restore": f"move it back to {table_file} where an engine can load it"})
    return SetAside(database, table, reason, target)


@contextlib.contextmanager
def _stderr_captured() -> Iterator[Callable[[], str]]:
    """What the embedded engine writes to file descriptor 2 meanwhile (its only word on which table failed to
    load); it is written back to stderr afterwards, so nothing it says is lost."""
    sys.stderr.flush()
    saved = os.dup(2)
    captured: list[str] = []
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lambda: "".join(captured)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
        captured.append(text)
        sys.stderr.write(text)
