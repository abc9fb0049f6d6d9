"""Tailer logic (rotation, truncation, checkpoints) with a recording ingest; the Kafka path is covered by
tests/integration/test_collector.py."""

import os

import pytest

from vigil.collectors.ingest import IngestResult
from vigil.collectors.tailer import CheckpointStore, FileTailer


class RecordingIngest:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    async def ingest(self, payloads):
        payloads = list(payloads)
        self.lines += payloads
        return IngestResult(accepted=len(payloads))


def _tailer(path, tmp_path, ingest, max_line=1000):
    return FileTailer(path, ingest, CheckpointStore(tmp_path / "ckpt"), max_line_bytes=max_line)


async def _drain(tailer):
    while await tailer.poll():
        pass


@pytest.fixture
def log_path(tmp_path):
    path = tmp_path / "logs" / "audit.log"
    path.parent.mkdir()
    return path


async def test_resumes_after_restart_without_loss_or_repeat(tmp_path, log_path):
    log_path.write_bytes(b"a\nb\nc\npart")
    first = RecordingIngest()
    tailer = _tailer(log_path, tmp_path, first)
    await _drain(tailer)
    tailer.close()
    assert first.lines == [b"a", b"b", b"c"]

    with open(log_path, "ab") as fh:
        fh.write(b"ial\nd\n")
    second = RecordingIngest()
    tailer = _tailer(log_path, tmp_path, second)
    await _drain(tailer)
    assert second.lines == [b"partial", b"d"]


async def test_follows_rename_rotation_and_reads_the_old_file_to_its_end(tmp_path, log_path):
    log_path.write_bytes(b"1\n2\n")
    ingest = RecordingIngest()
    tailer = _tailer(log_path, tmp_path, ingest)
    await _drain(tailer)
    with open(log_path, "ab") as fh:
        fh.write(b"3\n4")  # written just before rotation, last line unterminated
    os.rename(log_path, log_path.with_name("audit-2026-11-26T10-00-00.000.log"))
    log_path.write_bytes(b"5\n")
    await _drain(tailer)
    assert ingest.lines == [b"1", b"2", b"3", b"4", b"5"]


async def test_rotation_while_stopped_is_found_by_inode(tmp_path, log_path):
    log_path.write_bytes(b"1\n")
    tailer = _tailer(log_path, tmp_path, RecordingIngest())
    await _drain(tailer)
    tailer.close()
    with open(log_path, "ab") as fh:
        fh.write(b"2\n")
    os.rename(log_path, log_path.with_name("audit-old.log"))
    log_path.write_bytes(b"3\n")
    ingest = RecordingIngest()
    tailer = _tailer(log_path, tmp_path, ingest)
    await _drain(tailer)
    assert ingest.lines == [b"2", b"3"]


async def test_truncation_in_place_starts_over(tmp_path, log_path):
    log_path.write_bytes(b"first-line\nsecond-line\n")
    ingest = RecordingIngest()
    tailer = _tailer(log_path, tmp_path, ingest)
    await _drain(tailer)
    with open(log_path, "r+b") as fh:
        fh.truncate(0)
        fh.write(b"new\n")
    await _drain(tailer)
    assert ingest.lines == [b"first-line", b"second-line", b"new"]


async def test_an_oversized_line_is_passed_on_once_cut_and_the_next_lines_survive(tmp_path, log_path):
    log_path.write_bytes(b"ok1\n" + b"x" * 5000 + b"\nok2\n")
    ingest = RecordingIngest()
    tailer = _tailer(log_path, tmp_path, ingest, max_line=100)
    await _drain(tailer)
    assert ingest.lines[0] == b"ok1"
    assert ingest.lines[-1] == b"ok2"
    assert len(ingest.lines) == 3 and len(ingest.lines[1]) > 100 and set(ingest.lines[1]) == {ord("x")}


async def test_a_missing_file_is_waited_for(tmp_path, log_path):
    ingest = RecordingIngest()
    tailer = _tailer(log_path, tmp_path, ingest)
    assert await tailer.poll() is False
    log_path.write_bytes(b"late\n")
    await _drain(tailer)
    assert ingest.lines == [b"late"]
