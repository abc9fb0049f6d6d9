"""The stream step on batches of raw messages, as the Faust worker hands them over: one output per message in
order, bad input dead-lettered without stopping the batch, and detection state written once per key per batch."""

from __future__ import annotations

from pathlib import Path

import orjson

from vigil import kafka
from vigil.config import Settings
from vigil.detections.engine import Engine
from vigil.detections.state import CountingStore
from vigil.sources.audit.fixtures import audit_record
from vigil.sources.tetragon.fixtures import tetragon_record
from vigil.streams.processor import RawMessage, StreamProcessor

T0 = 1_741_069_320 * 10**9
SEQUENCE = Path(__file__).resolve().parents[2] / "detections" / "library" / "seq_exec_then_tooling.py"


def _exec(name: str = "web-7f9c", second: int = 18) -> RawMessage:
    record = audit_record("create", "pods", name=name, subresource="exec", code=101,
                          time=f"2025-03-04T06:22:{second}.000000Z")
    return RawMessage("k8s-audit", orjson.dumps([record]), T0)


def _tool(binary: str, second: int) -> RawMessage:
    record = tetragon_record(binary=binary, time=f"2025-03-04T06:22:{second}.000000Z")
    return RawMessage("tetragon", orjson.dumps([record]), T0)


def test_a_batch_gives_one_output_per_message_in_order_and_dead_letters_bad_input() -> None:
    processor = StreamProcessor(Settings(cluster="c"), Engine.load([SEQUENCE]))
    batch = [
        _exec(),
        RawMessage("k8s-audit", b"{not json", T0),
        RawMessage("k8s-audit", orjson.dumps([["a list, not an audit event"]]), T0),
        _tool("/usr/bin/wget", 31),
    ]

    first, undecodable, wrong_kind, last = processor.process_batch(batch)

    assert [e["original_id"] for e in orjson.loads(first.events[0])] == [orjson.loads(batch[0].value)[0]["auditID"]]
    assert (undecodable.events, [orjson.loads(d)["reason"] for d in undecodable.deadletters]) == ([], ["bad_message"])
    assert (wrong_kind.events, [orjson.loads(d)["reason"] for d in wrong_kind.deadletters]) == ([], ["wrong_kind"])
    assert [a.detection for a in last.alerts] == ["seq.exec_then_tooling"], "the sequence spans two messages"
    assert all(e["ingest_ns"] == T0 for e in orjson.loads(last.events[0]))


def test_state_is_written_once_per_key_per_batch_not_per_message() -> None:
    batch = [_exec(second=18), _exec(second=19), _tool("/bin/ls", 20)]

    one_by_one = CountingStore()
    processor = StreamProcessor(Settings(cluster="c"), Engine.load([SEQUENCE], store=one_by_one))
    for message in batch:
        processor.process(message.source, message.value, message.ingest_ns)

    batched = CountingStore()
    StreamProcessor(Settings(cluster="c"), Engine.load([SEQUENCE], store=batched)).process_batch(batch)

    assert (one_by_one.writes, batched.writes) == (2, 1), "two execs of one pod: one key, written once per batch"
    assert one_by_one.get("c/default/web-7f9c") == batched.get("c/default/web-7f9c")


def test_events_that_outgrow_a_kafka_message_are_split_into_arrays_that_fit() -> None:
    """A collector's full message normalizes into more bytes than it had (an event carries its raw record and
    more): the producer would refuse it whole, and the worker lost the batch."""
    settings = Settings(cluster="c")
    settings.kafka.max_message_bytes = kafka.RECORD_FRAMING_BYTES + 20_000
    records = [audit_record("get", "pods", name=f"web-{n}", time=f"2025-03-04T06:22:{n % 60:02d}.000000Z")
               for n in range(25)]
    raw = orjson.dumps(records)
    assert len(raw) < 20_000 < 2 * len(raw), "a raw message that fits, whose events do not"

    out = StreamProcessor(settings, Engine.load([SEQUENCE])).process("k8s-audit", raw, T0)

    assert len(out.events) > 1 and all(len(array) <= 20_000 for array in out.events)
    assert [e["original_id"] for array in out.events for e in orjson.loads(array)] == [r["auditID"] for r in records]


def test_a_keys_events_of_several_messages_are_packed_into_arrays_that_fit() -> None:
    """The worker sends the events of every message of a key in a batch as one message (as collectors pack
    records), in order, and no packed message outgrows what Kafka takes."""
    arrays = [kafka.encode_batch([{"n": n} for n in range(start, start + 3)]) for start in (0, 3, 6)]
    arrays.insert(1, b"[]")  # a message whose records were all refused

    assert kafka.packed_arrays(arrays, kafka.RECORD_FRAMING_BYTES + 1_000) == [kafka.encode_batch(
        [{"n": n} for n in range(9)])]
    small = kafka.packed_arrays(arrays, kafka.RECORD_FRAMING_BYTES + 30)
    assert len(small) > 1 and all(len(array) <= 30 for array in small)
    assert [record["n"] for array in small for record in orjson.loads(array)] == list(range(9))
