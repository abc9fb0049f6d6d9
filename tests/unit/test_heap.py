"""The garbage collector as long-running processes set it (vigil.heap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from vigil import heap


@pytest.fixture
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settle_keeps_what_is_loaded_out_of_later_collections_and_collects_young_objects_less_often(
        collector: None) -> None:
    loaded = [{"kept": n} for n in range(1000)]
    heap.settle()
    assert gc.get_threshold() == heap.THRESHOLDS
    assert gc.get_freeze_count() >= len(loaded)


def test_cycles_made_after_settling_are_still_collected(collector: None) -> None:
    heap.settle()

    class Node:
        pass

    first, second = Node(), Node()
    first.other, second.other = second, first
    marker = id(first)
    del first, second
    assert gc.collect() >= 2
    assert all(id(obj) != marker for obj in gc.get_objects() if isinstance(obj, Node))
