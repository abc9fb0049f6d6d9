"""The writer's memory of the event ids it stored, which keeps a stream worker's re-sent events out of inserts."""

from __future__ import annotations

from vigil.storage.writer import RecentIds


def test_new_rows_leave_out_stored_ids_and_repeats_in_order() -> None:
    recent = RecentIds(10)
    recent.add(["a", "b"])
    assert recent.new_rows(["b", "c", "a", "d", "c"]) == [1, 3]
    assert len(recent) == 2  # nothing is remembered before the insert is acknowledged


def test_the_oldest_ids_are_forgotten_beyond_the_capacity() -> None:
    recent = RecentIds(3)
    recent.add(["a", "b", "c"])
    recent.add(["b", "d"])  # b was stored already: it keeps its place
    assert len(recent) == 3
    assert "a" not in recent
    assert all(event_id in recent for event_id in ("b", "c", "d"))


def test_a_capacity_of_zero_remembers_nothing() -> None:
    recent = RecentIds(0)
    recent.add(["a"])
    assert "a" not in recent
    assert recent.new_rows(["a", "a"]) == [0]
