"""ClickHouse I/O for vigil: the client built from settings, columnar inserts, and parameterized queries.

This is the only module that talks to ClickHouse. Everything above it speaks in events, alerts, SQL text
with ``{name:Type}`` placeholders, and two kinds of failure: :class:`StoreUnavailable` (try again later,
nothing was refused) and :class:`Refused` rows in an :class:`InsertResult` (this row will never fit; keep it
elsewhere).

Inserts go in Arrow format. On 100k events over HTTP to a local server (the engine ``vigil dev up`` runs, on
2 shared cores), Arrow and
clickhouse-connect's column-oriented Native insert took the same time (median of 5 alternating rounds: 2.80 s
and 2.86 s, ~35k rows/s, most of it reading the values out of the Python objects, which both do alike).
Arrow wins on what else it gives: building its arrays type-checks every value in C, so a row with a wrong
type is found, and refused alone, before anything is sent.

Each insert carries an ``insert_deduplication_token``: ClickHouse drops an insert whose token it has already
seen (the tables set ``non_replicated_deduplication_window``, which a single non-replicated server needs for
this), which makes a retried batch idempotent.

On a cluster (``clickhouse.cluster``) the same calls go to Distributed tables (storage/schema.py): inserts are
synchronous (``insert_distributed_sync``), so one returns only after every shard stored its rows, and each shard
deduplicates its part of a retried batch by the same token; queries read every shard, with ``IN``/``JOIN``
subqueries over Distributed tables run once and sent to the shards (``distributed_product_mode = 'global'``), so
analysts' SQL runs unchanged.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
import msgspec
import orjson
import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from clickhouse_connect.driver.query import QueryResult

from vigil.alert import Alert
from vigil.config import ClickHouseSettings
from vigil.event import Event
from vigil.storage import embedded

# clickhouse-connect logs a warning with a traceback for every failed request, then raises; the error raised
# here is what vigil logs (or `vigil query` prints), once and without a traceback.
logging.getLogger("clickhouse_connect").setLevel(logging.ERROR)

#: ClickHouse error codes that mean "this data cannot be stored", as opposed to "not now". A batch refused
#: with one of these is split until the offending rows are found; any other error is retried as a whole.
DATA_ERROR_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        70,  # CANNOT_CONVERT_TYPE
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        469,  # VIOLATED_CONSTRAINT
    }
)

#: Applied to every insert. A replay of old logs spans many days (partitions) in one batch; without this
#: ClickHouse would refuse such a batch outright, and the writer would retry it forever.
INSERT_SETTINGS = {"throw_on_max_partitions_per_insert_block": 0}


class StoreError(Exception):
    """ClickHouse refused or failed an operation; the message is ClickHouse's own, fit to show a person.

    ``code`` is ClickHouse's error code when the server answered (497 ACCESS_DENIED, 164 READONLY …).
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class StoreUnavailable(StoreError):
    """ClickHouse could not take the data now (down, overloaded, misconfigured): retry, nothing is refused."""


@dataclass(frozen=True, slots=True)
class QueryProgress:
    """How far a running query got, as ``system.processes`` reports it."""

    read_rows: int
    total_rows: int  # an estimate; 0 when the server cannot tell
    read_bytes: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class Refused:
    """A row that cannot be stored: ``index`` into the inserted list, ``reason`` a stable metric label."""

    index: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class InsertResult:
    """``written``: rows ClickHouse acknowledged (a retry it deduplicated is acknowledged again)."""

    written: int
    refused: list[Refused]


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its name, its Arrow type, how to read its value from an event or alert, and the fields it
    reads (``k8s.namespace``): the storage writer parses those out of the events topic and nothing else.

    ``value`` checks the type of what it reads where Arrow would not (see :func:`_exactly`); ``read`` reads
    without checking, for records a typed decoder built (the writer's), whose types are checked already: the
    checks were a tenth of the writer's time.
    """

    name: str
    type: pa.DataType
    value: Callable[[Any], Any]
    reads: tuple[str, ...]
    read: Callable[[Any], Any]


_STR = pa.string()
_TIME = pa.timestamp("ns", tz="UTC")
_STRS = pa.list_(pa.string())


def _json(path: str) -> Callable[[Any], bytes | memoryview]:
    """A getter of the value as JSON bytes; JSON kept as bytes (``msgspec.Raw``, the writer's raw records) as is: a
    view into the message it came in, which the writer holds anyway, not a copy (a source record is most of an
    event's bytes)."""
    get = attrgetter(path)

    def value(record: Any) -> bytes | memoryview:
        field = get(record)
        return memoryview(field) if type(field) is msgspec.Raw else orjson.dumps(field)

    return value


def _exactly(kinds: tuple[type, ...], path: str) -> Callable[[Any], Any]:
    """A getter that refuses other types: Arrow would split a string into an Array(String) of characters,
    and truncate 1.5 to an integer 1, without a word."""
    get = attrgetter(path)

    def value(record: Any) -> Any:
        found = get(record)
        if type(found) not in kinds:
            raise TypeError(f"expected {kinds[0].__name__}, got {type(found).__name__}")
        return found

    return value


def _getter(kind: pa.DataType, path: str) -> Callable[[Any], Any]:
    if pa.types.is_integer(kind) or pa.types.is_timestamp(kind):
        return _exactly((int,), path)
    if pa.types.is_list(kind):
        return _exactly((list, tuple), path)  # the writer decodes arrays into tuples (an empty one costs nothing)
    return attrgetter(path)  # Arrow itself refuses anything but text for strings, and non-mappings for maps


def _column(name: str, kind: pa.DataType, get: str | Callable[[Any], Any], reads: tuple[str, ...] = ()) -> Column:
    """A column read from one field (``get`` its path), or computed by ``get`` from the fields ``reads`` names."""
    if isinstance(get, str):
        return Column(name, kind, _getter(kind, get), (get,), attrgetter(get))
    return Column(name, kind, get, reads, get)


def _columns(*specs: tuple[Any, ...]) -> tuple[Column, ...]:
    return tuple(_column(*spec) for spec in specs)


#: The columns migration 1 created. A pod-less container (Tetragon's ``docker`` id of a process Kubernetes does not
#: know) still names its container in ``container_id``.
EVENT_COLUMNS = _columns(
    ("event_id", _STR, "id"),
    ("time", _TIME, "time_ns"),
    ("ingest_time", _TIME, "ingest_ns"),
    ("source", _STR, "source"),
    ("kind", _STR, "kind"),
    ("action", _STR, "action"),
    ("original_id", _STR, "original_id"),
    ("cluster", _STR, "cluster"),
    ("node", _STR, "node"),
    ("namespace", _STR, "k8s.namespace"),
    ("pod", _STR, "k8s.pod"),
    ("pod_uid", _STR, "k8s.pod_uid"),
    ("container_id", _STR, lambda event: event.k8s.container_id or event.container.id,
     ("k8s.container_id", "container.id")),
    ("container_name", _STR, "k8s.container_name"),
    ("image", _STR, "k8s.image"),
    ("service_account", _STR, "k8s.service_account"),
    ("labels", pa.map_(pa.string(), pa.string()), "k8s.labels"),
    ("actor_user", _STR, "actor.user"),
    ("actor_user_uid", _STR, "actor.user_uid"),
    ("actor_groups", _STRS, "actor.groups"),
    ("actor_source_ips", _STRS, "actor.source_ips"),
    ("actor_user_agent", _STR, "actor.user_agent"),
    ("actor_impersonated_by", _STR, "actor.impersonated_by"),
    ("actor_pid", pa.uint32(), "actor.pid"),
    ("actor_ppid", pa.uint32(), "actor.ppid"),
    ("actor_uid", pa.int64(), "actor.uid"),
    ("actor_gid", pa.int64(), "actor.gid"),
    ("actor_exe", _STR, "actor.exe"),
    ("actor_args", _STRS, "actor.args"),
    ("actor_cwd", _STR, "actor.cwd"),
    ("actor_parent_exe", _STR, "actor.parent_exe"),
    ("target_resource", _STR, "target.resource"),
    ("target_subresource", _STR, "target.subresource"),
    ("target_api_group", _STR, "target.api_group"),
    ("target_api_version", _STR, "target.api_version"),
    ("target_namespace", _STR, "target.namespace"),
    ("target_name", _STR, "target.name"),
    ("target_uri", _STR, "target.uri"),
    ("target_path", _STR, "target.path"),
    ("target_address", _STR, "target.address"),
    ("target_port", pa.uint16(), "target.port"),
    ("outcome_result", _STR, "outcome.result"),
    ("outcome_code", pa.int32(), "outcome.code"),
    ("outcome_reason", _STR, "outcome.reason"),
    ("raw", pa.binary(), _json("raw"), ("raw",)),
    ("schema_version", pa.uint16(), "schema"),
)

#: The columns migration 5 added, in the order it added them (appended to the table after ``schema_version``).
EVENT_MODEL_COLUMNS = _columns(
    ("container_runtime", _STR, "container.runtime"),
    ("actor_euid", pa.int64(), "actor.euid"),
    ("actor_egid", pa.int64(), "actor.egid"),
    ("actor_auid", pa.int64(), "actor.auid"),
    ("actor_tty", pa.uint32(), "actor.tty"),
    ("actor_container_pid", pa.uint32(), "actor.container_pid"),
    ("actor_exe_flags", _STRS, "actor.exe_flags"),
    ("actor_parent_args", _STRS, "actor.parent_args"),
    ("actor_grandparent_exe", _STR, "actor.grandparent_exe"),
    ("actor_token_pod", _STR, "actor.token_pod"),
    ("file_access", _STRS, "file.access"),
    ("file_mode", pa.int32(), "file.mode"),
    ("file_other_path", _STR, "file.other_path"),
    ("network_family", _STR, "network.family"),
    ("network_direction", _STR, "network.direction"),
    ("network_local_address", _STR, "network.local_address"),
    ("network_local_port", pa.uint16(), "network.local_port"),
    ("network_remote_class", _STR, "network.remote_class"),
    ("request_decision", _STR, "request.decision"),
)

#: Every column of ``events``, as the writer fills them.
STORED_EVENT_COLUMNS = EVENT_COLUMNS + EVENT_MODEL_COLUMNS

ALERT_COLUMNS = _columns(
    ("id", _STR, "id"),
    ("detection", _STR, "detection"),
    ("title", _STR, "title"),
    ("severity", _STR, "severity"),
    ("time", _TIME, "time_ns"),
    ("first_seen", _TIME, "first_seen_ns"),
    ("last_seen", _TIME, "last_seen_ns"),
    ("count", pa.uint64(), "count"),
    ("mitre", _STRS, "mitre"),
    ("description", _STR, "description"),
    ("tags", _STRS, "tags"),
    ("cluster", _STR, "cluster"),
    ("namespace", _STR, "namespace"),
    ("pod", _STR, "pod"),
    ("user", _STR, "user"),
    ("dedup_key", _STR, "dedup_key"),
    ("evidence", _STRS, "evidence"),
    ("event_ids", _STRS, "event_ids"),
    ("context", pa.binary(), _json("context"), ("context",)),
)

#: The columns of each table vigil inserts into, in the table's order.
TABLE_COLUMNS = {"events": STORED_EVENT_COLUMNS, "alerts": ALERT_COLUMNS}

#: How often a running query's progress is polled, and how long a query runs before the first report.
PROGRESS_INTERVAL_S = 0.5

#: JSON output with 64-bit integers as numbers, not strings: what JSON consumers expect from a count.
_OUTPUT_SETTINGS = {"output_format_json_quote_64bit_integers": 0}

#: What building an Arrow array raises for a value of the wrong type or range (or unencodable text).
_CONVERSION_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError)


#: The URL that selects the ClickHouse engine embedded in this process, storing under the data dir.
EMBEDDED_URL = "embedded"

#: Error codes of a server that will not keep roles: 497 ACCESS_DENIED (a user without
#: ``access_management``, as on the embedded engine and the dev server) and 514
#: ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND (access management allowed, but no writable user directory:
#: the embedded engine reads only users.xml).
NO_ACCESS_CONTROL = frozenset({497, 514})

#: Sent with analysts' queries: the server refuses writes and DDL, but still takes per-query settings.
READ_ONLY = {"readonly": 2}

#: Sent with every query on a cluster: a subquery over a Distributed table inside IN or JOIN is run once and its
#: result sent to every shard (the default refuses such queries; 'local' would miss rows kept on other shards).
CLUSTER_QUERY_SETTINGS = {"distributed_product_mode": "global"}

#: Sent with every insert on a cluster: the insert returns once every shard has stored its part (or fails), never
#: when the rows are merely queued on the node that took them.
CLUSTER_INSERT_SETTINGS = {"insert_distributed_sync": 1}


@dataclass(frozen=True, slots=True)
class ClusterLayout:
    """vigil's tables spread over a ClickHouse cluster (settings ``cluster``, ``cluster_nodes``, ``replication``).

    ``node_urls`` empty: the servers run distributed DDL (they have ZooKeeper or Keeper), and migrations go ON
    CLUSTER through the one server connected to; otherwise every statement is run on each of these nodes.
    """

    name: str
    replication: bool = False
    node_urls: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: ClickHouseSettings) -> ClusterLayout | None:
        if not settings.cluster:
            if settings.cluster_nodes or settings.replication:
                raise StoreError("ClickHouse cluster_nodes and replication need a cluster name "
                                 "(VIGIL_CLICKHOUSE_CLUSTER)")
            return None
        nodes = tuple(url.strip().rstrip("/") for url in settings.cluster_nodes.split(",") if url.strip())
        return cls(settings.cluster, settings.replication, nodes)


def resolve_url(settings: ClickHouseSettings, data_dir: str = "") -> str:
    """``embedded`` becomes ``chdb:///<data_dir>/clickhouse``: the same schema and SQL as a server, in this
    process, with no server to run; one process at a time may open it."""
    if settings.url != EMBEDDED_URL:
        return settings.url
    if not data_dir:
        raise StoreError("ClickHouse url 'embedded' needs vigil's data dir")
    return f"chdb://{Path(data_dir).resolve() / 'clickhouse'}"


def connect(settings: ClickHouseSettings, *, data_dir: str = "", read_only: bool = False) -> ClickHouseStore:
    """A store for ``settings.url``: ``http(s)://host:port`` for a server; ``embedded`` (under ``data_dir``),
    ``chdb://memory`` or ``chdb:///path`` for the engine embedded in this process.

    ``read_only``: every query carries ``readonly=2``, so the server refuses anything but reading whatever
    the user's grants. The embedded engine has no users to protect from one another, and its client keeps a
    per-query ``readonly`` for the rest of the session, so it is not sent there.
    """
    target = resolve_url(settings, data_dir)
    url = urlsplit(target)
    cluster = ClusterLayout.from_settings(settings)
    if cluster is not None and url.scheme not in ("http", "https"):
        raise StoreError(f"ClickHouse cluster {cluster.name!r} needs a server URL (http or https), not {target!r}")
    options: dict[str, Any] = {"show_clickhouse_errors": "scrub"}  # ClickHouse's text, without URL or version
    if url.scheme == "chdb":
        options["dsn"] = target
        if url.path:
            Path(url.path).mkdir(parents=True, exist_ok=True)
    elif url.scheme in ("http", "https"):
        secure = url.scheme == "https"
        options |= {
            "host": url.hostname or "127.0.0.1",
            "port": url.port or (8443 if secure else 8123),
            "secure": secure,
            "username": settings.username,
            "password": str(settings.password),
        }
    else:
        raise StoreError(f"ClickHouse url {settings.url!r}: scheme must be http, https or chdb")
    set_aside: list[embedded.SetAside] = []
    try:
        if url.scheme == "chdb" and url.path:
            client, set_aside = embedded.open_client(Path(url.path), options)
        else:
            client = clickhouse_connect.get_client(**options)
    except ClickHouseError as exc:
        error = _store_error(exc)
        if url.scheme == "chdb":
            raise type(error)(f"cannot open the embedded ClickHouse at {url.path or target}: {error} "
                              "(one process at a time can open it; run a server for more)") from exc
        where = f"{url.scheme}://{url.hostname}:{options['port']}"
        raise type(error)(f"cannot connect to ClickHouse at {where}: {error}") from exc
    if url.scheme == "chdb":
        return ClickHouseStore(client, settings.database, statement_check=_embedded_statement_check,
                               embedded_path=Path(url.path) if url.path else None, set_aside=set_aside)
    return ClickHouseStore(client, settings.database, query_settings=READ_ONLY if read_only else {},
                           open_watcher=lambda: clickhouse_connect.get_client(**options), cluster=cluster,
                           open_node=lambda node: connect(replace(settings, url=node), read_only=read_only))


class ClickHouseStore:
    """vigil's tables in one ClickHouse database.

    The client is synchronous (the embedded engine has no async client); the writer calls it from a worker
    thread, one call at a time.
    """

    def __init__(self, client: Client, database: str, query_settings: dict[str, Any] | None = None,
                 open_watcher: Callable[[], Client] | None = None,
                 statement_check: Callable[[str], None] | None = None, embedded_path: Path | None = None,
                 set_aside: list[embedded.SetAside] | None = None, cluster: ClusterLayout | None = None,
                 open_node: Callable[[str], ClickHouseStore] | None = None) -> None:
        self._client = client
        self.database = database
        #: The cluster the tables are spread over; None: one server.
        self.cluster = cluster
        self._open_node = open_node
        self._query_settings = (query_settings or {}) | (CLUSTER_QUERY_SETTINGS if cluster else {})
        self._insert_settings = INSERT_SETTINGS | (CLUSTER_INSERT_SETTINGS if cluster else {})
        self._open_watcher = open_watcher  # a second client, to watch a running query's progress
        self._check = statement_check or _any_statement  # raises StoreError for what this engine must not run
        self._embedded_path = embedded_path
        #: Tables this open of the embedded engine set aside because they would have stopped it from opening.
        self.set_aside = set_aside or []
        if self.query("EXISTS DATABASE {db:Identifier}", {"db": database}).result_rows[0][0]:
            client.database = database  # unqualified names in analysts' queries resolve to vigil's tables

    def set_aside_tables(self) -> list[Path]:
        """The metadata files of every table the embedded engine has set aside on this data directory so far."""
        return embedded.set_aside_tables(self._embedded_path) if self._embedded_path else []

    def use_database(self) -> None:
        """Resolve unqualified names in vigil's database, once another connection has created it."""
        self._client.database = self.database

    def open_nodes(self) -> list[ClickHouseStore]:
        """A store on each of the cluster's ``node_urls`` (the caller closes them), for per-node DDL."""
        if self.cluster is None or self._open_node is None:
            return []
        return [self._open_node(url) for url in self.cluster.node_urls]

    def create_database(self, on_cluster: str = "") -> None:
        """``on_cluster``: an ``ON CLUSTER <name>`` clause, to create it on every node of a cluster at once."""
        try:
            # Outside any database context: the client's default database may be the one being (re)created.
            self._client.command(
                f"CREATE DATABASE IF NOT EXISTS {{db:Identifier}}{on_cluster}", parameters={"db": self.database},
                use_database=False
            )
        except ClickHouseError as exc:
            raise _store_error(exc) from exc
        self._client.database = self.database

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """Run a statement that returns no rows (DDL, INSERT … VALUES) with server-side parameters."""
        self._check(sql)
        try:
            self._client.command(sql, parameters=parameters, settings=self._insert_settings if self.cluster else None)
        except ClickHouseError as exc:
            raise _store_error(exc) from exc

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> QueryResult:
        """Run a query; ``{name:Type}`` placeholders are bound by the server, never spliced into the text."""
        self._check(sql)
        try:
            return self._client.query(sql, parameters=parameters, settings=self._query_settings)
        except ClickHouseError as exc:
            raise _store_error(exc) from exc

    def query_raw(self, sql: str, parameters: dict[str, Any] | None, fmt: str,
                  on_progress: Callable[[QueryProgress], None] | None = None) -> bytes:
        """Run a query and return its result as ClickHouse formats it (``JSONEachRow``, ``CSVWithNames`` …).

        ClickHouse's own text keeps what Python values would lose: nanosecond times, exact decimals.
        ``on_progress`` is called about every :data:`PROGRESS_INTERVAL_S` while the query runs on a server
        (the embedded engine runs one query at a time, so nothing can watch it).
        """
        self._check(sql)
        settings = _OUTPUT_SETTINGS | self._query_settings
        if on_progress is None or self._open_watcher is None:
            return self._raw_query(sql, parameters, fmt, settings)
        query_id = uuid.uuid4().hex
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(query_id, done, on_progress), daemon=True)
        watcher.start()
        try:
            return self._raw_query(sql, parameters, fmt, settings | {"query_id": query_id})
        finally:
            done.set()
            watcher.join()

    def _raw_query(self, sql: str, parameters: dict[str, Any] | None, fmt: str, settings: dict[str, Any]) -> bytes:
        try:
            return self._client.raw_query(sql, parameters=parameters, fmt=fmt, settings=settings)
        except ClickHouseError as exc:
            raise _store_error(exc) from exc

    def _watch(self, query_id: str, done: threading.Event, on_progress: Callable[[QueryProgress], None]) -> None:
        """Poll ``system.processes`` for the query from a client of its own (a client runs one query at once).

        Progress is a courtesy: if it cannot be read, the query goes on without it.
        """
        if done.wait(PROGRESS_INTERVAL_S):
            return
        try:
            watcher = self._open_watcher()
        except ClickHouseError:
            return
        try:
            while not done.is_set():
                rows = watcher.query(
                    "SELECT read_rows, total_rows_approx, read_bytes, elapsed FROM system.processes "
                    "WHERE query_id = {id:String}", parameters={"id": query_id}).result_rows
                if rows:
                    on_progress(QueryProgress(*rows[0]))
                done.wait(PROGRESS_INTERVAL_S)
        except ClickHouseError:
            return
        finally:
            watcher.close()

    def insert_events(self, events: Sequence[Event], dedup_token: str) -> InsertResult:
        return self._insert_records("events", events, dedup_token)

    def insert_alerts(self, alerts: Sequence[Alert], dedup_token: str) -> InsertResult:
        return self._insert_records("alerts", alerts, dedup_token)

    def insert_columns(self, table: str, values: list[list[Any]], dedup_token: str) -> InsertResult:
        """Insert rows given as one list of values per column of ``table`` (:data:`TABLE_COLUMNS`), in order.

        The storage writer's way: it moves each message's values into these lists as it decodes it, so no object
        per row outlives its message. What cannot be stored is reported (``index`` into the lists), the rest
        stored; raises StoreUnavailable to be retried. Rows refused here never reach ClickHouse; rows ClickHouse
        refuses are isolated by splitting the batch, each part with a token derived from the batch's, so a retry
        of the whole is still idempotent.
        """
        if not values[0]:
            return InsertResult(0, [])
        arrow, kept, refused = _arrow_table_of_valid(TABLE_COLUMNS[table], values)
        if kept:
            written, server_refused = self._insert_isolating(table, arrow, kept, dedup_token)
        else:
            written, server_refused = 0, []
        return InsertResult(written, sorted(refused + server_refused, key=attrgetter("index")))

    def close(self) -> None:
        self._client.close()

    def _insert_records(self, table: str, records: Sequence[Any], token: str) -> InsertResult:
        values, kept, refused = column_values(TABLE_COLUMNS[table], records)
        result = self.insert_columns(table, values, token)
        stored_refused = [replace(r, index=kept[r.index]) for r in result.refused]
        return InsertResult(result.written, sorted(refused + stored_refused, key=attrgetter("index")))

    def _insert_isolating(
        self, table: str, arrow: pa.Table, indices: list[int], token: str
    ) -> tuple[int, list[Refused]]:
        try:
            self._client.insert_arrow(
                table, arrow, database=self.database,
                settings=self._insert_settings | {"insert_deduplication_token": token}
            )
            return arrow.num_rows, []
        except ClickHouseError as exc:
            if getattr(exc, "code", None) not in DATA_ERROR_CODES:
                raise StoreUnavailable(_transport_error(exc)) from exc
            if arrow.num_rows == 1:
                return 0, [Refused(indices[0], "clickhouse_refused", str(exc))]
        half = arrow.num_rows // 2
        first = self._insert_isolating(table, arrow.slice(0, half), indices[:half], f"{token}.0")
        second = self._insert_isolating(table, arrow.slice(half), indices[half:], f"{token}.1")
        return first[0] + second[0], first[1] + second[1]


def arrow_table(columns: tuple[Column, ...], records: Sequence[Any]) -> pa.Table:
    """The records as one Arrow table; raises (see _CONVERSION_ERRORS) if any value does not fit its column."""
    return _arrow(columns, [[column.value(r) for r in records] for column in columns])


def column_values(
    columns: tuple[Column, ...], records: Sequence[Any], *, typed: bool = False
) -> tuple[list[list[Any]], list[int], list[Refused]]:
    """``records`` as one list of values per column, the indices of the records in them, and the records refused
    because a getter refused a value's type (see :func:`_exactly`). ``typed``: a typed decoder built the records,
    so their types are not checked again (see :class:`Column`)."""
    getters = [column.read if typed else column.value for column in columns]
    try:
        return [list(map(get, records)) for get in getters], list(range(len(records))), []
    except _CONVERSION_ERRORS:
        pass
    rows, kept, refused = [], [], []
    for index, record in enumerate(records):
        row = []
        for column, get in zip(columns, getters, strict=True):
            try:
                row.append(get(record))
            except _CONVERSION_ERRORS as exc:
                refused.append(Refused(index, "invalid_row", f"column {column.name}: {exc}"))
                break
        else:
            rows.append(row)
            kept.append(index)
    return [list(values) for values in zip(*rows, strict=True)] or [[] for _ in columns], kept, refused


def _arrow(columns: tuple[Column, ...], values: list[list[Any]]) -> pa.Table:
    arrays = [pa.array(cells, type=column.type) for column, cells in zip(columns, values, strict=True)]
    return pa.Table.from_arrays(arrays, names=[column.name for column in columns])


def _arrow_table_of_valid(columns: tuple[Column, ...], values: list[list[Any]]
                          ) -> tuple[pa.Table, list[int], list[Refused]]:
    """The values as Arrow, the rows kept, and the rows refused with the first column each does not fit.

    The slow path, value by value, is taken only for a column that holds a bad value.
    """
    try:
        return _arrow(columns, values), list(range(len(values[0]))), []
    except _CONVERSION_ERRORS:
        pass
    bad: dict[int, str] = {}
    for column, cells in zip(columns, values, strict=True):
        try:
            pa.array(cells, type=column.type)
            continue
        except _CONVERSION_ERRORS:
            pass
        for index, value in enumerate(cells):
            try:
                pa.array([value], type=column.type)
            except _CONVERSION_ERRORS as exc:
                bad.setdefault(index, f"column {column.name}: {exc}")
    kept = [index for index in range(len(values[0])) if index not in bad]
    refused = [Refused(index, "invalid_row", detail) for index, detail in sorted(bad.items())]
    return _arrow(columns, [[cells[i] for i in kept] for cells in values]), kept, refused


def _any_statement(sql: str) -> None:
    """A server judges every statement itself."""


def _embedded_statement_check(sql: str) -> None:
    """The embedded engine is refused what it cannot run, before it can leave a table that bricks its directory."""
    try:
        embedded.refuse_unrunnable(sql)
    except embedded.UnrunnableEngine as exc:
        raise StoreError(str(exc)) from exc


def _store_error(exc: ClickHouseError) -> StoreError:
    """Server-side errors with a code are ClickHouse refusing the request; anything else is transport."""
    if getattr(exc, "code", None) is None:
        return StoreUnavailable(_transport_error(exc))
    message = str(exc)
    return StoreError(message[message.find("Code:"):] if "Code:" in message else message, exc.code)


def _transport_error(exc: BaseException) -> str:
    """The client's message plus the first cause (refused, timed out …), which its own message leaves out."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    return str(exc) if root is exc else f"{exc}: {type(root).__name__}: {root}"
