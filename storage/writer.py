"""The storage writer: moves events and alerts from Kafka into ClickHouse without losing or doubling rows.

The contract with Kafka is "commit only what ClickHouse has acknowledged": offsets are committed per
partition after the insert returned, so a crash at any point re-reads everything not yet stored.

Re-reading must not double what was stored just before the crash. Each insert carries a deduplication
token naming its exact source range (topic, partition, first and last offset, and the first and last
message timestamps, which tell a recreated topic's offset 0 from the old one's). ClickHouse drops an insert
whose token it has seen. That only helps if the re-read forms the very same batch, and batch boundaries
depend on timing. So before inserting, the writer records the range it is about to store in Kafka itself,
as the metadata of an offset commit that leaves the committed offset where it was
(``vigil-pending:<last offset>``). Whoever reads the partition next (this process after a restart, or
another writer after a rebalance) finds that note and stores exactly that range again first, under the same
token. Events additionally sit in a ReplacingMergeTree keyed by event id, which collapses duplicates that
arrive by other paths.

The commonest other path is the stream worker: it is at least once, so after a rebalance (a worker or a broker
gone) it processes the raw messages it had not committed again and sends their events again, the same events
under the same ids, in later messages of the same partition (an event's partition is its pod's). Until a merge,
those copies would be rows counted twice. So the writer remembers the ids of the last events it stored
(``recent_event_ids``, :class:`RecentIds`) and leaves out of each insert the events it already stored and the
copies within the batch (``vigil_events_duplicates_dropped_total``). What it remembers is lost with the process:
a copy that reaches a writer restarted since, or another writer, is left to the merge.

Each message is decoded straight into its table's columns (one list of values per column; storage/stored_events.py
parses only the fields a column reads), and the decoded objects go as soon as their values are in the lists. A batch
holds those values and the messages, from which a row ClickHouse refuses is cut for its dead letter; each insert
builds its Arrow table once from the lists. Holding every event as objects until the flush cost ~3-6 KB each, and
the garbage collector's walks over them most of the writer's time.

Inserts run one per partition, so each has a range of its own, and all partitions are flushed together
when ``batch_rows`` rows or ``batch_seconds`` have accumulated. While ClickHouse is unavailable the writer
retries with backoff and reads nothing more (Kafka holds the backlog); records that can never be stored go
to the dead-letter topic with the reason, and the rest of their batch goes on.

On a ClickHouse cluster nothing here changes: the store inserts through the Distributed tables synchronously
(storage/clickhouse.py), so an insert returns only once every shard has stored its part, and the commit after it
covers every shard. A shard that is down fails the insert, which is retried like any outage; each shard drops the
part of a retried batch it already holds by the same token. Inserting per shard from here was measured and not
faster beyond the noise (README, "ClickHouse cluster").
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import logging
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import Counter

from vigil import kafka, metrics
from vigil.alert import Alert
from vigil.config import Settings
from vigil.event import now_ns
from vigil.storage.clickhouse import (
    TABLE_COLUMNS,
    ClickHouseStore,
    Column,
    InsertResult,
    StoreUnavailable,
    column_values,
    connect,
)
from vigil.storage.schema import migrate
from vigil.storage.stored_events import Refusal, decode_message, event_bytes

log = logging.getLogger(__name__)

COMPONENT = "storage-writer"
GROUP_ID = "vigil-storage-writer"

#: Offset-commit metadata marking a range being stored: the last offset of that range follows the prefix.
PENDING = "vigil-pending:"

DUPLICATES = Counter("vigil_events_duplicates_dropped_total",
                     "Events left out of an insert because the writer had stored an event of that id already")

#: ClickHouse failures, each followed by a retry (rows refused for good are counted as rejected instead).
CLICKHOUSE_ERRORS = Counter("vigil_clickhouse_errors_total", "ClickHouse operations that failed and were retried",
                            ["operation"])

_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 30.0
_IDLE_POLL_MS = 1000

T = TypeVar("T")

#: Where the events' ids are among their columns, and each table's ``time``.
_EVENT_ID = [column.name for column in TABLE_COLUMNS["events"]].index("event_id")
_TIME = {table: [column.name for column in columns].index("time") for table, columns in TABLE_COLUMNS.items()}


class RecentIds:
    """The ids of the last ``capacity`` events stored, the oldest forgotten first (a capacity of 0 keeps none)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: set[str] = set()
        self._order: deque[str] = deque()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_ids: Iterable[str]) -> None:
        ids, order = self._ids, self._order
        for event_id in event_ids:
            if event_id not in ids:
                ids.add(event_id)
                order.append(event_id)
        while len(order) > self._capacity:
            ids.discard(order.popleft())

    def new_rows(self, event_ids: list[str]) -> list[int]:
        """The indices of the ids in ``event_ids`` not stored before and not repeating an earlier one, in order."""
        ids = self._ids
        batch: set[str] = set()
        kept = []
        for index, event_id in enumerate(event_ids):
            if event_id in ids or event_id in batch:
                continue
            batch.add(event_id)
            kept.append(index)
        return kept


class RowOrigins:
    """Where each row of a partition batch came from: its message, and its place in the message's array of events
    (None: the message is the record, as an alert is). A row refused at insert is dead-lettered with the bytes it
    came in, which are found only then: nothing is kept per row for it."""

    def __init__(self) -> None:
        self._starts: list[int] = []  # the first row of each message
        self._messages: list[tuple[bytes, Sequence[int] | None]] = []

    def add(self, start: int, value: bytes, places: Sequence[int] | None) -> None:
        self._starts.append(start)
        self._messages.append((value, places))

    def original(self, row: int) -> bytes:
        index = bisect.bisect_right(self._starts, row) - 1
        value, places = self._messages[index]
        return value if places is None else event_bytes(value, places[row - self._starts[index]])


@dataclass(slots=True)
class PartitionBatch:
    """Messages of one partition read but not yet stored, and their rows: one list of values per column of the
    table, filled as each message is decoded (no object per record outlives its message)."""

    tp: TopicPartition
    columns: tuple[Column, ...]
    replay_until: int | None = None  # last offset of a range a previous attempt was storing: store it exactly
    sealed: bool = False  # the replayed range is complete; later messages wait for the next batch
    first_offset: int = -1
    last_offset: int = -1
    first_timestamp: int = 0
    last_timestamp: int = 0
    values: list[list[Any]] = field(default_factory=list)
    origins: RowOrigins = field(default_factory=RowOrigins)
    refused: list[Refusal] = field(default_factory=list)  # not decodable

    def __post_init__(self) -> None:
        self.values = [[] for _ in self.columns]

    @property
    def empty(self) -> bool:
        return self.first_offset < 0

    @property
    def rows(self) -> int:
        return len(self.values[0])

    @property
    def ready(self) -> bool:
        """Something to store, and if it is a replayed range, all of it (a part would get another token)."""
        return not self.empty and (self.replay_until is None or self.sealed)

    @property
    def token(self) -> str:
        tp = self.tp
        return (f"{tp.topic}:{tp.partition}:{self.first_offset}-{self.last_offset}:"
                f"{self.first_timestamp}-{self.last_timestamp}")

    def add(self, message: ConsumerRecord) -> None:
        if self.empty:
            self.first_offset, self.first_timestamp = message.offset, message.timestamp
        self.last_offset, self.last_timestamp = message.offset, message.timestamp
        if self.replay_until is not None and message.offset >= self.replay_until:
            self.sealed = True

    def add_rows(self, records: list[Any], value: bytes, places: Sequence[int] | None, *, typed: bool) -> None:
        """Move the decoded ``records`` of the message ``value`` into the columns (``places``: see RowOrigins;
        ``typed``: see column_values)."""
        values, kept, refused = column_values(self.columns, records, typed=typed)
        self.refused += [(r.reason, r.detail, records[r.index].to_json()) for r in refused]
        if not kept:
            return
        if refused and places is not None:
            places = [places[index] for index in kept]
        self.origins.add(self.rows, value, places)
        for column, added in zip(self.values, values, strict=True):
            column += added

    def clear(self, replay_until: int | None = None) -> None:
        self.replay_until, self.sealed = replay_until, False
        self.first_offset = self.last_offset = -1
        self.values, self.origins, self.refused = [[] for _ in self.columns], RowOrigins(), []


class StorageWriter:
    """Consumes the events and alerts topics into ClickHouse; see the module docstring for the guarantees."""

    def __init__(self, settings: Settings, store: ClickHouseStore, *, group_id: str = GROUP_ID) -> None:
        self._settings = settings
        self._store = store
        self._tables = {settings.topic("events"): "events", settings.topic("alerts"): "alerts"}
        self._batches: dict[TopicPartition, PartitionBatch] = {}
        self._batch_started = 0.0
        self._lock = asyncio.Lock()  # one of: a flush, adding records, a rebalance giving partitions away
        self._generation = 0  # bumped on every revocation and assignment: records fetched before it are stale
        #: From a revocation to the next assignment: records still fetched then are the old assignment's, read
        #: past what was dropped with the revoked batches, so storing and committing them would skip that.
        self._awaiting_assignment = True
        self._group_id = group_id
        self._consumer = kafka.consumer(settings, group_id=group_id, max_poll_records=settings.clickhouse.batch_rows)
        self._sender = kafka.producer(settings)
        self._admin = AIOKafkaAdminClient(**kafka.client_options(settings.kafka))
        self._dead_letters = kafka.DeadLetters(settings, COMPONENT)
        self._latency = metrics.LATENCY.labels("store")
        self._received = {table: metrics.RECEIVED.labels(COMPONENT, table) for table in self._tables.values()}
        self._recent = RecentIds(settings.clickhouse.recent_event_ids)

    async def run(self, stop: asyncio.Event) -> None:
        """Migrate, then store until ``stop`` is set; then store what was read and commit it."""
        retention = self._settings.clickhouse.retention_days
        if await retry_unavailable(stop, "migrate", migrate, self._store, retention) is None:
            return
        self._consumer.subscribe(list(self._tables), listener=_Rebalance(self))
        try:
            await kafka.ensure_topics(self._settings, ["events", "alerts", "deadletter"])
            await self._sender.start()
            await self._admin.start()
            await self._consumer.start()
            log.info("storage writer started", extra={"topics": list(self._tables)})
            while not stop.is_set():
                await self._step(stop)
            async with self._lock:
                await self._flush(stop)
        finally:
            await self._consumer.stop()
            await self._admin.close()
            await self._sender.stop()
        log.info("storage writer stopped")

    async def _step(self, stop: asyncio.Event) -> None:
        generation = self._generation
        fetched = await self._consumer.getmany(timeout_ms=self._poll_timeout_ms())
        async with self._lock:
            if self._awaiting_assignment:
                return  # the next assignment positions every partition at its committed offset
            if generation != self._generation:
                await self._read_again(fetched)
                return
            for tp, messages in fetched.items():
                await self._add(tp, messages)
            if self._due():
                await self._flush(stop)
        await self._report_lag()

    async def _read_again(self, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Drop records fetched while partitions changed hands, and read them again from the committed offsets.

        The fetch began before the last assignment, so its records belong to no batch. They may already be the
        new assignment's, which then counts them as read: going on from there would skip them, and the next
        commit would cover them.
        """
        assigned = self._consumer.assignment()
        for tp in fetched:
            if tp not in assigned:
                continue
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)  # as auto_offset_reset="earliest" would
            else:
                self._consumer.seek(tp, committed)

    def _poll_timeout_ms(self) -> int:
        if not any(b.ready for b in self._batches.values()):
            return _IDLE_POLL_MS
        remaining = self._batch_started + self._settings.clickhouse.batch_seconds - time.monotonic()
        return max(0, min(_IDLE_POLL_MS, int(remaining * 1000)))

    async def _add(self, tp: TopicPartition, messages: list[ConsumerRecord]) -> None:
        batch = self._batches.get(tp) or await self._open(tp)
        if batch is None:
            self._consumer.seek(tp, messages[0].offset)
            return
        if all(b.empty for b in self._batches.values()):
            self._batch_started = time.monotonic()
        table = self._tables[tp.topic]
        decode = self._decode_events if table == "events" else self._decode_alert
        for message in messages:
            if batch.replay_until is not None and message.offset > batch.replay_until:
                if not batch.empty:
                    batch.sealed = True
                    self._consumer.seek(tp, message.offset)  # read again once the replayed range is stored
                    return
                batch.replay_until = None  # the range is no longer in the log (retention): nothing to replay
            batch.add(message)
            decode(batch, message)
            self._received[table].inc()

    async def _open(self, tp: TopicPartition) -> PartitionBatch | None:
        """Start tracking a newly assigned partition, picking up a range a previous attempt left pending.

        None if Kafka could not say whether there is one: the partition is then read again later.
        """
        try:
            committed = await self._admin.list_consumer_group_offsets(self._group_id, partitions=[tp])
        except KafkaError as exc:
            metrics.KAFKA_ERRORS.labels(COMPONENT, type(exc).__name__).inc()
            log.warning("cannot read committed offsets", extra={"topic": tp.topic, "partition": tp.partition,
                                                                "error": f"{type(exc).__name__}: {exc}"})
            return None
        metadata = committed[tp].metadata if tp in committed else ""
        replay_until = int(metadata.removeprefix(PENDING)) if metadata.startswith(PENDING) else None
        if replay_until is not None:
            log.info("replaying a pending range", extra={"topic": tp.topic, "partition": tp.partition,
                                                         "until_offset": replay_until})
        self._batches[tp] = batch = PartitionBatch(tp, TABLE_COLUMNS[self._tables[tp.topic]], replay_until)
        return batch

    def _decode_events(self, batch: PartitionBatch, message: ConsumerRecord) -> None:
        value = message.value or b""
        events, places, refused = decode_message(value)
        batch.refused += refused
        batch.add_rows(events, value, places, typed=True)

    def _decode_alert(self, batch: PartitionBatch, message: ConsumerRecord) -> None:
        value = message.value or b""
        try:
            record = orjson.loads(value)
            if not isinstance(record, dict):
                raise ValueError("alert is not a JSON object")
        except ValueError as exc:
            batch.refused.append(("undecodable", str(exc), value))
            return
        try:
            alert = Alert.from_dict(record)
        except (TypeError, ValueError) as exc:
            batch.refused.append(("invalid_alert", str(exc), value))
            return
        batch.add_rows([alert], value, None, typed=False)  # built from a dict: its types are not checked

    def _due(self) -> bool:
        pending = [b for b in self._batches.values() if b.ready]
        if not pending:
            return False
        rows = sum(b.rows for b in pending)
        expired = time.monotonic() - self._batch_started >= self._settings.clickhouse.batch_seconds
        return rows >= self._settings.clickhouse.batch_rows or expired or any(b.sealed for b in pending)

    async def _flush(self, stop: asyncio.Event) -> None:
        """Store every ready partition batch, then commit. Caller holds the lock.

        If anything fails before the commit, the partitions are rewound to their batch starts and the same
        ranges are stored again (under the same tokens) on the next attempt. A replayed range still being
        read waits: on shutdown it is left for the next run to replay.
        """
        pending = [b for b in self._batches.values() if b.ready]
        if not pending:
            return
        try:
            await self._consumer.commit(
                {b.tp: OffsetAndMetadata(b.first_offset, f"{PENDING}{b.last_offset}") for b in pending}
            )
            for batch in pending:
                if not await self._store_batch(batch, stop):
                    self._rewind(pending)
                    return
            await self._consumer.commit({b.tp: OffsetAndMetadata(b.last_offset + 1, "") for b in pending})
        except KafkaError as exc:
            metrics.KAFKA_ERRORS.labels(COMPONENT, type(exc).__name__).inc()
            log.warning("kafka failed during a flush; the batch will be stored again",
                        extra={"error": f"{type(exc).__name__}: {exc}"})
            self._rewind(pending)
            return
        for batch in pending:
            batch.clear()

    async def _store_batch(self, batch: PartitionBatch, stop: asyncio.Event) -> bool:
        """Insert one partition's rows and dead-letter what was refused; False if stopped while retrying."""
        table = self._tables[batch.tp.topic]
        values, rows = batch.values, range(batch.rows)
        if table == "events":
            # Only the ids stored by acknowledged inserts are remembered, so a retry of this batch (same token)
            # leaves out the same events as this attempt.
            rows = self._recent.new_rows(values[_EVENT_ID])
            if len(rows) < batch.rows:
                values = [[column[row] for row in rows] for column in values]
        result: InsertResult | None = await retry_unavailable(stop, f"insert_{table}", self._store.insert_columns,
                                                              table, values, batch.token)
        if result is None:
            return False
        metrics.ROWS_WRITTEN.labels(table).inc(result.written)
        refused = {r.index for r in result.refused}
        stored = [index for index in range(len(rows)) if index not in refused]
        now, times = now_ns(), values[_TIME[table]]
        for index in stored:
            self._latency.observe(max(0, now - times[index]) / 1e9)
        if table == "events":
            ids = values[_EVENT_ID]
            self._recent.add(ids[index] for index in stored)
            if len(rows) < batch.rows:
                DUPLICATES.inc(batch.rows - len(rows))
        for row in result.refused:
            await self._dead_letters.send(self._sender, table, row.reason, row.detail,
                                          batch.origins.original(rows[row.index]))
        for reason, detail, raw in batch.refused:
            await self._dead_letters.send(self._sender, table, reason, detail, raw)
        return True

    def _rewind(self, pending: list[PartitionBatch]) -> None:
        assigned = self._consumer.assignment()
        for batch in pending:
            if batch.tp in assigned:
                self._consumer.seek(batch.tp, batch.first_offset)
            batch.clear(replay_until=batch.last_offset)

    async def _report_lag(self) -> None:
        kafka.report_lag(COMPONENT, await kafka.assigned_offsets(self._consumer), self._tables)

    async def _partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Forget what was read from partitions going elsewhere; their next owner reads them again."""
        async with self._lock:
            self._generation += 1
            self._awaiting_assignment = True
            for tp in revoked:
                self._batches.pop(tp, None)

    async def _partitions_assigned(self) -> None:
        async with self._lock:
            self._generation += 1
            self._awaiting_assignment = False


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, writer: StorageWriter) -> None:
        self._writer = writer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._writer._partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Records may be used again (a partition's pending range is looked up when its first records arrive)."""
        await self._writer._partitions_assigned()


async def retry_unavailable(stop: asyncio.Event, operation: str, call: Callable[..., T], *args: Any) -> T | None:
    """Run a blocking store call in a thread until ClickHouse takes it, backing off; None if ``stop`` came first."""
    delay = _BACKOFF_FIRST_S
    while True:
        try:
            return await asyncio.to_thread(call, *args)
        except StoreUnavailable as exc:
            CLICKHOUSE_ERRORS.labels(operation).inc()
            log.warning("ClickHouse unavailable, retrying",
                        extra={"operation": operation, "error": str(exc), "retry_in_s": delay})
        if stop.is_set():
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        delay = min(delay * 2, _BACKOFF_MAX_S)


async def run_writer(settings: Settings, stop: asyncio.Event | None = None, group_id: str = GROUP_ID) -> None:
    """Run the storage writer until ``stop`` is set (by default: until SIGTERM or SIGINT).

    Writers of one deployment share ``group_id``; another deployment on the same Kafka (another topic prefix)
    needs its own, or each writer's rebalance stalls the other's (a rebalance waits for every member).
    """
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    store = await retry_unavailable(stop, "connect", functools.partial(connect, settings.clickhouse,
                                                                      data_dir=settings.data_dir))
    if store is None:
        return
    try:
        await StorageWriter(settings, store, group_id=group_id).run(stop)
    finally:
        store.close()
