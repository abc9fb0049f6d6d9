"""Where the engine keeps the partial matches of windowed and sequence detections between events.

The engine reads and writes state through :class:`StateStore`, so the same detections run on a plain dict
in ``vigil replay`` and on a Faust table in the stream workers, where every write goes to a changelog topic
and a restarted or rebalanced worker gets its partitions' state back. Values are JSON-able (dicts, lists,
strings, numbers): what a changelog can carry. Keys are state keys: a pod's correlation key for
sequences (the Kafka key of its raw messages, so a key's state lives on the partition its events use), a
group for thresholds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol


class StateStore(Protocol):
    """A mapping from state key to a JSON-able value; the engine calls ``set`` only when a value changed."""

    def get(self, key: str) -> Any | None: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...

    def keys(self) -> Iterator[str]: ...

    def __len__(self) -> int: ...


class DictStore:
    """State in process memory, for replay, tests and examples: values are kept as the objects they are."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    def get(self, key: str) -> Any | None:
        return self._data.get(key)

    def set(self, key: str, value: Any) -> None:
        self._data[key] = value

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def keys(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)


class CountingStore(DictStore):
    """A dict store that counts writes: each would be a changelog message of a stream worker's Faust table
    (what ``vigil bench detect`` reports, and what tests of the engine's write economy count)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def set(self, key: str, value: Any) -> None:
        self.writes += 1
        super().set(key, value)
