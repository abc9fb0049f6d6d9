"""A bounded, ordered, crash-safe on-disk queue of Kafka messages for when Kafka is unreachable.

Layout: numbered segment files of length-prefixed entries (``<u32 length><u16 topic len><topic><u16 key
len><key><value>``) plus a ``position`` file naming the segment and byte offset of the oldest entry not yet
acknowledged by Kafka. A message sent to a chosen partition sets the topic length's high bit and has a
``<u16 partition>`` after its topic, so spools written before partitions existed read as they always did.
Appends are fsynced before the caller is told its data is safe; the position is rewritten atomically after
each acknowledged entry, so a restart replays from the first unacknowledged message
(at-least-once; downstream deduplicates on deterministic event ids).
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vigil import metrics

_ENTRY = struct.Struct(">I")
_FIELD = struct.Struct(">H")
#: Set in an entry's topic length when a partition number follows the topic (topic names are far shorter).
_HAS_PARTITION = 0x8000
SEGMENT_BYTES = 64 * 1024 * 1024
READ_BYTES = 8 * 1024 * 1024


@dataclass(slots=True, frozen=True)
class Message:
    """One Kafka message as the collector sends it."""

    topic: str
    key: str
    value: bytes
    partition: int | None = None  # None: Kafka's partitioner chooses by key


class SpoolInUse(RuntimeError):
    """Another process holds this spool; each collector process needs a spool directory of its own."""


class SpoolFull(RuntimeError):
    """The spool reached its size bound: the caller must refuse new data (and count it) rather than lose it."""


class DiskSpool:
    def __init__(self, directory: Path, max_bytes: int, component: str) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_exclusively(directory / "lock")
        self._max_bytes = max_bytes
        self._component = component
        self._segment, self._offset = self._read_position()
        self._size = self._measure()
        metrics.SPOOL_BYTES.labels(component).set(self._size)

    @property
    def bytes_pending(self) -> int:
        return self._size

    def close(self) -> None:
        self._lock.close()

    def __bool__(self) -> bool:
        return self._size > 0

    def append(self, messages: list[Message]) -> None:
        """Durably append messages in order, or raise :class:`SpoolFull` having written none of them."""
        blob = b"".join(_encode(m) for m in messages)
        if self._size + len(blob) > self._max_bytes:
            raise SpoolFull(f"spool {self._dir} would exceed {self._max_bytes} bytes")
        path = self._segment_path(self._tail_segment())
        if path.exists() and path.stat().st_size >= SEGMENT_BYTES:
            path = self._segment_path(self._tail_segment() + 1)
        with open(path, "ab") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        self._size += len(blob)
        metrics.SPOOL_BYTES.labels(self._component).set(self._size)

    def peek(self, limit: int) -> list[tuple[Message, int]]:
        """Up to ``limit`` of the oldest messages, each with its encoded size (to pass to :meth:`ack`)."""
        self._skip_exhausted()
        path = self._segment_path(self._segment)
        if not self._size or not path.exists():
            return []
        with open(path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read(READ_BYTES)
            if len(data) >= _ENTRY.size:
                data += fh.read(max(0, _ENTRY.size + _ENTRY.unpack_from(data)[0] - len(data)))
        out: list[tuple[Message, int]] = []
        for entry in _decode_all(data):
            out.append(entry)
            if len(out) == limit:
                break
        return out

    def ack(self, sizes: list[int]) -> None:
        """Mark the oldest messages (as returned by :meth:`peek`) as delivered."""
        done = sum(sizes)
        self._offset += done
        self._size -= done
        self._skip_exhausted()
        self._write_position()
        metrics.SPOOL_BYTES.labels(self._component).set(self._size)

    def _skip_exhausted(self) -> None:
        """Delete segments that are fully delivered; an empty spool starts over at offset 0."""
        if not self._size:
            for number in self._segments():
                self._segment_path(number).unlink()
            self._offset = 0
            return
        while self._segment < self._tail_segment():
            path = self._segment_path(self._segment)
            if path.exists() and self._offset < path.stat().st_size:
                return
            path.unlink(missing_ok=True)
            self._segment, self._offset = self._segment + 1, 0

    def _segment_path(self, number: int) -> Path:
        return self._dir / f"{number:012d}.seg"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self._dir.glob("*.seg"))

    def _tail_segment(self) -> int:
        segments = self._segments()
        return segments[-1] if segments else self._segment

    def _measure(self) -> int:
        """Bytes not yet delivered, after cutting a torn entry a crash left at the tail."""
        total = 0
        for number in self._segments():
            path = self._segment_path(number)
            if number < self._segment:
                path.unlink()
                continue
            if number == self._tail_segment():
                data = path.read_bytes()
                good = sum(size for _, size in _decode_all(data))
                if good < len(data):
                    os.truncate(path, good)
            total += path.stat().st_size - (self._offset if number == self._segment else 0)
        return max(total, 0)

    def _read_position(self) -> tuple[int, int]:
        try:
            segment, offset = (self._dir / "position").read_text().split()
            return int(segment), int(offset)
        except (OSError, ValueError):
            segments = self._segments()
            return (segments[0] if segments else 0), 0

    def _write_position(self) -> None:
        tmp = self._dir / "position.tmp"
        tmp.write_text(f"{self._segment} {self._offset}\n")
        os.replace(tmp, self._dir / "position")


def _lock_exclusively(path: Path) -> BinaryIO:
    """Two collectors appending to one spool would interleave and corrupt it: the second one is refused."""
    handle = open(path, "ab")  # noqa: SIM115 - held for the spool's lifetime; the lock dies with the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SpoolInUse(f"spool {path.parent} is in use by another collector process; give this one its own "
                         "VIGIL_COLLECTOR_SPOOL_DIR") from None
    return handle


def _encode(message: Message) -> bytes:
    topic, key = message.topic.encode(), message.key.encode()
    if message.partition is None:
        head = _FIELD.pack(len(topic)) + topic
    else:
        head = _FIELD.pack(len(topic) | _HAS_PARTITION) + topic + _FIELD.pack(message.partition)
    body = head + _FIELD.pack(len(key)) + key + message.value
    return _ENTRY.pack(len(body)) + body


def _decode_all(data: bytes) -> Iterator[tuple[Message, int]]:
    """Yield (message, encoded size) for each complete entry; a torn tail (crash mid-append) is ignored."""
    pos = 0
    while pos + _ENTRY.size <= len(data):
        (length,) = _ENTRY.unpack_from(data, pos)
        end = pos + _ENTRY.size + length
        if end > len(data):
            return
        body = memoryview(data)[pos + _ENTRY.size : end]
        (tlen,) = _FIELD.unpack_from(body, 0)
        partition, tlen = (None, tlen) if tlen < _HAS_PARTITION else (0, tlen & ~_HAS_PARTITION)
        topic = bytes(body[2 : 2 + tlen]).decode()
        key_at = 2 + tlen
        if partition is not None:
            (partition,) = _FIELD.unpack_from(body, key_at)
            key_at += _FIELD.size
        (klen,) = _FIELD.unpack_from(body, key_at)
        key_start = key_at + _FIELD.size
        key = bytes(body[key_start : key_start + klen]).decode()
        yield Message(topic, key, bytes(body[key_start + klen :]), partition), end - pos
        pos = end
