import orjson
import pytest

from vigil.collectors import spool as spool_module
from vigil.collectors.shipper import RECORD_FRAMING_BYTES, pack
from vigil.collectors.spool import DiskSpool, Message, SpoolFull, SpoolInUse


def _messages(n: int, start: int = 0) -> list[Message]:
    return [Message("vigil.raw.k8s-audit", f"k{i % 3}", orjson.dumps({"n": i})) for i in range(start, start + n)]


def test_spool_keeps_order_across_reopen(tmp_path):
    spool = DiskSpool(tmp_path, 10_000_000, "test")
    spool.append(_messages(5))
    spool.append(_messages(5, start=5))
    first = spool.peek(3)
    spool.ack([size for _, size in first])
    spool.close()

    reopened = DiskSpool(tmp_path, 10_000_000, "test")
    rest = [orjson.loads(m.value)["n"] for m, _ in reopened.peek(100)]
    assert rest == [3, 4, 5, 6, 7, 8, 9]
    assert reopened.bytes_pending == sum(size for _, size in reopened.peek(100))


def test_spool_is_empty_after_everything_is_acknowledged(tmp_path):
    spool = DiskSpool(tmp_path, 10_000_000, "test")
    spool.append(_messages(4))
    spool.ack([size for _, size in spool.peek(10)])
    assert not spool
    assert spool.peek(10) == []
    assert list(tmp_path.glob("*.seg")) == []


def test_spool_refuses_beyond_its_bound_and_writes_nothing(tmp_path):
    spool = DiskSpool(tmp_path, 300, "test")
    spool.append(_messages(2))
    before = spool.bytes_pending
    with pytest.raises(SpoolFull):
        spool.append(_messages(50))
    assert spool.bytes_pending == before
    assert len(spool.peek(100)) == 2


def test_spool_cuts_a_torn_tail_left_by_a_crash(tmp_path):
    spool = DiskSpool(tmp_path, 10_000_000, "test")
    spool.append(_messages(3))
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    segment.write_bytes(segment.read_bytes() + b"\x00\x00\x01\x00partial")
    reopened = DiskSpool(tmp_path, 10_000_000, "test")
    reopened.append(_messages(1, start=3))
    assert [orjson.loads(m.value)["n"] for m, _ in reopened.peek(10)] == [0, 1, 2, 3]


def test_spool_rolls_segments_and_deletes_delivered_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 200)
    spool = DiskSpool(tmp_path, 10_000_000, "test")
    for i in range(10):
        spool.append(_messages(3, start=3 * i))
    assert len(list(tmp_path.glob("*.seg"))) > 1
    seen = []
    while batch := spool.peek(4):
        seen += [orjson.loads(m.value)["n"] for m, _ in batch]
        spool.ack([size for _, size in batch])
    assert seen == list(range(30))
    assert list(tmp_path.glob("*.seg")) == []


def test_second_process_cannot_share_a_spool(tmp_path):
    first = DiskSpool(tmp_path, 1000, "test")
    with pytest.raises(SpoolInUse, match="in use"):
        DiskSpool(tmp_path, 1000, "test")
    first.close()
    DiskSpool(tmp_path, 1000, "test").close()


def test_pack_groups_by_key_and_respects_the_size_bound():
    records = [(f"k{i % 2}", orjson.dumps({"n": i, "pad": "x" * 50})) for i in range(40)]
    messages = pack("t", records, max_bytes=RECORD_FRAMING_BYTES + 400)
    assert len(messages) > 2
    assert all(len(m.value) <= 400 for m in messages)
    by_key: dict[str, list[int]] = {}
    for m in messages:
        by_key.setdefault(m.key, []).extend(r["n"] for r in orjson.loads(m.value))
    assert by_key == {"k0": list(range(0, 40, 2)), "k1": list(range(1, 40, 2))}
