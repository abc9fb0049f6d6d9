"""Follows JSON-lines log files (the apiserver's ``--audit-log-path``) without losing or repeating lines.

A checkpoint per file records the file's identity (device, inode) and the byte offset just past the
last line that is durable downstream (acknowledged by Kafka or spooled); it is written atomically only
after the shipper returned. On restart the tailer resumes at that offset. Rotation is followed by
identity, not name: when the path points at a new inode the old file is read to its end first (the
apiserver's log rotation renames ``audit.log`` to ``audit-<time>.log`` in the same directory, so a file
rotated while the tailer was down is found again by its inode). A file that shrank was truncated in
place (copytruncate) and is read again from the start.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from vigil.collectors.ingest import SourceIngest
from vigil.collectors.shipper import SpoolFull

log = logging.getLogger(__name__)

READ_BYTES = 1 << 20


@dataclass(slots=True)
class Checkpoint:
    device: int
    inode: int
    offset: int


class CheckpointStore:
    """One small JSON file per followed path, replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)

    def _file(self, path: Path) -> Path:
        return self._dir / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32] + ".json")

    def load(self, path: Path) -> Checkpoint | None:
        try:
            data = orjson.loads(self._file(path).read_bytes())
            return Checkpoint(int(data["device"]), int(data["inode"]), int(data["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path, checkpoint: Checkpoint) -> None:
        target = self._file(path)
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps({"path": str(path), "device": checkpoint.device, "inode": checkpoint.inode,
                                   "offset": checkpoint.offset}))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)


class _OpenFile:
    """An open file with the offset up to which its lines are durable."""

    def __init__(self, path: Path, offset: int) -> None:
        # Held open across polls so a rename cannot take the file away from us; closed by the tailer.
        self.handle: BinaryIO = open(path, "rb")  # noqa: SIM115
        stat = os.fstat(self.handle.fileno())
        offset = offset if offset <= stat.st_size else 0  # shrank while we were away: truncated in place
        self.handle.seek(offset)
        self.device, self.inode = stat.st_dev, stat.st_ino
        self.offset = offset
        self.partial = b""
        self.oversized = False  # inside a line longer than the limit: skip to its end


class FileTailer:
    """Tails one path and hands complete lines to a :class:`SourceIngest` in batches."""

    FULL_BACKOFF_SECONDS = 5.0

    def __init__(self, path: Path, ingest: SourceIngest, checkpoints: CheckpointStore, max_line_bytes: int,
                 batch_lines: int = 2000) -> None:
        self.path = path
        self._ingest = ingest
        self._checkpoints = checkpoints
        self._max_line = max_line_bytes
        self._batch_lines = batch_lines
        self._file: _OpenFile | None = None

    async def run(self, follow: bool = True, poll_seconds: float = 0.25) -> None:
        """Ship everything there is; with ``follow`` keep watching for new lines and rotations."""
        while True:
            progressed = await self.poll()
            if not progressed:
                if not follow:
                    return
                await asyncio.sleep(poll_seconds)

    async def poll(self) -> bool:
        """Read and ship what is new; returns whether anything was read."""
        if self._file is None and not self._open():
            return False
        assert self._file is not None
        current = self._file
        lines, end_of_file = self._read_lines(current)
        if lines or current.offset != current.handle.tell() - len(current.partial):
            try:
                await self._ship(current, lines)
            except SpoolFull:
                # Nothing was checkpointed: rewind and read the same lines again once there is room.
                log.warning("collector full, pausing", extra={"path": str(self.path)})
                current.handle.seek(current.offset)
                current.partial, current.oversized = b"", False
                await asyncio.sleep(self.FULL_BACKOFF_SECONDS)
                return False
        if end_of_file and await self._follow_rotation(current):
            return True
        return bool(lines)

    def close(self) -> None:
        if self._file:
            self._file.handle.close()
            self._file = None

    def _open(self) -> bool:
        """Open the file to follow, resuming from the checkpoint (also across a rotation while we were down)."""
        checkpoint = self._checkpoints.load(self.path)
        if checkpoint is not None:
            resumed = self._find_by_identity(checkpoint)
            if resumed is not None:
                self._file = _OpenFile(resumed, checkpoint.offset)
                return True
        try:
            self._file = _OpenFile(self.path, 0)
        except FileNotFoundError:
            return False
        return True

    def _find_by_identity(self, checkpoint: Checkpoint) -> Path | None:
        candidates = [self.path, *sorted(self.path.parent.glob(self.path.stem + "*"))]
        for candidate in candidates:
            try:
                stat = candidate.stat()
            except FileNotFoundError:
                continue
            if (stat.st_dev, stat.st_ino) == (checkpoint.device, checkpoint.inode):
                return candidate
        return None

    def _read_lines(self, current: _OpenFile) -> tuple[list[bytes], bool]:
        """Complete lines available now (at most one batch) and whether the end of the file was reached."""
        lines: list[bytes] = []
        while len(lines) < self._batch_lines:
            chunk = current.handle.read(READ_BYTES)
            if not chunk:
                return lines, True
            pieces = (current.partial + chunk).split(b"\n")
            current.partial = pieces.pop()
            for piece in pieces:
                if current.oversized:
                    current.oversized = False  # the rest of a line already dead-lettered
                elif piece.strip():
                    lines.append(piece)
            if len(current.partial) > self._max_line and not current.oversized:
                lines.append(current.partial)  # the source refuses it as too_large, keeping its start
                current.partial, current.oversized = b"", True
        return lines, False

    async def _ship(self, current: _OpenFile, lines: list[bytes]) -> None:
        if lines:
            result = await self._ingest.ingest(lines)
            if result.rejected:
                log.warning("rejected lines", extra={"path": str(self.path), "count": len(result.rejected),
                                                    "reasons": sorted({r.reason for r in result.rejected})})
        current.offset = current.handle.tell() - len(current.partial)
        self._checkpoints.save(self.path, Checkpoint(current.device, current.inode, current.offset))

    async def _follow_rotation(self, current: _OpenFile) -> bool:
        """At the end of the file: move to the file now at the path if it is another one, or rewind."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return False
        if (stat.st_dev, stat.st_ino) != (current.device, current.inode):
            await self._finish(current)
            log.info("log rotated", extra={"path": str(self.path)})
            self._file = _OpenFile(self.path, 0)
            self._checkpoints.save(self.path, Checkpoint(self._file.device, self._file.inode, 0))
            return True
        if stat.st_size < current.offset:
            log.info("log truncated, reading from the start", extra={"path": str(self.path)})
            current.handle.seek(0)
            current.offset, current.partial, current.oversized = 0, b"", False
            return True
        return False

    async def _finish(self, current: _OpenFile) -> None:
        """Ship what the writer appended before it let go of a rotated file, including an unterminated last line."""
        end_of_file = False
        while not end_of_file:
            lines, end_of_file = self._read_lines(current)
            if end_of_file and current.partial.strip() and not current.oversized:
                lines.append(current.partial)
                current.partial = b""
            await self._ship(current, lines)
        current.handle.close()
