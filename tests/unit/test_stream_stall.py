"""The stream worker's watch for partitions whose committed offset stopped moving while records wait."""

from __future__ import annotations

from vigil.streams.stall import StallWatch


def test_a_partition_with_records_waiting_and_no_progress_is_stalled_after_the_delay() -> None:
    watch = StallWatch(after_s=30)
    assert watch.stalled(0, {"p0": 10, "p1": 5}, {"p0": 12, "p1": 5}) == []
    assert watch.stalled(29, {"p0": 10, "p1": 5}, {"p0": 12, "p1": 5}) == []
    assert watch.stalled(30, {"p0": 10, "p1": 5}, {"p0": 12, "p1": 9}) == ["p0"]  # p1's records just arrived
    assert watch.stalled(60, {"p0": 10, "p1": 5}, {"p0": 12, "p1": 9}) == ["p0", "p1"]


def test_progress_or_an_idle_partition_resets_the_clock() -> None:
    watch = StallWatch(after_s=30)
    watch.stalled(0, {"p0": 10}, {"p0": 20})
    assert watch.stalled(25, {"p0": 11}, {"p0": 20}) == []  # moved on
    assert watch.stalled(50, {"p0": 11}, {"p0": 20}) == []  # 25 s since it moved
    assert watch.stalled(56, {"p0": 11}, {"p0": 20}) == ["p0"]
    assert watch.stalled(57, {"p0": 20}, {"p0": 20}) == []  # caught up: nothing waits
    assert watch.stalled(100, {"p0": 20}, {"p0": 20}) == []


def test_a_partition_assigned_again_starts_over() -> None:
    watch = StallWatch(after_s=30)
    watch.stalled(0, {"p0": 10}, {"p0": 20})
    watch.stalled(20, {}, {})  # revoked
    assert watch.stalled(40, {"p0": 10}, {"p0": 20}) == []  # assigned back at 40: its clock starts there
    assert watch.stalled(70, {"p0": 10}, {"p0": 20}) == ["p0"]


def test_paused_partitions_wait_as_long_as_the_restore_reads() -> None:
    watch = StallWatch(after_s=30)
    for second, restored in ((0, 0), (25, 400), (50, 900), (75, 1000)):
        assert watch.stalled(second, {"p0": 10}, {"p0": 20}, restored=restored) == []
    assert watch.stalled(100, {"p0": 10}, {"p0": 20}, restored=1000) == []  # 25 s since the restore read
    assert watch.stalled(105, {"p0": 10}, {"p0": 20}, restored=1000) == ["p0"]  # the restore stopped 30 s ago


def test_a_restore_that_never_reads_stalls_its_partitions() -> None:
    watch = StallWatch(after_s=30)
    assert watch.stalled(0, {"p0": 10, "p1": 4}, {"p0": 20, "p1": 4}, restored=0) == []
    assert watch.stalled(30, {"p0": 10, "p1": 4}, {"p0": 20, "p1": 4}, restored=0) == ["p0"]  # p1 has nothing waiting


def test_the_clock_starts_over_when_the_restore_ends() -> None:
    watch = StallWatch(after_s=30)
    watch.stalled(0, {"p0": 10}, {"p0": 20}, restored=0)
    watch.stalled(20, {"p0": 10}, {"p0": 20}, restored=50)
    assert watch.stalled(45, {"p0": 10}, {"p0": 20}) == []  # restored at 20: 25 s of no reading since
    assert watch.stalled(50, {"p0": 10}, {"p0": 20}) == ["p0"]
