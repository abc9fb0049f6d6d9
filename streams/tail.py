"""``vigil stream tail``: print what flows through one of vigil's topics, one JSON document per line.

For a SIEM engineer checking what the alert topic carries, or an operator looking at dead letters. It
reads without a consumer group, so it never moves anyone's committed offsets.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson

from vigil import kafka
from vigil.config import Settings

BATCH_TOPICS = ("events", "raw.")


async def tail(settings: Settings, topic: str, *, since_ms: int | None, timeout: float, limit: int) -> int:
    """Print messages (those stamped at or after ``since_ms``, else only new ones) until ``limit`` documents
    were printed or ``timeout`` seconds passed; returns the count."""
    name = settings.topic(topic)
    consumer = kafka.consumer(settings, name, group_id=None)
    await consumer.start()
    printed = 0
    try:
        partitions = list(consumer.assignment())
        if not partitions:
            print(f"vigil: topic {name} does not exist", file=sys.stderr)
            return 0
        await kafka.seek_to_time(consumer, partitions, since_ms)
        where = "new messages" if since_ms is None else f"messages stamped since {since_ms} ms"
        print(f"vigil: reading {name} ({len(partitions)} partitions): {where}", file=sys.stderr, flush=True)
        deadline = time.monotonic() + timeout
        while printed < limit and (remaining := deadline - time.monotonic()) > 0:
            batches = await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000))
            for message in (m for records in batches.values() for m in records):
                for document in _documents(topic, message.value):
                    sys.stdout.buffer.write(document + b"\n")
                    printed += 1
            sys.stdout.flush()
    finally:
        await consumer.stop()
    return printed


def parse_since(text: str) -> int:
    """``90s``, ``10m``, ``2h``, ``1d`` before now, or an absolute epoch time in milliseconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return int((time.time() - int(text[:-1]) * units[text[-1]]) * 1000)
    if text.isdigit():
        return int(text)
    raise ValueError(f"--since {text!r}: give a duration such as 10m or 2h, or epoch milliseconds")


def _documents(topic: str, value: bytes) -> list[bytes]:
    if not topic.startswith(BATCH_TOPICS):
        return [value]
    try:
        return [orjson.dumps(record) for record in kafka.decode_batch(value)]
    except ValueError:
        return [value]


def run(settings: Settings, topic: str, since: str | None, timeout: float, limit: int) -> int:
    since_ms = parse_since(since) if since else None
    return asyncio.run(tail(settings, topic, since_ms=since_ms, timeout=timeout, limit=limit))
