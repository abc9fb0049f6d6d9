"""Reading a BPF ring buffer map straight from its shared memory.

libbpf's ``ring_buffer__poll`` calls back into Python once per record; through ctypes that callback alone
costs about a microsecond, which caps the consumer near the rates the sensor must sustain. The ring buffer's
layout is a stable kernel ABI instead (``kernel/bpf/ringbuf.c``): a consumer-position page the reader
writes, then a read-only producer-position page followed by the data area mapped twice in a row, so a
record that wraps around the end is still contiguous. Each record is an 8-byte header (length with
BUSY/DISCARD bits, page offset) and its bytes, padded to 8. Reading it here costs one slice per record.

The positions and record lengths are shared with the kernel while it writes, so each is read and written as
one aligned word: read through ``struct``'s native formats (its explicit little-endian ones go byte by byte),
and the consumer position written through a ``memoryview`` of 8-byte items, one store. ``struct.pack_into``
would zero the word before writing it: a kernel that read the position in between saw a reader that had
consumed nothing, so once the producer had gone round the buffer it refused records with the buffer almost
empty (some 20-60 a second at 200k records/s). The reader relies on x86-64's ordering of plain loads and stores
(total store order) where the kernel uses acquire/release.
"""

from __future__ import annotations

import mmap
import select
import struct
from collections.abc import Callable
from typing import TypeVar

_POSITION = struct.Struct("Q")  # native formats: one aligned 8-byte (4-byte) load, see above
_LENGTH = struct.Struct("I")
_BUSY = 1 << 31
_DISCARD = 1 << 30
_SIZE_BITS = ~(_BUSY | _DISCARD)
_HEADER = 8

T = TypeVar("T")


class RingBuffer:
    """The reader of one ``BPF_MAP_TYPE_RINGBUF`` map of ``size`` bytes (a power-of-two number of pages)."""

    def __init__(self, map_fd: int, size: int) -> None:
        page = mmap.PAGESIZE
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._consumer_word = memoryview(self._consumer).cast("Q")  # [0] = position: one 8-byte store, see above
        self._producer = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._view = memoryview(self._producer)
        self._data_start = page
        self._mask = size - 1
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)

    def wait(self, timeout_ms: int) -> None:
        """Block until the kernel signals new records, or ``timeout_ms`` passes."""
        self._epoll.poll(max(timeout_ms, 0) / 1000)

    def pending(self) -> bool:
        return _POSITION.unpack_from(self._producer, 0)[0] > _POSITION.unpack_from(self._consumer, 0)[0]

    def read(self, decode: Callable[[memoryview, list[int]], list[T]], limit: int) -> list[T]:
        """Up to ``limit`` committed records, decoded by ``decode(view, offsets)`` (each offset is where a
        record's bytes start in ``view``) before their space is handed back to the kernel: the view is valid
        only inside ``decode``, which decodes the whole batch in one loop."""
        consumer = _POSITION.unpack_from(self._consumer, 0)[0]
        producer = _POSITION.unpack_from(self._producer, 0)[0]
        view, start, mask, unpack_length = self._view, self._data_start, self._mask, _LENGTH.unpack_from
        busy, discard, size_bits, header, padded = _BUSY, _DISCARD, _SIZE_BITS, _HEADER, _HEADER + 7
        offsets: list[int] = []
        append = offsets.append
        while consumer < producer and limit:
            offset = start + (consumer & mask)
            length = unpack_length(view, offset)[0]
            if length & busy:
                break  # reserved but not yet committed: the records after it wait for it
            if not length & discard:
                append(offset + header)
                limit -= 1
            consumer += ((length & size_bits) + padded) & ~7
        records = decode(view, offsets) if offsets else []
        self._consumer_word[0] = consumer
        return records

    def close(self) -> None:
        self._epoll.close()
        self._view.release()
        self._consumer_word.release()
        self._producer.close()
        self._consumer.close()
