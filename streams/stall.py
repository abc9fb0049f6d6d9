"""Stalled partitions: assigned to this worker, records waiting in Kafka, and no progress for a while.

Faust can leave a partition unread after a rebalance that interrupts another: seen when a broker of a 3-broker
cluster died while the worker's group rebalanced (the group coordinator moved), in a few of the failover tests. The
worker stays up and keeps its other partitions, Kafka keeps the records (uncommitted, nothing is lost), but that
part of the stream stops until the worker restarts. :class:`StallWatch` notices it from offsets alone, so the
worker can restart itself (:mod:`vigil.streams.app`): its successor rejoins the group and reads the partitions
from their committed offsets.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass


@dataclass(slots=True)
class _Progress:
    position: int
    since: float


class StallWatch:
    """Remembers, per partition, the position it last moved to and when; a partition is stalled when it has
    records beyond its position (its end offset is further) and the position has not moved for ``after_s``."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self._progress: dict[Hashable, _Progress] = {}

    def stalled(self, now: float, positions: Mapping[Hashable, int], ends: Mapping[Hashable, int],
                after_s: float | None = None) -> list[Hashable]:
        """The stalled partitions among those assigned now (``positions``: the next offset to fetch, ``ends``:
        the log's end offsets); partitions no longer assigned are forgotten. ``now`` is monotonic seconds;
        ``after_s`` overrides the delay for this call (longer while the worker restores its tables)."""
        after_s = self.after_s if after_s is None else after_s
        for gone in self._progress.keys() - positions.keys():
            del self._progress[gone]
        stalled = []
        for partition, position in positions.items():
            progress = self._progress.get(partition)
            if progress is None or progress.position != position or ends.get(partition, 0) <= position:
                self._progress[partition] = _Progress(position, now)  # moved, new, or nothing to read
                continue
            if now - progress.since >= after_s:
                stalled.append(partition)
        return stalled
