"""The stream worker's two Faust tables as the engine's stores, and the changelog records their writes wait to send.

Both tables hold orjson bytes under UTF-8 key bytes (the form Faust's raw codec restores from the changelog), in
its memory store, restored from the changelog when a worker starts or takes a partition over.

- :class:`TableStore`, the state of windowed and sequence detections: keyed by state key, which for sequences is
  the correlation key, i.e. the Kafka key of the raw messages; each write goes to the changelog partition the
  producer's partitioner gives that key, the one that pairs with the raw partition its events arrive on.
- :class:`RoutedTableStore`, the open alerts: :class:`~vigil.detections.suppression.AlertSuppression` keeps one
  entry per (detection, dedup key) and names in it the Kafka key of the events that opened the alert
  (``route``). Each entry goes to the partition of that key's raw messages, not of the table key: Faust assigns
  a worker the changelog partitions numbered like its raw partitions, so whoever receives a pod's events after a
  rebalance or a crash has restored that pod's open alerts and recent hits before it processes them.

Writes change the local copy at once and queue their changelog record in :class:`Changelog`; the agent sends
the records with the batch's outputs and acks the batch only once Kafka has all of them, which is the guarantee
Faust gives by flushing its producer buffer before it commits. Faust's own path (``table[key] = value``) hands
each write to a buffer that sends them one at a time, and stops the agent whenever more than 100 wait: a batch
that opens or updates a few hundred alerts stalled there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import faust
import orjson
from aiokafka.partitioner import murmur2

#: A changelog record: topic, partition, key, value (``None``: the key was deleted).
ChangelogRecord = tuple[str, int, bytes, bytes | None]


class Changelog:
    """The changelog records of the tables' writes since they were last taken."""

    def __init__(self) -> None:
        self._records: list[ChangelogRecord] = []

    def write(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        self._records.append((topic, partition, key, value))

    def take(self) -> list[ChangelogRecord]:
        """The records waiting, in the order written, and none left."""
        records, self._records = self._records, []
        return records


def partition_of(key: str, partitions: int) -> int:
    """The partition the producer's default partitioner gives messages keyed ``key`` (murmur2 of its bytes)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class TableStore:
    """A :class:`~vigil.detections.state.StateStore` over a Faust table, each key's changelog record written to
    the partition of the key."""

    def __init__(self, table: faust.Table, partitions: int, changelog: Changelog) -> None:
        self._table = table
        self._topic = table.changelog_topic.get_topic_name()
        self._partitions = partitions
        self._changelog = changelog

    def get(self, key: str) -> Any | None:
        value = self._table.data.get(key.encode())
        return None if value is None else orjson.loads(value)

    def set(self, key: str, value: Any) -> None:
        self._write(key.encode(), orjson.dumps(value), self._partition(key, value))

    def delete(self, key: str) -> None:
        encoded_key = key.encode()
        value = self._table.data.pop(encoded_key, None)
        self._table.data._key_partition.pop(encoded_key, None)
        if value is not None:
            self._changelog.write(self._topic, self._partition(key, orjson.loads(value)), encoded_key, None)

    def keys(self) -> Iterator[str]:
        return iter([key.decode() for key in self._table.data])

    def __len__(self) -> int:
        return len(self._table.data)

    def _partition(self, key: str, value: Any) -> int:
        return partition_of(key, self._partitions)

    def _write(self, key: bytes, value: bytes, partition: int) -> None:
        store = self._table.data
        store[key] = value
        # Faust's memory store notes the partition of the keys it restores, and after each rebalance drops those
        # of partitions this worker no longer has; noting the keys written here too means a worker does not keep
        # (and later expire, writing a tombstone over the new owner's entry) the keys of a partition that moved
        # to another worker.
        store._key_partition[key] = partition
        self._changelog.write(self._topic, partition, key, value)


class RoutedTableStore(TableStore):
    """A :class:`TableStore` whose values are dicts naming their ``route``: each is written to the partition of
    the route, not of its key."""

    def partition(self, route: str) -> int:
        """The partition the producer's default partitioner gives messages keyed ``route``."""
        return partition_of(route, self._partitions)

    def _partition(self, key: str, value: Any) -> int:
        return self.partition(value["route"])
