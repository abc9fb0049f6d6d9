"""Stalled partitions: assigned to this worker, records waiting in Kafka, and no progress for a while.

Faust can stop processing a partition and stay up, its other partitions going on. Kafka keeps the records
(uncommitted, nothing is lost), but that part of the stream stops until the worker restarts. Seen in the 3-broker
failover tests, where a broker died while the worker's group rebalanced:

- the rebalance ended with one or two raw partitions never resumed;
- the worker stayed in its table restore for good, four of six raw partitions paused with records waiting;
- the agent crashed on a changelog write while the producer's metadata had lost the changelog topic. Faust
  restarted it, but the crashed batch was never acknowledged, so no commit could pass it. Meanwhile the consumer
  went on fetching, so fetch positions moved as if all were well.

Progress is therefore the group's committed offset, which moves only past records processed and acknowledged.
:class:`StallWatch` notices a stall from offsets alone, so the worker can restart itself (:mod:`vigil.streams.app`):
its successor rejoins the group and reads the partitions from their committed offsets.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass


@dataclass(slots=True)
class _Progress:
    offset: int
    since: float


class StallWatch:
    """Remembers, per partition, the committed offset it last moved to and when; a partition is stalled when it
    has records beyond that offset (its end offset is further) and the offset has not moved for ``after_s``.

    While the worker restores its tables from their changelogs, Faust holds its raw partitions paused: they are
    expected not to move as long as the restore does. The restore's own progress (``restored``, any count that grows
    as it reads) restarts their clocks; a restore that stopped moving leaves the raw partitions stalled like any
    other."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self._progress: dict[Hashable, _Progress] = {}
        self._restored: _Progress | None = None

    def stalled(self, now: float, committed: Mapping[Hashable, int], ends: Mapping[Hashable, int],
                restored: int | None = None) -> list[Hashable]:
        """The stalled partitions among those assigned now (``committed``: the offset processing goes on from,
        ``ends``: the log's end offsets); partitions no longer assigned are forgotten. ``now`` is monotonic
        seconds; ``restored`` is how far the restore of the tables got, ``None`` when none runs."""
        for gone in self._progress.keys() - committed.keys():
            del self._progress[gone]
        restoring = self._restore_moved(now, restored)
        stalled = []
        for partition, offset in committed.items():
            progress = self._progress.get(partition)
            if progress is None or restoring or progress.offset != offset or ends.get(partition, 0) <= offset:
                self._progress[partition] = _Progress(offset, now)  # moved, new, paused, or nothing to read
                continue
            if now - progress.since >= self.after_s:
                stalled.append(partition)
        return stalled

    def _restore_moved(self, now: float, restored: int | None) -> bool:
        """Whether a restore runs and read something since the last call (or started)."""
        if restored is None:
            self._restored = None
            return False
        if self._restored is None or self._restored.offset != restored:
            self._restored = _Progress(restored, now)
            return True
        return False
