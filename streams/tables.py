"""The open-alerts table: alert suppression's store in a stream worker, partitioned like the pod's events.

:class:`~vigil.detections.suppression.AlertSuppression` keeps one entry per (detection, dedup key) and names in
it the Kafka key of the events that opened the alert (``route``). This store writes each entry to the
changelog partition that key's raw messages use (the producer's partitioner over the raw topics' partition
count: murmur2 of the key), not to the partition of the table key: Faust assigns a worker the changelog
partitions numbered like its raw partitions, so whoever receives a pod's events after a rebalance or a crash
has restored that pod's open alerts and recent hits before it processes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import faust
import orjson
from aiokafka.partitioner import murmur2


class RoutedTableStore:
    """A :class:`~vigil.detections.state.StateStore` over a Faust table whose values are dicts naming their
    ``route``: values are orjson bytes under UTF-8 key bytes, each written to ``route``'s partition."""

    def __init__(self, table: faust.Table, partitions: int) -> None:
        self._table = table
        self._partitions = partitions

    def get(self, key: str) -> Any | None:
        value = self._table.get(key.encode())
        return None if value is None else orjson.loads(value)

    def set(self, key: str, value: dict[str, Any]) -> None:
        encoded_key, encoded = key.encode(), orjson.dumps(value)
        partition = self.partition(value["route"])
        store = self._table.data
        store[encoded_key] = encoded  # the local copy; the changelog is written here, to the partition chosen
        # Faust's memory store notes the partition of the keys it restores, and after each rebalance drops those
        # of partitions this worker no longer has; noting the keys written here too means a worker does not keep
        # (and later expire, writing a tombstone over the new owner's entry) the open alerts of a partition that
        # moved to another worker.
        store._key_partition[encoded_key] = partition
        self._table.send_changelog(partition, encoded_key, encoded)

    def delete(self, key: str) -> None:
        encoded_key = key.encode()
        store = self._table.data
        value = store.pop(encoded_key, None)
        store._key_partition.pop(encoded_key, None)
        if value is not None:
            partition = self.partition(orjson.loads(value)["route"])
            self._table.send_changelog(partition, encoded_key, None, value_serializer="raw")

    def keys(self) -> Iterator[str]:
        return iter([key.decode() for key in self._table.data])

    def __len__(self) -> int:
        return len(self._table.data)

    def partition(self, route: str) -> int:
        """The partition the producer's default partitioner gives messages keyed ``route``."""
        return (murmur2(route.encode()) & 0x7FFFFFFF) % self._partitions
